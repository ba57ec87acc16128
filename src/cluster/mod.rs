//! Cluster mode (`[cluster]`): several switches behind one load balancer, one PostgreSQL
//! store, control between them over NATS. Design and failure cases: `docs/cluster.md`.
//!
//! - Control (`forward`): an HTTP request naming a call or room this switch does not hold is
//!   sent as a NATS request to the switch that holds it, which serves it as if it had come to
//!   it and answers; the answer goes back to the client unchanged.
//! - Events (`events`): every switch publishes its calls' events per workspace and shows the
//!   others' to its own live subscribers (SSE).
//! - Liveness (`liveness`): every switch heartbeats into a JetStream key-value bucket; a
//!   switch that stops is lost, and a surviving switch closes its open calls in the store as
//!   failed, once.
//!
//! Everything here runs on a tokio runtime of its own (`switchboard-cluster`); calls and their
//! media never wait on it, and NATS reconnects by itself.

pub mod events;
pub mod forward;
pub mod liveness;
pub mod subjects;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

use crate::config::ClusterConfig;
use crate::registry::{GetStats, Registry};
use crate::store::Store;
use liveness::Liveness;
pub use subjects::Subjects;

/// Messages a subscription keeps queued before the client drops the oldest (a slow consumer).
const SUBSCRIPTION_CAPACITY: usize = 4096;
/// Cross-node requests served at once; more are answered 503 at once.
const MAX_SERVING: usize = 64;
/// How long start-up waits for NATS.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Threads of the cluster runtime.
const CLUSTER_THREADS: usize = 1;
/// Detail of a call closed because its switch was lost.
pub const NODE_LOST: &str = "node lost";

/// What a node says about itself every heartbeat (the value under its key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: String,
    /// The node's HTTP listener.
    pub address: String,
    pub live_calls: usize,
    pub max_calls: usize,
    pub draining: bool,
}

/// A handle to this switch's place in the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    rt: Handle,
    subjects: Subjects,
    node_id: String,
    request_timeout: Duration,
    rooms: kv::Store,
}

impl Cluster {
    /// This node's id (the owner of its calls in the store).
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    pub fn subjects(&self) -> &Subjects {
        &self.inner.subjects
    }

    pub(crate) fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    pub(crate) fn runtime(&self) -> &Handle {
        &self.inner.rt
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// The node holding open room `room`, by the room bucket.
    pub(crate) async fn room_node(&self, room: uuid::Uuid) -> Option<String> {
        let rooms = self.inner.rooms.clone();
        let key = room.simple().to_string();
        let got = self
            .inner
            .rt
            .spawn(async move { rooms.get(key).await })
            .await
            .ok()?;
        match got {
            Ok(Some(value)) => String::from_utf8(value.to_vec()).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot read the room bucket");
                None
            }
        }
    }
}

/// Owns the cluster runtime; shut it down when the switch stops.
pub struct ClusterRuntime {
    runtime: Option<Runtime>,
    stop: watch::Sender<bool>,
    client: async_nats::Client,
    nodes: kv::Store,
    node_id: String,
}

impl ClusterRuntime {
    /// Leaves the cluster: stops heartbeating and removes this node's heartbeat (its calls are
    /// hung up by then), then stops the runtime.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(runtime) = self.runtime.take() {
            let (nodes, node, client) = (
                self.nodes.clone(),
                self.node_id.clone(),
                self.client.clone(),
            );
            let left = runtime
                .spawn(async move {
                    let left =
                        tokio::time::timeout(Duration::from_secs(2), nodes.delete(node)).await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
                    matches!(left, Ok(Ok(())))
                })
                .await;
            if !matches!(left, Ok(true)) {
                tracing::warn!("cluster: could not remove this node's heartbeat; it expires");
            }
            runtime.shutdown_background();
        }
    }
}

impl Drop for ClusterRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Where this node serves HTTP.
#[derive(Debug, Clone, Copy)]
pub struct Listeners {
    /// The public listener (in heartbeats).
    pub http: std::net::SocketAddr,
    /// The loopback listener requests from other nodes are served on.
    pub internal: std::net::SocketAddr,
}

/// Joins the cluster: connects to NATS, opens the buckets, heartbeats once, and starts the
/// responder, the event relay and the liveness watch. Fails when NATS cannot be reached.
pub async fn start(
    config: &ClusterConfig,
    node_id: String,
    registry: Addr<Registry>,
    store: Store,
    listeners: Listeners,
    max_calls: usize,
) -> Result<(Cluster, ClusterRuntime), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CLUSTER_THREADS)
        .thread_name("switchboard-cluster")
        .enable_all()
        .build()
        .map_err(|e| format!("cluster runtime: {e}"))?;
    let rt = runtime.handle().clone();
    let config = config.clone();
    // `join` runs on the cluster runtime, so the handle it keeps is that runtime's.
    let (stop, stop_rx) = watch::channel(false);
    let joined = rt
        .spawn(join(
            config,
            node_id.clone(),
            registry,
            store,
            listeners,
            max_calls,
            stop_rx,
        ))
        .await
        .map_err(|_| "the cluster runtime stopped".to_owned())?;
    let (cluster_inner, nodes) = match joined {
        Ok(v) => v,
        Err(e) => {
            runtime.shutdown_background();
            return Err(e);
        }
    };
    let client = cluster_inner.client.clone();
    Ok((
        Cluster {
            inner: Arc::new(cluster_inner),
        },
        ClusterRuntime {
            runtime: Some(runtime),
            stop,
            client,
            nodes,
            node_id,
        },
    ))
}

/// Opens a bucket, creating it when it does not exist.
///
/// The bucket's stream is created here as the key-value convention lays it out (`KV_<bucket>`
/// on `$KV.<bucket>.>`, one value per key, rollups, direct gets) rather than through the
/// client's `create_key_value`, which first reads the account's JetStream limits in a shape
/// NATS 2.9 does not answer.
async fn bucket(
    js: &jetstream::Context,
    name: String,
    max_age: Duration,
) -> Result<kv::Store, String> {
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    let created = js
        .create_stream(jetstream::stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            // The server refuses a duplicate window longer than `max_age`.
            duplicate_window: if max_age.is_zero() {
                Duration::from_secs(120)
            } else {
                max_age.min(Duration::from_secs(120))
            },
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            storage: jetstream::stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await;
    if let Err(e) = created {
        // Another node may have created it meanwhile.
        if js.get_key_value(&name).await.is_err() {
            return Err(format!("cannot create the JetStream bucket {name}: {e}"));
        }
    }
    js.get_key_value(&name)
        .await
        .map_err(|e| format!("cannot open the JetStream bucket {name}: {e}"))
}

async fn join(
    config: ClusterConfig,
    node_id: String,
    registry: Addr<Registry>,
    store: Store,
    listeners: Listeners,
    max_calls: usize,
    stop: watch::Receiver<bool>,
) -> Result<(Inner, kv::Store), String> {
    let period = Duration::from_millis(config.heartbeat_ms);
    let url = config.nats_url.clone();
    // Reconnects are retried for ever, never more than a heartbeat apart, so every node is
    // back soon after NATS is.
    let cap = period;
    let client = async_nats::ConnectOptions::new()
        .name(format!("switchboard {node_id}"))
        .connection_timeout(CONNECT_TIMEOUT)
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .max_reconnects(None)
        .reconnect_delay_callback(move |attempts| {
            cap.min(Duration::from_millis(50u64.saturating_mul(attempts as u64)))
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("cluster: NATS connected"),
                async_nats::Event::Disconnected => {
                    tracing::warn!(
                        "cluster: NATS disconnected; calls go on, cross-node control waits"
                    )
                }
                other => tracing::debug!(event = %other, "cluster: NATS event"),
            }
        })
        .connect(url.as_str())
        .await
        .map_err(|e| format!("cannot reach NATS at {url}: {e} (cluster.nats_url)"))?;
    let js = jetstream::new(client.clone());
    let subjects = Subjects::new(&config.cluster_name);
    let nodes = bucket(&js, subjects.nodes_bucket(), period * 5).await?;
    let rooms = bucket(&js, subjects.rooms_bucket(), Duration::ZERO).await?;
    let me = Heartbeat {
        node_id: node_id.clone(),
        address: listeners.http.to_string(),
        live_calls: 0,
        max_calls,
        draining: false,
    };
    put_heartbeat(&nodes, &me)
        .await
        .map_err(|e| format!("cannot write this node's heartbeat to JetStream at {url}: {e}"))?;
    let inner = Inner {
        client: client.clone(),
        rt: Handle::current(),
        subjects: subjects.clone(),
        node_id: node_id.clone(),
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        rooms: rooms.clone(),
    };
    let calls = client
        .subscribe(subjects.all_calls())
        .await
        .map_err(|e| format!("cannot subscribe on NATS: {e}"))?;
    let node_requests = client
        .subscribe(subjects.node(&node_id))
        .await
        .map_err(|e| format!("cannot subscribe on NATS: {e}"))?;
    let events_in = client
        .subscribe(subjects.all_events())
        .await
        .map_err(|e| format!("cannot subscribe on NATS: {e}"))?;
    let responder = forward::Responder::new(
        client.clone(),
        subjects.clone(),
        node_id.clone(),
        registry.clone(),
        listeners.internal,
        Duration::from_millis(config.request_timeout_ms),
    );
    tokio::spawn(responder.clone().serve_calls(calls, stop.clone()));
    tokio::spawn(responder.serve_node(node_requests, stop.clone()));
    let relay = events::Relay {
        client: client.clone(),
        subjects: subjects.clone(),
        node_id: node_id.clone(),
        journal: store.journal.clone(),
        rooms: rooms.clone(),
    };
    tokio::spawn(relay.clone().publish(stop.clone()));
    tokio::spawn(relay.clone().receive(events_in, stop.clone()));
    tokio::spawn(watch_nodes(
        nodes.clone(),
        me,
        period,
        registry,
        store,
        relay,
        stop,
    ));
    tracing::info!(node = %node_id, cluster = %config.cluster_name, nats = %url, "joined the cluster");
    Ok((inner, nodes))
}

async fn put_heartbeat(nodes: &kv::Store, beat: &Heartbeat) -> Result<u64, String> {
    let value = serde_json::to_vec(beat).map_err(|e| e.to_string())?;
    nodes
        .put(beat.node_id.as_str(), value.into())
        .await
        .map_err(|e| e.to_string())
}

/// Heartbeats every period and, every half period, closes the calls of lost nodes.
async fn watch_nodes(
    nodes: kv::Store,
    mut me: Heartbeat,
    period: Duration,
    registry: Addr<Registry>,
    store: Store,
    relay: events::Relay,
    mut stop: watch::Receiver<bool>,
) {
    let mut liveness = Liveness::new(period);
    liveness.own_heartbeat(true, Instant::now());
    let mut tick = tokio::time::interval(period / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        n += 1;
        if n.is_multiple_of(2) {
            if let Ok(stats) = registry.send(GetStats).await {
                me.live_calls = stats.live_calls;
                me.draining = stats.draining;
            }
            let beat = tokio::time::timeout(period, put_heartbeat(&nodes, &me)).await;
            let ok = matches!(beat, Ok(Ok(_)));
            if !ok {
                tracing::warn!("cluster: heartbeat not written (NATS unreachable?)");
            }
            liveness.own_heartbeat(ok, Instant::now());
            if !ok {
                continue;
            }
        }
        if let Err(e) = judge(&nodes, &mut liveness, &me.node_id, &store, &relay, period).await {
            tracing::debug!(error = %e, "cluster: liveness check skipped");
        }
    }
}

/// Reads every heartbeat, then closes the open calls of the nodes that are lost.
async fn judge(
    nodes: &kv::Store,
    liveness: &mut Liveness,
    me: &str,
    store: &Store,
    relay: &events::Relay,
    period: Duration,
) -> Result<(), String> {
    use futures_util::TryStreamExt;
    let keys: Vec<String> = tokio::time::timeout(period, async {
        nodes
            .keys()
            .await
            .map_err(|e| e.to_string())?
            .try_collect::<Vec<String>>()
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| "reading the heartbeat bucket timed out".to_owned())??;
    for key in keys {
        if let Ok(Some(entry)) = nodes.entry(key.as_str()).await {
            if entry.operation == kv::Operation::Put {
                liveness.observe(&key, entry.revision, Instant::now());
            }
        }
    }
    let owners = store.open_owners().await.map_err(|e| e.to_string())?;
    for lost in liveness.lost(&owners, me, Instant::now()) {
        let closed = store
            .close_calls_of(&lost, NODE_LOST)
            .await
            .map_err(|e| e.to_string())?;
        tracing::warn!(node = %lost, calls = closed.len(), "cluster: node lost; its open calls are closed as failed");
        for record in closed {
            relay.announce_closed(record).await;
        }
        relay.forget_rooms_of(&lost).await;
        liveness.forget(&lost);
    }
    Ok(())
}
