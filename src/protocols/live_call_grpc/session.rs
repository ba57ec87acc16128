//! One `StreamCall` from a gateway as the caller leg of its call.

use std::time::{Duration, Instant};

use crate::telemetry::Frames;

use actix::prelude::*;
use tonic::{Status, Streaming};

use super::convert;
use crate::call::messages::{CallerEvent, Delivery, LegCommand, LegFormat};
use crate::call::state::{EndCause, HangupReason};
use crate::pb::live_call::{client_request, ClientRequest, InitialInfo, ServerResponse};
use crate::protocols::leg::{CallLink, GrpcLeg, Responses};
use crate::protocols::StreamBreak;

/// The leg's caller rate until a chunk declares another (a chunk without a rate is at it).
const DEFAULT_IN_RATE: u32 = 16000;
/// Room for call commands: the call drops audio (and counts it) rather than queue past this.
const LEG_MAILBOX: usize = 64;

/// The session actor.
pub struct LiveCallGrpcSession {
    /// The call; its id is on every log line about it.
    link: CallLink,
    responses: Responses<ServerResponse>,
    info: InitialInfo,
    out_rate: u32,
    /// The rate of the caller audio the call gets: the rate the gateway declared last. Chunks
    /// go to the call as they are; the call converts them, once, where its bot needs another.
    in_rate: u32,
    /// Audio frames dropped because the gateway was not reading.
    dropped_frames: u64,
    /// A gateway that takes no response, or no audio, for this long is hung up.
    write_timeout: Duration,
    /// Since when every audio frame toward the gateway was dropped.
    refusing_since: Option<Instant>,
    /// Frames in, out and dropped, as metrics.
    frames: Frames,
}

impl LiveCallGrpcSession {
    pub(super) fn new(
        link: CallLink,
        responses: Responses<ServerResponse>,
        info: InitialInfo,
        out_rate: u32,
        write_timeout: Duration,
    ) -> Self {
        LiveCallGrpcSession {
            link,
            responses,
            info,
            out_rate,
            in_rate: DEFAULT_IN_RATE,
            dropped_frames: 0,
            write_timeout,
            refusing_since: None,
            frames: Frames::new("live_call_grpc"),
        }
    }

    pub(super) fn begin(self, inbound: Streaming<ClientRequest>, ctx: &mut Context<Self>) -> Self {
        self.link.attach(
            ctx.address().recipient(),
            LegFormat {
                in_rate: DEFAULT_IN_RATE,
                out_rate: self.out_rate,
                delivery: Delivery::Paced,
                plays_urls: false,
                plays_hold_music: false,
            },
        );
        ctx.add_stream(inbound);
        self
    }

    /// A request stream that broke on a message too large or not protobuf: the gateway gets
    /// an `error` message and the matching status, and the call is recorded `failed`.
    fn refuse_stream(&mut self, status: Status, ctx: &mut Context<Self>) {
        let (code, detail, status) = match StreamBreak::of(&status) {
            StreamBreak::Gone => {
                return self.link.leave(EndCause::Normal, false, String::new(), ctx)
            }
            StreamBreak::TooLarge(d) => (413, d.clone(), Status::resource_exhausted(d)),
            StreamBreak::Malformed(d) => (400, d.clone(), Status::invalid_argument(d)),
        };
        tracing::warn!(call = %self.link.id(), call_id = %self.info.call_id, %detail, "live_call gateway stream refused");
        self.responses.refuse(convert::error(code, &detail), status);
        self.link.leave(EndCause::Failed, true, detail, ctx);
    }

    fn on_request(&mut self, request: ClientRequest, ctx: &mut Context<Self>) {
        match request.data {
            Some(client_request::Data::PlayAudio(chunk)) => {
                let (rate, samples) = match convert::client_chunk(&chunk, DEFAULT_IN_RATE) {
                    Ok(a) => a,
                    Err(e) => {
                        return self
                            .responses
                            .send(convert::error(400, &e.to_string()), false, ctx)
                    }
                };
                let call = self.link.call();
                // A new rate is told first; a call too busy to hear it gets neither (the next
                // chunk tries again), so audio never reaches it labelled with the wrong rate.
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
            Some(client_request::Data::Disconnect(_)) => {
                self.responses.end();
                self.link.leave(EndCause::Normal, false, String::new(), ctx);
            }
            Some(client_request::Data::InitialInfo(_)) => self.responses.send(
                convert::error(400, "initial_info was already sent"),
                false,
                ctx,
            ),
            None => self
                .responses
                .send(convert::error(400, "message carries no data"), false, ctx),
        }
    }
}

impl Actor for LiveCallGrpcSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(LEG_MAILBOX);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if self.dropped_frames > 0 {
            tracing::info!(call = %self.link.id(), call_id = %self.info.call_id, dropped = self.dropped_frames, "audio frames dropped toward a slow gateway");
        }
    }
}

impl GrpcLeg for LiveCallGrpcSession {
    fn link(&mut self) -> &mut CallLink {
        &mut self.link
    }
}

impl StreamHandler<Result<ClientRequest, Status>> for LiveCallGrpcSession {
    fn handle(&mut self, item: Result<ClientRequest, Status>, ctx: &mut Context<Self>) {
        match item {
            Ok(request) => {
                self.frames.received.add();
                self.on_request(request, ctx)
            }
            Err(status) => self.refuse_stream(status, ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.link.leave(EndCause::Normal, false, String::new(), ctx);
    }
}

impl Handler<LegCommand> for LiveCallGrpcSession {
    type Result = ();

    fn handle(&mut self, msg: LegCommand, ctx: &mut Context<Self>) {
        match msg {
            LegCommand::Audio(samples) | LegCommand::Play { audio: samples, .. } => {
                let Some(tx) = self.responses.open() else {
                    return;
                };
                if tx
                    .try_send(Ok(convert::audio_output(&samples, self.out_rate)))
                    .is_ok()
                {
                    self.refusing_since = None;
                    self.frames.sent.add();
                    return;
                }
                self.dropped_frames += 1;
                self.frames.dropped("slow_peer");
                let since = *self.refusing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.write_timeout {
                    let detail = format!(
                        "gateway read no audio for {} ms ({} frames dropped)",
                        since.elapsed().as_millis(),
                        self.dropped_frames
                    );
                    self.responses.end();
                    self.link.leave(EndCause::Failed, true, detail, ctx);
                }
            }
            LegCommand::StopAudio => {
                self.responses
                    .send(convert::kill_audio(&self.info.call_id), false, ctx)
            }
            LegCommand::Transfer { destination } => {
                let name = if destination.target_name.is_empty() {
                    &destination.name
                } else {
                    &destination.target_name
                };
                let response = convert::transfer_call(
                    &self.info.call_id,
                    &self.info.customer_phone_number,
                    name,
                    &destination.target,
                );
                self.responses.send(response, false, ctx)
            }
            LegCommand::Hold
            | LegCommand::SendDigits { .. }
            | LegCommand::PlayUrl { .. }
            | LegCommand::Heard { .. }
            | LegCommand::Answered => {}
            LegCommand::End { reason, detail } => {
                let response = if reason == HangupReason::Failed {
                    convert::error(
                        500,
                        if detail.is_empty() {
                            "bot failure"
                        } else {
                            &detail
                        },
                    )
                } else {
                    convert::end_call(&self.info.call_id)
                };
                self.responses.send(response, true, ctx);
            }
        }
    }
}
