//! The TOML configuration schema, validated at start-up.
//!
//! Every table refuses unknown keys, so a typo fails at start-up with a message naming the key
//! instead of being silently ignored. With no file, the switch runs on the repository's
//! `config.toml`, compiled in as the built-in defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use thiserror::Error;

use crate::actions::Action;
use crate::media::STANDARD_RATES;

pub mod asr;
pub mod cidr;
pub mod cluster;
pub mod sip;

pub use asr::{AsrConfig, AsrEngineKind};
pub use cidr::Cidr;
pub use cluster::ClusterConfig;
pub use sip::{SipConfig, TrunkConfig};

/// The configuration the binary falls back to when no file is given or found.
pub const BUILTIN: &str = include_str!("../config.toml");

/// Why a configuration cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub grpc: GrpcConfig,
    #[serde(default)]
    pub smartivr: SmartIvrConfig,
    #[serde(default)]
    pub ringover: RingoverConfig,
    #[serde(default)]
    pub twilio: TwilioConfig,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub rooms: RoomsConfig,
    #[serde(default)]
    pub tts: TtsConfig,
    #[serde(default)]
    pub asr: AsrConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub live_call: LiveCallConfig,
    /// Bots by name.
    #[serde(default)]
    pub bots: BTreeMap<String, BotConfig>,
    /// Ordered routes: the first that matches a new call picks its bot.
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub recordings: RecordingsConfig,
    /// SIP callers and trunks (`[sip]`); off unless `sip.listen` is set.
    #[serde(default)]
    pub sip: SipConfig,
    /// Cluster mode: control between switches over NATS (`config::cluster`).
    #[serde(default)]
    pub cluster: ClusterConfig,
}

/// Process-wide limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Calls admitted at once; further calls are refused (gRPC RESOURCE_EXHAUSTED, HTTP 503).
    pub max_calls: usize,
    /// Call arbiters (threads running call actors); 0 means one per CPU core.
    pub arbiters: usize,
    /// Ended calls kept in memory for the REST API, oldest forgotten first.
    pub keep_ended_calls: usize,
    /// On SIGTERM/SIGINT, how long live calls may go on before the switch hangs them up.
    pub drain_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_calls: 10_000,
            arbiters: 0,
            keep_ended_calls: 10_000,
            drain_seconds: 10,
        }
    }
}

/// The HTTP listener: REST API and WebSockets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where the REST API, the live-call WebSocket and the Ringover and Twilio WebSockets
    /// listen. Loopback by default; on any other address each of them needs an access rule
    /// (`[auth]`, `[ringover]`, `[twilio]`) or to be marked open on purpose. A host name (`localhost:8080`) is
    /// resolved at start-up to its first address.
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// A request body must arrive whole within this many milliseconds of its head, else the
    /// request is answered 408 and the connection closed: a client trickling a body cannot
    /// hold a connection and a worker's attention forever.
    pub body_timeout_ms: u64,
    /// A PEM certificate chain: with `tls_key`, the listener serves HTTPS and wss:// only.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".parse().expect("constant address"),
            body_timeout_ms: 10_000,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl HttpConfig {
    /// The listener's TLS settings.
    pub fn tls(&self) -> crate::tls::Settings<'_> {
        crate::tls::Settings {
            cert_key: "http.tls_cert",
            cert: self.tls_cert.as_deref(),
            key_key: "http.tls_key",
            key: self.tls_key.as_deref(),
        }
    }
}

/// The gRPC listener: SmartIVR and live_call services, and who may use them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Where SmartIVR phone gateways and live_call gateways connect. Loopback by default; on
    /// any other address `tokens` or `allow_from` must be set, or `allow_unauthenticated`.
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// Tokens gateways send as `authorization: Bearer TOKEN` metadata. A token bound to a
    /// workspace creates calls only in it.
    pub tokens: Vec<Token>,
    /// Networks (CIDR, IPv4 or IPv6) whose gateways are admitted without a token, for
    /// gateways that cannot send metadata (FreeSWITCH modules).
    pub allow_from: Vec<String>,
    /// Admits every peer on a non-loopback `listen` without tokens or networks, on purpose.
    pub allow_unauthenticated: bool,
    /// A PEM certificate chain: with `tls_key`, the listener serves gRPC over TLS only.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            listen: "127.0.0.1:50051".parse().expect("constant address"),
            tokens: Vec::new(),
            allow_from: Vec::new(),
            allow_unauthenticated: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl GrpcConfig {
    /// The listener's TLS settings.
    pub fn tls(&self) -> crate::tls::Settings<'_> {
        crate::tls::Settings {
            cert_key: "grpc.tls_cert",
            cert: self.tls_cert.as_deref(),
            key_key: "grpc.tls_key",
            key: self.tls_key.as_deref(),
        }
    }
}

/// How bot audio is packed into SmartIVR RESULT_TTS responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtsAudio {
    /// A WAV file (44-byte header, 8 kHz mono 16-bit), as the protocol documents.
    #[default]
    Wav,
    /// Raw s16le 8 kHz, for gateways that add their own header.
    Pcm,
}

/// SmartIVR gateway settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmartIvrConfig {
    /// How bot audio is packed into RESULT_TTS responses.
    pub tts_audio: TtsAudio,
}

/// Conference rooms (`/api/v1/calls/rooms`, the flow's `conference_join`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// The rate rooms mix at; a participant whose call runs at another rate is resampled once,
    /// at its call.
    pub sample_rate: u32,
    /// A temporary room left empty this long closes (persistent rooms stay).
    pub empty_timeout_ms: u64,
    /// Rooms open at once; creating one more answers 503.
    pub max_rooms: usize,
    /// The largest `max_participants` a room may ask for (and the default when it asks none).
    pub max_participants: u32,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            sample_rate: 16_000,
            empty_timeout_ms: 300_000,
            max_rooms: 1000,
            max_participants: 50,
        }
    }
}

/// Media timing shared by every call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Streamed bot audio toward callers that play whole utterances is gathered until this
    /// much silence from the bot closes the utterance.
    pub utterance_gap_ms: u64,
    /// How long a call waits for its caller's side to close after the switch hangs up.
    pub leg_close_grace_ms: u64,
    /// Unsent bot audio a call (and a streaming socket) holds for a slow caller; past it the
    /// oldest audio is dropped and counted.
    pub max_buffered_ms: u32,
    /// A caller's side that accepts nothing for this long is hung up (`failed`, with why).
    pub write_timeout_ms: u64,
    /// A caller leg that sends no audio for this long is hung up with `timeout`; 0 disables.
    pub media_timeout_ms: u64,
    /// The longest a call may last, in seconds, before it is hung up with `timeout`; 0 means
    /// no limit.
    pub max_call_duration: u64,
    /// A flow `fetch` that takes longer than this puts the caller on hold.
    pub hold_after_ms: u64,
    /// A WAV file played as hold music toward callers without their own; empty means a
    /// built-in generated tone.
    pub hold_music: String,
    /// The folder a webhook's `play` actions may name local files in (paths resolved, `..`
    /// and links outside it refused); empty means a webhook may name no local file.
    /// Flows in the configuration may play any file.
    pub files_dir: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            utterance_gap_ms: 300,
            leg_close_grace_ms: 2000,
            max_buffered_ms: 2000,
            write_timeout_ms: 10_000,
            media_timeout_ms: 30_000,
            max_call_duration: 3600,
            hold_after_ms: 1000,
            hold_music: String::new(),
            files_dir: String::new(),
        }
    }
}

/// The rates a Ringover media server takes bot audio at.
pub const RINGOVER_OUT_RATES: &[u32] = &[8000, 16000, 24000];

/// The Ringover streamer WebSocket (`/ringover/stream` on the HTTP listener).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingoverConfig {
    /// When not empty, a connection's `?token=` must equal one of these (else HTTP 401),
    /// unless it comes from one of `allow_from`.
    pub tokens: Vec<String>,
    /// Networks (CIDR) whose media servers are admitted without a token (else HTTP 403).
    pub allow_from: Vec<String>,
    /// Admits every peer on a non-loopback `[http] listen` without tokens or networks, on
    /// purpose.
    pub allow_unauthenticated: bool,
    /// Rate of the raw L16 caller audio the media server sends.
    pub sample_rate: u32,
    /// Caller audio comes as RTP packets (12-byte header, PT 0 PCMU or 8 PCMA, 8 kHz)
    /// instead of raw L16.
    pub rtp: bool,
    /// Rate of the bot audio sent in `streamAudio` (8000, 16000 or 24000).
    pub out_sample_rate: u32,
}

impl Default for RingoverConfig {
    fn default() -> Self {
        RingoverConfig {
            tokens: Vec::new(),
            allow_from: Vec::new(),
            allow_unauthenticated: false,
            sample_rate: 8000,
            rtp: false,
            out_sample_rate: 8000,
        }
    }
}

/// The Twilio Media Streams WebSocket (`/twilio/stream` on the HTTP listener).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioConfig {
    /// When not empty, a connection's `?token=` (or the `token` custom parameter of its
    /// `start` message) must equal one of these, unless it comes from one of `allow_from`.
    pub tokens: Vec<Token>,
    /// Networks (CIDR) whose peers are admitted without a token (else HTTP 403).
    pub allow_from: Vec<String>,
    /// Admits every peer on a non-loopback `[http] listen` without tokens or networks, on
    /// purpose.
    pub allow_unauthenticated: bool,
    /// The Twilio account's auth token: when set, every upgrade must carry a valid
    /// `X-Twilio-Signature` (HTTP 403 otherwise), on top of the rule above.
    pub auth_token: Option<String>,
}

/// Text to speech.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TtsConfig {
    /// The espeak-ng program (name on PATH or a path).
    pub command: String,
    /// Rendered prompts kept in memory, by text, voice and rate.
    pub cache_entries: usize,
}

impl Default for TtsConfig {
    fn default() -> Self {
        TtsConfig {
            command: "espeak-ng".into(),
            cache_entries: 512,
        }
    }
}

/// The switch as a live_call AI service (gRPC `live_call.LiveCall`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveCallConfig {
    /// Rate of the bot audio the switch sends in `audio_output` (gateways expect 24000).
    pub out_sample_rate: u32,
}

impl Default for LiveCallConfig {
    fn default() -> Self {
        LiveCallConfig {
            out_sample_rate: 24000,
        }
    }
}

/// Where call records, events, recordings' metadata and transcripts are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (the file and its folder are created) or `postgres://…`.
    pub url: String,
    /// The file holding this switch's instance id, the owner of the calls it writes; created
    /// on first start so a restart finds the calls a crash left open.
    pub instance_file: String,
    /// Writes kept queued while the database is unreachable; beyond this the oldest are dropped.
    pub max_queued: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://./data/switchboard.db".into(),
            instance_file: "./data/instance_id".into(),
            max_queued: 100_000,
        }
    }
}

fn default_bot_in_rate() -> u32 {
    16000
}
fn default_bot_timeout_ms() -> u64 {
    10_000
}
fn default_connect_timeout_ms() -> u64 {
    1500
}
fn default_streams_per_connection() -> usize {
    100
}
fn default_bot_frame_ms() -> u32 {
    20
}
/// The most calls one HTTP/2 connection to a bot may carry.
const MAX_STREAMS_PER_CONNECTION: usize = 10_000;
/// The longest `play_audio` chunk the switch gathers toward a live_call bot.
const MAX_BOT_FRAME_MS: u32 = 200;

/// Call recordings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingsConfig {
    /// The folder recordings are written to (created when needed).
    pub dir: String,
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        RecordingsConfig {
            dir: "./data/recordings".into(),
        }
    }
}

/// Who may use the REST API and the live-call WebSocket.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Keys for the REST and Calls APIs (`Authorization: Bearer KEY`).
    pub api_keys: Vec<ApiKey>,
    /// Networks (CIDR) whose clients may use the REST and Calls APIs without a key.
    pub api_allow_from: Vec<String>,
    /// Leaves the REST and Calls APIs open to every peer on a non-loopback `[http] listen`,
    /// on purpose.
    pub api_allow_unauthenticated: bool,
    /// Tokens accepted on the live-call WebSocket (`?token=`). A token bound to a workspace
    /// creates calls only in it.
    pub live_call_tokens: Vec<Token>,
    /// Networks (CIDR) whose live-call clients are admitted without a token.
    pub live_call_allow_from: Vec<String>,
    /// Leaves the live-call WebSocket open to every peer on a non-loopback `[http] listen`,
    /// on purpose.
    pub live_call_allow_unauthenticated: bool,
}

/// One API key, optionally limited to one workspace's calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The secret sent as `Authorization: Bearer KEY`.
    pub key: String,
    /// The only workspace whose calls this key sees; absent sees every call.
    #[serde(default)]
    pub workspace: Option<String>,
}

/// A token an ingress accepts, optionally bound to one workspace. Written as `"TOKEN"` or
/// `{ token = "TOKEN", workspace = "a" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The secret itself.
    pub token: String,
    /// The only workspace its holder may create calls in; `None` for any.
    pub workspace: Option<String>,
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Token, D::Error> {
        /// The table form; unknown keys are refused like everywhere else.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            token: String,
            #[serde(default)]
            workspace: Option<String>,
        }

        struct TokenVisitor;

        impl<'de> Visitor<'de> for TokenVisitor {
            type Value = Token;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a token string or { token = "…", workspace = "…" }"#)
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Token, E> {
                Ok(Token {
                    token: v.to_owned(),
                    workspace: None,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Token, A::Error> {
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Token {
                    token: t.token,
                    workspace: t.workspace,
                })
            }
        }

        deserializer.deserialize_any(TokenVisitor)
    }
}

/// The ingresses that need an access rule when their listener is not on loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// The REST API, the Calls API and the event streams.
    Api,
    /// The live-call WebSocket.
    LiveCallWs,
    /// The Ringover streamer WebSocket.
    Ringover,
    /// The Twilio Media Streams WebSocket.
    Twilio,
    /// The gRPC listener (SmartIVR `CallToBot` and `live_call.LiveCall`).
    Grpc,
}

impl Ingress {
    /// Every guarded ingress.
    pub const ALL: [Ingress; 5] = [
        Ingress::Api,
        Ingress::LiveCallWs,
        Ingress::Ringover,
        Ingress::Twilio,
        Ingress::Grpc,
    ];
}

/// One ingress's access settings as configured, with the names of their keys for messages.
#[derive(Debug, Clone)]
pub struct IngressAccess<'c> {
    /// What the ingress is, for messages ("the live-call WebSocket").
    pub name: &'static str,
    /// The listener it is served on.
    pub listen: SocketAddr,
    /// The listener's key ("http.listen").
    pub listen_key: &'static str,
    /// Its tokens (API keys for the REST API).
    pub tokens: Vec<Token>,
    /// The tokens' key ("auth.live_call_tokens").
    pub tokens_key: &'static str,
    /// Its networks, as CIDR text.
    pub allow_from: &'c [String],
    /// The networks' key ("auth.live_call_allow_from").
    pub allow_from_key: &'static str,
    /// Whether it admits everyone on purpose when it has no rule.
    pub allow_unauthenticated: bool,
    /// That setting's key ("auth.live_call_allow_unauthenticated").
    pub open_key: &'static str,
}

impl IngressAccess<'_> {
    /// Whether neither tokens nor networks are configured.
    pub fn has_no_rule(&self) -> bool {
        self.tokens.is_empty() && self.allow_from.is_empty()
    }

    /// Whether its listener answers only this host.
    pub fn on_loopback(&self) -> bool {
        self.listen.ip().is_loopback()
    }

    /// The networks, parsed; an error names the entry.
    pub fn networks(&self) -> Result<Vec<Cidr>, ConfigError> {
        self.allow_from
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse().map_err(|e| {
                    ConfigError::Invalid(format!("{}[{i}] `{text}`: {e}", self.allow_from_key))
                })
            })
            .collect()
    }

    /// Checks the settings on their own and against the listener: a non-loopback listener
    /// needs a rule unless the ingress is open on purpose. `Ok(Some(problem))` names what is
    /// missing, so every ingress can be reported at once.
    fn check(&self) -> Result<Option<String>, ConfigError> {
        for (i, t) in self.tokens.iter().enumerate() {
            if t.token.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{}[{i}] is an empty token",
                    self.tokens_key
                )));
            }
            if t.workspace.as_deref() == Some("") {
                return Err(ConfigError::Invalid(format!(
                    "{}[{i}].workspace is empty; leave it out for a token valid in every workspace",
                    self.tokens_key
                )));
            }
        }
        self.networks()?;
        if self.allow_unauthenticated && !self.has_no_rule() {
            return Err(ConfigError::Invalid(format!(
                "{} = true contradicts {} / {}, which are set: remove one or the other",
                self.open_key, self.tokens_key, self.allow_from_key
            )));
        }
        if self.has_no_rule() && !self.allow_unauthenticated && !self.on_loopback() {
            return Ok(Some(format!(
                "{} has no access rule: set {} or {}, or {} = true to leave it open on purpose",
                self.name, self.tokens_key, self.allow_from_key, self.open_key
            )));
        }
        Ok(None)
    }
}

/// A bot a call can be routed to.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BotConfig {
    /// The embedded flow engine running VoIPBIN-style actions.
    Flow { actions: Vec<Action> },
    /// An external AI service speaking `live_call.LiveCall/StreamCall` (the switch is the client).
    LiveCall {
        /// `http://host:port` of the AI service.
        url: String,
        /// Rate of the caller audio sent as `play_audio`.
        #[serde(default = "default_bot_in_rate")]
        sample_rate: u32,
        /// Caller audio is sent in `play_audio` chunks of this many milliseconds (20 to 200,
        /// a multiple of 20): 20 as gateways do; longer chunks cost the switch fewer messages
        /// and the bot that much more latency.
        #[serde(default = "default_bot_frame_ms")]
        frame_ms: u32,
        /// A bot that does not answer HTTP/2 pings for this long has failed.
        #[serde(default = "default_bot_timeout_ms")]
        bot_timeout_ms: u64,
        /// A bot that cannot be connected within this time has failed.
        #[serde(default = "default_connect_timeout_ms")]
        connect_timeout_ms: u64,
        /// Calls one HTTP/2 connection carries (1: a connection per call).
        #[serde(default = "default_streams_per_connection")]
        streams_per_connection: usize,
    },
    /// An upstream SmartIVR callbot (the switch plays the phone gateway).
    Smartivr {
        /// `http://host:port` of the callbot.
        url: String,
        /// A bot that does not answer HTTP/2 pings for this long has failed.
        #[serde(default = "default_bot_timeout_ms")]
        bot_timeout_ms: u64,
        /// A bot that cannot be connected within this time has failed.
        #[serde(default = "default_connect_timeout_ms")]
        connect_timeout_ms: u64,
        /// Calls one HTTP/2 connection carries (1: a connection per call).
        #[serde(default = "default_streams_per_connection")]
        streams_per_connection: usize,
    },
    /// A bot speaking Twilio Media Streams over a WebSocket (the switch plays Twilio).
    TwilioStream {
        /// `ws://host:port/path` or `wss://…` of the bot.
        url: String,
        /// Sent in `start.customParameters`, beside the call's from/to/workspace/hotline/ingress.
        #[serde(default)]
        custom_parameters: BTreeMap<String, String>,
        /// HTTP headers of the WebSocket upgrade request (an `Authorization`, for one).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// A bot that answers no WebSocket ping for this long has failed.
        #[serde(default = "default_bot_timeout_ms")]
        bot_timeout_ms: u64,
        /// A bot that cannot be connected within this time has failed.
        #[serde(default = "default_connect_timeout_ms")]
        connect_timeout_ms: u64,
    },
}

/// One routing rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub bot: String,
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
}

/// What a route matches on; an absent field matches anything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    pub ingress: Option<String>,
    pub hotline: Option<String>,
    pub workspace: Option<String>,
    /// The host of the caller's SIP From URI (SIP calls only; other calls never match it).
    pub from_host: Option<String>,
}

impl RouteMatch {
    fn accepts(&self, ingress: &str, hotline: &str, workspace: &str, from_host: &str) -> bool {
        let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        ok(&self.ingress, ingress)
            && ok(&self.hotline, hotline)
            && ok(&self.workspace, workspace)
            && self
                .from_host
                .as_deref()
                .is_none_or(|w| w.eq_ignore_ascii_case(from_host))
    }
}

/// The ingress names routes can match on.
pub const INGRESSES: &[&str] = &[
    "smartivr",
    "live_call_ws",
    "live_call_grpc",
    "ringover",
    "twilio",
    "api",
    "sip",
];

impl Config {
    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `path`, or `./config.toml` when present, or the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match Config::chosen(path) {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Config::from_toml(&text)
            }
            None => Config::builtin(),
        }
    }

    /// The file `load` reads for `path`: `path` itself, else `./config.toml` when present,
    /// else none (the built-in defaults).
    pub fn chosen(path: Option<&Path>) -> Option<&Path> {
        let default = Path::new("config.toml");
        match path {
            Some(p) => Some(p),
            None if default.exists() => Some(default),
            None => None,
        }
    }

    /// What `load` reads for `path`, for messages: the file, or "the built-in defaults".
    pub fn source(path: Option<&Path>) -> String {
        Config::chosen(path).map_or_else(
            || "the built-in defaults".to_owned(),
            |p| p.display().to_string(),
        )
    }

    /// The ingresses no route can match: every call they bring would be refused ("no route
    /// matches"). A file that sets only listeners replaces the built-in routes, so this is
    /// worth a warning, not an error (an ingress may be unused on purpose).
    pub fn unrouted_ingresses(&self) -> Vec<&'static str> {
        INGRESSES
            .iter()
            .copied()
            .filter(|ingress| {
                !self
                    .routes
                    .iter()
                    .any(|r| r.matches.ingress.as_deref().is_none_or(|i| i == *ingress))
            })
            .collect()
    }

    /// The built-in defaults.
    pub fn builtin() -> Result<Config, ConfigError> {
        Config::from_toml(BUILTIN)
    }

    /// The access settings of one ingress.
    pub fn access(&self, ingress: Ingress) -> IngressAccess<'_> {
        match ingress {
            Ingress::Api => IngressAccess {
                name: "the REST API",
                listen: self.http.listen,
                listen_key: "http.listen",
                tokens: self
                    .auth
                    .api_keys
                    .iter()
                    .map(|k| Token {
                        token: k.key.clone(),
                        workspace: k.workspace.clone(),
                    })
                    .collect(),
                tokens_key: "auth.api_keys",
                allow_from: &self.auth.api_allow_from,
                allow_from_key: "auth.api_allow_from",
                allow_unauthenticated: self.auth.api_allow_unauthenticated,
                open_key: "auth.api_allow_unauthenticated",
            },
            Ingress::LiveCallWs => IngressAccess {
                name: "the live-call WebSocket",
                listen: self.http.listen,
                listen_key: "http.listen",
                tokens: self.auth.live_call_tokens.clone(),
                tokens_key: "auth.live_call_tokens",
                allow_from: &self.auth.live_call_allow_from,
                allow_from_key: "auth.live_call_allow_from",
                allow_unauthenticated: self.auth.live_call_allow_unauthenticated,
                open_key: "auth.live_call_allow_unauthenticated",
            },
            Ingress::Ringover => IngressAccess {
                name: "the Ringover WebSocket",
                listen: self.http.listen,
                listen_key: "http.listen",
                tokens: self
                    .ringover
                    .tokens
                    .iter()
                    .map(|t| Token {
                        token: t.clone(),
                        workspace: None,
                    })
                    .collect(),
                tokens_key: "ringover.tokens",
                allow_from: &self.ringover.allow_from,
                allow_from_key: "ringover.allow_from",
                allow_unauthenticated: self.ringover.allow_unauthenticated,
                open_key: "ringover.allow_unauthenticated",
            },
            Ingress::Twilio => IngressAccess {
                name: "the Twilio WebSocket",
                listen: self.http.listen,
                listen_key: "http.listen",
                tokens: self.twilio.tokens.clone(),
                tokens_key: "twilio.tokens",
                allow_from: &self.twilio.allow_from,
                allow_from_key: "twilio.allow_from",
                allow_unauthenticated: self.twilio.allow_unauthenticated,
                open_key: "twilio.allow_unauthenticated",
            },
            Ingress::Grpc => IngressAccess {
                name: "the gRPC listener (SmartIVR and live_call)",
                listen: self.grpc.listen,
                listen_key: "grpc.listen",
                tokens: self.grpc.tokens.clone(),
                tokens_key: "grpc.tokens",
                allow_from: &self.grpc.allow_from,
                allow_from_key: "grpc.allow_from",
                allow_unauthenticated: self.grpc.allow_unauthenticated,
                open_key: "grpc.allow_unauthenticated",
            },
        }
    }

    /// Every ingress's access settings are sound, and every ingress on a non-loopback
    /// listener has a rule or is open on purpose; the error names each setting to set.
    fn validate_access(&self) -> Result<(), ConfigError> {
        let mut missing: Vec<(String, String)> = Vec::new();
        for ingress in Ingress::ALL {
            let access = self.access(ingress);
            if let Some(problem) = access.check()? {
                let listener = format!("{} = {}", access.listen_key, access.listen);
                missing.push((listener, problem));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut message = String::new();
        for (listener, problem) in &missing {
            message.push_str(&format!(
                "\n  {listener} is not a loopback address and {problem}"
            ));
        }
        Err(ConfigError::Invalid(format!(
            "a listener open beyond this host needs an access rule for each ingress:{message}"
        )))
    }

    /// The bot for a new call: the first route that matches.
    pub fn route(&self, ingress: &str, hotline: &str, workspace: &str) -> Option<&str> {
        self.route_from(ingress, hotline, workspace, "")
    }

    /// `route`, for a caller whose SIP From URI has host `from_host` (empty: not SIP).
    pub fn route_from(
        &self,
        ingress: &str,
        hotline: &str,
        workspace: &str,
        from_host: &str,
    ) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| r.matches.accepts(ingress, hotline, workspace, from_host))
            .map(|r| r.bot.as_str())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.server.max_calls == 0 {
            return invalid("server.max_calls must be at least 1".into());
        }
        self.asr.validate().map_err(ConfigError::Invalid)?;
        self.sip.validate().map_err(ConfigError::Invalid)?;
        // Certificates are read here too, so `check-config` and start-up name a bad file.
        for tls in [self.http.tls(), self.grpc.tls()] {
            if let Err(e) = tls.load() {
                return invalid(e.to_string());
            }
        }
        if !RINGOVER_OUT_RATES.contains(&self.ringover.out_sample_rate) {
            return invalid(format!(
                "ringover.out_sample_rate {} is not one of {RINGOVER_OUT_RATES:?}",
                self.ringover.out_sample_rate
            ));
        }
        if !(crate::media::MIN_RATE..=crate::media::MAX_RATE).contains(&self.ringover.sample_rate) {
            return invalid(format!(
                "ringover.sample_rate {} is outside {}..={}",
                self.ringover.sample_rate,
                crate::media::MIN_RATE,
                crate::media::MAX_RATE
            ));
        }
        if !(crate::media::MIN_RATE..=crate::media::MAX_RATE).contains(&self.rooms.sample_rate) {
            return invalid(format!(
                "rooms.sample_rate {} is outside {}..={}",
                self.rooms.sample_rate,
                crate::media::MIN_RATE,
                crate::media::MAX_RATE
            ));
        }
        if self.rooms.max_participants == 0 {
            return invalid("rooms.max_participants must be at least 1".into());
        }
        if self.media.write_timeout_ms == 0 {
            return invalid("media.write_timeout_ms must be at least 1".into());
        }
        if self.http.body_timeout_ms == 0 {
            return invalid("http.body_timeout_ms must be at least 1".into());
        }
        if !self.media.files_dir.is_empty() && !Path::new(&self.media.files_dir).is_dir() {
            return invalid(format!(
                "media.files_dir `{}` is not a folder",
                self.media.files_dir
            ));
        }
        if !self.media.hold_music.is_empty() {
            crate::media::hold::load(&self.media.hold_music, crate::media::TELEPHONE_RATE)
                .map_err(|e| ConfigError::Invalid(format!("media.hold_music: {e}")))?;
        }
        if !(self.store.url.starts_with("sqlite:") || self.store.url.starts_with("postgres")) {
            return invalid(format!(
                "store.url `{}` must start with sqlite: or postgres://",
                self.store.url
            ));
        }
        if let Some(i) = self.auth.api_keys.iter().position(|k| k.key.is_empty()) {
            return invalid(format!("auth.api_keys[{i}].key is empty"));
        }
        self.validate_access()?;
        self.cluster
            .validate(&self.store.url)
            .map_err(ConfigError::Invalid)?;
        for (i, route) in self.routes.iter().enumerate() {
            if !self.bots.contains_key(&route.bot) {
                return invalid(format!(
                    "routes[{i}].bot names `{}`, which is not under [bots]",
                    route.bot
                ));
            }
            if let Some(ingress) = &route.matches.ingress {
                if !INGRESSES.contains(&ingress.as_str()) {
                    return invalid(format!(
                        "routes[{i}].match.ingress `{ingress}` is not one of {INGRESSES:?}"
                    ));
                }
            }
        }
        if !STANDARD_RATES.contains(&self.live_call.out_sample_rate) {
            return invalid(format!(
                "live_call.out_sample_rate {} is not one of 8000, 16000, 24000, 48000",
                self.live_call.out_sample_rate
            ));
        }
        for (name, bot) in &self.bots {
            match bot {
                BotConfig::Flow { actions } => {
                    crate::actions::validate(actions)
                        .map_err(|e| ConfigError::Invalid(format!("bots.{name}.actions: {e}")))?;
                }
                BotConfig::LiveCall {
                    url,
                    sample_rate,
                    frame_ms,
                    streams_per_connection,
                    ..
                } => {
                    check_url(name, url)?;
                    check_streams(name, *streams_per_connection)?;
                    if !STANDARD_RATES.contains(sample_rate) {
                        return invalid(format!(
                            "bots.{name}.sample_rate {sample_rate} is not one of 8000, 16000, 24000, 48000"
                        ));
                    }
                    if *frame_ms == 0 || *frame_ms > MAX_BOT_FRAME_MS || frame_ms % 20 != 0 {
                        return invalid(format!(
                            "bots.{name}.frame_ms {frame_ms} must be a multiple of 20 from 20 to {MAX_BOT_FRAME_MS}"
                        ));
                    }
                }
                BotConfig::Smartivr {
                    url,
                    streams_per_connection,
                    ..
                } => {
                    check_url(name, url)?;
                    check_streams(name, *streams_per_connection)?;
                }
                BotConfig::TwilioStream { url, headers, .. } => {
                    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                        return invalid(format!(
                            "bots.{name}.url `{url}` must start with ws:// or wss://"
                        ));
                    }
                    if let Err(e) = url.parse::<tokio_tungstenite::tungstenite::http::Uri>() {
                        return invalid(format!("bots.{name}.url `{url}`: {e}"));
                    }
                    for (header, value) in headers {
                        if tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(
                            header.as_bytes(),
                        )
                        .is_err()
                            || tokio_tungstenite::tungstenite::http::HeaderValue::from_str(value)
                                .is_err()
                        {
                            return invalid(format!(
                                "bots.{name}.headers.{header} is not a valid HTTP header"
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A listen address: `IP:PORT`, or `HOST:PORT` resolved to the host's first address.
fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    use std::net::ToSocketAddrs;
    let text = String::deserialize(d)?;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not HOST:PORT or IP:PORT: {e}"))
        })?
        .next()
        .ok_or_else(|| serde::de::Error::custom(format!("`{text}` resolves to no address")))
}

fn check_url(bot: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "bots.{bot}.url `{url}` must start with http:// or https://"
        )))
    }
}

fn check_streams(bot: &str, streams: usize) -> Result<(), ConfigError> {
    if (1..=MAX_STREAMS_PER_CONNECTION).contains(&streams) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "bots.{bot}.streams_per_connection {streams} must be from 1 to {MAX_STREAMS_PER_CONNECTION}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_config_is_valid() {
        let c = Config::builtin().unwrap();
        assert!(c.route("smartivr", "", "").is_some());
        assert_eq!(c.smartivr.tts_audio, TtsAudio::Wav);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[http]\nlisen = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        let err = Config::from_toml("[bogus]\n").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::from_toml("[smartivr]\ntts_audio = \"mp3\"\n").unwrap_err();
        assert!(err.to_string().contains("mp3"), "{err}");
        let err = Config::from_toml("[[routes]]\nbot = \"nobody\"\n").unwrap_err();
        assert!(err.to_string().contains("routes[0].bot"), "{err}");
        let err = Config::from_toml("[http]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
        let err = Config::from_toml("[ringover]\nout_sample_rate = 11025\n").unwrap_err();
        assert!(err.to_string().contains("out_sample_rate"), "{err}");
        let err = Config::from_toml("[media]\nhold_music = \"/no/such.wav\"\n").unwrap_err();
        assert!(err.to_string().contains("hold_music"), "{err}");
        let err = Config::from_toml("[media]\nfiles_dir = \"/no/such/dir\"\n").unwrap_err();
        assert!(err.to_string().contains("files_dir"), "{err}");
        let err = Config::from_toml("[http]\nbody_timeout_ms = 0\n").unwrap_err();
        assert!(err.to_string().contains("body_timeout_ms"), "{err}");
        let err = Config::from_toml("[ringover]\ntoken = [\"x\"]\n").unwrap_err();
        assert!(err.to_string().contains("token"), "{err}");
        let bot = |extra: &str| {
            Config::from_toml(&format!(
                "[bots.b]\nkind = \"live_call\"\nurl = \"http://127.0.0.1:1\"\n{extra}"
            ))
        };
        for extra in ["frame_ms = 30", "frame_ms = 0", "frame_ms = 220"] {
            let err = bot(extra).unwrap_err();
            assert!(err.to_string().contains("bots.b.frame_ms"), "{err}");
        }
        let err = bot("streams_per_connection = 0").unwrap_err();
        assert!(err.to_string().contains("streams_per_connection"), "{err}");
        assert!(bot("frame_ms = 100\nstreams_per_connection = 1").is_ok());
    }

    /// Every ingress on `http`/`grpc` listeners, plus `extra`.
    fn listening(http: &str, grpc: &str, extra: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!(
            "[http]\nlisten = \"{http}\"\n[grpc]\nlisten = \"{grpc}\"\n{extra}"
        ))
    }

    #[test]
    fn defaults_listen_on_loopback_only() {
        let c = Config::builtin().unwrap();
        assert!(c.http.listen.ip().is_loopback(), "{}", c.http.listen);
        assert!(c.grpc.listen.ip().is_loopback(), "{}", c.grpc.listen);
        assert!(HttpConfig::default().listen.ip().is_loopback());
        assert!(GrpcConfig::default().listen.ip().is_loopback());
        for ingress in Ingress::ALL {
            let access = c.access(ingress);
            assert!(
                access.has_no_rule() && !access.allow_unauthenticated,
                "{ingress:?}"
            );
        }
        // Loopback without rules is fine, over IPv6 too.
        listening("127.0.0.1:0", "[::1]:0", "").unwrap();
    }

    #[test]
    fn a_public_listener_without_rules_refuses_naming_each_setting() {
        let err = listening("0.0.0.0:8080", "127.0.0.1:0", "")
            .unwrap_err()
            .to_string();
        for key in [
            "http.listen = 0.0.0.0:8080",
            "auth.api_keys",
            "auth.api_allow_from",
            "auth.api_allow_unauthenticated",
            "auth.live_call_tokens",
            "auth.live_call_allow_from",
            "auth.live_call_allow_unauthenticated",
            "ringover.tokens",
            "ringover.allow_from",
            "ringover.allow_unauthenticated",
            "twilio.tokens",
            "twilio.allow_from",
            "twilio.allow_unauthenticated",
        ] {
            assert!(err.contains(key), "{key} missing from: {err}");
        }
        assert!(!err.contains("grpc."), "{err}");

        let err = listening("127.0.0.1:0", "[::]:50051", "")
            .unwrap_err()
            .to_string();
        for key in [
            "grpc.listen = [::]:50051",
            "grpc.tokens",
            "grpc.allow_from",
            "grpc.allow_unauthenticated",
        ] {
            assert!(err.contains(key), "{key} missing from: {err}");
        }
        assert!(!err.contains("auth."), "{err}");

        // One ingress without a rule is enough to refuse, and only it is named.
        let err = listening(
            "10.1.2.3:8080",
            "127.0.0.1:0",
            "[auth]\napi_keys = [{ key = \"k\" }]\nlive_call_tokens = [\"t\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ringover.tokens"), "{err}");
        assert!(!err.contains("auth."), "{err}");
    }

    #[test]
    fn a_public_listener_starts_with_rules_or_open_on_purpose() {
        let c = Config::from_toml(
            r#"
            [http]
            listen = "0.0.0.0:0"
            [grpc]
            listen = "0.0.0.0:0"
            allow_unauthenticated = true
            [ringover]
            allow_unauthenticated = true
            [twilio]
            allow_unauthenticated = true
            [auth]
            api_allow_unauthenticated = true
            live_call_allow_unauthenticated = true
            "#,
        )
        .unwrap();
        assert!(c.access(Ingress::Grpc).has_no_rule());

        let c = Config::from_toml(
            r#"
            [http]
            listen = "0.0.0.0:0"
            [grpc]
            listen = "[::]:0"
            tokens = ["g", { token = "ga", workspace = "a" }]
            allow_from = ["10.0.0.0/8", "fd00::/8"]
            [ringover]
            allow_from = ["192.0.2.0/24"]
            [twilio]
            tokens = ["tw"]
            [auth]
            api_keys = [{ key = "k" }]
            live_call_tokens = [{ token = "t", workspace = "a" }]
            "#,
        )
        .unwrap();
        assert_eq!(
            c.grpc.tokens[1],
            Token {
                token: "ga".into(),
                workspace: Some("a".into())
            }
        );
        assert!(!c.access(Ingress::LiveCallWs).has_no_rule());
    }

    #[test]
    fn access_mistakes_are_named() {
        let cases = [
            (
                "[grpc]\nallow_from = [\"127.0.0.1/32\", \"10.0.0/8\"]\n",
                "grpc.allow_from[1] `10.0.0/8`",
            ),
            (
                "[auth]\nlive_call_allow_from = [\"::1/200\"]\n",
                "auth.live_call_allow_from[0]",
            ),
            ("[ringover]\nallow_from = [\"10.1.0.0/8\"]\n", "10.0.0.0/8"),
            ("[grpc]\ntokens = [\"\"]\n", "grpc.tokens[0]"),
            (
                "[auth]\nlive_call_tokens = [{ token = \"t\", workspace = \"\" }]\n",
                "auth.live_call_tokens[0].workspace",
            ),
            ("[auth]\nlive_call_tokens = [{ tokn = \"t\" }]\n", "tokn"),
            ("[grpc]\nallow_fromm = []\n", "allow_fromm"),
            (
                "[grpc]\ntokens = [\"t\"]\nallow_unauthenticated = true\n",
                "grpc.allow_unauthenticated",
            ),
        ];
        for (text, named) in cases {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(named), "{named} missing from: {err}");
        }
    }

    #[test]
    fn host_names_listen_and_bad_addresses_are_named() {
        let c = Config::from_toml("[http]\nlisten = \"localhost:0\"\n").unwrap();
        assert!(c.http.listen.ip().is_loopback());
        let err = Config::from_toml("[grpc]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
    }

    #[test]
    fn ingresses_without_routes_are_found() {
        assert!(Config::builtin().unwrap().unrouted_ingresses().is_empty());
        let c = Config::from_toml("[http]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        assert_eq!(c.unrouted_ingresses(), INGRESSES.to_vec());
        let c = Config::from_toml(
            "[bots.a]\nkind = \"flow\"\nactions = [{ type = \"hangup\" }]\n[[routes]]\nbot = \"a\"\nmatch = { ingress = \"smartivr\" }\n",
        )
        .unwrap();
        assert!(!c.unrouted_ingresses().contains(&"smartivr"));
        assert!(c.unrouted_ingresses().contains(&"ringover"));
    }

    #[test]
    fn first_matching_route_wins() {
        let c = Config::from_toml(
            r#"
            [bots.a]
            kind = "flow"
            actions = [{ type = "hangup" }]
            [bots.b]
            kind = "flow"
            actions = [{ type = "hangup" }]
            [[routes]]
            bot = "a"
            match = { ingress = "smartivr", hotline = "1800" }
            [[routes]]
            bot = "b"
            "#,
        )
        .unwrap();
        assert_eq!(c.route("smartivr", "1800", ""), Some("a"));
        assert_eq!(c.route("smartivr", "1900", ""), Some("b"));
        assert_eq!(c.route("live_call_ws", "1800", ""), Some("b"));
    }
}
