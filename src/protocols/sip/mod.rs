//! SIP and RTP as a caller protocol: SDP offer/answer (`sdp`), RTP packets and the sending
//! clock (`rtp`), the jitter buffer on the way in (`jitter`), and DTMF as RFC 4733 events and
//! SIP INFO (`dtmf`).

pub mod dial;
pub mod dtmf;
pub mod jitter;
pub mod ports;
pub mod rtp;
pub mod sdp;
pub mod server;
pub mod session;

pub use server::{start, SipHandle};

/// The ingress name of SIP calls (`[[routes]] match.ingress`).
pub const INGRESS: &str = "sip";
pub mod outbound;

pub use outbound::Dialer;

/// The far end's SDP of an outgoing call until it answers: no address, no formats.
fn media_session_placeholder() -> sdp::Session {
    let nowhere = outbound::nowhere();
    sdp::Session {
        address: nowhere.ip(),
        port: nowhere.port(),
        formats: Vec::new(),
        ptime: None,
        direction: sdp::Direction::SendRecv,
    }
}
