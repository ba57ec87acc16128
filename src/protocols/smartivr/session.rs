//! One SmartIVR gateway stream as the caller leg of its call.

use crate::telemetry::Frames;
use std::time::Duration;

use actix::prelude::*;
use tonic::{Status, Streaming};
use uuid::Uuid;

use super::convert::{self, ProtocolError};
use super::ResponseTx;
use crate::call::messages::{AttachLeg, CallerEvent, Delivery, LegCommand, LegFormat};
use crate::call::state::EndCause;
use crate::call::CallActor;
use crate::config::TtsAudio;
use crate::media::TELEPHONE_RATE;
use crate::pb::smartivr::{SmartIvrRequest, SmartIvrResponse};
use crate::protocols::{KeyRate, StreamBreak};

/// The session actor: gateway frames in, call commands out.
pub struct SmartIvrSession {
    call: Addr<CallActor>,
    /// The switch's id of the call, on every log line about it.
    call_id: Uuid,
    tx: Option<ResponseTx>,
    conversation_id: String,
    tts_audio: TtsAudio,
    /// A gateway that does not take a response within this time is hung up.
    write_timeout: Duration,
    /// Scratch space for the events of one frame.
    events: Vec<CallerEvent>,
    /// DTMF keys past a human rate are dropped.
    keys: KeyRate,
    /// The call has been told the leg is gone.
    gone: bool,
    /// Frames in, out and dropped, as metrics.
    frames: Frames,
}

impl SmartIvrSession {
    pub(super) fn new(
        call: Addr<CallActor>,
        call_id: Uuid,
        tx: ResponseTx,
        conversation_id: String,
        tts_audio: TtsAudio,
        write_timeout: Duration,
    ) -> Self {
        SmartIvrSession {
            call,
            call_id,
            tx: Some(tx),
            conversation_id,
            tts_audio,
            write_timeout,
            events: Vec::with_capacity(2),
            keys: KeyRate::new(),
            gone: false,
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
        self.call.do_send(AttachLeg {
            leg: ctx.address().recipient(),
            format: LegFormat {
                in_rate: TELEPHONE_RATE,
                out_rate: TELEPHONE_RATE,
                delivery: Delivery::Whole,
                plays_urls: false,
                plays_hold_music: true,
            },
        });
        self.frame(first, ctx);
        ctx.add_stream(inbound);
        self
    }

    fn frame(&mut self, msg: SmartIvrRequest, ctx: &mut Context<Self>) {
        self.frames.received.increment(1);
        self.events.clear();
        if let Err(e) = convert::inbound(&msg, &self.conversation_id, &mut self.events) {
            self.protocol_error(e, ctx);
            return;
        }
        for event in self.events.drain(..) {
            match event {
                // Media is dropped, not queued without bound, if the call falls behind.
                CallerEvent::Audio(_) => {
                    if self.call.try_send(event).is_err() {
                        self.frames.dropped("call_busy");
                    }
                }
                // So are keys past a human rate: every key is a message to the call.
                CallerEvent::Dtmf(_) => {
                    let dropped = if !self.keys.allow() {
                        Some("key_rate")
                    } else if self.call.try_send(event).is_err() {
                        Some("call_busy")
                    } else {
                        None
                    };
                    if let Some(cause) = dropped {
                        self.frames.dropped(cause);
                        if self.keys.refused % 1000 == 1 {
                            tracing::warn!(call = %self.call_id, reference = %self.conversation_id, refused = self.keys.refused, "SmartIVR keys dropped: too many too fast");
                        }
                    }
                }
                other => self.call.do_send(other),
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
        tracing::warn!(call = %self.call_id, reference = %self.conversation_id, error = %message, "SmartIVR protocol error");
        if let Some(tx) = self.tx.take() {
            let message = message.clone();
            // Detached from the actor, which stops now; the task ends when both are queued.
            let write_timeout = self.write_timeout;
            actix::spawn(async move {
                let _ = tokio::time::timeout(write_timeout, async {
                    let _ = tx.send(Ok(convert::error(&message))).await;
                    let _ = tx.send(Err(status)).await;
                })
                .await;
            });
        }
        self.leave(
            EndCause::Failed,
            true,
            format!("protocol error: {message}"),
            ctx,
        );
    }

    /// Tells the call the leg is gone and stops reading.
    fn leave(&mut self, cause: EndCause, local: bool, detail: String, ctx: &mut Context<Self>) {
        if !self.gone {
            self.gone = true;
            self.call.do_send(CallerEvent::Gone {
                cause,
                local,
                detail,
            });
        }
        ctx.stop();
    }

    /// Sends a response in order; a gateway that does not take it in time is hung up. With
    /// `close`, the response stream ends after it (dropping the sender ends the stream).
    fn send(&mut self, response: SmartIvrResponse, close: bool, ctx: &mut Context<Self>) {
        let Some(tx) = self.tx.clone() else { return };
        let write_timeout = self.write_timeout;
        if close {
            self.tx = None;
        }
        // One `wait` per response: the actor handles nothing else until it is queued, which
        // keeps responses in order.
        ctx.wait(
            async move { tokio::time::timeout(write_timeout, tx.send(Ok(response))).await }
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(Ok(())) if close => act.leave(EndCause::Normal, true, String::new(), ctx),
                    Ok(Ok(())) => {}
                    // The response stream is gone: the gateway has left.
                    Ok(Err(_)) => act.leave(EndCause::Normal, false, String::new(), ctx),
                    Err(_) => act.leave(
                        EndCause::Failed,
                        true,
                        "gateway stopped reading responses".into(),
                        ctx,
                    ),
                }),
        );
    }
}

impl Actor for SmartIvrSession {
    type Context = Context<Self>;
}

impl StreamHandler<Result<SmartIvrRequest, Status>> for SmartIvrSession {
    fn handle(&mut self, item: Result<SmartIvrRequest, Status>, ctx: &mut Context<Self>) {
        match item {
            Ok(msg) => self.frame(msg, ctx),
            Err(status) => match StreamBreak::of(&status) {
                StreamBreak::Gone => {
                    tracing::debug!(call = %self.call_id, reference = %self.conversation_id, %status, "gateway stream broke");
                    self.leave(EndCause::Normal, false, String::new(), ctx);
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
        self.leave(EndCause::Normal, false, String::new(), ctx);
    }
}

impl Handler<LegCommand> for SmartIvrSession {
    type Result = ();

    fn handle(&mut self, msg: LegCommand, ctx: &mut Context<Self>) {
        match msg {
            LegCommand::Play { text, audio } => {
                let response = convert::tts(text, &audio, self.tts_audio);
                self.frames.sent.increment(1);
                self.send(response, false, ctx);
            }
            LegCommand::Audio(audio) => {
                let response = convert::tts(None, &audio, self.tts_audio);
                self.frames.sent.increment(1);
                self.send(response, false, ctx);
            }
            // The next RESULT_TTS replaces what the gateway plays; there is no stop message.
            LegCommand::StopAudio => {}
            LegCommand::Hold => self.send(convert::wait(), false, ctx),
            LegCommand::Transfer { destination } => {
                self.send(convert::forward(&destination, ""), false, ctx)
            }
            LegCommand::SendDigits { digits } => {
                tracing::debug!(call = %self.call_id, reference = %self.conversation_id, %digits, "SmartIVR cannot send DTMF; ignored");
            }
            LegCommand::PlayUrl { url } => {
                tracing::debug!(call = %self.call_id, reference = %self.conversation_id, %url, "SmartIVR cannot play URLs; ignored");
            }
            LegCommand::End { detail, .. } => {
                self.send(convert::end(&detail), true, ctx);
            }
        }
    }
}
