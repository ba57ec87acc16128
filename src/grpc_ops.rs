//! What operators ask of the gRPC listener besides calls: health checks (`grpc.health.v1`)
//! that turn NOT_SERVING while the switch drains, and server reflection (v1 and v1alpha) built
//! from the protos compiled into the switch, so `grpcurl -plaintext HOST:PORT list` needs no
//! proto files.

use tonic::server::NamedService;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::protocols::live_call_grpc::{LiveCallServer, LiveCallService};
use crate::protocols::smartivr::{SmartIvrPhonegatewayServer, SmartIvrService};

/// The services whose health is reported; `""` is the server as a whole.
pub const HEALTH_SERVICES: [&str; 3] = [
    "",
    <SmartIvrPhonegatewayServer<SmartIvrService> as NamedService>::NAME,
    <LiveCallServer<LiveCallService> as NamedService>::NAME,
];

/// Sets the health every checker sees.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

/// The health service to add to the gRPC server.
pub type HealthService = HealthServer<tonic_health::server::HealthService>;

impl Health {
    /// A reporter and its service; nothing is SERVING until `serving` is called.
    pub fn new() -> (Health, HealthService) {
        let reporter = HealthReporter::new();
        let service = HealthServer::new(tonic_health::server::HealthService::from_health_reporter(
            reporter.clone(),
        ));
        (Health { reporter }, service)
    }

    /// Every service and the server: SERVING (listening and admitting calls).
    pub async fn serving(&self) {
        self.set(ServingStatus::Serving).await;
    }

    /// Every service and the server: NOT_SERVING (draining; new calls are refused).
    pub async fn not_serving(&self) {
        self.set(ServingStatus::NotServing).await;
    }

    async fn set(&self, status: ServingStatus) {
        for name in HEALTH_SERVICES {
            self.reporter.set_service_status(name, status).await;
        }
    }
}

/// Why reflection could not be built (a descriptor set compiled in is broken).
pub type ReflectionError = tonic_reflection::server::Error;

/// The encoded descriptor sets reflection serves: the switch's protos and the health service.
const DESCRIPTOR_SETS: [&[u8]; 2] = [
    crate::pb::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
];

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    DESCRIPTOR_SETS.iter().fold(
        tonic_reflection::server::Builder::configure(),
        |builder, set| builder.register_encoded_file_descriptor_set(set),
    )
}

/// Reflection, `grpc.reflection.v1`.
pub fn reflection_v1() -> Result<
    tonic_reflection::pb::v1::server_reflection_server::ServerReflectionServer<
        impl tonic_reflection::pb::v1::server_reflection_server::ServerReflection,
    >,
    ReflectionError,
> {
    reflection_builder().build_v1()
}

/// Reflection, `grpc.reflection.v1alpha` (what older clients, grpcurl 1.8 among them, ask).
pub fn reflection_v1alpha() -> Result<
    tonic_reflection::pb::v1alpha::server_reflection_server::ServerReflectionServer<
        impl tonic_reflection::pb::v1alpha::server_reflection_server::ServerReflection,
    >,
    ReflectionError,
> {
    reflection_builder().build_v1alpha()
}
