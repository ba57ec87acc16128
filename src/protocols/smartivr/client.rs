//! A network bot: an upstream SmartIVR callbot; the switch plays the phone gateway (config
//! first and repeated, 100 ms frames of 8 kHz audio, one message per DTMF key, `is_playing`
//! true while the caller hears the bot). RESULT_TTS, CALL_WAIT, CALL_FORWARD, CALL_END and
//! RESULT_ASR become the call's actions.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::call::messages::{BotCommand, BotEvent};
use crate::call::state::{Address, CallRecord, HangupReason};
use crate::media::{pcm, samples_for_ms, wav, TELEPHONE_RATE};
use crate::pb::smartivr::smart_ivr_phonegateway_client::SmartIvrPhonegatewayClient;
use crate::pb::smartivr::{Config, SmartIvrRequest, SmartIvrResponse, SmartIvrResponseType};
use crate::protocols::grpc_client::{self, BotLink, GrpcBot as _};
use crate::protocols::smartivr::convert::STATUS_OK;

/// Milliseconds of caller audio per message, as real gateways send.
const FRAME_MS: u32 = 100;
/// Requests queued toward the callbot: about 6 s of 100 ms frames.
const OUTBOUND_QUEUE: usize = 64;

/// How to reach the callbot.
#[derive(Debug, Clone)]
pub struct SmartIvrTarget {
    pub link: BotLink,
}

/// The bot actor for one call.
pub struct SmartIvrBot {
    target: SmartIvrTarget,
    call: Recipient<BotCommand>,
    tx: Option<mpsc::Sender<SmartIvrRequest>>,
    config: Option<Config>,
    frame: Vec<i16>,
    playing: Option<u64>,
    next_prompt: u64,
    started: bool,
    done: bool,
    call_label: String,
}

/// A `forward_sip_json` turned into a destination.
pub fn forward_destination(json: &str) -> Result<Address, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("forward_sip_json is not JSON: {e}"))?;
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
    match v.get("forward_type").and_then(|t| t.as_i64()) {
        Some(1) => Ok(Address {
            kind: "sip".into(),
            target: text("sip_url"),
            ..Default::default()
        }),
        Some(2) => Ok(Address {
            kind: "tel".into(),
            target: text("customer_number"),
            name: text("display_number"),
            ..Default::default()
        }),
        other => Err(format!(
            "forward_type {other:?} is neither 1 (SIP) nor 2 (number)"
        )),
    }
}

impl SmartIvrBot {
    pub fn new(target: SmartIvrTarget, call: Recipient<BotCommand>) -> Self {
        SmartIvrBot {
            target,
            call,
            tx: None,
            config: None,
            frame: Vec::with_capacity(samples_for_ms(TELEPHONE_RATE, FRAME_MS)),
            playing: None,
            next_prompt: 1,
            started: false,
            done: false,
            call_label: String::new(),
        }
    }

    fn request(&self) -> SmartIvrRequest {
        SmartIvrRequest {
            config: self.config.clone(),
            is_playing: self.playing.is_some(),
            ..Default::default()
        }
    }

    fn connect(&mut self, record: &CallRecord, ctx: &mut Context<Self>) {
        self.config = Some(Config {
            conversation_id: if record.reference.is_empty() {
                record.id.to_string()
            } else {
                record.reference.clone()
            },
        });
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let _ = tx.try_send(self.request());
        self.tx = Some(tx);
        grpc_client::connect_and_open(
            "smartivr",
            &self.target.link,
            move |channel| async move {
                SmartIvrPhonegatewayClient::new(channel)
                    .call_to_bot(ReceiverStream::new(rx))
                    .await
            },
            ctx,
        );
    }

    fn on_response(&mut self, r: SmartIvrResponse, ctx: &mut Context<Self>) {
        if let Some(status) = &r.status {
            if status.code != STATUS_OK && status.code != 0 {
                return self.fail(
                    format!("bot status {}: {}", status.code, status.message),
                    ctx,
                );
            }
        }
        match SmartIvrResponseType::try_from(r.r#type) {
            Ok(SmartIvrResponseType::ResultTts) => {
                // A WAV prompt keeps its own rate: the call converts it once, to its leg's.
                let (samples, rate) = if r.audio_content.starts_with(b"RIFF") {
                    match wav::parse(&r.audio_content) {
                        Ok(a) => (a.samples, a.rate),
                        Err(e) => {
                            return tracing::warn!(call = %self.call_label, error = %e, "bot audio refused")
                        }
                    }
                } else {
                    match pcm::decode_s16le(&r.audio_content) {
                        Ok(s) => (s, TELEPHONE_RATE),
                        Err(e) => {
                            return tracing::warn!(call = %self.call_label, error = %e, "bot audio refused")
                        }
                    }
                };
                let text = (!r.text_bot.is_empty()).then(|| r.text_bot.clone());
                if samples.is_empty() {
                    return;
                }
                let prompt = self.next_prompt;
                self.next_prompt += 1;
                self.playing = Some(prompt);
                let audio: Arc<[i16]> = samples.into();
                self.call.do_send(BotCommand::Say {
                    prompt,
                    text,
                    audio,
                    rate,
                });
            }
            Ok(SmartIvrResponseType::CallWait) => self.call.do_send(BotCommand::Hold),
            Ok(SmartIvrResponseType::CallForward) => match forward_destination(&r.forward_sip_json)
            {
                Ok(destination) => self.call.do_send(BotCommand::Transfer { destination }),
                Err(e) => self.fail(e, ctx),
            },
            Ok(SmartIvrResponseType::CallEnd) => {
                self.done = true;
                self.call.do_send(BotCommand::Hangup {
                    reason: HangupReason::Normal,
                });
            }
            // What the upstream bot heard goes to the call's transcript (and on to a SmartIVR
            // caller, which gets the same RECOGNIZE / RESULT_ASR).
            Ok(kind @ (SmartIvrResponseType::ResultAsr | SmartIvrResponseType::Recognize)) => {
                let partial = kind == SmartIvrResponseType::Recognize;
                if !r.text_asr.trim().is_empty() {
                    tracing::debug!(call = %self.call_label, text_asr = %r.text_asr, partial, "caller said");
                    self.call.do_send(BotCommand::Heard {
                        text: r.text_asr,
                        partial,
                    });
                }
            }
            Err(_) => {}
        }
    }
}

impl Actor for SmartIvrBot {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::call::MAILBOX_CAPACITY);
    }
}

impl grpc_client::GrpcBot for SmartIvrBot {
    fn fail(&mut self, detail: String, ctx: &mut Context<Self>) {
        let (call, label) = (&self.call, &self.call_label);
        if crate::protocols::fail_call_once(&mut self.done, call, "SmartIVR", label, detail) {
            self.tx = None;
            ctx.stop();
        }
    }

    fn answered(&mut self) {
        self.call.do_send(BotCommand::Answer);
    }
}

impl StreamHandler<Result<SmartIvrResponse, Status>> for SmartIvrBot {
    fn handle(&mut self, item: Result<SmartIvrResponse, Status>, ctx: &mut Context<Self>) {
        match item {
            Ok(r) => self.on_response(r, ctx),
            Err(status) => self.fail(format!("bot stream failed: {}", status.message()), ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if !self.done {
            // A stream ending without CALL_END: the gateway role hangs up.
            self.done = true;
            self.call.do_send(BotCommand::Hangup {
                reason: HangupReason::Normal,
            });
        }
        ctx.stop();
    }
}

impl Handler<BotEvent> for SmartIvrBot {
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
                let frame_len = samples_for_ms(TELEPHONE_RATE, FRAME_MS);
                let mut rest = &samples[..];
                while !rest.is_empty() {
                    let take = (frame_len - self.frame.len()).min(rest.len());
                    self.frame.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if self.frame.len() == frame_len {
                        let mut request = self.request();
                        request.audio_content = pcm::encode_s16le(&self.frame);
                        self.frame.clear();
                        if let Some(tx) = &self.tx {
                            let _ = tx.try_send(request);
                        }
                    }
                }
            }
            BotEvent::Dtmf(digit) => {
                let mut request = self.request();
                request.key_press = digit.to_string();
                if let Some(tx) = &self.tx {
                    let _ = tx.try_send(request);
                }
            }
            BotEvent::PromptDone { prompt, .. } => {
                if self.playing == Some(prompt) {
                    self.playing = None;
                }
            }
            // Network bots never put their caller in a room; caller audio comes at their own
            // rate (`Rate` goes to other bots).
            BotEvent::RoomLeft { .. } | BotEvent::Rate(_) => {}
            BotEvent::Ended => {
                self.done = true;
                self.tx = None;
                ctx.stop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_json_becomes_a_destination() {
        let a = forward_destination(
            r#"{"forward_type":2,"customer_number":"+8490","display_number":"1900"}"#,
        )
        .unwrap();
        assert_eq!((a.kind.as_str(), a.target.as_str()), ("tel", "+8490"));
        let a = forward_destination(r#"{"forward_type":1,"sip_url":"sip:1@pbx"}"#).unwrap();
        assert_eq!((a.kind.as_str(), a.target.as_str()), ("sip", "sip:1@pbx"));
        assert!(forward_destination("{").is_err());
        assert!(forward_destination(r#"{"forward_type":9}"#).is_err());
    }
}
