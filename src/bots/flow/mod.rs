//! The embedded flow bot: runs a VoIPBIN-style action list for one call.
//!
//! Immediate actions (`answer`, `branch`, `goto`) run back to back; the others wait on an
//! event: a prompt played (`talk`, `play`), keys or a timeout (`digits_receive`), a timer
//! (`sleep`, `echo`). Keys pressed at any time are kept for the next `digits_receive`
//! (type-ahead). Running off the end of the list hangs up. `fetch` asks a webhook for the
//! rest of the flow (see `fetch`).

pub use crate::actions;
pub use crate::actions::FlowProgram;
mod fetch;
pub mod source;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::call::messages::{BotCommand, BotEvent, BridgeTarget, GetRecord, LegFormat};
use crate::call::state::HangupReason;
use crate::room::directory::MAX_RING_DESTINATIONS;
use crate::services::Services;
use crate::speech::asr::endpoint::{Endpoint, Endpointer};
use crate::speech::asr::{AsrError, Grammar, Recognition, Request};
use crate::speech::tts::voice_for;
use actions::{Action, SpeechOptions};

/// Actions run back to back without waiting before the bot yields: a guard against a flow
/// that jumps in a circle without ever waiting.
const MAX_IMMEDIATE_STEPS: usize = 1000;

/// Keys kept for type-ahead; older keys beyond this are dropped.
const MAX_TYPE_AHEAD: usize = 64;

/// Caller audio kept while a flow may listen, for speech that barged in over a prompt.
const RECENT_MS: u32 = 1000;

/// Passwords a caller may try for a `conference_join` room with `settings.require_password`
/// before the flow gives up on it (`${conference_error}`) and goes on.
const PASSWORD_ATTEMPTS: u32 = 3;
/// How long the caller has, after the prompt, to key a room password ending with `#`; when it
/// runs out, the keys pressed so far are tried.
const PASSWORD_ENTRY_MS: u64 = 15_000;
/// What a caller hears when a `conference_join` room wants its password.
const PASSWORD_PROMPT: &str = "Please enter the room password, then press pound.";
/// The key that ends a room password.
const PASSWORD_END_KEY: char = '#';

/// What the flow is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wait {
    /// The call has not started the bot yet.
    NotStarted,
    /// Speech or a file is being prepared.
    Loading,
    /// A prompt is playing.
    Prompt(u64),
    /// Keys, until `length` keys, a key in `key`, or the timer.
    Digits { length: usize, key: String },
    /// A timer (`sleep`).
    Timer,
    /// Echoing caller audio until the timer.
    Echo,
    /// A webhook is being asked for the rest of the flow.
    Fetch,
    /// One utterance (`speech_receive`).
    Speech,
    /// Keys of a room password, until `#` or the timer.
    Password,
    /// The caller is in a conference room.
    Room,
    /// Nothing more will run (hung up, transferred, failed or ended).
    Done,
}

/// A `conference_join` under way: the room, and how many passwords the caller was asked for.
///
/// The flow first joins without a password. A room that wants one (`settings.require_password`)
/// refuses with `RoomLeft { wants_password }`; the caller then hears `PASSWORD_PROMPT`, keys
/// the digits and `#`, and the flow joins again with them, up to `PASSWORD_ATTEMPTS` times.
/// After that the refusal lands in `${conference_error}` and the flow goes on.
#[derive(Debug)]
struct RoomJoin {
    room: String,
    attempts: u32,
}

/// The flow bot actor for one call.
pub struct FlowBot {
    program: Arc<FlowProgram>,
    services: Arc<Services>,
    call: Recipient<BotCommand>,
    leg: Option<LegFormat>,
    call_id: String,
    pc: usize,
    wait: Wait,
    type_ahead: String,
    variables: HashMap<String, String>,
    goto_counts: HashMap<usize, u32>,
    next_prompt: u64,
    timer: Option<SpawnHandle>,
    /// Where `fetch` reads the call's current record.
    record: Option<Recipient<GetRecord>>,
    /// Which local files `play` may read: any for the configured flow, only those under
    /// `[media] files_dir` once a webhook's actions run.
    local_files: source::LocalFiles,
    /// What the flow is listening for, while it listens for speech.
    listening: Option<Listening>,
    /// The last `RECENT_MS` of caller audio, kept while the flow has speech actions.
    recent: VecDeque<i16>,
    /// The last prompt was cut off by the caller: its speech is in `recent`.
    barged_in: bool,
    /// The `conference_join` under way, from the action until the caller leaves the room.
    joining: Option<RoomJoin>,
}

/// A speech action in progress.
struct Listening {
    endpointer: Endpointer,
    options: SpeechOptions,
    /// The recognition under way, if any.
    decoding: Decoding,
    /// Numbers recognitions, so a withdrawn one's answer is known when it comes.
    next_token: u64,
    /// A tentative utterance's result that came before its end was confirmed.
    early: Option<(u64, Result<Recognition, AsrError>)>,
}

/// What the recogniser is working on for a listening flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoding {
    Nothing,
    /// The utterance as it is if the caller says no more (`Endpoint::Tentative`): started
    /// early to save the rest of the closing quiet.
    Tentative(u64),
    /// The utterance has ended: its result moves the flow on; further audio is ignored.
    Final(u64),
}

/// The variable name without `${…}` and the `voipbin.call.` prefix VoIPBIN flows use.
fn variable_key(name: &str) -> &str {
    let name = name.trim();
    let name = name
        .strip_prefix("${")
        .and_then(|n| n.strip_suffix('}'))
        .unwrap_or(name);
    name.strip_prefix("voipbin.call.").unwrap_or(name)
}

/// Replaces `${name}` with the variable's value (unknown names become empty).
fn substitute(text: &str, variables: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                let name = variable_key(&rest[start..start + end + 1]);
                out.push_str(variables.get(name).map(String::as_str).unwrap_or(""));
                rest = &rest[start + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

impl FlowBot {
    pub fn new(
        program: Arc<FlowProgram>,
        services: Arc<Services>,
        call: Recipient<BotCommand>,
    ) -> Self {
        FlowBot {
            program,
            services,
            call,
            leg: None,
            call_id: String::new(),
            pc: 0,
            wait: Wait::NotStarted,
            type_ahead: String::new(),
            variables: HashMap::new(),
            goto_counts: HashMap::new(),
            next_prompt: 1,
            timer: None,
            record: None,
            local_files: source::LocalFiles::Any,
            listening: None,
            recent: VecDeque::new(),
            barged_in: false,
            joining: None,
        }
    }

    /// Lets `fetch` read the call's current record from `record`.
    pub fn with_record(mut self, record: Recipient<GetRecord>) -> Self {
        self.record = Some(record);
        self
    }

    fn cancel_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
    }

    fn advance(&mut self, ctx: &mut Context<Self>) {
        self.cancel_timer(ctx);
        self.listening = None;
        self.pc += 1;
        self.run(ctx);
    }

    fn fail(&mut self, detail: String) {
        tracing::error!(call = %self.call_id, %detail, "flow action failed");
        self.wait = Wait::Done;
        self.call.do_send(BotCommand::Failed { detail });
    }

    /// Takes keys for a `digits_receive` if the buffered keys already satisfy it.
    fn take_digits(&mut self, length: usize, key: &str) -> Option<String> {
        if let Some(pos) = self.type_ahead.find(|c| key.contains(c)) {
            let taken: String = self.type_ahead[..pos].to_owned();
            self.type_ahead.drain(..=pos);
            return Some(taken);
        }
        if self.type_ahead.len() >= length.max(1) {
            let taken: String = self.type_ahead.drain(..length.max(1)).collect();
            return Some(taken);
        }
        None
    }

    fn store_digits(&mut self, digits: String) {
        self.variables.insert("digits".into(), digits);
    }

    /// Runs actions from `pc` until one has to wait.
    fn run(&mut self, ctx: &mut Context<Self>) {
        let program = self.program.clone();
        for _ in 0..MAX_IMMEDIATE_STEPS {
            let Some(action) = program.actions.get(self.pc) else {
                self.wait = Wait::Done;
                self.call.do_send(BotCommand::Hangup {
                    reason: HangupReason::Normal,
                });
                return;
            };
            self.call
                .do_send(BotCommand::Action(action.to_record_json(self.pc)));
            match action {
                Action::Answer { .. } => {
                    self.call.do_send(BotCommand::Answer);
                    self.pc += 1;
                }
                Action::Talk {
                    text,
                    language,
                    gender,
                    barge_in,
                    ..
                } => {
                    self.talk(
                        substitute(text, &self.variables),
                        voice_for(language, *gender),
                        *barge_in,
                        ctx,
                    );
                    return;
                }
                Action::Play {
                    stream_urls,
                    barge_in,
                    ..
                } => {
                    let hand_over = self.leg.is_some_and(|l| l.plays_urls)
                        && stream_urls.iter().all(|u| actions::is_http_url(u));
                    if hand_over {
                        // The caller's side fetches and plays these; it never says when a
                        // file ends, so the flow moves on at once.
                        for url in stream_urls {
                            self.call.do_send(BotCommand::PlayUrl { url: url.clone() });
                        }
                        self.pc += 1;
                        continue;
                    }
                    self.play(stream_urls.clone(), *barge_in, ctx);
                    return;
                }
                Action::DigitsSend { digits, .. } => {
                    self.call.do_send(BotCommand::SendDigits {
                        digits: digits.clone(),
                    });
                    self.pc += 1;
                }
                Action::Fetch {
                    url,
                    method,
                    timeout,
                    hold_after_ms,
                    ..
                } => {
                    let hold_after =
                        hold_after_ms.unwrap_or(self.services.config.media.hold_after_ms);
                    self.fetch(
                        fetch::Request {
                            url: url.clone(),
                            method: method.to_ascii_uppercase(),
                            timeout: Duration::from_millis(*timeout),
                        },
                        Duration::from_millis(hold_after),
                        ctx,
                    );
                    return;
                }
                Action::DigitsReceive {
                    duration,
                    length,
                    key,
                    speech,
                    ..
                } => {
                    if let Some(digits) = self.take_digits(*length, key) {
                        self.store_digits(digits);
                        self.pc += 1;
                        continue;
                    }
                    self.wait = Wait::Digits {
                        length: *length,
                        key: key.clone(),
                    };
                    let length = *length;
                    self.timer = Some(ctx.run_later(
                        Duration::from_millis(*duration),
                        move |act, ctx| {
                            act.timer = None;
                            let n = act.type_ahead.len().min(length.max(1));
                            let digits: String = act.type_ahead.drain(..n).collect();
                            act.store_digits(digits);
                            act.advance(ctx);
                        },
                    ));
                    if let Some(speech) = speech {
                        self.listen(speech.clone(), ctx);
                    }
                    return;
                }
                Action::SpeechReceive { duration, .. } => {
                    let Some(options) = action.speech_options() else {
                        self.pc += 1;
                        continue;
                    };
                    self.wait = Wait::Speech;
                    self.timer =
                        Some(ctx.run_later(Duration::from_millis(*duration), |act, ctx| {
                            act.timer = None;
                            // No speech began in time: the no-input path.
                            if let Some(l) = &act.listening {
                                let variable = l.options.variable.clone();
                                act.variables.insert(variable, String::new());
                                act.variables.remove("speech_confidence");
                                act.advance(ctx);
                            }
                        }));
                    self.listen(options, ctx);
                    return;
                }
                Action::TranscribeStart { language, .. } => {
                    self.call.do_send(BotCommand::Transcribe {
                        language: Some(language.clone()),
                    });
                    self.pc += 1;
                }
                Action::TranscribeStop { .. } => {
                    self.call.do_send(BotCommand::Transcribe { language: None });
                    self.pc += 1;
                }
                Action::Branch {
                    variable,
                    default_target_id,
                    target_ids,
                    ..
                } => {
                    let value = self
                        .variables
                        .get(variable_key(variable))
                        .cloned()
                        .unwrap_or_default();
                    let target = target_ids
                        .get(&value)
                        .or(default_target_id.as_ref())
                        .and_then(|t| program.target(t));
                    match target {
                        Some(to) => self.pc = to,
                        None => self.pc += 1,
                    }
                }
                Action::Goto {
                    target_id,
                    loop_count,
                    ..
                } => {
                    let count = self.goto_counts.entry(self.pc).or_insert(0);
                    match program.target(target_id) {
                        Some(to) if *count < *loop_count => {
                            *count += 1;
                            self.pc = to;
                        }
                        _ => self.pc += 1,
                    }
                }
                Action::Connect {
                    destinations,
                    ring_media,
                    ..
                } => {
                    // What the switch reaches itself (configured bots; phone numbers and SIP
                    // URIs where SIP can dial them) is rung at once on chained calls, the
                    // first to answer bridged to this one; the flow goes on when the bridge
                    // ends.
                    let config = &self.services.config;
                    let mut targets: Vec<BridgeTarget> = Vec::new();
                    for d in destinations {
                        let target = if d.kind == "agent" && config.bots.contains_key(&d.target) {
                            BridgeTarget::Bot(d.target.clone())
                        } else if config.sip.can_dial(&d.kind) && !d.target.trim().is_empty() {
                            BridgeTarget::Dial(d.to_address())
                        } else {
                            continue;
                        };
                        if !targets.contains(&target) {
                            targets.push(target);
                        }
                    }
                    if !targets.is_empty() {
                        if targets.len() > MAX_RING_DESTINATIONS {
                            tracing::warn!(call = %self.call_id, destinations = targets.len(), "connect: only the first {MAX_RING_DESTINATIONS} destinations are rung");
                            targets.truncate(MAX_RING_DESTINATIONS);
                        }
                        self.bridge(targets, ring_media.clone(), ctx);
                        return;
                    }
                    // Anything else is handed over to the caller's side: the flow is done.
                    self.wait = Wait::Done;
                    if let Some(first) = destinations.first() {
                        self.call.do_send(BotCommand::Transfer {
                            destination: first.to_address(),
                        });
                    }
                    return;
                }
                Action::ConferenceJoin { conference_id, .. } => {
                    self.call.do_send(BotCommand::Answer);
                    self.wait = Wait::Room;
                    let room = substitute(conference_id, &self.variables);
                    self.joining = Some(RoomJoin {
                        room: room.clone(),
                        attempts: 0,
                    });
                    self.call.do_send(BotCommand::JoinRoom {
                        room,
                        password: None,
                    });
                    return;
                }
                Action::Echo { duration, .. } => {
                    self.call.do_send(BotCommand::Answer);
                    self.wait = Wait::Echo;
                    self.timer =
                        Some(ctx.run_later(Duration::from_millis(*duration), |act, ctx| {
                            act.timer = None;
                            act.call.do_send(BotCommand::StreamEnd);
                            act.advance(ctx);
                        }));
                    return;
                }
                Action::Sleep { duration, .. } => {
                    self.wait = Wait::Timer;
                    self.timer =
                        Some(ctx.run_later(Duration::from_millis(*duration), |act, ctx| {
                            act.timer = None;
                            act.advance(ctx);
                        }));
                    return;
                }
                Action::RecordingStart { .. } => {
                    if let Some(options) = action.recording_options() {
                        self.call.do_send(BotCommand::RecordingStart { options });
                    }
                    self.pc += 1;
                }
                Action::RecordingStop { .. } => {
                    self.call.do_send(BotCommand::RecordingStop);
                    self.pc += 1;
                }
                Action::Hangup { reason, .. } => {
                    self.wait = Wait::Done;
                    let reason = reason
                        .as_deref()
                        .and_then(HangupReason::parse)
                        .unwrap_or(HangupReason::Normal);
                    self.call.do_send(BotCommand::Hangup { reason });
                    return;
                }
            }
        }
        self.fail(format!(
            "flow ran {MAX_IMMEDIATE_STEPS} actions without waiting (a goto/branch loop?)"
        ));
    }

    fn out_rate(&self) -> u32 {
        self.leg
            .map(|l| l.out_rate)
            .unwrap_or(crate::media::TELEPHONE_RATE)
    }

    fn say(&mut self, text: Option<String>, audio: Arc<[i16]>, barge_in: bool) {
        self.barged_in = false;
        let prompt = self.next_prompt;
        self.next_prompt += 1;
        self.wait = Wait::Prompt(prompt);
        if barge_in {
            self.call.do_send(BotCommand::BargeIn { prompt });
        }
        self.call.do_send(BotCommand::Say {
            prompt,
            text,
            audio,
            rate: self.out_rate(),
        });
    }

    fn talk(&mut self, text: String, voice: String, barge_in: bool, ctx: &mut Context<Self>) {
        self.wait = Wait::Loading;
        let services = self.services.clone();
        let rate = self.out_rate();
        let rendering = async move {
            let audio = services.tts.render(&text, &voice, rate).await;
            (text, audio)
        };
        ctx.spawn(
            rendering
                .into_actor(self)
                .map(move |(text, audio), act, _ctx| {
                    if act.wait != Wait::Loading {
                        return;
                    }
                    match audio {
                        Ok(audio) => act.say(Some(text), audio, barge_in),
                        Err(e) => act.fail(format!("talk: {e}")),
                    }
                }),
        );
    }

    fn play(&mut self, urls: Vec<String>, barge_in: bool, ctx: &mut Context<Self>) {
        self.wait = Wait::Loading;
        let http = self.services.http.clone();
        let rate = self.out_rate();
        let call_id = self.call_id.clone();
        let local_files = self.local_files.clone();
        let loading = async move {
            let mut audio = Vec::new();
            for url in &urls {
                match source::load(&http, url, rate, &local_files).await {
                    Ok(samples) => audio.extend_from_slice(&samples),
                    // A missing file should not end the call: the caller hears the rest.
                    Err(e) => tracing::warn!(call = %call_id, %url, error = %e, "play: skipped"),
                }
            }
            audio
        };
        ctx.spawn(loading.into_actor(self).map(move |audio, act, ctx| {
            if act.wait != Wait::Loading {
                return;
            }
            if audio.is_empty() {
                act.advance(ctx);
            } else {
                act.say(None, audio.into(), barge_in);
            }
        }));
    }
}

/// Speech: listening for one utterance and acting on what was recognised.
impl FlowBot {
    fn in_rate(&self) -> u32 {
        self.leg
            .map(|l| l.in_rate)
            .unwrap_or(crate::media::TELEPHONE_RATE)
    }

    fn keep_recent(&mut self, samples: &[i16]) {
        let cap = crate::media::samples_for_ms(self.in_rate(), RECENT_MS);
        self.recent.extend(samples.iter().copied());
        if self.recent.len() > cap {
            let excess = self.recent.len() - cap;
            self.recent.drain(..excess);
        }
    }

    /// Starts listening (after the action's timer is set). Speech that cut off the prompt
    /// before is heard from its start.
    fn listen(&mut self, options: SpeechOptions, ctx: &mut Context<Self>) {
        self.listening = Some(Listening {
            endpointer: self.services.asr.endpointer(self.in_rate()),
            options,
            decoding: Decoding::Nothing,
            next_token: 0,
            early: None,
        });
        if std::mem::take(&mut self.barged_in) {
            let recent: Vec<i16> = self.recent.iter().copied().collect();
            self.hear(&recent, ctx);
        }
    }

    /// Caller audio while listening.
    fn hear(&mut self, samples: &[i16], ctx: &mut Context<Self>) {
        let Some(l) = self.listening.as_mut() else {
            return;
        };
        if matches!(l.decoding, Decoding::Final(_)) {
            return;
        }
        for event in l.endpointer.push(samples) {
            match event {
                Endpoint::Listening => {}
                // Speech began: wait for it to end rather than for the no-input timer.
                Endpoint::Started => self.cancel_timer(ctx),
                Endpoint::Tentative(utterance) => self.start_recognition(utterance, false, ctx),
                Endpoint::Resumed => {
                    if let Some(l) = self.listening.as_mut() {
                        l.decoding = Decoding::Nothing;
                        l.early = None;
                    }
                }
                Endpoint::Ended(utterance) => {
                    self.cancel_timer(ctx);
                    let Some(l) = self.listening.as_mut() else {
                        return;
                    };
                    match l.decoding {
                        // The tentative utterance is this one: its result, now or when it comes.
                        Decoding::Tentative(token) => {
                            l.decoding = Decoding::Final(token);
                            if let Some((_, result)) = l.early.take().filter(|(t, _)| *t == token) {
                                self.recognized(result, ctx);
                            }
                        }
                        _ => self.start_recognition(utterance, true, ctx),
                    }
                }
            }
        }
    }

    fn start_recognition(&mut self, audio: Vec<i16>, last: bool, ctx: &mut Context<Self>) {
        let Some(l) = self.listening.as_mut() else {
            return;
        };
        l.next_token += 1;
        let token = l.next_token;
        l.early = None;
        l.decoding = if last {
            Decoding::Final(token)
        } else {
            Decoding::Tentative(token)
        };
        let request = Request {
            audio,
            rate: l.endpointer.rate(),
            grammar: Arc::new(Grammar::from(&l.options)),
            language: l.options.language.clone(),
        };
        self.recognize(token, request, ctx);
    }

    /// Recognises one utterance. A tentative utterance's text, when it comes before the end
    /// is confirmed, goes to the call as a partial result (SmartIVR RECOGNIZE).
    fn recognize(&mut self, token: u64, request: Request, ctx: &mut Context<Self>) {
        let asr = self.services.asr.clone();
        let recognizing = async move { asr.recognize(request).await };
        ctx.spawn(recognizing.into_actor(self).map(move |result, act, ctx| {
            let Some(l) = act.listening.as_mut() else {
                return;
            };
            match l.decoding {
                Decoding::Final(t) if t == token => act.recognized(result, ctx),
                Decoding::Tentative(t) if t == token => {
                    if let Ok(r) = &result {
                        if !r.text.is_empty() {
                            act.call.do_send(BotCommand::Heard {
                                text: r.text.clone(),
                                partial: true,
                            });
                        }
                    }
                    l.early = Some((token, result));
                }
                // Withdrawn (the caller spoke again) or superseded.
                _ => {}
            }
        }));
    }

    fn recognized(&mut self, result: Result<Recognition, AsrError>, ctx: &mut Context<Self>) {
        let Some(l) = self.listening.take() else {
            return;
        };
        let variable = l.options.variable;
        match result {
            Ok(recognition) => {
                tracing::info!(call = %self.call_id, text = %recognition.text, "speech recognised");
                self.variables.remove("speech_error");
                match recognition.confidence {
                    Some(c) => self
                        .variables
                        .insert("speech_confidence".into(), format!("{c:.2}")),
                    None => self.variables.remove("speech_confidence"),
                };
                self.call.do_send(BotCommand::Heard {
                    text: recognition.text.clone(),
                    partial: false,
                });
                self.variables.insert(variable, recognition.text);
            }
            Err(e) => {
                tracing::warn!(call = %self.call_id, error = %e, "speech recognition failed; the flow goes on");
                self.variables.insert("speech_error".into(), e.to_string());
                self.variables.remove("speech_confidence");
                self.variables.insert(variable, String::new());
            }
        }
        if matches!(self.wait, Wait::Digits { .. }) {
            self.store_digits(String::new());
        }
        if matches!(self.wait, Wait::Speech | Wait::Digits { .. }) {
            self.advance(ctx);
        }
    }
}

impl FlowBot {
    /// Rings `bots` for a `connect`, once `ring_media` (if any) is loaded for the caller to
    /// hear meanwhile; a ring that cannot be loaded leaves the standard tone.
    fn bridge(
        &mut self,
        targets: Vec<BridgeTarget>,
        ring_media: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let Some(url) = ring_media.filter(|u| !u.trim().is_empty()) else {
            self.wait = Wait::Room;
            self.call.do_send(BotCommand::Bridge {
                targets,
                ring: None,
            });
            return;
        };
        self.wait = Wait::Loading;
        let http = self.services.http.clone();
        let rate = self.out_rate();
        let local_files = self.local_files.clone();
        let loading = async move { source::load(&http, &url, rate, &local_files).await };
        ctx.spawn(loading.into_actor(self).map(move |loaded, act, _ctx| {
            if act.wait != Wait::Loading {
                return;
            }
            let ring = match loaded {
                Ok(samples) if !samples.is_empty() => Some(samples.into()),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(call = %act.call_id, error = %e, "connect: ring_media not loaded; the standard ringback plays");
                    None
                }
            };
            act.wait = Wait::Room;
            act.call.do_send(BotCommand::Bridge { targets, ring });
        }));
    }

    /// The room wants a password: ask the caller for it (keys pressed during the prompt
    /// count).
    fn ask_password(&mut self, ctx: &mut Context<Self>) {
        self.type_ahead.clear();
        let voice = voice_for("en-US", crate::speech::tts::Gender::default());
        self.talk(PASSWORD_PROMPT.to_owned(), voice, false, ctx);
    }

    /// The prompt played: take the keys up to `#`, or wait for them.
    fn collect_password(&mut self, ctx: &mut Context<Self>) {
        if let Some(password) = self.take_password() {
            return self.try_password(password);
        }
        self.wait = Wait::Password;
        self.timer = Some(
            ctx.run_later(Duration::from_millis(PASSWORD_ENTRY_MS), |act, _ctx| {
                act.timer = None;
                let keyed = std::mem::take(&mut act.type_ahead);
                act.try_password(keyed);
            }),
        );
    }

    /// The keys before the first `#`, if one was pressed.
    fn take_password(&mut self) -> Option<String> {
        let end = self.type_ahead.find(PASSWORD_END_KEY)?;
        let password = self.type_ahead[..end].to_owned();
        self.type_ahead.drain(..=end);
        Some(password)
    }

    fn try_password(&mut self, password: String) {
        let Some(join) = &self.joining else { return };
        self.wait = Wait::Room;
        self.call.do_send(BotCommand::JoinRoom {
            room: join.room.clone(),
            password: Some(password),
        });
    }

    /// Asks the webhook for the rest of the flow; holds the caller after `hold_after`.
    fn fetch(&mut self, request: fetch::Request, hold_after: Duration, ctx: &mut Context<Self>) {
        self.wait = Wait::Fetch;
        self.timer = Some(ctx.run_later(hold_after, |act, _| {
            act.timer = None;
            if act.wait == Wait::Fetch {
                act.call.do_send(BotCommand::Hold);
            }
        }));
        let http = self.services.http.clone();
        let record = self.record.clone();
        let variables = self.variables.clone();
        let asking = async move {
            let record = match record {
                Some(r) => r.send(GetRecord).await.ok(),
                None => None,
            };
            fetch::run(&http, &request, record.as_ref(), &variables).await
        };
        ctx.spawn(asking.into_actor(self).map(|reply, act, ctx| {
            if act.wait != Wait::Fetch {
                return;
            }
            act.cancel_timer(ctx);
            match reply {
                Ok(actions) => {
                    tracing::info!(call = %act.call_id, actions = actions.len(), "fetch: continuing with the webhook's actions");
                    act.variables.remove("fetch_error");
                    act.program = Arc::new(FlowProgram::new(actions));
                    act.local_files =
                        source::LocalFiles::under(&act.services.config.media.files_dir);
                    act.pc = 0;
                    act.goto_counts.clear();
                    act.run(ctx);
                }
                Err(e) => {
                    tracing::warn!(call = %act.call_id, error = %e, "fetch failed; the flow goes on");
                    act.variables.insert("fetch_error".into(), e.to_string());
                    act.advance(ctx);
                }
            }
        }));
    }
}

impl Actor for FlowBot {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::call::MAILBOX_CAPACITY);
    }
}

impl Handler<BotEvent> for FlowBot {
    type Result = ();

    fn handle(&mut self, msg: BotEvent, ctx: &mut Context<Self>) {
        match msg {
            BotEvent::Start { call, leg } => {
                if self.wait == Wait::NotStarted {
                    self.leg = Some(leg);
                    self.call_id = call.id.to_string();
                    // What the call is, for `${…}` in actions (`${hotline}`, …).
                    for (name, value) in [
                        ("call_id", self.call_id.clone()),
                        ("reference", call.reference.clone()),
                        ("hotline", call.hotline.clone()),
                        ("workspace", call.workspace.clone()),
                        ("source", call.source.target.clone()),
                        ("destination", call.destination.target.clone()),
                    ] {
                        self.variables.entry(name.to_owned()).or_insert(value);
                    }
                    self.run(ctx);
                }
            }
            BotEvent::Audio(samples) => {
                if self.program.listens {
                    self.keep_recent(&samples);
                }
                if self.listening.is_some() {
                    self.hear(&samples, ctx);
                }
                if self.wait == Wait::Echo {
                    let rate = self
                        .leg
                        .map(|l| l.in_rate)
                        .unwrap_or(crate::media::TELEPHONE_RATE);
                    let _ = self.call.try_send(BotCommand::Stream { samples, rate });
                }
            }
            BotEvent::Rate(rate) => {
                if let Some(leg) = self.leg.as_mut() {
                    leg.in_rate = rate;
                }
                // Audio at the old rate is of no use to the new one.
                self.recent.clear();
                let asr = self.services.asr.clone();
                if let Some(l) = self.listening.as_mut() {
                    if l.endpointer.rate() != rate && !matches!(l.decoding, Decoding::Final(_)) {
                        l.endpointer = asr.endpointer(rate);
                        l.decoding = Decoding::Nothing;
                        l.early = None;
                    }
                }
            }
            BotEvent::Dtmf(digit) => {
                if self.type_ahead.len() >= MAX_TYPE_AHEAD {
                    self.type_ahead.remove(0);
                }
                self.type_ahead.push(digit);
                if let Wait::Digits { length, key } = self.wait.clone() {
                    if let Some(digits) = self.take_digits(length, &key) {
                        self.store_digits(digits);
                        if let Some(l) = &self.listening {
                            // Keys came first: speech is not waited for.
                            let variable = l.options.variable.clone();
                            self.variables.insert(variable, String::new());
                        }
                        self.advance(ctx);
                    }
                } else if self.wait == Wait::Password {
                    if let Some(password) = self.take_password() {
                        self.cancel_timer(ctx);
                        self.try_password(password);
                    }
                }
            }
            BotEvent::PromptDone {
                prompt,
                interrupted,
            } => {
                if self.wait == Wait::Prompt(prompt) {
                    self.barged_in = interrupted;
                    // The only prompt played during a `conference_join` asks for the password.
                    if self.joining.is_some() {
                        self.collect_password(ctx);
                    } else {
                        self.advance(ctx);
                    }
                }
            }
            BotEvent::RoomLeft {
                error,
                wants_password,
            } => {
                if self.wait == Wait::Room {
                    if wants_password {
                        let again = self
                            .joining
                            .as_mut()
                            .filter(|j| j.attempts < PASSWORD_ATTEMPTS);
                        if let Some(join) = again {
                            join.attempts += 1;
                            return self.ask_password(ctx);
                        }
                    }
                    self.joining = None;
                    match error {
                        Some(e) => {
                            tracing::warn!(call = %self.call_id, error = %e, "conference_join or connect failed; the flow goes on");
                            self.variables.insert("conference_error".into(), e);
                        }
                        None => {
                            self.variables.remove("conference_error");
                        }
                    }
                    self.advance(ctx);
                }
            }
            BotEvent::Ended => {
                self.wait = Wait::Done;
                ctx.stop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_substitute() {
        let mut v = HashMap::new();
        v.insert("digits".to_string(), "42".to_string());
        assert_eq!(substitute("You pressed ${digits}.", &v), "You pressed 42.");
        assert_eq!(substitute("${voipbin.call.digits}!", &v), "42!");
        assert_eq!(substitute("${nothing} and ${", &v), " and ${");
    }
}
