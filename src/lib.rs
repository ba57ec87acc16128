//! Switchboard: a telephony switch that connects phone calls to voicebots.
//!
//! Module map:
//! - `app`: starts the listeners, the registry and the call arbiters; shutdown.
//! - `actions`: the flow actions' schema (read by `config`, run by `bots::flow`).
//! - `config`: the TOML schema, validated at start-up (`config::cidr`: source networks).
//! - `registry`: creates calls, finds them by id, learns when they end.
//! - `call`: the call actor, its pure VoIPBIN state (`call::state`) and JSON view
//!   (`call::view`), its messages and playout.
//! - `room`: conference rooms: one actor per room mixing its participants on a 20 ms clock
//!   (`room::mixer`), found through the registry (`room::directory`).
//! - `bots`: what answers a call: `bots::start` picks the kind; `bots::flow` is the embedded
//!   VoIPBIN-style flow engine.
//! - `protocols`: one folder per wire protocol (SmartIVR gRPC, live_call over gRPC and over
//!   WebSocket, Ringover and Twilio WebSockets), turning frames into call messages and back:
//!   the caller side (sessions) and, where the switch also dials a network bot, its client
//!   (`client.rs`); `protocols::access`, the access rule every ingress checks (tokens, source
//!   networks).
//! - `limits`: size limits on ids, numbers, free text, metadata and keys peers send.
//! - `media`: PCM, WAV, rate conversion, voice activity (barge-in), hold music, ringback,
//!   DTMF keys.
//! - `speech`: text to speech and speech recognition.
//! - `http_body`: reading a remote answer's body within a size limit (flow downloads and
//!   webhooks, the HTTP speech recogniser).
//! - `http_error`: the JSON error body every HTTP answer carries.
//! - `api`: the REST API, the Calls API, live events, API keys, their view types, the OpenAPI
//!   document (`/openapi.json`, Swagger UI at `/docs`) and the softphone page (`/phone`).
//! - `cluster`: cluster mode: control between switches over NATS, node liveness and room
//!   placement in JetStream key-value buckets, events between nodes.
//! - `store`: durable call records, events, recordings' metadata and transcripts (sqlx).
//! - `recording`: stereo call recordings (caller left, bot right).
//! - `services`: handles shared by calls and bots.
//! - `pb`: code generated from `proto/`.
//! - `grpc_ops`: gRPC health checks (NOT_SERVING while draining) and server reflection.
//! - `dial`: a small SmartIVR gateway client for placing test calls.
//! - `load`: the load generator (`switchboard load`).
//! - `tls`: certificates and keys of the HTTP and gRPC listeners (rustls).
//! - `telemetry`: Prometheus metrics (names, bounded labels, the process-wide recorder).

pub mod actions;
pub mod api;
pub mod app;
pub mod bots;
pub mod call;
pub mod cluster;
pub mod config;
pub mod dial;
pub mod grpc_ops;
pub mod http_body;
pub mod http_error;
pub mod limits;
pub mod load;
pub mod media;
pub mod pb;
pub mod protocols;
pub mod recording;
pub mod registry;
pub mod room;
pub mod services;
pub mod speech;
pub mod store;
pub mod telemetry;
pub mod tls;
