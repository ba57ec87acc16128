//! Speech engines: text to speech now; recognition later.

pub mod tts;
