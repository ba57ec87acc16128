//! Wire protocols, one folder each: the caller side, and the client where the switch also
//! dials a network bot. Each turns its wire frames into typed call messages and back; no wire
//! type crosses into `call` or `bots`.

pub mod access;
pub mod grpc_client;
pub mod leg;
pub mod live_call_grpc;
pub mod live_call_ws;
pub mod ringover;
pub mod sip;
pub mod smartivr;
pub mod twilio;
pub mod upgrade;
pub mod ws;

use std::time::Instant;

use tonic::{Code, Status};

/// The first message of a gRPC stream, which must arrive within `timeout`; `what` names what it
/// must carry, for the error.
pub async fn first_message<T>(
    inbound: &mut tonic::Streaming<T>,
    timeout: std::time::Duration,
    what: &str,
) -> Result<T, Status> {
    match tokio::time::timeout(timeout, inbound.message()).await {
        Ok(Ok(Some(first))) => Ok(first),
        Ok(Ok(None)) => Err(Status::invalid_argument(format!(
            "stream ended before {what}"
        ))),
        Ok(Err(status)) => Err(match StreamBreak::of(&status) {
            StreamBreak::TooLarge(detail) => Status::resource_exhausted(detail),
            StreamBreak::Malformed(detail) => Status::invalid_argument(detail),
            StreamBreak::Gone => status,
        }),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no {what} within {} s",
            timeout.as_secs()
        ))),
    }
}

/// Why a gRPC request stream broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamBreak {
    /// The peer went away (reset, cancelled, connection lost): it hung up.
    Gone,
    /// A message over the size limit: the peer gets RESOURCE_EXHAUSTED.
    TooLarge(String),
    /// A message that is not valid protobuf: the peer gets INVALID_ARGUMENT.
    Malformed(String),
}

impl StreamBreak {
    /// Reads tonic's status for a broken request stream.
    pub fn of(status: &Status) -> StreamBreak {
        match status.code() {
            Code::OutOfRange | Code::ResourceExhausted => {
                StreamBreak::TooLarge(format!("message too large: {}", status.message()))
            }
            // tonic's decoder says INTERNAL both for bad protobuf and for a stream cut inside
            // a message; only the second is the peer leaving.
            Code::Internal if !status.message().contains("Unexpected EOF") => {
                StreamBreak::Malformed(format!("malformed message: {}", status.message()))
            }
            _ => StreamBreak::Gone,
        }
    }
}

/// Refuses DTMF keys past a rate: a token bucket of `BURST` keys refilled at `PER_SECOND`.
/// People press at most a few keys a second; a peer sending thousands is flooding, and every
/// key kept is a message to the call.
#[derive(Debug)]
pub struct KeyRate {
    tokens: f64,
    last: Instant,
    /// Keys refused so far.
    pub refused: u64,
}

impl KeyRate {
    /// Keys a second kept on average.
    pub const PER_SECOND: f64 = 20.0;
    /// Keys kept at once after a pause.
    pub const BURST: f64 = 40.0;

    pub fn new() -> Self {
        KeyRate {
            tokens: Self::BURST,
            last: Instant::now(),
            refused: 0,
        }
    }

    /// Whether one more key may go to the call now.
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * Self::PER_SECOND;
        self.last = now;
        self.tokens = (self.tokens + refill).min(Self::BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.refused += 1;
            false
        }
    }
}

impl Default for KeyRate {
    fn default() -> Self {
        Self::new()
    }
}

/// A network bot client's failure, told to its call once: `done` is set, the failure logged
/// with the bot's `kind`, and the call sent `BotCommand::Failed`. Answers whether this was the
/// first failure (the client then drops its queue toward the bot and stops).
pub(crate) fn fail_call_once(
    done: &mut bool,
    call: &actix::Recipient<crate::call::messages::BotCommand>,
    kind: &str,
    call_label: &str,
    detail: String,
) -> bool {
    if *done {
        return false;
    }
    *done = true;
    tracing::warn!(call = %call_label, %detail, "{kind} bot failed");
    call.do_send(crate::call::messages::BotCommand::Failed { detail });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rate_keeps_a_burst_then_refuses() {
        let mut rate = KeyRate::new();
        let kept = (0..1000).filter(|_| rate.allow()).count();
        // The burst, plus what refilled while the loop ran (well under a key).
        assert!((40..=42).contains(&kept), "kept {kept}");
        assert!(rate.refused >= 958);
    }

    #[test]
    fn stream_breaks_are_read_from_tonic_statuses() {
        assert!(matches!(
            StreamBreak::of(&Status::out_of_range("decoded message length too large")),
            StreamBreak::TooLarge(_)
        ));
        assert!(matches!(
            StreamBreak::of(&Status::internal("failed to decode Protobuf message")),
            StreamBreak::Malformed(_)
        ));
        assert_eq!(
            StreamBreak::of(&Status::internal("Unexpected EOF decoding stream.")),
            StreamBreak::Gone
        );
        assert_eq!(
            StreamBreak::of(&Status::cancelled("gone")),
            StreamBreak::Gone
        );
    }
}
