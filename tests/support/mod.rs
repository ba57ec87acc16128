//! Test support: start the real switch on 127.0.0.1:0 and talk to it with real clients, one
//! module per protocol client, plus the switch itself (`app`) and audio helpers (`audio`).

#![allow(dead_code, unused_imports)]

pub mod app;
pub mod audio;
pub mod live_call_ws;
pub mod ringover;
pub mod sip;
pub mod smartivr;
pub mod twilio;

pub use app::*;
pub use audio::*;
pub use live_call_ws::*;
pub use ringover::*;
pub use smartivr::*;
pub use twilio::*;
