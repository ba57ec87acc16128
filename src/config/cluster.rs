//! `[cluster]`: several switches behind one load balancer, sharing one PostgreSQL store, with
//! control between them over NATS (see `docs/cluster.md`). Absent or `enabled = false`: a
//! single switch, and NATS is never contacted.

use serde::Deserialize;

/// Longest `cluster_name` and `node_id`: both go into NATS subjects and key-value keys.
pub const MAX_NAME_BYTES: usize = 64;

/// Cluster mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub enabled: bool,
    /// The NATS server (`nats://host:4222`; `nats://user:password@host:4222` with credentials).
    /// JetStream must be on (`nats-server -js`).
    pub nats_url: String,
    /// Switches with the same name form one cluster; several clusters may share a NATS server.
    pub cluster_name: String,
    /// This switch's name in the cluster; by default its instance id (`store.instance_file`).
    /// It is also the owner of the calls this switch writes to the store.
    pub node_id: Option<String>,
    /// How long a request to the node holding a call waits for its answer.
    pub request_timeout_ms: u64,
    /// How often this switch says it is alive; a switch silent for 2.5 periods is lost and its
    /// open calls are closed as failed by a surviving switch.
    pub heartbeat_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            nats_url: "nats://127.0.0.1:4222".into(),
            cluster_name: "switchboard".into(),
            node_id: None,
            request_timeout_ms: 2000,
            heartbeat_ms: 1000,
        }
    }
}

/// Whether `name` can be one token of a NATS subject and of a key-value key.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ClusterConfig {
    /// Checks the section; `store_url` is the configured store.
    pub fn validate(&self, store_url: &str) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if !store_url.starts_with("postgres") {
            return Err(format!(
                "cluster mode needs a store every switch shares: set store.url to a \
                 postgres:// URL (it is `{store_url}`; SQLite is for a single switch)"
            ));
        }
        if !(self.nats_url.starts_with("nats://") || self.nats_url.starts_with("tls://")) {
            return Err(format!(
                "cluster.nats_url `{}` must start with nats:// or tls://",
                self.nats_url
            ));
        }
        if !is_token(&self.cluster_name) {
            return Err(format!(
                "cluster.cluster_name `{}` must be 1 to {MAX_NAME_BYTES} letters, digits, - or _",
                self.cluster_name
            ));
        }
        if let Some(node) = &self.node_id {
            if !is_token(node) {
                return Err(format!(
                    "cluster.node_id `{node}` must be 1 to {MAX_NAME_BYTES} letters, digits, - or _"
                ));
            }
        }
        if !(100..=60_000).contains(&self.request_timeout_ms) {
            return Err("cluster.request_timeout_ms must be between 100 and 60000".into());
        }
        if !(100..=60_000).contains(&self.heartbeat_ms) {
            return Err("cluster.heartbeat_ms must be between 100 and 60000".into());
        }
        Ok(())
    }
}
