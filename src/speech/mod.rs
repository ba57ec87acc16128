//! Speech engines: text to speech (`tts`) and speech recognition (`asr`).

pub mod asr;
pub mod tts;
