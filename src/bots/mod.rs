//! Bots: what answers a call. Each kind is an actor per call that receives `BotEvent`s and
//! sends `BotCommand`s to its call: the flow engine here, the network bots' clients beside the
//! servers of their wire protocols (`protocols::{smartivr, live_call_grpc, twilio}::client`).

pub mod echo_service;
pub mod flow;
pub mod twilio_echo;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use thiserror::Error;

use crate::call::CallActor;
use crate::config::BotConfig;
use crate::protocols::grpc_client::BotLink;
use crate::protocols::live_call_grpc::client::{LiveCallBot, LiveCallTarget};
use crate::protocols::smartivr::client::{SmartIvrBot, SmartIvrTarget};
use crate::protocols::twilio::client::{TwilioStreamBot, TwilioStreamTarget};
use crate::services::Services;

pub use crate::call::messages::BotHandle;

/// A bot could not be started.
#[derive(Debug, Error)]
pub enum BotError {
    #[error("bot `{0}` is not configured")]
    Unknown(String),
}

/// Starts bot `name` for the call at `call`, on the current arbiter.
pub fn start(
    name: &str,
    services: &Arc<Services>,
    call: Addr<CallActor>,
) -> Result<BotHandle, BotError> {
    match services.config.bots.get(name) {
        Some(BotConfig::Flow { .. }) => {
            let program = services
                .flows
                .get(name)
                .cloned()
                .ok_or_else(|| BotError::Unknown(name.to_owned()))?;
            let bot = flow::FlowBot::new(program, services.clone(), call.clone().recipient())
                .with_record(call.recipient())
                .start();
            Ok(BotHandle {
                events: bot.recipient(),
                in_rate: None,
            })
        }
        Some(BotConfig::LiveCall {
            url,
            sample_rate,
            frame_ms,
            bot_timeout_ms,
            connect_timeout_ms,
            streams_per_connection,
        }) => {
            let target = LiveCallTarget {
                link: BotLink {
                    url: url.clone(),
                    bot_timeout: Duration::from_millis(*bot_timeout_ms),
                    connect_timeout: Duration::from_millis(*connect_timeout_ms),
                    streams_per_connection: *streams_per_connection,
                },
                sample_rate: *sample_rate,
                frame_ms: *frame_ms,
            };
            let bot = LiveCallBot::new(target, call.recipient()).start();
            Ok(BotHandle {
                events: bot.recipient(),
                in_rate: Some(*sample_rate),
            })
        }
        Some(BotConfig::Smartivr {
            url,
            bot_timeout_ms,
            connect_timeout_ms,
            streams_per_connection,
        }) => {
            let target = SmartIvrTarget {
                link: BotLink {
                    url: url.clone(),
                    bot_timeout: Duration::from_millis(*bot_timeout_ms),
                    connect_timeout: Duration::from_millis(*connect_timeout_ms),
                    streams_per_connection: *streams_per_connection,
                },
            };
            let bot = SmartIvrBot::new(target, call.recipient()).start();
            Ok(BotHandle {
                events: bot.recipient(),
                in_rate: Some(crate::media::TELEPHONE_RATE),
            })
        }
        Some(BotConfig::TwilioStream {
            url,
            custom_parameters,
            headers,
            bot_timeout_ms,
            connect_timeout_ms,
        }) => {
            let buffered = Duration::from_millis(services.config.media.max_buffered_ms as u64);
            let target = TwilioStreamTarget {
                url: url.clone(),
                custom_parameters: custom_parameters.clone(),
                headers: headers.clone(),
                bot_timeout: Duration::from_millis(*bot_timeout_ms),
                connect_timeout: Duration::from_millis(*connect_timeout_ms),
                lead: (buffered / 2).min(Duration::from_secs(1)),
            };
            let bot = TwilioStreamBot::new(target, call.recipient()).start();
            Ok(BotHandle {
                events: bot.recipient(),
                in_rate: Some(crate::protocols::twilio::convert::SAMPLE_RATE),
            })
        }
        None => Err(BotError::Unknown(name.to_owned())),
    }
}
