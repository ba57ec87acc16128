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

/// A gRPC bot client actor, as `connect_and_open` reaches it.
pub(crate) trait GrpcBot: actix::Actor<Context = actix::Context<Self>> {
    /// Fails the call with `detail` (once) and stops.
    fn fail(&mut self, detail: String, ctx: &mut actix::Context<Self>);
    /// The connection to the bot is up: the call is answered.
    fn answered(&mut self);
}

/// Connects to the bot at `url` (see `connect`); once the connection is up the call is
/// answered and `open` opens the call's stream beside it, whose responses become the actor's
/// stream. Audio queued meanwhile is written as soon as the request goes out. Any failure
/// fails the call. Nothing else reaches the actor until the connection is up or has failed.
pub(crate) fn connect_and_open<A, S, F, Fut>(
    kind: &'static str,
    url: String,
    bot_timeout: Duration,
    connect_timeout: Duration,
    open: F,
    ctx: &mut actix::Context<A>,
) where
    A: GrpcBot + actix::StreamHandler<Result<S, tonic::Status>>,
    S: 'static,
    F: FnOnce(tonic::transport::Channel) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<tonic::Response<tonic::Streaming<S>>, tonic::Status>>
        + 'static,
{
    use actix::prelude::*;
    let connecting = async move { connect(kind, &url, bot_timeout, connect_timeout).await };
    ctx.wait(
        actix::fut::wrap_future::<_, A>(connecting).map(|result, act, ctx| match result {
            Ok(channel) => {
                act.answered();
                ctx.spawn(actix::fut::wrap_future::<_, A>(open(channel)).map(
                    |opened, act, ctx| match opened {
                        Ok(response) => {
                            ctx.add_stream(response.into_inner());
                        }
                        Err(status) => act.fail(refused(&status), ctx),
                    },
                ));
            }
            Err(detail) => act.fail(detail, ctx),
        }),
    );
}
