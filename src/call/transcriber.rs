//! Continuous transcription of the caller's side (`transcribe_start`, the Calls API's
//! `transcribe`): caller audio is cut into utterances by the end-of-speech detector, each
//! is recognised as dictation off the actor thread, and each result becomes a `text_asr`
//! transcript line stamped with the time the caller stopped speaking.

use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;

use super::CallActor;
use crate::speech::asr::endpoint::{Endpoint, Endpointer};
use crate::speech::asr::{Grammar, Request};

/// Utterances of one call with the recogniser at once; more are dropped (and logged): a
/// caller cannot queue unbounded work.
const MAX_IN_FLIGHT: usize = 2;

pub(super) struct Transcriber {
    language: String,
    /// Made at the caller leg's rate once audio arrives.
    endpointer: Option<Endpointer>,
    in_flight: usize,
    /// Which start this is, so a stop and a new start do not mix counts.
    generation: u64,
}

impl CallActor {
    /// Starts (`Some(language)`) or stops transcribing the caller.
    pub(super) fn set_transcription(&mut self, language: Option<String>) -> Result<(), String> {
        if self.record.status.is_ending() {
            return Err(format!("call {} is ending", self.record.id));
        }
        match language {
            Some(language) => {
                let generation = self.transcriber.as_ref().map_or(0, |t| t.generation) + 1;
                tracing::info!(call = %self.record.id, %language, "transcribing the caller");
                self.transcriber = Some(Transcriber {
                    language,
                    endpointer: None,
                    in_flight: 0,
                    generation,
                });
            }
            None => {
                if self.transcriber.take().is_some() {
                    tracing::info!(call = %self.record.id, "transcription stopped");
                }
            }
        }
        Ok(())
    }

    /// Caller audio at the leg's rate, while transcribing.
    pub(super) fn transcribe_caller(&mut self, samples: &[i16], ctx: &mut Context<Self>) {
        let Some(t) = self.transcriber.as_mut() else {
            return;
        };
        let rate = self
            .leg
            .as_ref()
            .map_or(crate::media::TELEPHONE_RATE, |l| l.format.in_rate);
        let asr = &self.services.asr;
        let endpointer = t.endpointer.get_or_insert_with(|| asr.endpointer(rate));
        // Transcription waits for each utterance's end; tentative ends are not used.
        let Some(Endpoint::Ended(audio)) = endpointer
            .push(samples)
            .into_iter()
            .find(|e| matches!(e, Endpoint::Ended(_)))
        else {
            return;
        };
        if t.in_flight >= MAX_IN_FLIGHT {
            tracing::warn!(call = %self.record.id, "transcription is behind; an utterance was dropped");
            return;
        }
        t.in_flight += 1;
        let generation = t.generation;
        let request = Request {
            audio,
            rate,
            grammar: Arc::new(Grammar::Dictation),
            language: t.language.clone(),
        };
        let asr = asr.clone();
        let at = Utc::now();
        ctx.spawn(async move { asr.recognize(request).await }.into_actor(self).map(
            move |result, act, _ctx| {
                if let Some(t) = act.transcriber.as_mut().filter(|t| t.generation == generation) {
                    t.in_flight = t.in_flight.saturating_sub(1);
                }
                match result {
                    Ok(r) => act.transcribe_at("text_asr", &r.text, at),
                    Err(e) => {
                        tracing::warn!(call = %act.record.id, error = %e, "transcription failed")
                    }
                }
            },
        ));
    }
}
