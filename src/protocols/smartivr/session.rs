//! One SmartIVR gateway stream as the caller leg of its call.

use crate::telemetry::Frames;
use actix::prelude::*;
use tonic::{Status, Streaming};

use super::convert::{self, ProtocolError};
use crate::call::messages::{CallerEvent, Delivery, LegCommand, LegFormat};
use crate::call::state::EndCause;
use crate::config::TtsAudio;
use crate::media::TELEPHONE_RATE;
use crate::pb::smartivr::{SmartIvrRequest, SmartIvrResponse};
use crate::protocols::leg::{CallLink, GrpcLeg, Responses};
use crate::protocols::{KeyRate, StreamBreak};

/// The session actor: gateway frames in, call commands out.
pub struct SmartIvrSession {
    /// The call; its id is on every log line about it.
    link: CallLink,
    /// A gateway that does not take a response within `[media] write_timeout_ms` is hung up.
    responses: Responses<SmartIvrResponse>,
    conversation_id: String,
    tts_audio: TtsAudio,
    /// Scratch space for the events of one frame.
    events: Vec<CallerEvent>,
    /// DTMF keys past a human rate are dropped.
    keys: KeyRate,
    /// Frames in, out and dropped, as metrics.
    frames: Frames,
}

impl SmartIvrSession {
    pub(super) fn new(
        link: CallLink,
        responses: Responses<SmartIvrResponse>,
        conversation_id: String,
        tts_audio: TtsAudio,
    ) -> Self {
        SmartIvrSession {
            link,
            responses,
            conversation_id,
            tts_audio,
            events: Vec::with_capacity(2),
            keys: KeyRate::new(),
            frames: Frames::new("smartivr"),
        }
    }

    /// Attaches to the call, handles the first message, and reads the rest of the stream.
    pub(super) fn begin(
        mut self,
        first: SmartIvrRequest,
        inbound: Streaming<SmartIvrRequest>,
        ctx: &mut Context<Self>,
    ) -> Self {
        self.link.attach(
            ctx.address().recipient(),
            LegFormat {
                in_rate: TELEPHONE_RATE,
                out_rate: TELEPHONE_RATE,
                delivery: Delivery::Whole,
                plays_urls: false,
                plays_hold_music: true,
            },
        );
        self.frame(first, ctx);
        ctx.add_stream(inbound);
        self
    }

    fn frame(&mut self, msg: SmartIvrRequest, ctx: &mut Context<Self>) {
        self.frames.received.add();
        self.events.clear();
        if let Err(e) = convert::inbound(&msg, &self.conversation_id, &mut self.events) {
            self.protocol_error(e, ctx);
            return;
        }
        for event in self.events.drain(..) {
            match event {
                // Media is dropped, not queued without bound, if the call falls behind.
                CallerEvent::Audio(_) => {
                    if self.link.call().try_send(event).is_err() {
                        self.frames.dropped("call_busy");
                    }
                }
                // So are keys past a human rate: every key is a message to the call.
                CallerEvent::Dtmf(_) => {
                    let dropped = if !self.keys.allow() {
                        Some("key_rate")
                    } else if self.link.call().try_send(event).is_err() {
                        Some("call_busy")
                    } else {
                        None
                    };
                    if let Some(cause) = dropped {
                        self.frames.dropped(cause);
                        if self.keys.refused % 1000 == 1 {
                            tracing::warn!(call = %self.link.id(), reference = %self.conversation_id, refused = self.keys.refused, "SmartIVR keys dropped: too many too fast");
                        }
                    }
                }
                other => self.link.call().do_send(other),
            }
        }
    }

    fn protocol_error(&mut self, e: ProtocolError, ctx: &mut Context<Self>) {
        let message = e.to_string();
        let status = Status::invalid_argument(message.clone());
        self.refuse(message, status, ctx);
    }

    /// Ends the stream with CALL_END (status -1, `message`) and then `status`; the call is
    /// recorded `failed` with the message.
    fn refuse(&mut self, message: String, status: Status, ctx: &mut Context<Self>) {
        tracing::warn!(call = %self.link.id(), reference = %self.conversation_id, error = %message, "SmartIVR protocol error");
        self.responses.refuse(convert::error(&message), status);
        self.link.leave(
            EndCause::Failed,
            true,
            format!("protocol error: {message}"),
            ctx,
        );
    }
}

impl Actor for SmartIvrSession {
    type Context = Context<Self>;
}

impl GrpcLeg for SmartIvrSession {
    fn link(&mut self) -> &mut CallLink {
        &mut self.link
    }
}

impl StreamHandler<Result<SmartIvrRequest, Status>> for SmartIvrSession {
    fn handle(&mut self, item: Result<SmartIvrRequest, Status>, ctx: &mut Context<Self>) {
        match item {
            Ok(msg) => self.frame(msg, ctx),
            Err(status) => match StreamBreak::of(&status) {
                StreamBreak::Gone => {
                    tracing::debug!(call = %self.link.id(), reference = %self.conversation_id, %status, "gateway stream broke");
                    self.link.leave(EndCause::Normal, false, String::new(), ctx);
                }
                StreamBreak::TooLarge(detail) => {
                    let status = Status::resource_exhausted(detail.clone());
                    self.refuse(detail, status, ctx)
                }
                StreamBreak::Malformed(detail) => {
                    let status = Status::invalid_argument(detail.clone());
                    self.refuse(detail, status, ctx)
                }
            },
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The gateway closed its side: the caller hung up.
        self.link.leave(EndCause::Normal, false, String::new(), ctx);
    }
}

impl Handler<LegCommand> for SmartIvrSession {
    type Result = ();

    fn handle(&mut self, msg: LegCommand, ctx: &mut Context<Self>) {
        match msg {
            LegCommand::Play { text, audio } => {
                let response = convert::tts(text, &audio, self.tts_audio);
                self.frames.sent.add();
                self.responses.send(response, false, ctx);
            }
            LegCommand::Audio(audio) => {
                let response = convert::tts(None, &audio, self.tts_audio);
                self.frames.sent.add();
                self.responses.send(response, false, ctx);
            }
            // The next RESULT_TTS replaces what the gateway plays; there is no stop message.
            LegCommand::StopAudio | LegCommand::Answered => {}
            LegCommand::Hold => self.responses.send(convert::wait(), false, ctx),
            LegCommand::Transfer { destination } => {
                self.responses
                    .send(convert::forward(&destination, ""), false, ctx)
            }
            LegCommand::SendDigits { digits } => {
                tracing::debug!(call = %self.link.id(), reference = %self.conversation_id, %digits, "SmartIVR cannot send DTMF; ignored");
            }
            LegCommand::PlayUrl { url } => {
                tracing::debug!(call = %self.link.id(), reference = %self.conversation_id, %url, "SmartIVR cannot play URLs; ignored");
            }
            LegCommand::Heard { text, partial } => {
                self.responses
                    .send(convert::heard(&text, partial), false, ctx)
            }
            LegCommand::End { detail, .. } => {
                self.responses.send(convert::end(&detail), true, ctx);
            }
        }
    }
}
