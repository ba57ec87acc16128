//! NATS subjects and key-value names of one cluster.
//!
//! | subject / key | what |
//! |---|---|
//! | `switchboard.<cluster>.call.<call id>.cmd` | a request for the switch holding the call (every node subscribes with `call.*.cmd`; only the holder answers) |
//! | `switchboard.<cluster>.node.<node id>.cmd` | a request for one node (a room's requests) |
//! | `switchboard.<cluster>.events.<workspace>` | call, room and transcript events of one workspace |
//! | bucket `switchboard-<cluster>-nodes`, key `<node id>` | a node's heartbeat |
//! | bucket `switchboard-<cluster>-rooms`, key `<room id>` | the node holding an open room |

use uuid::Uuid;

/// The subjects and buckets of one cluster.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
    cluster: String,
}

impl Subjects {
    /// The names of cluster `cluster` (a valid token: `config::cluster::is_token`).
    pub fn new(cluster: &str) -> Subjects {
        Subjects {
            prefix: format!("switchboard.{cluster}"),
            cluster: cluster.to_owned(),
        }
    }

    /// Requests for the holder of call `id`.
    pub fn call(&self, id: Uuid) -> String {
        format!("{}.call.{}.cmd", self.prefix, id.simple())
    }

    /// What every node subscribes to for call requests.
    pub fn all_calls(&self) -> String {
        format!("{}.call.*.cmd", self.prefix)
    }

    /// The call id of a call request's subject.
    pub fn call_of(&self, subject: &str) -> Option<Uuid> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".call.")?;
        let id = rest.strip_suffix(".cmd")?;
        Uuid::parse_str(id).ok()
    }

    /// Requests for node `node`.
    pub fn node(&self, node: &str) -> String {
        format!("{}.node.{node}.cmd", self.prefix)
    }

    /// Events of `workspace`.
    pub fn events(&self, workspace: &str) -> String {
        format!("{}.events.{}", self.prefix, workspace_token(workspace))
    }

    /// Every workspace's events.
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// The heartbeat bucket.
    pub fn nodes_bucket(&self) -> String {
        format!("switchboard-{}-nodes", self.cluster)
    }

    /// The room placement bucket.
    pub fn rooms_bucket(&self) -> String {
        format!("switchboard-{}-rooms", self.cluster)
    }
}

/// A workspace as one subject token: letters, digits, `-` and `_` as they are, every other
/// byte as `~XX` (hex), the empty workspace as `~`. Distinct workspaces get distinct tokens.
pub fn workspace_token(workspace: &str) -> String {
    if workspace.is_empty() {
        return "~".into();
    }
    let mut out = String::with_capacity(workspace.len());
    for b in workspace.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_become_single_distinct_tokens() {
        assert_eq!(workspace_token("acme"), "acme");
        assert_eq!(workspace_token(""), "~");
        assert_eq!(workspace_token("a.b"), "a~2Eb");
        assert_eq!(workspace_token("a b>*"), "a~20b~3E~2A");
        assert_ne!(workspace_token("a.b"), workspace_token("a~2Eb"));
    }

    #[test]
    fn call_subjects_round_trip() {
        let s = Subjects::new("blue");
        let id = Uuid::new_v4();
        assert_eq!(s.call_of(&s.call(id)), Some(id));
        assert_eq!(s.call_of("switchboard.blue.call.nope.cmd"), None);
        assert_eq!(s.call_of("switchboard.green.call.x.cmd"), None);
    }
}
