//! The switch as a live_call AI service (gRPC `live_call.LiveCall`, the switch is the server),
//! so an existing KnM WebSocket gateway can point its AI-service address at the switch.
//!
//! `StreamCall`: the first message must carry `initial_info`; the call is created from it and
//! the rest of the stream goes to a `LiveCallGrpcSession` on the call's arbiter. Bot audio goes
//! out paced at real time as 20 ms `audio_output` chunks with truthful rate, width, channels and
//! duration. `Check` answers SERVING, or NOT_SERVING while the switch drains.
//!
//! A gateway whose token is bound to a workspace (`[grpc] tokens`) creates calls only in it:
//! an `initial_info` naming another workspace is refused with PERMISSION_DENIED, and an empty
//! `workspace_id` takes the token's.

pub mod client;
pub mod convert;
mod session;

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::pb::live_call::health_check_response::ServingStatus;
use crate::pb::live_call::live_call_server::LiveCall;
use crate::pb::live_call::{
    ClientRequest, HealthCheckRequest, HealthCheckResponse, ServerResponse,
};
use crate::protocols::access::{call_workspace, grant_of};
use crate::protocols::leg::{admit, CallLink, Caller, Refused, Responses};
use crate::registry::{GetStats, Registry};
use session::LiveCallGrpcSession;

pub use crate::pb::live_call::live_call_server::LiveCallServer;

/// The ingress name of this protocol, for routes and records.
pub const INGRESS: &str = "live_call_grpc";

/// A gateway must send `initial_info` within this time.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Responses queued toward one gateway: about one second of paced audio. Audio past it is
/// dropped (and counted); control responses wait up to `[media] write_timeout_ms`, and a
/// gateway that takes no audio for that long is hung up.
const OUTBOUND_QUEUE: usize = 64;

/// The tonic service.
pub struct LiveCallService {
    registry: Addr<Registry>,
    out_rate: u32,
    write_timeout: Duration,
}

impl LiveCallService {
    pub fn new(registry: Addr<Registry>, out_rate: u32) -> Self {
        LiveCallService {
            registry,
            out_rate,
            write_timeout: FIRST_MESSAGE_TIMEOUT,
        }
    }

    /// Hangs up a gateway that takes nothing for `timeout` (`[media] write_timeout_ms`).
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }
}

#[tonic::async_trait]
impl LiveCall for LiveCallService {
    type StreamCallStream = ReceiverStream<Result<ServerResponse, Status>>;

    async fn stream_call(
        &self,
        request: Request<Streaming<ClientRequest>>,
    ) -> Result<Response<Self::StreamCallStream>, Status> {
        let grant = grant_of(&request);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let first =
            super::first_message(&mut inbound, FIRST_MESSAGE_TIMEOUT, "initial_info").await?;
        let mut info = match convert::first_info(first) {
            Ok(info) => info,
            Err(e) => {
                let message = e.to_string();
                let _ = tx.send(Ok(convert::error(400, &message))).await;
                let _ = tx.send(Err(Status::invalid_argument(message))).await;
                return Ok(Response::new(ReceiverStream::new(rx)));
            }
        };
        info.workspace_id = call_workspace(grant.workspace.as_deref(), &info.workspace_id)
            .map_err(|e| {
                tracing::info!(call_id = %info.call_id, error = %e, "live_call stream refused");
                Status::permission_denied(e.to_string())
            })?;
        let call = Caller {
            from: Some(info.customer_phone_number.clone()),
            to: Some(info.hotline.clone()),
            outgoing: info.type_call == "outbound",
            workspace: info.workspace_id.clone(),
            hotline: info.hotline.clone(),
            metadata: None,
        }
        .call(INGRESS, info.call_id.clone());
        let handle = admit(&self.registry, call)
            .await
            .map_err(|_| Status::unavailable("switch is shutting down"))?
            .map_err(|e| Refused::of(&e).status())?;
        let session = LiveCallGrpcSession::new(
            CallLink::new(handle.addr, handle.id),
            Responses::new(tx, self.write_timeout, "gateway stopped reading"),
            info,
            self.out_rate,
            self.write_timeout,
        );
        LiveCallGrpcSession::start_in_arbiter(&handle.arbiter, move |ctx| {
            session.begin(inbound, ctx)
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let status = match self.registry.send(GetStats).await {
            Ok(stats) if !stats.draining => ServingStatus::Serving,
            _ => ServingStatus::NotServing,
        };
        Ok(Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }
}
