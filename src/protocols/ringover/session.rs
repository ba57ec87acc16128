//! One Ringover streamer WebSocket as the caller leg of its call.
//!
//! The session runs on the HTTP worker that owns the socket (actix-web ties the request
//! payload to it); it reaches its call, on a call arbiter, through the call's address.

use crate::telemetry::Frames;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web_actors::ws;
use uuid::Uuid;

use super::convert::{self, FrameError};
use super::{Settings, INGRESS};
use crate::call::messages::{CallerEvent, Delivery, LegCommand, LegFormat};
use crate::call::state::EndCause;
use crate::protocols::leg::{admit, CallLink, Caller, Phase, Refused};
use crate::protocols::ws::{self as transport, Outbound, WriteWatch};
use crate::protocols::KeyRate;
use crate::registry::{AdmitError, Registry};

/// A media server must send its first frame (metadata or audio) within this time.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Commands the call may queue toward this session; the call sends audio with `try_send`
/// and counts what a full mailbox refuses.
const MAILBOX_CAPACITY: usize = 64;

/// Frames the session logs in full before it only counts them, per kind, so a peer that
/// sends garbage cannot flood the log.
const MAX_LOGGED_BAD_FRAMES: u64 = 5;

/// The session actor: WebSocket frames in, call commands out.
pub struct RingoverSession {
    registry: Addr<Registry>,
    settings: Arc<Settings>,
    outbound: Arc<Outbound>,
    phase: Phase,
    /// The switch's id of the call once it is admitted, on every log line about it.
    switch_call: Option<Uuid>,
    reference: String,
    decoder: convert::L16Decoder,
    samples: Vec<i16>,
    bad_frames: u64,
    /// Audio frames dropped because too much was waiting unsent.
    dropped_audio: u64,
    /// Sees a peer that stopped taking what it is sent.
    writes: WriteWatch,
    /// DTMF keys past a human rate are dropped.
    keys: KeyRate,
    /// Pongs skipped because the peer was not reading.
    skipped_pongs: u64,
    /// Frames in, out and dropped, as metrics.
    frames: Frames,
}

impl RingoverSession {
    pub(super) fn new(
        registry: Addr<Registry>,
        settings: Arc<Settings>,
        outbound: Arc<Outbound>,
    ) -> Self {
        let writes = WriteWatch::new(settings.write_timeout);
        RingoverSession {
            registry,
            settings,
            outbound,
            phase: Phase::Waiting,
            switch_call: None,
            reference: String::new(),
            decoder: convert::L16Decoder::default(),
            samples: Vec::with_capacity(1024),
            bad_frames: 0,
            dropped_audio: 0,
            writes,
            keys: KeyRate::new(),
            skipped_pongs: 0,
            frames: Frames::new("ringover"),
        }
    }

    /// Creates the call from the first frame's metadata (if any), then attaches as its leg.
    fn create_call(
        &mut self,
        metadata: Option<serde_json::Map<String, serde_json::Value>>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        self.phase = Phase::Creating;
        let info = match metadata.as_ref().map(convert::call_info).transpose() {
            Ok(info) => info.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "Ringover call refused: bad metadata");
                return self.close(ws::CloseCode::Policy, e.to_string(), ctx);
            }
        };
        let reference = info
            .reference
            .unwrap_or_else(|| format!("ringover-{}", uuid::Uuid::new_v4()));
        self.reference = reference.clone();
        let call = Caller {
            from: info.caller,
            to: info.callee,
            metadata: metadata.map(serde_json::Value::Object),
            ..Default::default()
        }
        .call_here(INGRESS, reference);
        ctx.wait(
            admit(&self.registry, call)
                .into_actor(self)
                .map(|reply, act, ctx| match reply {
                    Ok(Ok(handle)) => {
                        let link = CallLink::new(handle.addr, handle.id);
                        link.attach(
                            ctx.address().recipient(),
                            LegFormat {
                                in_rate: act.settings.in_rate,
                                out_rate: act.settings.out_rate,
                                delivery: Delivery::Whole,
                                plays_urls: true,
                                plays_hold_music: false,
                            },
                        );
                        act.switch_call = Some(handle.id);
                        act.phase = Phase::Attached(link);
                    }
                    Ok(Err(e)) => act.refuse(&e, ctx),
                    Err(_) => {
                        act.close(ws::CloseCode::Again, "switch is shutting down".into(), ctx)
                    }
                }),
        );
    }

    fn refuse(&mut self, e: &AdmitError, ctx: &mut ws::WebsocketContext<Self>) {
        tracing::warn!(call = self.switch_call.map(display), reference = %self.reference, error = %e, "Ringover call refused");
        let refused = Refused::of(e);
        self.close(refused.close, refused.message, ctx);
    }

    /// Closes the socket with `code` and a reason (cut to what a close frame carries).
    fn close(&mut self, code: ws::CloseCode, reason: String, ctx: &mut ws::WebsocketContext<Self>) {
        self.phase = Phase::Closed;
        ctx.close(Some(transport::close_reason(code, &reason)));
        ctx.stop();
    }

    fn bad_frame(&mut self, e: FrameError) {
        self.bad_frames += 1;
        if self.bad_frames <= MAX_LOGGED_BAD_FRAMES {
            tracing::warn!(call = self.switch_call.map(display), reference = %self.reference, error = %e, "Ringover frame ignored");
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let object = match convert::parse_text(text) {
            Ok(o) => o,
            Err(e) => return self.bad_frame(e),
        };
        if matches!(self.phase, Phase::Waiting) {
            tracing::info!(keys = ?object.keys().collect::<Vec<_>>(), "Ringover metadata");
            self.create_call(Some(object), ctx);
            return;
        }
        let keys = match convert::dtmf(&object) {
            Ok(keys) => keys,
            Err(e) => return self.bad_frame(e),
        };
        if keys.is_empty() {
            tracing::debug!(call = self.switch_call.map(display), reference = %self.reference, keys = ?object.keys().collect::<Vec<_>>(), "Ringover text frame kept in the log only");
            return;
        }
        let Some(call) = self.phase.call().cloned() else {
            return;
        };
        for key in keys {
            // Keys past a human rate, or past what the call can take, are dropped.
            let dropped = if !self.keys.allow() {
                Some("key_rate")
            } else if call.try_send(CallerEvent::Dtmf(key)).is_err() {
                Some("call_busy")
            } else {
                None
            };
            if let Some(cause) = dropped {
                self.frames.dropped(cause);
                if self.keys.refused % 1000 == 1 {
                    tracing::warn!(call = self.switch_call.map(display), reference = %self.reference, refused = self.keys.refused, "Ringover DTMF keys dropped: too many too fast");
                }
            }
        }
    }

    fn on_binary(&mut self, bytes: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        if matches!(self.phase, Phase::Waiting) {
            // Audio first: a call without metadata. This first frame is not kept.
            self.create_call(None, ctx);
            return;
        }
        if self.phase.call().is_none() {
            return;
        }
        self.samples.clear();
        if self.settings.rtp {
            if let Err(e) = convert::decode_rtp(bytes, &mut self.samples) {
                return self.bad_frame(e);
            }
        } else {
            self.decoder.decode(bytes, &mut self.samples);
        }
        // The call's address is borrowed, not cloned: a clone per frame is two atomic
        // operations on a shared count.
        let Some(call) = self.phase.call() else {
            return;
        };
        if !self.samples.is_empty() {
            // Media is dropped, not queued without bound, if the call falls behind.
            if call
                .try_send(CallerEvent::Audio(std::mem::take(&mut self.samples)))
                .is_err()
            {
                self.frames.dropped("call_busy");
            }
        }
    }

    /// Writes a text frame; audio is dropped (and counted) while too much waits unsent.
    fn write(&mut self, text: String, audio: bool, ctx: &mut ws::WebsocketContext<Self>) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        let unsent = self.outbound.unsent();
        if audio && unsent > 0 && unsent + text.len() > self.settings.max_unsent_bytes {
            self.dropped_audio += 1;
            self.frames.dropped("slow_peer");
            tracing::debug!(call = self.switch_call.map(display), reference = %self.reference, unsent, dropped = self.dropped_audio, "Ringover audio dropped for a slow peer");
            return;
        }
        if audio {
            self.frames.sent.add();
        }
        ctx.text(text);
    }

    /// Hangs up a peer that has taken nothing for `write_timeout` while bytes waited.
    fn check_writes(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if let Some(stalled) = self.writes.stalled(&self.outbound) {
            let detail = format!(
                "Ringover peer read nothing for {} ms ({} bytes unsent, {} audio frames dropped), so the switch stopped reading from it",
                stalled.as_millis(),
                self.outbound.unsent(),
                self.dropped_audio
            );
            tracing::warn!(call = self.switch_call.map(display), reference = %self.reference, %detail, "hanging up a stalled peer");
            self.phase.gone(EndCause::Failed, true, detail);
            self.phase = Phase::Closed;
            ctx.stop();
        }
    }
}

impl Actor for RingoverSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        // One clock for the write watch and the first-frame deadline: actix polls every timer
        // of an actor each time it wakes, once per audio frame here.
        let opened = std::time::Instant::now();
        ctx.run_interval(self.writes.period(), move |act, ctx| {
            if matches!(act.phase, Phase::Waiting) && opened.elapsed() >= FIRST_FRAME_TIMEOUT {
                act.close(
                    ws::CloseCode::Policy,
                    "no metadata or audio within 10 s".into(),
                    ctx,
                );
                return;
            }
            act.check_writes(ctx)
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // However the socket ended, the call learns its leg is gone.
        self.phase.stopped(&self.outbound);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for RingoverSession {
    fn handle(
        &mut self,
        item: Result<ws::Message, ws::ProtocolError>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if let Ok(ws::Message::Text(_) | ws::Message::Binary(_)) = &item {
            self.frames.received.add();
        }
        match item {
            Ok(ws::Message::Text(text)) => self.on_text(&text, ctx),
            Ok(ws::Message::Binary(bytes)) => self.on_binary(&bytes, ctx),
            // Pongs to a peer that does not read are dropped, not queued.
            Ok(ws::Message::Ping(p)) if !self.outbound.backed_up() => ctx.pong(&p),
            Ok(ws::Message::Ping(_)) => {
                self.skipped_pongs += 1;
                self.frames.dropped("skipped_reply");
            }
            // `Frames` assembles fragments into whole messages.
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) | Ok(ws::Message::Continuation(_)) => {}
            Ok(ws::Message::Close(reason)) => {
                tracing::debug!(call = self.switch_call.map(display), reference = %self.reference, ?reason, "Ringover peer closed");
                // The caller hung up.
                self.phase.gone(EndCause::Normal, false, String::new());
                self.phase = Phase::Closed;
                ctx.close(reason);
                ctx.stop();
            }
            Err(e) if transport::connection_lost(&e) => {
                // The connection broke (no close frame): the caller is gone.
                tracing::debug!(call = self.switch_call.map(display), reference = %self.reference, error = %e, "Ringover connection lost");
                self.phase.gone(EndCause::Normal, false, String::new());
                self.phase = Phase::Closed;
                ctx.stop();
            }
            Err(e) => {
                let detail = format!("WebSocket protocol error: {e}");
                tracing::warn!(call = self.switch_call.map(display), reference = %self.reference, %detail, "Ringover stream broken");
                self.phase.gone(EndCause::Failed, true, detail.clone());
                self.close(transport::error_close_code(&e), detail, ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        // The socket is gone without a close frame: the caller hung up.
        self.phase.gone(EndCause::Normal, false, String::new());
        ctx.stop();
    }
}

impl Handler<LegCommand> for RingoverSession {
    type Result = ();

    fn handle(&mut self, msg: LegCommand, ctx: &mut ws::WebsocketContext<Self>) {
        let out_rate = self.settings.out_rate;
        match msg {
            LegCommand::Play { audio, .. } | LegCommand::Audio(audio) => {
                self.write(convert::stream_audio(&audio, out_rate), true, ctx)
            }
            LegCommand::PlayUrl { url } => self.write(convert::play(&url), false, ctx),
            LegCommand::StopAudio => self.write(convert::stop(), false, ctx),
            // The call plays hold music to this leg itself (`plays_hold_music: false`).
            LegCommand::Hold | LegCommand::Heard { .. } | LegCommand::Answered => {}
            LegCommand::Transfer { destination } => {
                self.write(convert::transfer(&destination), false, ctx)
            }
            LegCommand::SendDigits { digits } => self.write(convert::digits(&digits), false, ctx),
            LegCommand::End { reason, detail } => {
                tracing::debug!(call = self.switch_call.map(display), reference = %self.reference, ?reason, %detail, "closing the Ringover stream");
                self.phase.gone(EndCause::Normal, true, String::new());
                self.close(ws::CloseCode::Normal, String::new(), ctx);
            }
        }
    }
}
