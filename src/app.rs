//! Starts the switch: call arbiters, the registry, the HTTP and gRPC listeners; and stops it.
//!
//! Everything actix runs in one actix System on a thread of its own; call actors run on
//! `server.arbiters` extra arbiters (one per core by default) so calls use every core; the
//! HTTP server runs as many workers, and WebSocket calls stay on their worker. tonic
//! runs on its own multi-thread tokio runtime; it reaches actors through their addresses.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};
use thiserror::Error;
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;

use crate::api::{self, ApiState};
use crate::config::{Config, Ingress};
use crate::grpc_ops::{self, Health};
use crate::protocols::access::{AccessRule, GrpcAccess};
use crate::protocols::live_call_grpc::{LiveCallServer, LiveCallService};
use crate::protocols::live_call_ws::{self, LiveCallWsState};
use crate::protocols::ringover::{self, RingoverState};
use crate::protocols::smartivr::{SmartIvrPhonegatewayServer, SmartIvrService};
use crate::protocols::twilio::{self, TwilioState};
use crate::registry::{Drain, GetStats, HangupAll, Registry};
use crate::services::Services;
use crate::store::{Store, StoreRuntime};

/// Worker threads of the gRPC runtime.
const GRPC_WORKERS: usize = 2;
/// How long shutdown waits for hung-up calls to finish before stopping anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown waits for queued store writes to reach the database.
const STORE_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often shutdown looks at the number of live calls.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Why the switch could not start.
#[derive(Debug, Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start: {0}")]
    Start(String),
}

/// A running switch. Dropping it stops the switch.
pub struct AppHandle {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// Where SIP listens, when `[sip] listen` is set.
    pub sip_addr: Option<SocketAddr>,
    pub registry: Addr<Registry>,
    /// The call store (records, events, recordings, transcripts).
    pub store: Store,
    stop: Option<oneshot::Sender<Stop>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How the switch stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Stop admitting calls, let live calls go on for `server.drain_seconds`, then hang up.
    Drain,
    /// Hang up live calls at once.
    Now,
}

impl AppHandle {
    /// Drains: stops admitting calls, lets live calls finish for `server.drain_seconds`,
    /// hangs up the rest, flushes the store and waits for the switch to stop.
    pub fn shutdown(mut self) {
        self.stop_and_join(Stop::Drain);
    }

    fn stop_and_join(&mut self, how: Stop) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(how);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AppHandle {
    fn drop(&mut self) {
        self.stop_and_join(Stop::Now);
    }
}

struct Running {
    registry: Addr<Registry>,
    http: actix_web::dev::ServerHandle,
    grpc_stop: oneshot::Sender<()>,
    grpc_thread: std::thread::JoinHandle<()>,
    arbiters: Vec<Arbiter>,
    store: Store,
    store_runtime: StoreRuntime,
    drain_seconds: u64,
    /// gRPC health: NOT_SERVING from the start of a drain.
    health: Health,
    /// The SIP listener, when configured.
    sip: Option<crate::protocols::sip::SipHandle>,
    /// Cluster mode: left once the calls are hung up.
    cluster: Option<crate::cluster::ClusterRuntime>,
}

struct Ready {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    sip_addr: Option<SocketAddr>,
    registry: Addr<Registry>,
    store: Store,
}

/// Starts the switch on a thread of its own and returns once every listener is bound.
pub fn spawn(config: Config) -> Result<AppHandle, AppError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Ready, AppError>>();
    let (stop_tx, stop_rx) = oneshot::channel::<Stop>();
    let thread = std::thread::Builder::new()
        .name("switchboard-main".into())
        .spawn(move || {
            let system = System::new();
            system.block_on(async move {
                match start(config).await {
                    Ok((running, ready)) => {
                        let _ = ready_tx.send(Ok(ready));
                        let how = stop_rx.await.unwrap_or(Stop::Now);
                        running.shutdown(how).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| AppError::Start(e.to_string()))?;
    let ready = ready_rx
        .recv()
        .map_err(|_| AppError::Start("the switch thread stopped while starting".into()))??;
    Ok(AppHandle {
        http_addr: ready.http_addr,
        grpc_addr: ready.grpc_addr,
        sip_addr: ready.sip_addr,
        registry: ready.registry,
        store: ready.store,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

fn bind(addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr).map_err(|source| AppError::Bind { addr, source })
}

async fn start(config: Config) -> Result<(Running, Ready), AppError> {
    let config = Arc::new(config);
    crate::telemetry::install();
    let arbiter_count = match config.server.arbiters {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let arbiters: Vec<Arbiter> = (0..arbiter_count).map(|_| Arbiter::new()).collect();
    // In cluster mode the calls this switch writes are its node's (`cluster.node_id`).
    let owner = match &config.cluster {
        c if c.enabled => c.node_id.as_deref(),
        _ => None,
    };
    let (store, store_runtime) = Store::open_as(&config.store, owner)
        .await
        .map_err(|e| AppError::Start(format!("store {}: {e}", config.store.url)))?;
    match store.close_orphans().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            calls = n,
            "closed calls left open by an earlier run of this switch"
        ),
        Err(e) => return Err(AppError::Start(format!("store: {e}"))),
    }
    let access = access_rules(&config)?;
    let services = Services::with_journal(config.clone(), store.journal.clone());
    let asr = services.asr.clone();
    // Flows that listen get a loaded recogniser before their first caller speaks.
    if services.flows.values().any(|f| f.listens) {
        asr.warm_up();
    }
    let registry = Registry::new(services, arbiters.iter().map(|a| a.handle()).collect()).start();

    // HTTP: REST now, WebSockets later, on one listener.
    let sip = crate::protocols::sip::start(
        &config.sip,
        registry.clone(),
        arbiters.iter().map(|a| a.handle()).collect(),
    )
    .await
    .map_err(AppError::Start)?;
    let sip_addr = sip.as_ref().map(|s| s.addr);
    if let Some(sip) = &sip {
        // Rooms and bridged `connect`s dial their participants through SIP.
        registry.do_send(crate::room::directory::SetDialer(Arc::new(sip.dialer())));
    }

    let http_listener = bind(config.http.listen)?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|e| AppError::Start(e.to_string()))?;
    // Cluster mode: join before serving (`cluster`); requests other nodes forward are served
    // on a loopback listener of their own.
    let (cluster, cluster_runtime, internal_listener) = if config.cluster.enabled {
        let internal = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let internal_addr = internal
            .local_addr()
            .map_err(|e| AppError::Start(e.to_string()))?;
        let listeners = crate::cluster::Listeners {
            http: http_addr,
            internal: internal_addr,
        };
        let (cluster, runtime) = crate::cluster::start(
            &config.cluster,
            store.owner.clone(),
            registry.clone(),
            store.clone(),
            listeners,
            config.server.max_calls,
        )
        .await
        .map_err(|e| AppError::Start(format!("cluster: {e}")))?;
        (Some(cluster), Some(runtime), Some(internal))
    } else {
        (None, None, None)
    };
    let forward =
        crate::cluster::forward::Forward::new(cluster.clone(), registry.clone(), store.clone());
    let state = ApiState {
        registry: registry.clone(),
        store: store.clone(),
        config: config.clone(),
        access: Arc::new(access.api),
        asr,
        sip: sip.as_ref().map(|s| s.dialer()),
    };
    let ws_state = LiveCallWsState {
        registry: registry.clone(),
        access: Arc::new(access.live_call_ws),
        settings: live_call_ws::Settings::new(&config.media),
    };
    let ringover_state = RingoverState::new(registry.clone(), &config, access.ringover);
    let twilio_state = TwilioState::new(registry.clone(), &config, access.twilio);
    let body_timeout = Duration::from_millis(config.http.body_timeout_ms);
    let http_tls = tls_identity(config.http.tls())?
        .map(|identity| identity.rustls(&config.http.tls()))
        .transpose()
        .map_err(|e| AppError::Start(e.to_string()))?;
    let http = HttpServer::new(move || {
        App::new()
            .wrap(api::body::BodyGuard::new(body_timeout))
            .wrap(forward.clone())
            .app_data(web::Data::new(state.clone()))
            .configure(ringover::configure(ringover_state.clone()))
            .configure(twilio::configure(twilio_state.clone()))
            .configure(api::configure)
            .configure(api::metrics::configure)
            .configure(|cfg| live_call_ws::configure(cfg, ws_state.clone()))
            .default_service(api::default_service())
    })
    // One HTTP worker per call arbiter: a WebSocket call (live-call, Ringover, Twilio) runs on
    // the worker that accepted its socket, beside its session, and actix spreads connections
    // over the workers in turn, so WebSocket calls use every core as other calls do.
    .workers(arbiter_count)
    // Media frames are small and paced: without TCP_NODELAY a frame written while the previous
    // one is unacknowledged waits for the peer's delayed ACK (up to 40 ms on Linux), which was
    // the whole of the WebSocket round trip's p99 (BENCHMARKS.md).
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(1);
    let http = match http_tls {
        Some(tls) => http.listen_rustls_0_23(http_listener, tls),
        None => http.listen(http_listener),
    }
    .map_err(|source| AppError::Bind {
        addr: http_addr,
        source,
    })?;
    let http = match internal_listener {
        Some(internal) => http.listen(internal).map_err(|source| AppError::Bind {
            addr: http_addr,
            source,
        })?,
        None => http,
    }
    .run();
    let http_handle = http.handle();
    actix::spawn(http);

    // gRPC on its own runtime.
    let grpc_listener = bind(config.grpc.listen)?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|e| AppError::Start(e.to_string()))?;
    grpc_listener
        .set_nonblocking(true)
        .map_err(|e| AppError::Start(e.to_string()))?;
    let (grpc_stop, grpc_stop_rx) = oneshot::channel::<()>();
    let smartivr = SmartIvrService::new(registry.clone(), config.smartivr.tts_audio)
        .with_write_timeout(Duration::from_millis(config.media.write_timeout_ms));
    let live_call = LiveCallService::new(registry.clone(), config.live_call.out_sample_rate)
        .with_write_timeout(Duration::from_millis(config.media.write_timeout_ms));
    let grpc_access = GrpcAccess::new(access.grpc);
    let grpc_builder = match tls_identity(config.grpc.tls())? {
        Some(identity) => tonic::transport::Server::builder()
            .tls_config(identity.tonic())
            .map_err(|e| AppError::Start(format!("grpc.tls_cert and grpc.tls_key: {e}")))?,
        None => tonic::transport::Server::builder(),
    };
    // Health and reflection follow the same access rule as the call services.
    let (health, health_service) = Health::new();
    health.serving().await;
    let health_service = InterceptedService::new(health_service, grpc_access.clone());
    let reflection =
        grpc_ops::reflection_v1().map_err(|e| AppError::Start(format!("gRPC reflection: {e}")))?;
    let reflection = InterceptedService::new(reflection, grpc_access.clone());
    let reflection_alpha = grpc_ops::reflection_v1alpha()
        .map_err(|e| AppError::Start(format!("gRPC reflection: {e}")))?;
    let reflection_alpha = InterceptedService::new(reflection_alpha, grpc_access.clone());
    let grpc_thread = std::thread::Builder::new()
        .name("switchboard-grpc".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(GRPC_WORKERS)
                .thread_name("grpc")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the gRPC runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(grpc_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot use the gRPC listener");
                        return;
                    }
                };
                // No Nagle: a media frame must not wait for the ACK of the one before it.
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                let mut grpc_builder = grpc_builder;
                let served = grpc_builder
                    .add_service(SmartIvrPhonegatewayServer::with_interceptor(
                        smartivr,
                        grpc_access.clone(),
                    ))
                    .add_service(LiveCallServer::with_interceptor(live_call, grpc_access))
                    .add_service(health_service)
                    .add_service(reflection)
                    .add_service(reflection_alpha)
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = grpc_stop_rx.await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "gRPC server stopped");
                }
            });
        })
        .map_err(|e| AppError::Start(e.to_string()))?;

    let (http_tls, grpc_tls) = (
        config.http.tls_cert.is_some(),
        config.grpc.tls_cert.is_some(),
    );
    tracing::info!(%http_addr, %grpc_addr, http_tls, grpc_tls, arbiters = arbiter_count, "switchboard listening");
    Ok((
        Running {
            registry: registry.clone(),
            http: http_handle,
            grpc_stop,
            grpc_thread,
            arbiters,
            store: store.clone(),
            store_runtime,
            drain_seconds: config.server.drain_seconds,
            health,
            sip,
            cluster: cluster_runtime,
        },
        Ready {
            http_addr,
            grpc_addr,
            sip_addr,
            registry,
            store,
        },
    ))
}

/// A listener's certificate and key, read again at start (validation read them too).
fn tls_identity(
    settings: crate::tls::Settings<'_>,
) -> Result<Option<crate::tls::Identity>, AppError> {
    settings.load().map_err(|e| AppError::Start(e.to_string()))
}

/// The access rule of every ingress.
struct AccessRules {
    api: AccessRule,
    live_call_ws: AccessRule,
    ringover: AccessRule,
    twilio: AccessRule,
    grpc: AccessRule,
}

/// Resolves every ingress's rule and says at start-up which ingresses admit everyone: a warning
/// for those open on purpose beyond this host, a debug line for those open on loopback.
fn access_rules(config: &Config) -> Result<AccessRules, AppError> {
    let rule = |ingress: Ingress| -> Result<AccessRule, AppError> {
        let access = config.access(ingress);
        let networks = access
            .networks()
            .map_err(|e| AppError::Start(e.to_string()))?;
        let rule = AccessRule::new(access.tokens.clone(), networks);
        if rule.is_open() && access.on_loopback() {
            tracing::debug!(listen = %access.listen, "{} admits every local peer (no access rule on loopback)", access.name);
        } else if rule.is_open() && !access.allow_unauthenticated {
            // Validation refuses this; a configuration changed after it must not open a port.
            return Err(AppError::Start(format!(
                "{} on {} has no access rule: set {} or {}, or {} = true",
                access.name,
                access.listen,
                access.tokens_key,
                access.allow_from_key,
                access.open_key
            )));
        } else if rule.is_open() {
            tracing::warn!(listen = %access.listen, "{} admits every peer: {} = true", access.name, access.open_key);
        }
        Ok(rule)
    };
    Ok(AccessRules {
        api: rule(Ingress::Api)?,
        live_call_ws: rule(Ingress::LiveCallWs)?,
        ringover: rule(Ingress::Ringover)?,
        twilio: rule(Ingress::Twilio)?,
        grpc: rule(Ingress::Grpc)?,
    })
}

impl Running {
    /// Waits until no call is live, at most until `deadline`.
    async fn wait_for_calls(&self, deadline: tokio::time::Instant) {
        while tokio::time::Instant::now() < deadline {
            match self.registry.send(GetStats).await {
                Ok(stats) if stats.live_calls > 0 => tokio::time::sleep(DRAIN_POLL).await,
                _ => break,
            }
        }
    }

    /// Stops admitting calls, lets live calls finish (when draining), hangs up the rest,
    /// waits for them, flushes the store, stops everything.
    async fn shutdown(self, how: Stop) {
        self.health.not_serving().await;
        if let Ok(live) = self.registry.send(Drain).await {
            tracing::info!(live, ?how, "shutting down");
        }
        if how == Stop::Drain {
            let drain = Duration::from_secs(self.drain_seconds);
            self.wait_for_calls(tokio::time::Instant::now() + drain)
                .await;
        }
        let _ = self
            .registry
            .send(HangupAll {
                detail: "switch shutting down".into(),
            })
            .await;
        self.wait_for_calls(tokio::time::Instant::now() + SHUTDOWN_GRACE)
            .await;
        if let Some(sip) = &self.sip {
            sip.stop();
        }
        if let Some(cluster) = self.cluster {
            cluster.shutdown().await;
        }
        let _ = self.grpc_stop.send(());
        self.http.stop(true).await;
        let _ = tokio::task::spawn_blocking(move || self.grpc_thread.join()).await;
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        if !self.store.sync(STORE_FLUSH_TIMEOUT).await {
            let health = self.store.journal.health.view();
            tracing::error!(queued = health.queued, error = %health.last_error, "store writes still queued at exit");
        }
        self.store_runtime.shutdown();
        System::current().stop();
    }
}
