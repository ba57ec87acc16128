//! One Twilio Media Streams WebSocket as the caller leg of its call.
//!
//! The session runs on the HTTP worker that owns the socket; its call runs beside it (the same
//! arbiter), so media never crosses threads. Bot audio goes out as whole utterances (Twilio
//! buffers and plays what it is sent), each followed by a `mark` the peer echoes once it has
//! played it; barge-in and a bot's stop become `clear`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web_actors::ws;
use serde_json::{Map, Value};

use super::convert::{self, Inbound, Start, Writer};
use super::{Settings, INGRESS, MAX_FRAME_BYTES};
use crate::call::messages::{CallerEvent, Delivery, LegCommand, LegFormat};
use crate::call::state::EndCause;
use crate::media::{samples_for_ms, TELEPHONE_RATE};
use crate::protocols::access::{call_workspace, Grant};
use crate::protocols::leg::{admit, CallLink, Caller, Phase, Refused};
use crate::protocols::ws::{self as transport, Outbound, WriteWatch};
use crate::protocols::KeyRate;
use crate::registry::{AdmitError, Registry};
use crate::telemetry::Frames;

/// A peer must send `start` within this time.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Commands the call may queue toward this session; the call sends audio with `try_send`.
const MAILBOX_CAPACITY: usize = 64;

/// Messages of a kind the session logs in full before it only counts them.
const MAX_LOGGED_SKIPPED: u64 = 5;

/// Bot audio goes out in `media` messages of at most this long.
const MEDIA_CHUNK_MS: u32 = 1000;

/// Custom parameters never copied into the call's metadata.
const SECRET_PARAMETERS: &[&str] = &["token"];

/// The session actor: Twilio messages in, call commands out.
pub struct TwilioSession {
    registry: Addr<Registry>,
    settings: Arc<Settings>,
    outbound: Arc<Outbound>,
    /// What the upgrade granted; `None` until a token in `start` is checked.
    grant: Option<Grant>,
    peer: Option<IpAddr>,
    phase: Phase,
    reference: String,
    writer: Writer,
    samples: Vec<i16>,
    /// The mark sent after the last prompt, until the peer echoes it.
    playing: Option<String>,
    prompts: u64,
    skipped: u64,
    dropped_audio: u64,
    writes: WriteWatch,
    keys: KeyRate,
    frames: Frames,
}

impl TwilioSession {
    pub(super) fn new(
        registry: Addr<Registry>,
        settings: Arc<Settings>,
        outbound: Arc<Outbound>,
        grant: Option<Grant>,
        peer: Option<IpAddr>,
    ) -> Self {
        let writes = WriteWatch::new(settings.write_timeout);
        TwilioSession {
            registry,
            settings,
            outbound,
            grant,
            peer,
            phase: Phase::Waiting,
            reference: String::new(),
            writer: Writer::new(""),
            samples: Vec::with_capacity(512),
            playing: None,
            prompts: 0,
            skipped: 0,
            dropped_audio: 0,
            writes,
            keys: KeyRate::new(),
            frames: Frames::new("twilio"),
        }
    }

    /// Closes the socket with `code` and a reason (cut to what a close frame carries).
    fn close(&mut self, code: ws::CloseCode, reason: String, ctx: &mut ws::WebsocketContext<Self>) {
        self.phase = Phase::Closed;
        ctx.close(Some(transport::close_reason(code, &reason)));
        ctx.stop();
    }

    /// A message that breaks the protocol: the call (if any) fails with why, and the socket
    /// closes with `code`.
    fn broken(
        &mut self,
        code: ws::CloseCode,
        detail: String,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        tracing::warn!(reference = %self.reference, %detail, "Twilio stream broken");
        self.phase.gone(EndCause::Failed, true, detail.clone());
        self.close(code, detail, ctx);
    }

    fn start(&mut self, start: Start, ctx: &mut ws::WebsocketContext<Self>) {
        let grant = match self.grant.clone() {
            Some(grant) => grant,
            None => match super::late_grant(&self.settings, self.peer, start.param("token")) {
                Ok(grant) => grant,
                Err(refused) => {
                    tracing::info!(peer = ?self.peer, %refused, "Twilio stream refused at start");
                    return self.close(ws::CloseCode::Policy, refused.to_string(), ctx);
                }
            },
        };
        let workspace = match call_workspace(
            grant.workspace.as_deref(),
            start.param("workspace").unwrap_or_default(),
        ) {
            Ok(w) => w,
            Err(e) => return self.close(ws::CloseCode::Policy, e.to_string(), ctx),
        };
        self.phase = Phase::Creating;
        self.writer = Writer::new(&start.stream_sid);
        let reference = [&start.call_sid, &start.stream_sid]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("twilio-{}", uuid::Uuid::new_v4()));
        self.reference = reference.clone();
        // The first of `keys` set (their lengths were checked when `start` was read).
        let param = |keys: &[&str]| keys.iter().find_map(|k| start.param(k)).map(str::to_owned);
        let mut custom = start.custom.clone();
        for secret in SECRET_PARAMETERS {
            custom.remove(*secret);
        }
        let mut metadata = Map::new();
        metadata.insert("streamSid".into(), Value::String(start.stream_sid.clone()));
        metadata.insert("callSid".into(), Value::String(start.call_sid.clone()));
        metadata.insert(
            "accountSid".into(),
            Value::String(start.account_sid.clone()),
        );
        metadata.insert("customParameters".into(), Value::Object(custom));
        let call = Caller {
            from: param(&["from", "from_number"]),
            to: param(&["to", "to_number"]),
            outgoing: false,
            workspace,
            hotline: param(&["hotline"]).unwrap_or_default(),
            metadata: Some(Value::Object(metadata)),
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
                                in_rate: TELEPHONE_RATE,
                                out_rate: TELEPHONE_RATE,
                                delivery: Delivery::Whole,
                                plays_urls: false,
                                plays_hold_music: false,
                            },
                        );
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
        tracing::warn!(reference = %self.reference, error = %e, "Twilio call refused");
        let refused = Refused::of(e);
        self.close(refused.close, refused.message, ctx);
    }

    fn skipped(&mut self, what: &str) {
        self.skipped += 1;
        if self.skipped <= MAX_LOGGED_SKIPPED {
            tracing::warn!(reference = %self.reference, event = %what, "Twilio message skipped");
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let message = match convert::parse(text, MAX_FRAME_BYTES) {
            Ok(m) => m,
            Err(e) => {
                return self.broken(
                    ws::CloseCode::Invalid,
                    format!("bad Twilio message: {e}"),
                    ctx,
                )
            }
        };
        let waiting = matches!(self.phase, Phase::Waiting);
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        match message {
            Inbound::Connected => {}
            Inbound::Start(start) if waiting => self.start(*start, ctx),
            other if waiting => {
                let detail = format!("`{}` before `start`", event_name(&other));
                tracing::warn!(peer = ?self.peer, %detail, "Twilio stream refused");
                self.close(ws::CloseCode::Policy, detail, ctx);
            }
            Inbound::Start(_) => self.skipped("start (again)"),
            Inbound::Media(bytes) => {
                // The call's address is borrowed, not cloned (two atomic operations a frame).
                let Some(call) = self.phase.call() else {
                    return;
                };
                if bytes.is_empty() {
                    return;
                }
                self.samples.clear();
                convert::decode(&bytes, &mut self.samples);
                if call
                    .try_send(CallerEvent::Audio(std::mem::take(&mut self.samples)))
                    .is_err()
                {
                    self.frames.dropped("call_busy");
                }
            }
            Inbound::Dtmf(key) => {
                let Some(call) = self.phase.call().cloned() else {
                    return;
                };
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
                        tracing::warn!(reference = %self.reference, refused = self.keys.refused, "Twilio DTMF keys dropped: too many too fast");
                    }
                }
            }
            Inbound::Mark(name) => {
                // The peer has played everything up to the last prompt's mark.
                if self.playing.as_deref() == Some(name.as_str()) {
                    self.playing = None;
                }
            }
            Inbound::Stop => {
                tracing::debug!(reference = %self.reference, "Twilio stream stopped by the peer");
                self.phase.gone(EndCause::Normal, false, String::new());
                self.close(ws::CloseCode::Normal, String::new(), ctx);
            }
            Inbound::Clear => self.skipped("clear"),
            Inbound::Unknown(event) => self.skipped(&event),
        }
    }

    /// Sends one whole utterance as `media` messages and a mark, or drops it whole (counted)
    /// while too much waits unsent.
    fn play(&mut self, audio: &[i16], ctx: &mut ws::WebsocketContext<Self>) {
        if matches!(self.phase, Phase::Closed) || audio.is_empty() {
            return;
        }
        let size = audio.len() * super::BYTES_PER_SAMPLE;
        let unsent = self.outbound.unsent();
        if unsent > 0 && unsent + size > self.settings.max_unsent_bytes {
            self.dropped_audio += 1;
            self.frames.dropped("slow_peer");
            tracing::debug!(reference = %self.reference, unsent, dropped = self.dropped_audio, "Twilio audio dropped for a slow peer");
            return;
        }
        // A new utterance queues behind what the peer still plays (Twilio buffers it); only
        // barge-in and a bot's stop cut audio off (`clear`).
        for chunk in audio.chunks(samples_for_ms(TELEPHONE_RATE, MEDIA_CHUNK_MS)) {
            self.frames.sent.add();
            ctx.text(self.writer.outbound_media(chunk));
        }
        self.prompts += 1;
        let name = format!("prompt-{}", self.prompts);
        ctx.text(self.writer.mark(&name));
        self.playing = Some(name);
    }

    /// Hangs up a peer that has taken nothing for `write_timeout` while bytes waited.
    fn check_writes(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if let Some(stalled) = self.writes.stalled(&self.outbound) {
            let detail = format!(
                "Twilio peer read nothing for {} ms ({} bytes unsent, {} utterances dropped), so the switch stopped reading from it",
                stalled.as_millis(),
                self.outbound.unsent(),
                self.dropped_audio
            );
            tracing::warn!(reference = %self.reference, %detail, "hanging up a stalled peer");
            self.phase.gone(EndCause::Failed, true, detail);
            self.phase = Phase::Closed;
            ctx.stop();
        }
    }
}

fn event_name(message: &Inbound) -> String {
    match message {
        Inbound::Connected => "connected".into(),
        Inbound::Start(_) => "start".into(),
        Inbound::Media(_) => "media".into(),
        Inbound::Dtmf(_) => "dtmf".into(),
        Inbound::Mark(_) => "mark".into(),
        Inbound::Clear => "clear".into(),
        Inbound::Stop => "stop".into(),
        Inbound::Unknown(e) => e.chars().take(32).collect(),
    }
}

impl Actor for TwilioSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        // One clock for the write watch and the `start` deadline: actix polls every timer of
        // an actor each time it wakes, once per audio frame here.
        let opened = std::time::Instant::now();
        ctx.run_interval(self.writes.period(), move |act, ctx| {
            if matches!(act.phase, Phase::Waiting) && opened.elapsed() >= START_TIMEOUT {
                tracing::info!(peer = ?act.peer, "Twilio stream closed: no start");
                act.close(
                    ws::CloseCode::Policy,
                    format!("no `start` within {} s", START_TIMEOUT.as_secs()),
                    ctx,
                );
                return;
            }
            act.check_writes(ctx)
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.phase.stopped(&self.outbound);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for TwilioSession {
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
            Ok(ws::Message::Binary(_)) => self.broken(
                ws::CloseCode::Unsupported,
                "binary frame: Twilio messages are JSON text".into(),
                ctx,
            ),
            Ok(ws::Message::Ping(p)) if !self.outbound.backed_up() => ctx.pong(&p),
            Ok(ws::Message::Ping(_)) => self.frames.dropped("skipped_reply"),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) | Ok(ws::Message::Continuation(_)) => {}
            Ok(ws::Message::Close(reason)) => {
                tracing::debug!(reference = %self.reference, ?reason, "Twilio peer closed");
                self.phase.gone(EndCause::Normal, false, String::new());
                self.phase = Phase::Closed;
                ctx.close(reason);
                ctx.stop();
            }
            Err(e) if transport::connection_lost(&e) => {
                tracing::debug!(reference = %self.reference, error = %e, "Twilio connection lost");
                self.phase.gone(EndCause::Normal, false, String::new());
                self.phase = Phase::Closed;
                ctx.stop();
            }
            Err(e) => {
                let detail = format!("WebSocket protocol error: {e}");
                self.broken(transport::error_close_code(&e), detail, ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.phase.gone(EndCause::Normal, false, String::new());
        ctx.stop();
    }
}

impl Handler<LegCommand> for TwilioSession {
    type Result = ();

    fn handle(&mut self, msg: LegCommand, ctx: &mut ws::WebsocketContext<Self>) {
        match msg {
            LegCommand::Play { audio, .. } | LegCommand::Audio(audio) => self.play(&audio, ctx),
            LegCommand::StopAudio => {
                if !matches!(self.phase, Phase::Closed) {
                    self.playing = None;
                    ctx.text(self.writer.clear());
                }
            }
            // The call plays hold music to this leg itself (`plays_hold_music: false`).
            LegCommand::Hold | LegCommand::Heard { .. } | LegCommand::Answered => {}
            LegCommand::PlayUrl { url } => {
                tracing::debug!(reference = %self.reference, %url, "Twilio streams cannot play URLs");
            }
            LegCommand::Transfer { destination } => {
                tracing::warn!(reference = %self.reference, to = %destination.target, "Twilio streams cannot transfer; ignored");
            }
            LegCommand::SendDigits { digits } => {
                tracing::warn!(reference = %self.reference, %digits, "Twilio streams cannot send keys; ignored");
            }
            LegCommand::End { reason, detail } => {
                tracing::debug!(reference = %self.reference, ?reason, %detail, "closing the Twilio stream");
                self.phase.gone(EndCause::Normal, true, String::new());
                self.close(ws::CloseCode::Normal, String::new(), ctx);
            }
        }
    }
}
