//! The gRPC connection to a network bot, shared by the SmartIVR and live_call clients.

use std::time::Duration;

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
