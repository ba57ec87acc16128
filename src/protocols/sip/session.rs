//! One SIP call as the caller leg of its call: the dialog's events (ACK, BYE, CANCEL,
//! re-INVITE, INFO, NOTIFY), the call's commands (a transfer is a REFER), and the RTP socket
//! both ways. Audio goes out in 20 ms packets on one clock that never stops (silence when
//! nothing plays, DTMF events in the audio's place); audio comes in through the jitter
//! buffer, decoded to 8 kHz. A re-INVITE may change the codec: the other law and payload
//! type take effect at once, both ways.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, Response, StatusCode};
use tokio::net::UdpSocket;
use uuid::Uuid;

use super::dtmf::{self, Slot};
use super::jitter::{JitterBuffer, DEPTH};
use super::ports::RtpPort;
use super::rtp::{self, Clock, Packet};
use super::sdp::{Agreed, Direction, Local, Session};
use super::server::Shared;
use super::INGRESS;
use crate::call::messages::{AttachDialer, CallerEvent, Delivery, LegCommand, LegFormat};
use crate::call::state::{Address, EndCause, HangupReason};
use crate::media::{FRAME_MS, TELEPHONE_RATE};
use crate::protocols::leg::{admit, CallLink, Caller};
use crate::protocols::KeyRate;
use crate::registry::AdmitError;
use crate::telemetry::Frames;

/// Samples in one 20 ms frame at 8 kHz.
const FRAME: usize = 160;
/// Room for call commands and received RTP: RTP past it is dropped (a flood stays bounded).
const MAILBOX: usize = 256;
/// Bot audio held toward the caller at most (2 s); the call paces it, so this is slack.
const MAX_OUT_SAMPLES: usize = 16_000;
/// Frames sent at once to catch up after the session was held up; further behind, the
/// clock skips ahead (the time is lost, the timestamps stay true).
const MAX_CATCH_UP: u64 = 5;
/// How long a peer that took a REFER has to report the new call's outcome (the NOTIFY with
/// the final status, RFC 3515); past it the transfer counts as made and the switch hangs up.
const TRANSFER_REPORT: Duration = Duration::from_secs(32);
/// Times a REFER is tried when the dialog was busy with another request as it went out.
const REFER_ATTEMPTS: u32 = 3;
/// The longest transfer destination taken.
const MAX_TRANSFER_TARGET: usize = 256;

/// A blind transfer under way: the REFER, then the peer's NOTIFYs.
struct Transfer {
    destination: Address,
    /// The Refer-To URI.
    uri: String,
    /// Tries of the REFER so far (one is out when `sent`).
    attempts: u32,
    sent: bool,
    /// The peer answered the REFER 2xx.
    accepted: bool,
}

/// What the INVITE offered, and who it is from.
pub struct Offer {
    pub session: Session,
    pub agreed: Agreed,
    pub from_user: Option<String>,
    pub from_host: Option<String>,
    pub to_user: Option<String>,
    pub call_id: String,
}

/// The dialog's state changed (from rsipstack's dialog layer).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DialogEvent(pub DialogState);

/// Packets in a row, in sequence, from one source and SSRC other than the SDP's address
/// before a session takes that source (`[sip] symmetric_rtp`: a peer behind NAT): a stray or
/// spoofed packet cannot take a call's media.
pub const RTP_PROBATION: u8 = 3;

/// The RTP stream a session takes from its peer: its source and SSRC are those of the first
/// packet from the SDP's host (or, with symmetric RTP, of the first `RTP_PROBATION` packets
/// in sequence from one source on another host); a packet from anywhere else mid-call is
/// dropped.
#[derive(Default)]
struct Latch {
    source: Option<SocketAddr>,
    ssrc: Option<u32>,
    /// A source not in the SDP being learnt: its address, SSRC, last sequence number and
    /// packets seen in sequence.
    learning: Option<(SocketAddr, u32, u16, u8)>,
}

/// How a latch took a packet.
#[derive(Debug, PartialEq, Eq)]
enum Taken {
    /// From the stream it holds (or the first from the SDP's address).
    Held,
    /// Its probation passed: the stream now comes from this source, not the SDP's address.
    Learnt(SocketAddr),
}

impl Latch {
    /// Whether a packet from `from` with `ssrc` and `seq` is the peer's, the SDP saying it
    /// sends from `expected` (unspecified: not known yet).
    fn accepts(
        &mut self,
        from: SocketAddr,
        ssrc: u32,
        seq: u16,
        expected: SocketAddr,
        symmetric: bool,
    ) -> Result<Taken, &'static str> {
        if let Some(source) = self.source {
            return if source != from {
                Err("wrong_source")
            } else if self.ssrc != Some(ssrc) {
                Err("wrong_ssrc")
            } else {
                Ok(Taken::Held)
            };
        }
        // The SDP's host is the peer's whatever port it sends from (a phone may send from
        // another port than it listens on); another host is NAT, or a stranger.
        let known = expected.ip().is_unspecified() || from.ip() == expected.ip();
        if known {
            self.source = Some(from);
            self.ssrc = Some(ssrc);
            self.learning = None;
            return Ok(Taken::Held);
        }
        if !symmetric {
            return Err("wrong_source");
        }
        match &mut self.learning {
            Some((at, x, last, seen))
                if *at == from && *x == ssrc && seq == last.wrapping_add(1) =>
            {
                *last = seq;
                *seen += 1;
                if *seen >= RTP_PROBATION {
                    self.source = Some(from);
                    self.ssrc = Some(ssrc);
                    self.learning = None;
                    return Ok(Taken::Learnt(from));
                }
            }
            _ => self.learning = Some((from, ssrc, seq, 1)),
        }
        Err("learning_source")
    }
}

/// What a session placing an outgoing call has until the far end answers.
pub(super) struct Outgoing {
    /// The INVITE's client transaction, to its final answer.
    pub invite: Option<tokio::task::JoinHandle<rsipstack::dialog::invitation::InviteAsyncResult>>,
    /// How long the far end may ring before the call ends with `noanswer`.
    pub ring_timeout: Duration,
    /// The call's arbiter, where the session runs too.
    pub arbiter: actix::ArbiterHandle,
}

/// The leg format of every SIP session: 8 kHz both ways, paced.
const FORMAT: LegFormat = LegFormat {
    in_rate: TELEPHONE_RATE,
    out_rate: TELEPHONE_RATE,
    delivery: Delivery::Paced,
    plays_urls: false,
    plays_hold_music: false,
};

/// The session actor.
pub struct SipSession {
    /// Set when this session places an outgoing call (a client dialog).
    outgoing: Option<Outgoing>,
    shared: Arc<Shared>,
    dialog: InviteDialog,
    states: Option<DialogStateReceiver>,
    offer: Offer,
    link: Option<CallLink>,
    call_label: Option<Uuid>,
    socket: Option<Arc<UdpSocket>>,
    port: Option<RtpPort>,
    /// Where RTP goes: the peer's SDP address, or where its RTP comes from (symmetric RTP).
    remote: SocketAddr,
    /// Where the peer's SDP says its RTP is.
    sdp_remote: SocketAddr,
    remote_direction: Direction,
    local: Local,
    answered: bool,
    /// 183 with SDP was sent (audio before the answer).
    early: bool,
    ended: bool,
    clock: Clock,
    started: Instant,
    frames_due: u64,
    out: VecDeque<i16>,
    dtmf_out: dtmf::Sender,
    /// The timestamp of the event being sent.
    event_ts: u32,
    audio_in: Latch,
    events_in: Latch,
    /// Caller audio decoded as it arrives, put back in order: each frame is then the very
    /// buffer the call gets (no payload copy, no second buffer).
    jitter: JitterBuffer<Vec<i16>>,
    ready: Vec<Vec<i16>>,
    dtmf_in: dtmf::Receiver,
    keys: KeyRate,
    encoded: Vec<u8>,
    packet: Vec<u8>,
    /// Causes of dropped packets already logged (each once).
    logged: Vec<&'static str>,
    frames: Frames,
    /// The methods the peer allows (its INVITE's or 200 OK's `Allow`), when it said.
    peer_allow: Option<String>,
    transfer: Option<Transfer>,
}

impl SipSession {
    /// Starts the session of a new INVITE.
    pub(super) fn start_inbound(
        shared: Arc<Shared>,
        dialog: InviteDialog,
        states: DialogStateReceiver,
        port: RtpPort,
        offer: Offer,
    ) {
        let arbiter = shared.next_arbiter();
        let mut session = Self::new(shared, dialog, states, port, offer);
        session.peer_allow = allow_of(session.dialog.initial_request().headers.iter());
        // The session runs on a call arbiter, and admits its call beside it (`call_here`).
        SipSession::start_in_arbiter(&arbiter, |ctx| {
            ctx.set_mailbox_capacity(MAILBOX);
            session
        });
    }

    /// Starts the session placing an outgoing call for `link`'s call (its INVITE is under
    /// way); `offer` holds what the switch offered until the answer replaces it.
    pub(super) fn start_outbound(
        shared: Arc<Shared>,
        dialog: InviteDialog,
        states: DialogStateReceiver,
        port: RtpPort,
        offer: Offer,
        link: CallLink,
        outgoing: Outgoing,
    ) {
        let arbiter = outgoing.arbiter.clone();
        let mut session = Self::new(shared, dialog, states, port, offer);
        session.call_label = Some(link.id());
        session.link = Some(link);
        session.outgoing = Some(outgoing);
        // Beside its call.
        SipSession::start_in_arbiter(&arbiter, |ctx| {
            ctx.set_mailbox_capacity(MAILBOX);
            session
        });
    }

    fn new(
        shared: Arc<Shared>,
        dialog: InviteDialog,
        states: DialogStateReceiver,
        port: RtpPort,
        offer: Offer,
    ) -> SipSession {
        let remote = SocketAddr::new(offer.session.address, offer.session.port);
        let local = Local {
            address: shared.public_ip,
            port: port.port,
            session_id: rand_u32() as u64,
            version: 1,
            direction: offer.session.direction.answer(),
        };
        SipSession {
            outgoing: None,
            shared,
            dialog,
            states: Some(states),
            remote_direction: offer.session.direction,
            offer,
            link: None,
            call_label: None,
            socket: None,
            port: Some(port),
            remote,
            sdp_remote: remote,
            local,
            answered: false,
            early: false,
            ended: false,
            clock: Clock::new(rand_u32(), rand_u32() as u16, rand_u32()),
            started: Instant::now(),
            frames_due: 0,
            out: VecDeque::new(),
            dtmf_out: dtmf::Sender::default(),
            event_ts: 0,
            audio_in: Latch::default(),
            events_in: Latch::default(),
            jitter: JitterBuffer::new(DEPTH),
            ready: Vec::new(),
            dtmf_in: dtmf::Receiver::default(),
            keys: KeyRate::new(),
            encoded: Vec::with_capacity(FRAME),
            packet: Vec::with_capacity(rtp::HEADER + FRAME),
            logged: Vec::new(),
            frames: Frames::new(INGRESS),
            peer_allow: None,
            transfer: None,
        }
    }

    /// Takes the far end's SDP (an answer, or early media in a 183).
    fn take_remote_sdp(&mut self, body: &[u8]) -> bool {
        match Session::parse(body).and_then(|s| s.agree().map(|a| (s, a))) {
            Ok((s, a)) => {
                self.remote = SocketAddr::new(s.address, s.port);
                self.sdp_remote = self.remote;
                self.remote_direction = s.direction;
                self.offer.agreed = a;
                self.offer.session = s;
                true
            }
            Err(e) => {
                tracing::warn!(call = self.call_label.map(|c| c.to_string()), error = %e, "unusable SDP from the far end");
                false
            }
        }
    }

    /// Starts placing the outgoing call.
    fn start_dialing(&mut self, ctx: &mut Context<Self>) {
        let Some(outgoing) = self.outgoing.as_mut() else {
            return;
        };
        let ring_timeout = outgoing.ring_timeout;
        if let Some(link) = &self.link {
            link.call().do_send(AttachDialer {
                dialer: ctx.address().recipient(),
            });
        }
        if let Some(invite) = outgoing.invite.take() {
            ctx.spawn(
                actix::fut::wrap_future::<_, Self>(invite)
                    .map(|result, act, ctx| act.invite_done(result, ctx)),
            );
        }
        ctx.run_later(ring_timeout, move |act, ctx| {
            if !act.answered && !act.ended {
                act.cancel_invite();
                act.leave(
                    EndCause::NoAnswer,
                    false,
                    format!("no answer within {} ms", ring_timeout.as_millis()),
                    ctx,
                );
            }
        });
    }

    fn cancel_invite(&mut self) {
        self.ended = true;
        let dialog = self.dialog.clone();
        actix::spawn(async move {
            let _ = dialog.cancel().await;
        });
    }

    fn leave(&mut self, cause: EndCause, local: bool, detail: String, ctx: &mut Context<Self>) {
        if let Some(link) = self.link.as_mut() {
            link.gone(cause, local, detail);
        }
        ctx.stop();
    }

    /// The INVITE's final answer.
    fn invite_done(
        &mut self,
        result: Result<rsipstack::dialog::invitation::InviteAsyncResult, tokio::task::JoinError>,
        ctx: &mut Context<Self>,
    ) {
        let response = match result {
            Ok(Ok((_, response))) => response,
            Ok(Err(e)) => {
                let cause = if self.ended {
                    EndCause::Canceled
                } else {
                    EndCause::Dialout
                };
                return self.leave(cause, false, format!("INVITE failed: {e}"), ctx);
            }
            Err(e) => return self.leave(EndCause::Failed, true, e.to_string(), ctx),
        };
        let Some(response) = response else {
            let cause = if self.ended {
                EndCause::Canceled
            } else {
                EndCause::Dialout
            };
            return self.leave(cause, false, "no final answer to the INVITE".into(), ctx);
        };
        let code = response.status_code.code();
        if (200..300).contains(&code) {
            if self.ended {
                // Answered as it was cancelled: the stack ends that dialog with a BYE.
                return ctx.stop();
            }
            if !self.take_remote_sdp(&response.body) {
                self.answered = true;
                self.hang_up(HangupReason::Failed);
                return self.leave(
                    EndCause::Failed,
                    true,
                    "the far end answered without a usable SDP".into(),
                    ctx,
                );
            }
            self.answered = true;
            self.peer_allow = allow_of(response.headers.iter());
            self.audio_in = Latch::default();
            self.events_in = Latch::default();
            self.jitter.reset();
            if let Some(link) = &self.link {
                link.attach(ctx.address().recipient(), FORMAT);
                link.call().do_send(CallerEvent::Answered);
            }
            return;
        }
        let cause = match code {
            486 | 600 => EndCause::Busy,
            408 | 480 => EndCause::NoAnswer,
            487 => EndCause::Canceled,
            _ => EndCause::Dialout,
        };
        self.ended = true;
        self.leave(
            cause,
            false,
            format!("{code} {}", response.status_code),
            ctx,
        );
    }

    fn log_once(&mut self, cause: &'static str, detail: &str) {
        self.frames.dropped(cause);
        if !self.logged.contains(&cause) {
            self.logged.push(cause);
            tracing::info!(call = self.call_label.map(|c| c.to_string()), call_id = %self.offer.call_id, cause, %detail, "SIP media dropped (logged once per cause)");
        }
    }

    fn admit(&mut self, ctx: &mut Context<Self>) {
        let mut call = Caller {
            from: self.offer.from_user.clone(),
            to: self.offer.to_user.clone(),
            outgoing: false,
            workspace: String::new(),
            hotline: self.offer.to_user.clone().unwrap_or_default(),
            metadata: Some(serde_json::json!({
                "sip_call_id": self.offer.call_id,
                "sip_from_host": self.offer.from_host,
            })),
        }
        .call_here(INGRESS, self.offer.call_id.clone());
        // The caller as a `sip` address, `user@host` (routes can match the host).
        let target = match (&self.offer.from_user, &self.offer.from_host) {
            (Some(user), Some(host)) => Some(format!("{user}@{host}")),
            (None, Some(host)) => Some(host.clone()),
            (Some(user), None) => Some(user.clone()),
            (None, None) => None,
        };
        if let Some(target) = target {
            call.source = crate::call::state::Address {
                kind: "sip".into(),
                target,
                ..Default::default()
            };
        }
        let leg = ctx.address().recipient();
        ctx.wait(admit(&self.shared.registry, call).into_actor(self).map(
            move |reply, act, ctx| match reply {
                Ok(Ok(handle)) => {
                    let link = CallLink::new(handle.addr, handle.id);
                    link.attach(leg, FORMAT);
                    act.call_label = Some(handle.id);
                    act.link = Some(link);
                }
                Ok(Err(e)) => act.refuse(e, ctx),
                Err(_) => act.refuse(AdmitError::Draining, ctx),
            },
        ));
    }

    fn refuse(&mut self, e: AdmitError, ctx: &mut Context<Self>) {
        tracing::warn!(call_id = %self.offer.call_id, error = %e, "SIP call refused");
        let code = match e {
            AdmitError::Full(_) => StatusCode::BusyHere,
            AdmitError::Draining => StatusCode::ServiceUnavailable,
            AdmitError::NoRoute { .. } | AdmitError::Chain(_) => StatusCode::NotFound,
        };
        let _ = self.dialog.reject(Some(code), Some(e.to_string()));
        self.ended = true;
        ctx.stop();
    }

    fn open_media(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(port) = &self.port else { return false };
        let socket = match port.socket.try_clone().and_then(UdpSocket::from_std) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(call_id = %self.offer.call_id, error = %e, "cannot open the RTP socket");
                return false;
            }
        };
        // The session reads its socket itself: what the peer sends waits in the socket's
        // kernel buffer (bounded), never in a queue of the switch's.
        ctx.add_stream(rtp::Datagrams::new(socket.clone()));
        self.socket = Some(socket);
        true
    }

    /// Sends the frames due on the 20 ms clock.
    fn tick(&mut self) {
        let due = self.started.elapsed().as_millis() as u64 / FRAME_MS as u64;
        let mut behind = due.saturating_sub(self.frames_due);
        if behind > MAX_CATCH_UP {
            let skipped = behind - MAX_CATCH_UP;
            self.clock.advance((skipped * FRAME as u64) as u32);
            self.frames_due += skipped;
            behind = MAX_CATCH_UP;
        }
        for _ in 0..behind {
            self.frames_due += 1;
            self.send_frame();
        }
    }

    fn send_frame(&mut self) {
        let flowing = (self.answered || self.early) && !self.ended;
        let sending = flowing && self.remote_direction.receives() && self.remote.port() != 0;
        let slot = match self.offer.agreed.dtmf_pt {
            Some(_) if flowing => self.dtmf_out.next(FRAME as u32),
            _ => Slot::Audio,
        };
        // One frame of audio is taken either way, so what plays stays in time.
        let n = self.out.len().min(FRAME);
        let mut frame = [0i16; FRAME];
        for (i, s) in self.out.drain(..n).enumerate() {
            frame[i] = s;
        }
        let Some(socket) = self.socket.clone() else {
            self.clock.advance(FRAME as u32);
            return;
        };
        match slot {
            Slot::Audio => {
                self.encoded.clear();
                self.offer.agreed.law.encode(&frame, &mut self.encoded);
                let encoded = std::mem::take(&mut self.encoded);
                let p = self
                    .clock
                    .audio(self.offer.agreed.pt, FRAME as u32, &encoded);
                if sending {
                    p.write(&mut self.packet);
                    let _ = socket.try_send_to(&self.packet, self.remote);
                    self.frames.sent.add();
                }
                self.encoded = encoded;
            }
            Slot::Event { event, start } => {
                if start {
                    self.event_ts = self.clock.now();
                }
                let bytes = event.bytes();
                let pt = self.offer.agreed.dtmf_pt.unwrap_or(101);
                let p = self.clock.event(pt, start, self.event_ts, &bytes);
                if sending {
                    p.write(&mut self.packet);
                    let _ = socket.try_send_to(&self.packet, self.remote);
                }
                self.clock.advance(FRAME as u32);
                self.clock.new_spurt();
            }
            Slot::Pause => {
                self.clock.advance(FRAME as u32);
                self.clock.new_spurt();
            }
        }
    }

    fn on_rtp(&mut self, data: &[u8], from: SocketAddr) {
        let packet = match Packet::parse(data) {
            Ok(p) => p,
            Err(e) => return self.log_once("bad_rtp", &e.to_string()),
        };
        let is_event = Some(packet.pt) == self.offer.agreed.dtmf_pt;
        if !is_event && packet.pt != self.offer.agreed.pt {
            return self.log_once("wrong_payload_type", &format!("payload type {}", packet.pt));
        }
        let latch = if is_event {
            &mut self.events_in
        } else {
            &mut self.audio_in
        };
        let symmetric = self.shared.symmetric_rtp;
        match latch.accepts(from, packet.ssrc, packet.seq, self.sdp_remote, symmetric) {
            Ok(Taken::Held) => {}
            Ok(Taken::Learnt(source)) => {
                tracing::info!(call_id = %self.offer.call_id, sdp = %self.sdp_remote, %source, "RTP comes from another address than the SDP's (NAT): answering there");
                if !is_event {
                    self.remote = source;
                }
            }
            Err(cause) => {
                return self.log_once(cause, &format!("from {from}, SSRC {:#x}", packet.ssrc))
            }
        }
        self.frames.received.add();
        // The call's address is borrowed, not cloned (two atomic operations a packet).
        let Some(call) = self.link.as_ref().map(|l| l.call()) else {
            return;
        };
        if is_event {
            if let Some(key) = self.dtmf_in.take(packet.timestamp, packet.payload) {
                if self.keys.allow() {
                    call.do_send(CallerEvent::Dtmf(key));
                }
            }
            return;
        }
        let mut samples = Vec::with_capacity(packet.payload.len());
        self.offer.agreed.law.decode(packet.payload, &mut samples);
        let mut ready = std::mem::take(&mut self.ready);
        self.jitter.push(packet.seq, samples, &mut ready);
        for samples in ready.drain(..) {
            if call.try_send(CallerEvent::Audio(samples)).is_err() {
                self.frames.dropped("call_busy");
            }
        }
        self.ready = ready;
    }

    fn sdp_headers() -> Vec<Header> {
        vec![Header::ContentType("application/sdp".into())]
    }

    fn answer_sdp(&self) -> Vec<u8> {
        self.local.answer(&self.offer.agreed).into_bytes()
    }

    fn on_dialog(&mut self, state: DialogState, ctx: &mut Context<Self>) {
        match state {
            DialogState::Early(_, response) if self.outgoing.is_some() => {
                if let Some(link) = &self.link {
                    link.call().do_send(CallerEvent::Ringing);
                }
                if !response.body.is_empty()
                    && !self.answered
                    && self.take_remote_sdp(&response.body)
                {
                    // Early media: what the far end plays before it answers is heard.
                    self.early = true;
                }
            }
            // Before the answer, how an outgoing call ended is read from the INVITE's final
            // response (`invite_done`).
            DialogState::Terminated(_, _) if self.outgoing.is_some() && !self.answered => {}
            DialogState::Terminated(_, reason) => {
                self.ended = true;
                let (cause, local, detail) = match reason {
                    TerminatedReason::UacCancel => (EndCause::Canceled, false, "CANCEL".into()),
                    TerminatedReason::UacBye | TerminatedReason::UasBye => {
                        // A peer that took the transfer may hang up before it reports it.
                        let detail = match self.transfer.take() {
                            Some(t) if t.accepted => format!("transferred to {}", t.uri),
                            _ => String::new(),
                        };
                        (EndCause::Normal, false, detail)
                    }
                    TerminatedReason::Timeout => (
                        EndCause::Failed,
                        true,
                        "no ACK for the 200 OK (timer H)".into(),
                    ),
                    other => (EndCause::Normal, false, format!("{other:?}")),
                };
                if let Some(link) = self.link.as_mut() {
                    link.gone(cause, local, detail);
                }
                ctx.stop();
            }
            DialogState::Info(_, req, handle) => {
                let content_type = req
                    .headers
                    .iter()
                    .find_map(|h| match h {
                        Header::ContentType(c) => Some(c.value().to_string()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let body = String::from_utf8_lossy(&req.body).into_owned();
                let key = dtmf::info_key(&content_type, &body)
                    .filter(|_| self.keys.allow())
                    .and_then(|key| Some((self.link.as_ref()?.call().clone(), key)));
                // The INFO is answered before its key reaches the call, so a bot that hangs
                // up on the key cannot put its BYE ahead of this 200.
                actix::spawn(async move {
                    let _ = handle.reply(StatusCode::OK).await;
                    if let Some((call, key)) = key {
                        call.do_send(CallerEvent::Dtmf(key));
                    }
                });
            }
            DialogState::Updated(_, req, handle) => {
                // A re-INVITE (or UPDATE): hold, resume, new media, or another codec.
                let (status, body) = match Session::parse(&req.body) {
                    // A new offer: the codec it agrees on (the switch's may change); with
                    // no codec in common the call keeps what it had.
                    Ok(s) => match s.agree() {
                        Ok(a) => (StatusCode::OK, Some((s, a))),
                        Err(_) => (StatusCode::NotAcceptableHere, None),
                    },
                    // No SDP: answer with ours as it is.
                    Err(_) if req.body.is_empty() => (StatusCode::OK, None),
                    Err(_) => (StatusCode::NotAcceptableHere, None),
                };
                if let Some((s, agreed)) = body {
                    let moved = SocketAddr::new(s.address, s.port);
                    let mut restart = false;
                    if moved != self.sdp_remote && !s.address.is_unspecified() {
                        self.remote = moved;
                        self.sdp_remote = moved;
                        restart = true;
                    }
                    if agreed != self.offer.agreed {
                        tracing::info!(
                            call = self.call_label.map(|c| c.to_string()),
                            from = ?self.offer.agreed.law,
                            to = ?agreed.law,
                            payload_type = agreed.pt,
                            "SIP caller changed the codec"
                        );
                        // Audio goes out in the new law and payload type from the next
                        // frame; the peer's new stream is taken afresh.
                        self.offer.agreed = agreed;
                        restart = true;
                    }
                    if restart {
                        self.audio_in = Latch::default();
                        self.events_in = Latch::default();
                        self.jitter.reset();
                    }
                    if s.direction != self.remote_direction {
                        tracing::info!(call = self.call_label.map(|c| c.to_string()), direction = ?s.direction, "SIP caller changed direction (hold or resume)");
                    }
                    self.remote_direction = s.direction;
                    self.local.direction = s.direction.answer();
                    self.local.version += 1;
                }
                let answer = (status == StatusCode::OK).then(|| self.answer_sdp());
                let headers = answer.as_ref().map(|_| Self::sdp_headers());
                actix::spawn(async move {
                    let _ = handle.respond(status, headers, answer).await;
                });
            }
            DialogState::Options(_, _, handle) => {
                actix::spawn(async move {
                    let _ = handle.reply(StatusCode::OK).await;
                });
            }
            // The dialog is free again (after the ACK, or another request): a REFER waiting
            // for it goes out.
            DialogState::Confirmed(_, _) if self.transfer.as_ref().is_some_and(|t| !t.sent) => {
                self.send_refer(ctx);
            }
            DialogState::Notify(_, req, handle)
                if self.transfer.as_ref().is_some_and(|t| t.sent) =>
            {
                let outcome = refer_outcome(&req);
                // The NOTIFY is answered before the switch acts on it (a BYE must not overtake
                // the 200).
                ctx.spawn(
                    actix::fut::wrap_future::<_, Self>(async move {
                        let _ = handle.reply(StatusCode::OK).await;
                    })
                    .map(move |_, act, ctx| act.transfer_reported(outcome, ctx)),
                );
            }
            DialogState::Notify(_, _, handle)
            | DialogState::Refer(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                actix::spawn(async move {
                    let _ = handle.reply(StatusCode::NotImplemented).await;
                });
            }
            _ => {}
        }
    }

    /// A blind transfer (RFC 3515): a REFER to the peer, when it allows REFER.
    fn start_transfer(&mut self, destination: Address, ctx: &mut Context<Self>) {
        if self.ended {
            return;
        }
        if self.transfer.is_some() {
            tracing::info!(
                call = self.call_label.map(|c| c.to_string()),
                "a transfer is already under way; another is ignored"
            );
            return;
        }
        if !self.answered {
            return self.transfer_refused(destination, "the call is not answered".into());
        }
        if !allows_refer(self.peer_allow.as_deref()) {
            return self.transfer_refused(destination, "the SIP peer does not allow REFER".into());
        }
        let host = self
            .dialog
            .snapshot()
            .remote_uri
            .host_with_port
            .host
            .to_string();
        let uri = match refer_uri(&destination, &host) {
            Ok(uri) => uri,
            Err(detail) => return self.transfer_refused(destination, detail),
        };
        tracing::info!(call = self.call_label.map(|c| c.to_string()), refer_to = %uri, "SIP transfer by REFER");
        self.transfer = Some(Transfer {
            destination,
            uri,
            attempts: 0,
            sent: false,
            accepted: false,
        });
        // A dialog still waiting for its ACK (or busy with another request) sends it when it
        // is confirmed again.
        self.send_refer(ctx);
    }

    fn send_refer(&mut self, ctx: &mut Context<Self>) {
        if self.ended || !self.dialog.state().is_confirmed() {
            return;
        }
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if t.sent {
            return;
        }
        t.sent = true;
        t.attempts += 1;
        let dialog = self.dialog.clone();
        let refer_to = format!("<{}>", t.uri);
        let referred_by = Header::ReferredBy(format!("<{}>", self.shared.contact).into());
        ctx.spawn(
            actix::fut::wrap_future::<_, Self>(async move {
                dialog
                    .refer(refer_to.as_str(), Some(vec![referred_by]), None)
                    .await
            })
            .map(|result, act, ctx| act.refer_answered(result, ctx)),
        );
    }

    /// The peer's answer to the REFER.
    fn refer_answered(
        &mut self,
        result: rsipstack::Result<Option<Response>>,
        ctx: &mut Context<Self>,
    ) {
        if self.ended {
            return;
        }
        let Some(t) = self.transfer.as_mut() else {
            // Already settled by a NOTIFY that came first.
            return;
        };
        let code = match result {
            Ok(Some(response)) => response.status_code.code(),
            Ok(None) if t.attempts < REFER_ATTEMPTS => {
                // The dialog was busy as it went out: again once it is confirmed.
                t.sent = false;
                return self.send_refer(ctx);
            }
            Ok(None) => return self.transfer_failed("no answer to the REFER".into()),
            Err(e) => return self.transfer_failed(format!("REFER failed: {e}")),
        };
        if !(200..300).contains(&code) {
            return self.transfer_failed(format!("the SIP peer answered the REFER {code}"));
        }
        t.accepted = true;
        let uri = t.uri.clone();
        ctx.run_later(TRANSFER_REPORT, move |act, ctx| {
            if act.transfer.as_ref().is_some_and(|t| t.uri == uri) {
                tracing::info!(
                    call = act.call_label.map(|c| c.to_string()),
                    "no final NOTIFY for the REFER; the transfer counts as made"
                );
                act.transferred(ctx);
            }
        });
    }

    /// A NOTIFY of the transfer, answered.
    fn transfer_reported(&mut self, outcome: ReferOutcome, ctx: &mut Context<Self>) {
        if self.ended || self.transfer.is_none() {
            return;
        }
        match outcome {
            ReferOutcome::Trying => {}
            ReferOutcome::Made => self.transferred(ctx),
            ReferOutcome::Failed(line) => {
                self.transfer_failed(format!("the transferred call failed: {line}"))
            }
        }
    }

    /// The peer made the transfer: the switch hangs up its side.
    fn transferred(&mut self, ctx: &mut Context<Self>) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        if !self.ended {
            self.ended = true;
            // The NOTIFY's 200 was only handed to its transaction (rsipstack's `reply` queues
            // it), and that NOTIFY may still hold the dialog: the BYE gives the 200 a moment to
            // leave first, then waits (a little) for the dialog to be confirmed again.
            bye_when(
                self.dialog.clone(),
                Duration::from_millis(200),
                DialogState::is_confirmed,
                Duration::from_secs(2),
            );
        }
        self.leave(
            EndCause::Normal,
            true,
            format!("transferred to {}", t.uri),
            ctx,
        );
    }

    /// The transfer under way did not happen.
    fn transfer_failed(&mut self, detail: String) {
        if let Some(t) = self.transfer.take() {
            self.transfer_refused(t.destination, detail);
        }
    }

    /// Tells the call the transfer to `destination` did not happen; the call is still up.
    fn transfer_refused(&mut self, destination: Address, detail: String) {
        tracing::info!(call = self.call_label.map(|c| c.to_string()), %detail, "SIP transfer refused");
        if let Some(link) = &self.link {
            link.call().do_send(CallerEvent::TransferRefused {
                destination,
                detail,
            });
        }
    }

    /// Ends the SIP side for a call that is over.
    fn hang_up(&mut self, reason: HangupReason) {
        if self.ended {
            return;
        }
        if self.answered {
            self.ended = true;
            // Not before the ACK of the 200 OK (RFC 3261 §15); without one the dialog ends
            // by timer H (32 s) and no BYE is due.
            bye_when(
                self.dialog.clone(),
                Duration::ZERO,
                |state| !state.waiting_ack(),
                Duration::from_secs(33),
            );
        } else if self.outgoing.is_some() {
            self.cancel_invite();
        } else {
            self.ended = true;
            let code = match reason {
                HangupReason::Busy => StatusCode::BusyHere,
                HangupReason::Noanswer | HangupReason::Timeout => {
                    StatusCode::TemporarilyUnavailable
                }
                HangupReason::Failed => StatusCode::ServerInternalError,
                _ => StatusCode::Decline,
            };
            let _ = self.dialog.reject(Some(code), None);
        }
    }
}

/// Sends BYE after `settle`, once the dialog's state is `ready` (or after `patience` anyway);
/// a dialog that has ended meanwhile gets none.
fn bye_when(
    dialog: InviteDialog,
    settle: Duration,
    ready: fn(&DialogState) -> bool,
    patience: Duration,
) {
    actix::spawn(async move {
        if !settle.is_zero() {
            tokio::time::sleep(settle).await;
        }
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let state = dialog.state();
            if state.is_terminated() {
                return;
            }
            if ready(&state) || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = dialog.bye().await;
    });
}

/// The methods a peer allows, from its `Allow` headers (`None` when it sent none).
fn allow_of<'a>(headers: impl Iterator<Item = &'a Header>) -> Option<String> {
    let values: Vec<&str> = headers
        .filter_map(|h| match h {
            Header::Allow(a) => Some(a.value()),
            _ => None,
        })
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// Whether a peer takes REFER: its `Allow` lists it, or it sent no `Allow` at all.
fn allows_refer(allow: Option<&str>) -> bool {
    allow.is_none_or(|a| a.split(',').any(|m| m.trim().eq_ignore_ascii_case("REFER")))
}

/// The `Refer-To` URI of a transfer destination: a `sip` address as given (`sip:` added when
/// missing), a `tel` number or any other target as `sip:TARGET@HOST` at the peer's host.
fn refer_uri(destination: &Address, host: &str) -> Result<String, String> {
    let target = destination.target.trim();
    let target = target
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(target);
    let bad = |c: char| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | '"');
    if target.is_empty() || target.len() > MAX_TRANSFER_TARGET || target.chars().any(bad) {
        return Err(format!(
            "{:?} is no destination a REFER can name",
            destination.target.chars().take(64).collect::<String>()
        ));
    }
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let uri = match destination.kind.as_str() {
        "sip" => {
            let lower = target.to_ascii_lowercase();
            if lower.starts_with("sip:") || lower.starts_with("sips:") {
                target.to_string()
            } else {
                format!("sip:{target}")
            }
        }
        "tel" => {
            let number: String = target
                .strip_prefix("tel:")
                .unwrap_or(target)
                .chars()
                .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
                .collect();
            format!("sip:{number}@{host}")
        }
        _ => format!("sip:{target}@{host}"),
    };
    rsipstack::sip::Uri::try_from(uri.as_str())
        .map_err(|e| format!("{uri:?} is no SIP URI: {e}"))?;
    Ok(uri)
}

/// What a NOTIFY of a REFER says of the new call.
#[derive(Debug, PartialEq, Eq)]
enum ReferOutcome {
    /// Still under way (a provisional status, or nothing final).
    Trying,
    /// A 2xx: the peer's new call is up (or the peer ended the report without a failure).
    Made,
    /// A final failure, with its status line.
    Failed(String),
}

/// Reads a NOTIFY of a REFER: its `message/sipfrag` body (`SIP/2.0 200 OK`) and whether
/// its `Subscription-State` is `terminated`.
fn refer_outcome(req: &rsipstack::sip::Request) -> ReferOutcome {
    let terminated = req.headers.iter().any(|h| match h {
        Header::SubscriptionState(s) => s
            .value()
            .trim()
            .to_ascii_lowercase()
            .starts_with("terminated"),
        _ => false,
    });
    sipfrag_outcome(&req.body, terminated)
}

fn sipfrag_outcome(body: &[u8], terminated: bool) -> ReferOutcome {
    let line = std::str::from_utf8(body)
        .ok()
        .and_then(|b| b.lines().next())
        .map(|l| l.trim().chars().take(80).collect::<String>())
        .unwrap_or_default();
    let code = line
        .strip_prefix("SIP/2.0 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(200..=299) => ReferOutcome::Made,
        Some(c) if c >= 300 => ReferOutcome::Failed(line),
        _ if terminated => ReferOutcome::Made,
        _ => ReferOutcome::Trying,
    }
}

fn rand_u32() -> u32 {
    let b = *Uuid::new_v4().as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Actor for SipSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.open_media(ctx) {
            let _ = self
                .dialog
                .reject(Some(StatusCode::ServiceUnavailable), None);
            self.ended = true;
            ctx.stop();
            return;
        }
        if let Some(states) = self.states.take() {
            ctx.add_stream(tokio_stream::StreamExt::map(
                tokio_stream::wrappers::UnboundedReceiverStream::new(states),
                DialogEvent,
            ));
        }
        self.started = Instant::now();
        // One wake-up per frame, on the call's own clock: the interval never fires early, so
        // each tick finds the one frame due since the last (more only after a late tick).
        ctx.run_interval(Duration::from_millis(FRAME_MS as u64), |act, _| act.tick());
        if self.outgoing.is_some() {
            return self.start_dialing(ctx);
        }
        let _ = self.dialog.ringing(None, None);
        self.admit(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.hang_up(HangupReason::Normal);
        if let Some(link) = self.link.as_mut() {
            link.gone(EndCause::Normal, true, String::new());
        }
        self.shared.dialogs.remove_dialog(&self.dialog.id());
        self.socket = None;
        self.port = None;
    }
}

impl StreamHandler<DialogEvent> for SipSession {
    fn handle(&mut self, event: DialogEvent, ctx: &mut Context<Self>) {
        self.on_dialog(event.0, ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl StreamHandler<rtp::Datagram> for SipSession {
    fn handle(&mut self, datagram: rtp::Datagram, _: &mut Context<Self>) {
        self.on_rtp(&datagram.data, datagram.from);
    }

    // The socket's stream never ends on its own; the session ends by its own rules.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<LegCommand> for SipSession {
    type Result = ();

    fn handle(&mut self, cmd: LegCommand, ctx: &mut Context<Self>) {
        match cmd {
            LegCommand::Answered => {
                if self.outgoing.is_none() && !self.answered && !self.ended {
                    self.answered = true;
                    let _ = self
                        .dialog
                        .accept(Some(Self::sdp_headers()), Some(self.answer_sdp()));
                }
            }
            LegCommand::Audio(audio) | LegCommand::Play { audio, .. } => {
                if self.outgoing.is_none() && !self.answered && !self.early && !self.ended {
                    // Audio before the answer: early media, with the SDP in a 183.
                    self.early = true;
                    let _ = self
                        .dialog
                        .ringing(Some(Self::sdp_headers()), Some(self.answer_sdp()));
                }
                if self.out.len() + audio.len() > MAX_OUT_SAMPLES {
                    self.frames.dropped("slow_peer");
                    return;
                }
                self.out.extend(audio.iter().copied());
            }
            LegCommand::StopAudio => self.out.clear(),
            LegCommand::SendDigits { digits } => {
                if self.offer.agreed.dtmf_pt.is_none() {
                    tracing::debug!(
                        call = self.call_label.map(|c| c.to_string()),
                        "the SIP caller takes no telephone-event; digits ignored"
                    );
                } else {
                    self.dtmf_out.queue(&digits);
                }
            }
            LegCommand::Transfer { destination } => self.start_transfer(destination, ctx),
            LegCommand::Hold | LegCommand::PlayUrl { .. } | LegCommand::Heard { .. } => {}
            LegCommand::End { reason, .. } => {
                self.hang_up(reason);
                if let Some(link) = self.link.as_mut() {
                    link.gone(EndCause::Normal, true, String::new());
                }
                ctx.stop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Where the SDP says the peer is: another host than `at`'s.
    fn sdp() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 2], 4000))
    }

    #[test]
    fn the_sdp_host_is_taken_at_once_and_another_only_after_probation() {
        let sdp = sdp();
        let mut latch = Latch::default();
        assert_eq!(latch.accepts(sdp, 7, 1, sdp, true), Ok(Taken::Held));
        assert_eq!(
            latch.accepts(at(5000), 7, 2, sdp, true),
            Err("wrong_source")
        );
        assert_eq!(latch.accepts(sdp, 8, 3, sdp, true), Err("wrong_ssrc"));
        // Another port of the SDP's host is the peer sending from elsewhere than it listens.
        let other_port = SocketAddr::from(([127, 0, 0, 2], 4002));
        let mut latch = Latch::default();
        assert_eq!(latch.accepts(other_port, 7, 1, sdp, true), Ok(Taken::Held));

        // Behind NAT: RTP_PROBATION packets in sequence from one source and SSRC.
        let nat = at(6000);
        let mut latch = Latch::default();
        for seq in 10..10 + u16::from(RTP_PROBATION) - 1 {
            assert_eq!(
                latch.accepts(nat, 9, seq, sdp, true),
                Err("learning_source")
            );
        }
        let last = 10 + u16::from(RTP_PROBATION) - 1;
        assert_eq!(
            latch.accepts(nat, 9, last, sdp, true),
            Ok(Taken::Learnt(nat))
        );
        assert_eq!(latch.accepts(nat, 9, last + 1, sdp, true), Ok(Taken::Held));
        assert_eq!(
            latch.accepts(sdp, 9, last + 2, sdp, true),
            Err("wrong_source")
        );
    }

    #[test]
    fn stray_packets_out_of_sequence_or_from_two_places_never_take_the_stream() {
        let sdp = sdp();
        let mut latch = Latch::default();
        // The same sequence number again and again (a replayed packet), and two sources
        // taking turns: neither is ever learnt.
        for _ in 0..10 {
            assert_eq!(
                latch.accepts(at(5000), 1, 1, sdp, true),
                Err("learning_source")
            );
            assert_eq!(
                latch.accepts(at(5001), 2, 1, sdp, true),
                Err("learning_source")
            );
        }
        // Without symmetric RTP only the SDP's host is heard.
        let mut latch = Latch::default();
        assert_eq!(
            latch.accepts(at(5000), 1, 1, sdp, false),
            Err("wrong_source")
        );
        assert_eq!(latch.accepts(sdp, 1, 1, sdp, false), Ok(Taken::Held));
    }

    #[test]
    fn refer_is_allowed_when_listed_or_when_no_allow_was_sent() {
        assert!(allows_refer(None));
        assert!(allows_refer(Some("INVITE, ACK, refer ,BYE")));
        assert!(!allows_refer(Some("INVITE, ACK, BYE, CANCEL, OPTIONS")));
        assert!(!allows_refer(Some("")));
    }

    #[test]
    fn refer_to_names_the_destination_at_the_peer() {
        let to = |kind: &str, target: &str| Address {
            kind: kind.into(),
            target: target.into(),
            ..Default::default()
        };
        assert_eq!(
            refer_uri(&to("tel", "+15557777"), "203.0.113.5").as_deref(),
            Ok("sip:+15557777@203.0.113.5")
        );
        assert_eq!(
            refer_uri(&to("tel", "tel:+1-555-7777"), "::1").as_deref(),
            Ok("sip:+15557777@[::1]")
        );
        assert_eq!(
            refer_uri(&to("sip", "alice@example.com"), "h").as_deref(),
            Ok("sip:alice@example.com")
        );
        assert_eq!(
            refer_uri(&to("sip", "<sips:bob@example.com>"), "h").as_deref(),
            Ok("sips:bob@example.com")
        );
        assert_eq!(
            refer_uri(&to("agent", "desk7"), "pbx.example.com").as_deref(),
            Ok("sip:desk7@pbx.example.com")
        );
        for bad in ["", "a b", "x\r\nVia: evil", "<>", &"9".repeat(300)] {
            assert!(refer_uri(&to("tel", bad), "h").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_sipfrag_tells_how_the_transfer_went() {
        assert_eq!(
            sipfrag_outcome(b"SIP/2.0 100 Trying\r\n", false),
            ReferOutcome::Trying
        );
        assert_eq!(
            sipfrag_outcome(b"SIP/2.0 180 Ringing", false),
            ReferOutcome::Trying
        );
        assert_eq!(
            sipfrag_outcome(b"SIP/2.0 200 OK\r\n", true),
            ReferOutcome::Made
        );
        assert_eq!(
            sipfrag_outcome(b"SIP/2.0 486 Busy Here", true),
            ReferOutcome::Failed("SIP/2.0 486 Busy Here".into())
        );
        assert_eq!(sipfrag_outcome(b"", true), ReferOutcome::Made);
        assert_eq!(sipfrag_outcome(&[0xff, 0xfe], false), ReferOutcome::Trying);
    }
}
