//! One live-call WebSocket as the caller leg of its call.

use crate::telemetry::Frames;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;
use uuid::Uuid;

use super::convert::{self, ClientFrame, FrameError, InitialInfo, Staff};
use super::{Settings, INGRESS};
use crate::call::messages::{CallerEvent, Delivery, LegCommand, LegFormat};
use crate::call::state::{EndCause, HangupReason};
use crate::media::TELEPHONE_RATE;
use crate::protocols::access::call_workspace;
use crate::protocols::leg::{admit, CallLink, Caller, Phase, Refused};
use crate::protocols::ws::{self as transport, Outbound, WriteWatch};
use crate::registry::{AdmitError, Registry};

/// The leg's caller rate until a chunk declares another (a chunk without a rate is at it).
const DEFAULT_IN_RATE: u32 = 16000;
/// Room for call commands: the call drops audio (and counts it) rather than queue past this.
const LEG_MAILBOX: usize = 64;
/// Ping the client this often.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// A client silent (no frame, no pong) this long is gone.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// `initial_info` must arrive within this time.
const INITIAL_INFO_TIMEOUT: Duration = Duration::from_secs(30);
/// Refused frames logged in full before they are only counted, so a client sending garbage
/// cannot flood the log.
const MAX_LOGGED_BAD_FRAMES: u64 = 5;

/// The session actor.
pub struct LiveCallWsSession {
    registry: Addr<Registry>,
    /// The call id from the URL (or `initial_info`), used in signals.
    call_id: String,
    customer_phone_number: String,
    /// The only workspace the client's token may create calls in; `None` for any.
    workspace: Option<String>,
    phase: Phase,
    /// The switch's id of the call once it is admitted, on every log line about it.
    switch_call: Option<Uuid>,
    /// The rate of the caller audio the call gets: the rate the client declared last. Chunks
    /// go to the call as they are; the call converts them, once, where its bot needs another.
    in_rate: u32,
    scratch: Vec<u8>,
    last_heard: Instant,
    settings: Settings,
    /// What waits unsent toward the client.
    outbound: Arc<Outbound>,
    writes: WriteWatch,
    bad_frames: u64,
    /// Error replies skipped and bot audio frames dropped because the client was not reading.
    skipped_replies: u64,
    dropped_audio: u64,
    /// The same counts, and frames in and out, as metrics.
    frames: Frames,
}

impl LiveCallWsSession {
    pub(super) fn new(
        registry: Addr<Registry>,
        call_id: String,
        customer_phone_number: String,
        workspace: Option<String>,
        outbound: Arc<Outbound>,
        settings: Settings,
    ) -> Self {
        LiveCallWsSession {
            registry,
            call_id,
            customer_phone_number,
            workspace,
            phase: Phase::Waiting,
            switch_call: None,
            in_rate: DEFAULT_IN_RATE,
            scratch: Vec::new(),
            last_heard: Instant::now(),
            writes: WriteWatch::new(settings.write_timeout),
            settings,
            outbound,
            bad_frames: 0,
            skipped_replies: 0,
            dropped_audio: 0,
            frames: Frames::new("live_call_ws"),
        }
    }

    /// Answers a refused frame with an error message, unless the client is not reading what
    /// it is sent (then the reply is only counted: replies must not pile up for it).
    fn refuse_frame(&mut self, e: FrameError, ctx: &mut ws::WebsocketContext<Self>) {
        self.bad_frames += 1;
        if self.bad_frames <= MAX_LOGGED_BAD_FRAMES {
            tracing::debug!(call = self.switch_call.map(display), call_id = %self.call_id, error = %e, "live-call frame refused");
        }
        if self.outbound.backed_up() {
            self.skipped_replies += 1;
            self.frames.dropped("skipped_reply");
            return;
        }
        ctx.text(convert::error(400, &e.to_string()));
    }

    /// Hangs up a client that has taken nothing for the write timeout while frames waited.
    fn check_writes(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(stalled) = self.writes.stalled(&self.outbound) else {
            return;
        };
        let detail = format!(
            "the client read nothing for {} ms ({} bytes unsent, {} audio frames dropped), so the switch stopped reading from it",
            stalled.as_millis(),
            self.outbound.unsent(),
            self.dropped_audio
        );
        tracing::warn!(call = self.switch_call.map(display), call_id = %self.call_id, %detail, "hanging up a live-call client that stopped reading");
        ctx.close(Some(transport::close_reason(
            ws::CloseCode::Policy,
            "client stopped reading",
        )));
        self.leave(EndCause::Failed, true, detail, ctx);
    }

    /// Writes bot audio, dropping it (and counting) while too much waits unsent.
    fn write_audio(&mut self, samples: &[i16], ctx: &mut ws::WebsocketContext<Self>) {
        let unsent = self.outbound.unsent();
        if unsent > 0 && unsent > self.settings.max_unsent_audio {
            self.dropped_audio += 1;
            self.frames.dropped("slow_peer");
            return;
        }
        let frame = convert::audio_output(samples, &mut self.scratch);
        ctx.text(frame);
        self.frames.sent.add();
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        match convert::parse(text) {
            Ok(ClientFrame::PlayAudio(chunk)) => self.on_audio(&chunk, ctx),
            Ok(ClientFrame::InitialInfo(info)) => self.on_initial_info(info, ctx),
            Ok(ClientFrame::Disconnect) => self.leave(EndCause::Normal, false, String::new(), ctx),
            Err(e) => self.refuse_frame(e, ctx),
        }
    }

    fn on_audio(&mut self, chunk: &convert::PlayAudio<'_>, ctx: &mut ws::WebsocketContext<Self>) {
        let (rate, samples) = match convert::decode_audio(chunk, &mut self.scratch) {
            Ok(a) => a,
            Err(e) => return self.refuse_frame(e, ctx),
        };
        // Audio before the call exists is discarded, as the protocol says; so is no audio.
        let Some(call) = self.phase.call() else {
            return;
        };
        if samples.is_empty() {
            return;
        }
        // A new rate is told first; a call too busy to hear it gets neither (the next chunk
        // tries again), so audio never reaches it labelled with the wrong rate.
        if rate != self.in_rate {
            if call.try_send(CallerEvent::Rate(rate)).is_err() {
                return self.frames.dropped("call_busy");
            }
            self.in_rate = rate;
        }
        if call.try_send(CallerEvent::Audio(samples)).is_err() {
            self.frames.dropped("call_busy");
        }
    }

    fn on_initial_info(&mut self, info: InitialInfo, ctx: &mut ws::WebsocketContext<Self>) {
        if !matches!(self.phase, Phase::Waiting) {
            return self.refuse_frame(
                FrameError::BadFields {
                    message: "initial_info",
                    detail: "sent twice".into(),
                },
                ctx,
            );
        }
        let workspace = match call_workspace(self.workspace.as_deref(), &info.workspace_id) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(call_id = %info.call_id, error = %e, "live-call refused");
                ctx.text(convert::error(403, &e.to_string()));
                self.phase = Phase::Closed;
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Policy,
                    description: Some("workspace not allowed for this token".into()),
                }));
                ctx.stop();
                return;
            }
        };
        if !info.call_id.is_empty() {
            self.call_id = info.call_id.clone();
        }
        if !info.customer_phone_number.is_empty() {
            self.customer_phone_number = info.customer_phone_number.clone();
        }
        let call = Caller {
            from: Some(self.customer_phone_number.clone()),
            to: Some(info.hotline.clone()),
            outgoing: info.type_call == "outbound",
            workspace,
            hotline: info.hotline,
            metadata: None,
        }
        .call_here(INGRESS, self.call_id.clone());
        self.phase = Phase::Creating;
        let leg = ctx.address().recipient();
        ctx.wait(admit(&self.registry, call).into_actor(self).map(
            move |reply, act, ctx| match reply {
                Ok(Ok(handle)) => {
                    let link = CallLink::new(handle.addr, handle.id);
                    link.attach(
                        leg,
                        LegFormat {
                            in_rate: DEFAULT_IN_RATE,
                            out_rate: TELEPHONE_RATE,
                            delivery: Delivery::Paced,
                            plays_urls: false,
                            plays_hold_music: false,
                        },
                    );
                    act.switch_call = Some(handle.id);
                    act.phase = Phase::Attached(link);
                }
                Ok(Err(e)) => act.refuse_call(e, ctx),
                Err(_) => act.refuse_call(AdmitError::Draining, ctx),
            },
        ));
    }

    fn refuse_call(&mut self, e: AdmitError, ctx: &mut ws::WebsocketContext<Self>) {
        tracing::warn!(call = self.switch_call.map(display), call_id = %self.call_id, error = %e, "live-call refused");
        let refused = Refused::of(&e);
        ctx.text(convert::error(refused.http.as_u16(), &refused.message));
        self.phase = Phase::Closed;
        ctx.close(Some(ws::CloseReason {
            code: refused.close,
            description: Some(refused.message),
        }));
        ctx.stop();
    }

    /// Tells the call the leg is gone (once) and stops.
    fn leave(
        &mut self,
        cause: EndCause,
        local: bool,
        detail: String,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        self.phase.gone(cause, local, detail);
        self.phase = Phase::Closed;
        ctx.stop();
    }
}

impl Actor for LiveCallWsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(LEG_MAILBOX);
        // One clock for the write watch, the heartbeat and the `initial_info` deadline: actix
        // polls every timer of an actor each time the actor wakes, twice per audio frame here,
        // so one timer instead of three is cheaper on every frame. Each check is as exact as
        // the clock's period (at most 1 s).
        let opened = Instant::now();
        let mut last_ping = opened;
        ctx.run_interval(self.writes.period(), move |act, ctx| {
            act.check_writes(ctx);
            if matches!(act.phase, Phase::Closed) {
                return;
            }
            if matches!(act.phase, Phase::Waiting) && opened.elapsed() >= INITIAL_INFO_TIMEOUT {
                ctx.text(convert::error(400, "no initial_info within 30 s"));
                ctx.close(Some(ws::CloseCode::Policy.into()));
                act.phase = Phase::Closed;
                ctx.stop();
                return;
            }
            if last_ping.elapsed() < HEARTBEAT {
                return;
            }
            last_ping = Instant::now();
            if act.last_heard.elapsed() > CLIENT_TIMEOUT {
                tracing::info!(call = act.switch_call.map(display), call_id = %act.call_id, "live-call client timed out");
                act.leave(
                    EndCause::Timeout,
                    true,
                    "client stopped answering pings".into(),
                    ctx,
                );
                return;
            }
            ctx.ping(b"");
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.phase.stopped(&self.outbound);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for LiveCallWsSession {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        if let Ok(ws::Message::Text(_) | ws::Message::Binary(_)) = &item {
            self.frames.received.add();
        }
        match item {
            Ok(ws::Message::Text(text)) => self.on_text(&text, ctx),
            Ok(ws::Message::Binary(_)) => self.refuse_frame(FrameError::Binary, ctx),
            // Pongs to a client that does not read are dropped, not queued.
            Ok(ws::Message::Ping(p)) if !self.outbound.backed_up() => ctx.pong(&p),
            Ok(ws::Message::Ping(_)) => {
                self.skipped_replies += 1;
                self.frames.dropped("skipped_reply");
            }
            Ok(ws::Message::Pong(_)) => {}
            Ok(ws::Message::Close(reason)) => {
                // The client said goodbye: answer its close, then the call ends normally.
                ctx.close(reason);
                self.leave(EndCause::Normal, false, String::new(), ctx)
            }
            // `Frames` assembles fragments into whole messages.
            Ok(ws::Message::Continuation(_)) | Ok(ws::Message::Nop) => {}
            Err(e) if transport::connection_lost(&e) => {
                // The connection ended without a close frame: the client is gone.
                tracing::debug!(call = self.switch_call.map(display), call_id = %self.call_id, error = %e, "live-call connection lost");
                self.leave(EndCause::Normal, false, String::new(), ctx)
            }
            Err(e) => {
                // Oversized or broken frames: say why, then close; the call records it.
                let detail = format!("WebSocket protocol error: {e}");
                ctx.text(convert::error(400, &detail));
                ctx.close(Some(transport::close_reason(
                    transport::error_close_code(&e),
                    &detail,
                )));
                self.leave(EndCause::Failed, true, detail, ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.leave(EndCause::Normal, false, String::new(), ctx);
    }
}

impl Handler<LegCommand> for LiveCallWsSession {
    type Result = ();

    fn handle(&mut self, msg: LegCommand, ctx: &mut Self::Context) {
        match msg {
            LegCommand::Audio(samples) => self.write_audio(&samples, ctx),
            LegCommand::Play { audio, .. } => self.write_audio(&audio, ctx),
            LegCommand::StopAudio => ctx.text(convert::kill_audio(&self.call_id)),
            LegCommand::Transfer { destination } => {
                let staff = Staff {
                    name: if destination.target_name.is_empty() {
                        destination.name.clone()
                    } else {
                        destination.target_name.clone()
                    },
                    phone_number: destination.target.clone(),
                };
                ctx.text(convert::transfer_call(
                    &self.call_id,
                    &self.customer_phone_number,
                    &[staff],
                ));
            }
            LegCommand::Hold
            | LegCommand::SendDigits { .. }
            | LegCommand::PlayUrl { .. }
            | LegCommand::Heard { .. }
            | LegCommand::Answered => {}
            LegCommand::End { reason, detail } => {
                if reason == HangupReason::Failed {
                    ctx.text(convert::error(
                        500,
                        if detail.is_empty() {
                            "bot failure"
                        } else {
                            &detail
                        },
                    ));
                    ctx.close(Some(ws::CloseReason {
                        code: ws::CloseCode::Error,
                        description: Some("bot failure".into()),
                    }));
                } else {
                    ctx.text(convert::end_call(&self.call_id));
                    ctx.close(Some(ws::CloseCode::Normal.into()));
                }
                self.leave(EndCause::Normal, true, String::new(), ctx);
            }
        }
    }
}
