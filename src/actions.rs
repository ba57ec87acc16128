//! The flow actions (VoIPBIN-style) as configured, their validation, and a flow compiled
//! once (`FlowProgram`): the schema `config` reads and the flow engine (`bots::flow`) runs.
//! Below both, it imports nothing of the switch but the call's plain types and `media`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::call::state::{Address, HangupReason};
use crate::media::is_dtmf;

fn default_language() -> String {
    "en-US".into()
}
fn default_digits_duration() -> u64 {
    5000
}
fn default_length() -> usize {
    1
}
fn default_variable() -> String {
    "digits".into()
}
fn default_loop_count() -> u32 {
    1
}
fn default_method() -> String {
    "POST".into()
}
fn default_fetch_timeout() -> u64 {
    10_000
}

/// Longest phrase list or grammar text a speech action may carry, in bytes.
pub const MAX_SPEECH_BYTES: usize = 16 * 1024;

fn default_speech_variable() -> String {
    "speech".into()
}

/// What a `speech_receive` (or a `digits_receive` that also takes speech) listens for: one of
/// `phrases`, a JSGF `grammar`, or (neither) free dictation, which only the HTTP engine does
/// well.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechOptions {
    #[serde(default)]
    pub phrases: Vec<String>,
    #[serde(default)]
    pub grammar: Option<String>,
    /// Where the recognised text goes (`${speech}`); its confidence goes to
    /// `${speech_confidence}` and a failure to `${speech_error}`.
    #[serde(default = "default_speech_variable")]
    pub variable: String,
    #[serde(default = "default_language")]
    pub language: String,
}

impl SpeechOptions {
    fn validate(&self) -> Result<(), String> {
        if self.grammar.is_some() && !self.phrases.is_empty() {
            return Err("takes `phrases` or `grammar`, not both".into());
        }
        let size = self.grammar.as_ref().map_or(0, String::len)
            + self.phrases.iter().map(String::len).sum::<usize>();
        if size > MAX_SPEECH_BYTES {
            return Err(format!("phrases/grammar exceed {MAX_SPEECH_BYTES} bytes"));
        }
        let no_words = |p: &String| !p.chars().any(char::is_alphanumeric);
        if let Some(empty) = self.phrases.iter().position(no_words) {
            return Err(format!("phrases[{empty}] has no words"));
        }
        if self.variable.trim().is_empty() {
            return Err("variable is empty".into());
        }
        Ok(())
    }
}

/// The HTTP methods `fetch` may use.
pub const FETCH_METHODS: &[&str] = &["POST", "PUT", "GET"];
fn default_format() -> String {
    "wav".into()
}

/// A `connect` destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// `tel` (a phone number), `sip` (a SIP URI), `agent` or `endpoint`.
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
    #[serde(default)]
    pub target_name: String,
}

impl Destination {
    pub fn to_address(&self) -> Address {
        Address {
            kind: self.kind.clone(),
            target: self.target.clone(),
            target_name: self.target_name.clone(),
            ..Default::default()
        }
    }
}

/// One flow action. Every action may carry an `id` for `goto` and `branch` to target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Answer the call (the call becomes `progressing`).
    Answer {
        #[serde(default)]
        id: Option<String>,
    },
    /// Speak `text`; moves on once the caller has heard it.
    Talk {
        #[serde(default)]
        id: Option<String>,
        text: String,
        #[serde(default = "default_language")]
        language: String,
        #[serde(default)]
        gender: Gender,
        /// Caller speech or a key stops the prompt and the flow moves on.
        #[serde(default)]
        barge_in: bool,
    },
    /// Play WAV files (paths, `file://` or `http://` URLs) one after another. Toward callers
    /// that fetch URLs themselves (Ringover), a list of only http(s) URLs is handed over.
    Play {
        #[serde(default)]
        id: Option<String>,
        stream_urls: Vec<String>,
        /// Caller speech or a key stops the prompt and the flow moves on.
        #[serde(default)]
        barge_in: bool,
    },
    /// Send DTMF keys toward the caller's side (Ringover `digits`).
    DigitsSend {
        #[serde(default)]
        id: Option<String>,
        digits: String,
    },
    /// Send the call's JSON to a webhook and continue with the `actions` it answers
    /// (replacing the rest of the flow). The caller is put on hold while it takes longer than
    /// `hold_after_ms` (default `[media] hold_after_ms`). On any failure the flow goes on with
    /// the next action and `${fetch_error}` says why.
    Fetch {
        #[serde(default)]
        id: Option<String>,
        url: String,
        #[serde(default = "default_method")]
        method: String,
        /// Milliseconds the webhook may take.
        #[serde(default = "default_fetch_timeout")]
        timeout: u64,
        #[serde(default)]
        hold_after_ms: Option<u64>,
    },
    /// Collect up to `length` keys, stopping early at any key in `key`, waiting at most
    /// `duration` ms; the keys go to the variable `digits`.
    DigitsReceive {
        #[serde(default)]
        id: Option<String>,
        #[serde(default = "default_digits_duration")]
        duration: u64,
        #[serde(default = "default_length")]
        length: usize,
        #[serde(default)]
        key: String,
        /// Speech is taken too: whichever comes first, keys or a recognised utterance, ends
        /// the action (`${digits}` is then empty, the text in the speech variable).
        #[serde(default)]
        speech: Option<SpeechOptions>,
    },
    /// Listen for one utterance and put what was recognised in `variable` (`${speech}`).
    /// Silence for `duration` ms leaves it empty (the no-input path for `branch`). When the
    /// prompt before it allowed barge-in, speech that cut the prompt is the utterance.
    SpeechReceive {
        #[serde(default)]
        id: Option<String>,
        #[serde(default = "default_digits_duration")]
        duration: u64,
        #[serde(default)]
        phrases: Vec<String>,
        #[serde(default)]
        grammar: Option<String>,
        #[serde(default = "default_speech_variable")]
        variable: String,
        #[serde(default = "default_language")]
        language: String,
    },
    /// Transcribe the caller's side continuously from now on: `text_asr` lines in the call's
    /// transcript (and on the event streams).
    TranscribeStart {
        #[serde(default)]
        id: Option<String>,
        #[serde(default = "default_language")]
        language: String,
    },
    /// Stop transcribing the caller.
    TranscribeStop {
        #[serde(default)]
        id: Option<String>,
    },
    /// Jump by the value of a variable.
    Branch {
        #[serde(default)]
        id: Option<String>,
        #[serde(default = "default_variable")]
        variable: String,
        #[serde(default)]
        default_target_id: Option<String>,
        #[serde(default)]
        target_ids: BTreeMap<String, String>,
    },
    /// Jump to `target_id`, at most `loop_count` times; then fall through.
    Goto {
        #[serde(default)]
        id: Option<String>,
        target_id: String,
        #[serde(default = "default_loop_count")]
        loop_count: u32,
    },
    /// Connect the caller: `agent` destinations naming configured bots are all rung at once
    /// (chained calls), the first to answer is bridged and the others canceled, while the
    /// caller hears a ringback tone, or `ring_media` (a WAV path or URL, like `play`'s).
    /// Without such a destination the caller is transferred to the first destination.
    Connect {
        #[serde(default)]
        id: Option<String>,
        destinations: Vec<Destination>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ring_media: Option<String>,
    },
    /// Put the caller in the conference room `conference_id` (a room id, or a name in the
    /// call's workspace, created on first use) and go on when the caller leaves it. A room
    /// that cannot be joined leaves `${conference_error}` and the flow goes on at once.
    ConferenceJoin {
        #[serde(default)]
        id: Option<String>,
        conference_id: String,
    },
    /// Play the caller's own audio back for `duration` ms.
    Echo {
        #[serde(default)]
        id: Option<String>,
        duration: u64,
    },
    /// Wait `duration` ms.
    Sleep {
        #[serde(default)]
        id: Option<String>,
        duration: u64,
    },
    /// Start recording the call (caller left, bot right); the flow moves on at once.
    RecordingStart {
        #[serde(default)]
        id: Option<String>,
        #[serde(default = "default_format")]
        format: String,
        /// Longest recording in seconds (0: the built-in limit).
        #[serde(default)]
        duration: u64,
        /// Stop after this many seconds of caller silence (0: never).
        #[serde(default)]
        end_of_silence: u64,
        /// Stop when the caller presses one of these keys.
        #[serde(default)]
        end_of_key: String,
    },
    /// Stop the recording in progress, if any.
    RecordingStop {
        #[serde(default)]
        id: Option<String>,
    },
    /// Hang up, with an optional VoIPBIN reason (`normal` by default).
    Hangup {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        reason: Option<String>,
    },
}

impl Action {
    /// The action's id, if it has one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Action::Answer { id }
            | Action::Talk { id, .. }
            | Action::Play { id, .. }
            | Action::DigitsSend { id, .. }
            | Action::Fetch { id, .. }
            | Action::DigitsReceive { id, .. }
            | Action::SpeechReceive { id, .. }
            | Action::TranscribeStart { id, .. }
            | Action::TranscribeStop { id }
            | Action::Branch { id, .. }
            | Action::Goto { id, .. }
            | Action::Connect { id, .. }
            | Action::Echo { id, .. }
            | Action::ConferenceJoin { id, .. }
            | Action::Sleep { id, .. }
            | Action::RecordingStart { id, .. }
            | Action::RecordingStop { id }
            | Action::Hangup { id, .. } => id.as_deref(),
        }
    }

    /// What a `speech_receive`, or a `digits_receive` that takes speech, listens for.
    pub fn speech_options(&self) -> Option<SpeechOptions> {
        match self {
            Action::SpeechReceive {
                phrases,
                grammar,
                variable,
                language,
                ..
            } => Some(SpeechOptions {
                phrases: phrases.clone(),
                grammar: grammar.clone(),
                variable: variable.clone(),
                language: language.clone(),
            }),
            Action::DigitsReceive { speech, .. } => speech.clone(),
            _ => None,
        }
    }

    /// The recording options of a `recording_start`.
    pub fn recording_options(&self) -> Option<RecordingOptions> {
        match self {
            Action::RecordingStart {
                format,
                duration,
                end_of_silence,
                end_of_key,
                ..
            } => Some(RecordingOptions {
                format: format.clone(),
                duration: *duration,
                end_of_silence: *end_of_silence,
                end_of_key: end_of_key.clone(),
            }),
            _ => None,
        }
    }

    /// The VoIPBIN action JSON shown on the call record: `{id, type, option, tm_execute}`.
    pub fn to_record_json(&self, index: usize) -> serde_json::Value {
        let mut option = serde_json::to_value(self).unwrap_or_default();
        let kind = option
            .as_object_mut()
            .and_then(|o| {
                o.remove("id");
                o.remove("type")
            })
            .unwrap_or_default();
        serde_json::json!({
            "id": self.id().map(str::to_owned).unwrap_or_else(|| format!("#{index}")),
            "type": kind,
            "option": option,
            "tm_execute": chrono::Utc::now().format(crate::call::view::TIME_FORMAT).to_string(),
        })
    }
}

/// The voice a `talk` speaks in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    #[default]
    Female,
    Male,
    Neutral,
}

/// A recording never grows past this, whatever its options say (one hour).
pub const MAX_RECORDING_SECONDS: u64 = 3600;
/// How a recording runs (the `recording_start` options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingOptions {
    /// Only `wav`.
    #[serde(default = "default_format")]
    pub format: String,
    /// Longest recording in seconds; 0 means `MAX_RECORDING_SECONDS`.
    #[serde(default)]
    pub duration: u64,
    /// Stop after this many seconds of caller silence; 0 means never.
    #[serde(default)]
    pub end_of_silence: u64,
    /// Stop when the caller presses one of these keys; empty means never.
    #[serde(default)]
    pub end_of_key: String,
}

impl RecordingOptions {
    /// Checks the options; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != "wav" {
            return Err(format!(
                "format `{}` is not supported (only `wav`)",
                self.format
            ));
        }
        if self.duration > MAX_RECORDING_SECONDS {
            return Err(format!(
                "duration {} is over the limit of {MAX_RECORDING_SECONDS} seconds",
                self.duration
            ));
        }
        if let Some(bad) = self.end_of_key.chars().find(|c| !is_dtmf(*c)) {
            return Err(format!("end_of_key `{bad}` is not a DTMF key"));
        }
        Ok(())
    }
}

/// A flow compiled once at start-up: the actions and where each id points.
#[derive(Debug)]
pub struct FlowProgram {
    pub actions: Vec<Action>,
    index: HashMap<String, usize>,
    /// Some action listens for speech.
    pub listens: bool,
}

impl FlowProgram {
    pub fn new(actions: Vec<Action>) -> Self {
        let index = actions
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.id().map(|id| (id.to_owned(), i)))
            .collect();
        let listens = actions.iter().any(|a| a.speech_options().is_some());
        FlowProgram {
            actions,
            index,
            listens,
        }
    }

    /// The index of the action with id `id`.
    pub fn target(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }
}

/// Checks that ids are unique, jump targets exist, reasons and keys are valid.
pub fn validate(actions: &[Action]) -> Result<(), String> {
    if actions.is_empty() {
        return Err("a flow needs at least one action".into());
    }
    let mut ids = HashSet::new();
    for (i, a) in actions.iter().enumerate() {
        if let Some(id) = a.id() {
            if !ids.insert(id) {
                return Err(format!("[{i}].id `{id}` is used twice"));
            }
        }
    }
    let target = |i: usize, field: &str, t: &str| {
        if ids.contains(t) {
            Ok(())
        } else {
            Err(format!("[{i}].{field} `{t}` names no action"))
        }
    };
    for (i, a) in actions.iter().enumerate() {
        match a {
            Action::Goto { target_id, .. } => target(i, "target_id", target_id)?,
            Action::Branch {
                default_target_id,
                target_ids,
                ..
            } => {
                if let Some(t) = default_target_id {
                    target(i, "default_target_id", t)?;
                }
                for (k, t) in target_ids {
                    target(i, &format!("target_ids.{k}"), t)?;
                }
            }
            Action::Hangup {
                reason: Some(reason),
                ..
            } if HangupReason::parse(reason).is_none() => {
                return Err(format!(
                    "[{i}].reason `{reason}` is not a VoIPBIN hangup reason"
                ));
            }
            Action::Connect { destinations, .. } if destinations.is_empty() => {
                return Err(format!("[{i}].destinations is empty"));
            }
            Action::Connect {
                ring_media: Some(media),
                ..
            } if media.trim().is_empty() => {
                return Err(format!(
                    "[{i}].ring_media is empty (leave it out for the ring tone)"
                ));
            }
            Action::DigitsReceive { key, speech, .. } => {
                if let Some(bad) = key.chars().find(|c| !is_dtmf(*c)) {
                    return Err(format!("[{i}].key `{bad}` is not a DTMF key"));
                }
                if let Some(speech) = speech {
                    speech.validate().map_err(|e| format!("[{i}].speech {e}"))?;
                }
            }
            Action::SpeechReceive { .. } => {
                if let Some(speech) = a.speech_options() {
                    speech.validate().map_err(|e| format!("[{i}] {e}"))?;
                }
            }
            Action::ConferenceJoin { conference_id, .. } if conference_id.trim().is_empty() => {
                return Err(format!("[{i}].conference_id is empty"));
            }
            Action::Play { stream_urls, .. } if stream_urls.is_empty() => {
                return Err(format!("[{i}].stream_urls is empty"));
            }
            Action::DigitsSend { digits, .. } => {
                if digits.is_empty() {
                    return Err(format!("[{i}].digits is empty"));
                }
                if let Some(bad) = digits.chars().find(|c| !is_dtmf(*c)) {
                    return Err(format!("[{i}].digits `{bad}` is not a DTMF key"));
                }
            }
            Action::Fetch { url, method, .. } => {
                if !is_http_url(url) {
                    return Err(format!("[{i}].url `{url}` is not an http(s) URL"));
                }
                if !FETCH_METHODS.contains(&method.to_ascii_uppercase().as_str()) {
                    return Err(format!(
                        "[{i}].method `{method}` is not one of {FETCH_METHODS:?}"
                    ));
                }
            }
            Action::RecordingStart { .. } => {
                if let Some(options) = a.recording_options() {
                    options.validate().map_err(|e| format!("[{i}].{e}"))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `url` is an http(s) URL.
pub fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Vec<Action>, String> {
        #[derive(Deserialize)]
        struct W {
            actions: Vec<Action>,
        }
        let w: W = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        validate(&w.actions)?;
        Ok(w.actions)
    }

    #[test]
    fn actions_parse_with_defaults() {
        let a = parse(
            r#"actions = [{type = "talk", id = "hi", text = "Hello"}, {type = "digits_receive"}]"#,
        )
        .unwrap();
        assert_eq!(
            a[0],
            Action::Talk {
                id: Some("hi".into()),
                text: "Hello".into(),
                language: "en-US".into(),
                gender: Gender::Female,
                barge_in: false,
            }
        );
        assert!(matches!(
            a[1],
            Action::DigitsReceive {
                duration: 5000,
                length: 1,
                ..
            }
        ));
    }

    #[test]
    fn bad_flows_are_refused_with_the_field() {
        for (text, needle) in [
            (
                r#"actions = [{type = "goto", target_id = "nowhere"}]"#,
                "target_id",
            ),
            (
                r#"actions = [{type = "talk", text = "x", colour = "red"}]"#,
                "colour",
            ),
            (r#"actions = [{type = "dance"}]"#, "dance"),
            (
                r#"actions = [{type = "hangup", reason = "bored"}]"#,
                "bored",
            ),
            (
                r#"actions = [{type = "answer", id = "a"}, {type = "answer", id = "a"}]"#,
                "twice",
            ),
            (
                r#"actions = [{type = "digits_receive", key = "x"}]"#,
                "DTMF",
            ),
            (
                r#"actions = [{type = "digits_send", digits = "12x"}]"#,
                "DTMF",
            ),
            (r#"actions = [{type = "fetch", url = "ftp://x"}]"#, "http"),
            (
                r#"actions = [{type = "fetch", url = "http://x", method = "BREW"}]"#,
                "BREW",
            ),
            (
                r#"actions = [{type = "recording_start", format = "mp3"}]"#,
                "mp3",
            ),
            (
                r#"actions = [{type = "connect", ring_media = " ", destinations = [{type = "agent", target = "b"}]}]"#,
                "ring_media",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn record_json_has_voipbin_shape() {
        let a = Action::Sleep {
            id: Some("s".into()),
            duration: 10,
        };
        let j = a.to_record_json(0);
        assert_eq!(j["id"], "s");
        assert_eq!(j["type"], "sleep");
        assert_eq!(j["option"]["duration"], 10);
    }
}
