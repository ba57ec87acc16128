//! The SmartIVR phone-gateway protocol (gRPC `CallToBot`, the switch is the server).
//!
//! The service reads the first message (it must carry `config`), admits the call, and hands the
//! rest of the stream to a `SmartIvrSession` actor on the call's arbiter. Bot audio goes out
//! as whole utterances (RESULT_TTS), 8 kHz mono 16-bit. A gateway whose token is bound to a
//! workspace (`[grpc] tokens`) places its calls in that workspace.

pub mod client;
pub mod convert;
mod session;

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::TtsAudio;
use crate::pb::smartivr::smart_ivr_phonegateway_server::SmartIvrPhonegateway;
use crate::pb::smartivr::{SmartIvrRequest, SmartIvrResponse};
use crate::protocols::access::grant_of;
use crate::protocols::leg::{admit, CallLink, Caller, Refused, Responses};
use crate::registry::Registry;
use session::SmartIvrSession;

pub use crate::pb::smartivr::smart_ivr_phonegateway_server::SmartIvrPhonegatewayServer;

/// A gateway must send its first message (with config) within this time.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Responses queued toward one gateway; a gateway that lets this fill for
/// `[media] write_timeout_ms` is hung up.
const OUTBOUND_QUEUE: usize = 32;

/// The ingress name of this protocol, for routes and records.
pub const INGRESS: &str = "smartivr";

type ResponseTx = mpsc::Sender<Result<SmartIvrResponse, Status>>;

/// The tonic service.
pub struct SmartIvrService {
    registry: Addr<Registry>,
    tts_audio: TtsAudio,
    write_timeout: Duration,
}

impl SmartIvrService {
    pub fn new(registry: Addr<Registry>, tts_audio: TtsAudio) -> Self {
        SmartIvrService {
            registry,
            tts_audio,
            write_timeout: FIRST_MESSAGE_TIMEOUT,
        }
    }

    /// Hangs up a gateway that takes no response for `timeout` (`[media] write_timeout_ms`).
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }
}

/// Sends `status{code: -1, message}` and ends the stream with INVALID_ARGUMENT.
async fn refuse(tx: &ResponseTx, message: &str) {
    let _ = tx.send(Ok(convert::error(message))).await;
    let _ = tx
        .send(Err(Status::invalid_argument(message.to_owned())))
        .await;
}

#[tonic::async_trait]
impl SmartIvrPhonegateway for SmartIvrService {
    type CallToBotStream = ReceiverStream<Result<SmartIvrResponse, Status>>;

    async fn call_to_bot(
        &self,
        request: Request<Streaming<SmartIvrRequest>>,
    ) -> Result<Response<Self::CallToBotStream>, Status> {
        let grant = grant_of(&request);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let first = super::first_message(&mut inbound, FIRST_MESSAGE_TIMEOUT, "config").await?;
        let conversation_id = match convert::first_config(&first) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "SmartIVR stream refused");
                refuse(&tx, &e.to_string()).await;
                return Ok(Response::new(ReceiverStream::new(rx)));
            }
        };
        // A telephone caller whose number the gateway does not give.
        let call = Caller {
            from: Some(String::new()),
            workspace: grant.workspace.unwrap_or_default(),
            ..Default::default()
        }
        .call(INGRESS, conversation_id.clone());
        let handle = admit(&self.registry, call)
            .await
            .map_err(|_| Status::unavailable("switch is shutting down"))?
            .map_err(|e| Refused::of(&e).status())?;
        let session = SmartIvrSession::new(
            CallLink::new(handle.addr, handle.id),
            Responses::new(tx, self.write_timeout, "gateway stopped reading responses"),
            conversation_id,
            self.tts_audio,
        );
        SmartIvrSession::start_in_arbiter(&handle.arbiter, move |ctx| {
            session.begin(first, inbound, ctx)
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
