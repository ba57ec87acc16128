//! Caller protocols. Each turns its wire frames into typed call messages and back; no wire
//! type crosses into `call` or `bots`.

pub mod access;
pub mod live_call_grpc;
pub mod live_call_ws;
pub mod ringover;
pub mod smartivr;
pub mod upgrade;

/// The first message of a gRPC stream, which must arrive within `timeout`; `what` names what it
/// must carry, for the error.
pub async fn first_message<T>(
    inbound: &mut tonic::Streaming<T>,
    timeout: std::time::Duration,
    what: &str,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(timeout, inbound.message()).await {
        Ok(Ok(Some(first))) => Ok(first),
        Ok(Ok(None)) => Err(tonic::Status::invalid_argument(format!(
            "stream ended before {what}"
        ))),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no {what} within {} s",
            timeout.as_secs()
        ))),
    }
}
