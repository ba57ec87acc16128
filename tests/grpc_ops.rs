//! gRPC health checks and server reflection on the real switch's gRPC listener.

mod support;

use std::time::Duration;

use support::*;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

const SMARTIVR: &str = "smartivrphonegateway.SmartIVRPhonegateway";
const LIVE_CALL: &str = "live_call.LiveCall";

async fn channel(grpc_url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(grpc_url.to_owned())
        .expect("a gRPC URL")
        .connect()
        .await
        .expect("gRPC connects")
}

async fn status(grpc_url: &str, service: &str) -> i32 {
    let mut client = HealthClient::new(channel(grpc_url).await);
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check answers")
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_serving_for_the_server_and_both_services() {
    let app = spawn_menu_app();
    for service in ["", SMARTIVR, LIVE_CALL] {
        assert_eq!(
            status(&app.grpc_url(), service).await,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_both_services() {
    let app = spawn_menu_app();
    let mut client = ServerReflectionClient::new(channel(&app.grpc_url()).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("a reflection response")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [SMARTIVR, LIVE_CALL, "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }

    // A service's file is described too, so a client needs no proto files.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(LIVE_CALL.into())),
    };
    let response = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner()
        .message()
        .await
        .expect("a reflection response")
        .expect("one message");
    assert!(
        matches!(
            response.message_response,
            Some(MessageResponse::FileDescriptorResponse(ref files)) if !files.file_descriptor_proto.is_empty()
        ),
        "{response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_not_serving_while_the_switch_drains() {
    let app = spawn_app(&format!(
        "[server]\ndrain_seconds = 60\n{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n"
    ));
    let grpc_url = app.grpc_url();
    // A live call keeps the switch draining until it hangs up.
    let mut gateway = Gateway::dial(&app, "drain-health").await;
    gateway.expect_tts("Hello").await;
    assert_eq!(
        status(&grpc_url, SMARTIVR).await,
        ServingStatus::Serving as i32
    );

    let TestApp { handle, .. } = app;
    let stopped = tokio::task::spawn_blocking(move || handle.shutdown());

    let deadline = tokio::time::Instant::now() + PATIENCE;
    for service in ["", SMARTIVR, LIVE_CALL] {
        loop {
            if status(&grpc_url, service).await == ServingStatus::NotServing as i32 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{service:?} never turned NOT_SERVING"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    gateway.hang_up();
    tokio::time::timeout(PATIENCE, stopped)
        .await
        .expect("the drain ends once the call is gone")
        .expect("shutdown ran");
}
