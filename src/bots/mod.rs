//! Bots: what answers a call. Each kind is an actor per call that receives `BotEvent`s and
//! sends `BotCommand`s to its call.

pub mod echo_service;
pub mod flow;
pub mod live_call;
pub mod smartivr;
pub mod twilio_echo;
pub mod twilio_stream;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use thiserror::Error;

use crate::call::messages::BotEvent;
use crate::call::CallActor;
use crate::config::BotConfig;
use crate::services::Services;

/// A started bot, as its call sees it.
pub struct BotHandle {
    pub events: Recipient<BotEvent>,
    /// The rate the bot wants caller audio at; `None` takes the leg's rate unchanged.
    pub in_rate: Option<u32>,
}

/// A bot could not be started.
#[derive(Debug, Error)]
pub enum BotError {
    #[error("bot `{0}` is not configured")]
    Unknown(String),
}

/// Connects to a network bot at `url` within `connect_timeout`: the HTTP/2 connection only.
/// The call's stream is opened on it afterwards without waiting for the bot's response
/// headers, which many servers (grpcio's, for one) send only with their first message: the
/// switch writes the call's audio as soon as the request stream is open, as gateways do.
/// HTTP/2 pings go every third of `bot_timeout`; a bot that leaves them unanswered that long
/// breaks the connection, which fails the call.
/// A failure is counted by `kind` (`live_call`, `smartivr`; `twilio_stream` counts its own) in
/// `switchboard_bot_connect_failures_total`.
pub(crate) async fn connect(
    kind: &'static str,
    url: &str,
    bot_timeout: Duration,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    let connected = connect_endpoint(url, bot_timeout, connect_timeout).await;
    if connected.is_err() {
        crate::telemetry::bot_connect_failed(kind);
    }
    connected
}

async fn connect_endpoint(
    url: &str,
    bot_timeout: Duration,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("bad bot url {url}: {e}"))?
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(bot_timeout / 3)
        .keep_alive_timeout(bot_timeout)
        .keep_alive_while_idle(true);
    tokio::time::timeout(connect_timeout, endpoint.connect())
        .await
        .map_err(|_| format!("bot at {url} did not answer within {connect_timeout:?}"))?
        .map_err(|e| format!("cannot reach bot at {url}: {e}"))
}

/// Why a bot's stream could not be opened, for the call's `hangup_detail`.
pub(crate) fn refused(status: &tonic::Status) -> String {
    format!(
        "bot refused the call: {} ({:?})",
        status.message(),
        status.code()
    )
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
            bot_timeout_ms,
            connect_timeout_ms,
        }) => {
            let target = live_call::LiveCallTarget {
                url: url.clone(),
                sample_rate: *sample_rate,
                bot_timeout: Duration::from_millis(*bot_timeout_ms),
                connect_timeout: Duration::from_millis(*connect_timeout_ms),
            };
            let bot = live_call::LiveCallBot::new(target, call.recipient()).start();
            Ok(BotHandle {
                events: bot.recipient(),
                in_rate: Some(*sample_rate),
            })
        }
        Some(BotConfig::Smartivr {
            url,
            bot_timeout_ms,
            connect_timeout_ms,
        }) => {
            let target = smartivr::SmartIvrTarget {
                url: url.clone(),
                bot_timeout: Duration::from_millis(*bot_timeout_ms),
                connect_timeout: Duration::from_millis(*connect_timeout_ms),
            };
            let bot = smartivr::SmartIvrBot::new(target, call.recipient()).start();
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
            let target = twilio_stream::TwilioStreamTarget {
                url: url.clone(),
                custom_parameters: custom_parameters.clone(),
                headers: headers.clone(),
                bot_timeout: Duration::from_millis(*bot_timeout_ms),
                connect_timeout: Duration::from_millis(*connect_timeout_ms),
                lead: (buffered / 2).min(Duration::from_secs(1)),
            };
            let bot = twilio_stream::TwilioStreamBot::new(target, call.recipient()).start();
            Ok(BotHandle {
                events: bot.recipient(),
                in_rate: Some(crate::protocols::twilio::convert::SAMPLE_RATE),
            })
        }
        None => Err(BotError::Unknown(name.to_owned())),
    }
}
