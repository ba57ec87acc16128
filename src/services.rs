//! Shared, read-mostly handles every call and bot may use.

use std::collections::HashMap;
use std::sync::Arc;

use crate::actions::FlowProgram;
use crate::config::{BotConfig, Config};
use crate::speech::asr::Asr;
use crate::speech::tts::Tts;
use crate::store::Journal;

/// What calls and bots share: configuration, text to speech, an HTTP client, compiled flows.
pub struct Services {
    pub config: Arc<Config>,
    pub tts: Tts,
    /// Speech recognition (loaded on first use).
    pub asr: Asr,
    pub http: reqwest::Client,
    /// Flow bots compiled once at start-up, by bot name.
    pub flows: HashMap<String, Arc<FlowProgram>>,
    /// Where calls write transcripts and recordings' metadata (and the registry call changes).
    pub journal: Journal,
}

impl Services {
    /// Builds the shared handles for `config`, writing nothing to a store.
    pub fn new(config: Arc<Config>) -> Arc<Services> {
        Services::with_journal(config, Journal::disabled())
    }

    /// Builds the shared handles for `config`, writing to the store through `journal`.
    pub fn with_journal(config: Arc<Config>, journal: Journal) -> Arc<Services> {
        let flows = config
            .bots
            .iter()
            .filter_map(|(name, bot)| match bot {
                BotConfig::Flow { actions } => {
                    Some((name.clone(), Arc::new(FlowProgram::new(actions.clone()))))
                }
                _ => None,
            })
            .collect();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Arc::new(Services {
            tts: Tts::new(&config.tts),
            asr: Asr::new(&config.asr, http.clone()),
            http,
            flows,
            config,
            journal,
        })
    }
}
