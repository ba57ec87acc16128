//! A network bot: an external AI service speaking `live_call.LiveCall/StreamCall`; the switch
//! plays the gateway. It sends `initial_info`, then the caller's audio as `play_audio`, then
//! `disconnect`, and turns `audio_output`, `end_call`, `transfer_call`, `kill_audio` and `error`
//! into the call's actions.

use actix::prelude::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::call::messages::{BotCommand, BotEvent};
use crate::call::state::{Address, CallRecord, Direction, HangupReason};
use crate::pb::live_call::live_call_client::LiveCallClient;
use crate::pb::live_call::{
    client_request, server_response, signal_message, ClientRequest, DisconnectMessage, InitialInfo,
    ServerResponse,
};
use crate::protocols::grpc_client::{self, BotLink, GrpcBot as _};
use crate::protocols::live_call_grpc::convert;

/// Rate assumed for `audio_output` chunks that leave `sample_rate` unset.
pub const DEFAULT_BOT_AUDIO_RATE: u32 = 24000;
/// Requests queued toward the AI service: about 1.3 s of 20 ms audio. Audio past it is dropped.
const OUTBOUND_QUEUE: usize = 64;

/// How to reach the AI service.
#[derive(Debug, Clone)]
pub struct LiveCallTarget {
    pub link: BotLink,
    /// Rate of the caller audio sent as `play_audio`.
    pub sample_rate: u32,
    /// Length of a `play_audio` chunk: caller audio is gathered until it holds this much.
    pub frame_ms: u32,
}

/// The bot actor for one call.
pub struct LiveCallBot {
    target: LiveCallTarget,
    call: Recipient<BotCommand>,
    tx: Option<mpsc::Sender<ClientRequest>>,
    started: bool,
    done: bool,
    call_label: String,
    /// Caller audio gathered toward the next `play_audio` chunk (`frame_ms`).
    gathered: Vec<i16>,
}

impl LiveCallBot {
    pub fn new(target: LiveCallTarget, call: Recipient<BotCommand>) -> Self {
        LiveCallBot {
            target,
            call,
            tx: None,
            started: false,
            done: false,
            call_label: String::new(),
            gathered: Vec::new(),
        }
    }

    fn connect(&mut self, record: &CallRecord, ctx: &mut Context<Self>) {
        let info = InitialInfo {
            workspace_id: record.workspace.clone(),
            call_id: if record.reference.is_empty() {
                record.id.to_string()
            } else {
                record.reference.clone()
            },
            customer_phone_number: record.source.target.clone(),
            type_call: match record.direction {
                Direction::Incoming => "inbound".into(),
                Direction::Outgoing => "outbound".into(),
            },
            hotline: record.hotline.clone(),
            url_audio_file: String::new(),
        };
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let _ = tx.try_send(ClientRequest {
            status: true,
            data: Some(client_request::Data::InitialInfo(info)),
        });
        self.tx = Some(tx);
        grpc_client::connect_and_open(
            "live_call",
            &self.target.link,
            move |channel| async move {
                LiveCallClient::new(channel)
                    .stream_call(ReceiverStream::new(rx))
                    .await
            },
            ctx,
        );
    }

    /// Sends caller audio as one `play_audio` (dropped while the request queue is full).
    fn send_audio(&self, samples: &[i16]) {
        if let Some(tx) = &self.tx {
            let request = ClientRequest {
                status: true,
                data: Some(client_request::Data::PlayAudio(convert::play_audio(
                    samples,
                    self.target.sample_rate,
                ))),
            };
            let _ = tx.try_send(request);
        }
    }

    fn on_response(&mut self, response: ServerResponse, ctx: &mut Context<Self>) {
        match response.data {
            Some(server_response::Data::AudioOutput(chunk)) => {
                match convert::server_chunk(&chunk, DEFAULT_BOT_AUDIO_RATE) {
                    Ok((rate, samples)) => {
                        let _ = self.call.try_send(BotCommand::Stream { samples, rate });
                    }
                    Err(e) => {
                        tracing::warn!(call = %self.call_label, error = %e, "bot audio refused")
                    }
                }
            }
            Some(server_response::Data::Signal(signal)) => match signal.signal_type {
                Some(signal_message::SignalType::EndCall(_)) => {
                    self.done = true;
                    self.call.do_send(BotCommand::StreamEnd);
                    self.call.do_send(BotCommand::Hangup {
                        reason: HangupReason::Normal,
                    });
                }
                Some(signal_message::SignalType::TransferCall(t)) => {
                    let staff = t.target_staff.into_iter().next().unwrap_or_default();
                    self.call.do_send(BotCommand::StreamEnd);
                    self.call.do_send(BotCommand::Transfer {
                        destination: Address {
                            kind: "tel".into(),
                            target: staff.phone_number,
                            target_name: staff.name,
                            ..Default::default()
                        },
                    });
                }
                Some(signal_message::SignalType::KillAudio(_)) => {
                    self.call.do_send(BotCommand::StopAudio)
                }
                None => {}
            },
            Some(server_response::Data::Error(e)) => {
                self.fail(format!("bot error {}: {}", e.error_code, e.message), ctx)
            }
            None if !response.status => self.fail("bot answered status=false".into(), ctx),
            None => {}
        }
    }
}

impl Actor for LiveCallBot {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::call::MAILBOX_CAPACITY);
    }
}

impl grpc_client::GrpcBot for LiveCallBot {
    fn fail(&mut self, detail: String, ctx: &mut Context<Self>) {
        let (call, label) = (&self.call, &self.call_label);
        if crate::protocols::fail_call_once(&mut self.done, call, "live_call", label, detail) {
            self.tx = None;
            ctx.stop();
        }
    }

    fn answered(&mut self) {
        self.call.do_send(BotCommand::Answer);
    }
}

impl StreamHandler<Result<ServerResponse, Status>> for LiveCallBot {
    fn handle(&mut self, item: Result<ServerResponse, Status>, ctx: &mut Context<Self>) {
        match item {
            Ok(response) => self.on_response(response, ctx),
            Err(status) => self.fail(format!("bot stream failed: {}", status.message()), ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if !self.done {
            // The AI service closed the call without end_call: it is done with the caller.
            self.done = true;
            self.call.do_send(BotCommand::StreamEnd);
            self.call.do_send(BotCommand::Hangup {
                reason: HangupReason::Normal,
            });
        }
        ctx.stop();
    }
}

impl Handler<BotEvent> for LiveCallBot {
    type Result = ();

    fn handle(&mut self, msg: BotEvent, ctx: &mut Context<Self>) {
        match msg {
            BotEvent::Start { call, .. } => {
                if !self.started {
                    self.started = true;
                    self.call_label = call.id.to_string();
                    self.connect(&call, ctx);
                }
            }
            BotEvent::Audio(samples) => {
                let chunk = (self.target.sample_rate * self.target.frame_ms / 1000) as usize;
                if self.gathered.is_empty() && samples.len() >= chunk {
                    self.send_audio(&samples);
                } else {
                    self.gathered.extend_from_slice(&samples);
                    if self.gathered.len() >= chunk {
                        let gathered = std::mem::take(&mut self.gathered);
                        self.send_audio(&gathered);
                        self.gathered = gathered;
                        self.gathered.clear();
                    }
                }
            }
            // The live_call protocol carries no keys; prompts are the service's business.
            // Caller audio comes at the bot's own `sample_rate` (`Rate` goes to other bots).
            BotEvent::Dtmf(_)
            | BotEvent::PromptDone { .. }
            | BotEvent::RoomLeft { .. }
            | BotEvent::Rate(_) => {}
            BotEvent::Ended => {
                if !self.gathered.is_empty() {
                    let gathered = std::mem::take(&mut self.gathered);
                    self.send_audio(&gathered);
                }
                if let Some(tx) = self.tx.take() {
                    let _ = tx.try_send(ClientRequest {
                        status: true,
                        data: Some(client_request::Data::Disconnect(DisconnectMessage {})),
                    });
                }
                self.done = true;
                ctx.stop();
            }
        }
    }
}
