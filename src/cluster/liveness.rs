//! Which nodes are lost: pure bookkeeping over what the heartbeat bucket showed, by this
//! node's own clock (never another host's).
//!
//! A node is lost when its heartbeat entry has not changed for `LOST_AFTER` periods, or when
//! it has open calls in the store and never showed a heartbeat while this node was healthy for
//! `GRACE` periods. This node judges nobody unless its own heartbeats have been landing for
//! `GRACE` periods: after NATS comes back every node gets time to heartbeat again first.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Heartbeat periods without a change after which a node is lost.
pub const LOST_AFTER: f64 = 2.5;
/// Heartbeat periods this node must have been heartbeating before it judges others.
pub const GRACE: f64 = 3.5;

/// What this node knows of the others' heartbeats.
#[derive(Debug)]
pub struct Liveness {
    period: Duration,
    /// Node → (last revision seen, when it changed).
    seen: HashMap<String, (u64, Instant)>,
    /// Since when this node's own heartbeats have been landing.
    healthy_since: Option<Instant>,
}

impl Liveness {
    pub fn new(period: Duration) -> Liveness {
        Liveness {
            period,
            seen: HashMap::new(),
            healthy_since: None,
        }
    }

    /// This node's own heartbeat landed (`true`) or failed.
    pub fn own_heartbeat(&mut self, ok: bool, now: Instant) {
        match (ok, self.healthy_since) {
            (true, None) => {
                // Back after a gap: what was seen before the gap says nothing about now.
                self.healthy_since = Some(now);
                for (_, changed) in self.seen.values_mut() {
                    *changed = now;
                }
            }
            (false, _) => self.healthy_since = None,
            (true, Some(_)) => {}
        }
    }

    /// The bucket now shows `node` at `revision`.
    pub fn observe(&mut self, node: &str, revision: u64, now: Instant) {
        match self.seen.get_mut(node) {
            Some((rev, changed)) if *rev != revision => {
                *rev = revision;
                *changed = now;
            }
            Some(_) => {}
            None => {
                self.seen.insert(node.to_owned(), (revision, now));
            }
        }
    }

    /// Which of `owners` (nodes with open calls) are lost, `me` never.
    pub fn lost(&self, owners: &[String], me: &str, now: Instant) -> Vec<String> {
        let Some(healthy) = self.healthy_since else {
            return Vec::new();
        };
        if now.duration_since(healthy) < self.period.mul_f64(GRACE) {
            return Vec::new();
        }
        owners
            .iter()
            .filter(|owner| owner.as_str() != me)
            .filter(|owner| match self.seen.get(owner.as_str()) {
                Some((_, changed)) => {
                    now.duration_since(*changed) >= self.period.mul_f64(LOST_AFTER)
                }
                None => true,
            })
            .cloned()
            .collect()
    }

    /// Forgets a node once its calls are closed.
    pub fn forget(&mut self, node: &str) {
        self.seen.remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_secs(1);

    fn owners(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nobody_is_judged_before_this_node_has_been_healthy_for_the_grace() {
        let t0 = Instant::now();
        let mut l = Liveness::new(P);
        assert!(l.lost(&owners(&["b"]), "a", t0).is_empty());
        l.own_heartbeat(true, t0);
        assert!(l.lost(&owners(&["b"]), "a", t0 + P * 3).is_empty());
        assert_eq!(l.lost(&owners(&["b"]), "a", t0 + P * 4), owners(&["b"]));
        assert!(l.lost(&owners(&["a"]), "a", t0 + P * 4).is_empty());
    }

    #[test]
    fn a_silent_node_is_lost_and_a_beating_one_is_not() {
        let t0 = Instant::now();
        let mut l = Liveness::new(P);
        l.own_heartbeat(true, t0);
        for i in 0..10u32 {
            let now = t0 + P * i;
            l.observe("b", u64::from(i), now);
            l.observe("c", 1, now);
        }
        let now = t0 + P * 10;
        assert_eq!(l.lost(&owners(&["b", "c"]), "a", now), owners(&["c"]));
    }

    #[test]
    fn a_gap_in_this_nodes_own_heartbeats_resets_what_it_saw() {
        let t0 = Instant::now();
        let mut l = Liveness::new(P);
        l.own_heartbeat(true, t0);
        l.observe("b", 1, t0);
        // NATS went away for 10 periods.
        l.own_heartbeat(false, t0 + P);
        l.own_heartbeat(true, t0 + P * 11);
        assert!(l.lost(&owners(&["b"]), "a", t0 + P * 12).is_empty());
        l.observe("b", 2, t0 + P * 12);
        assert!(l.lost(&owners(&["b"]), "a", t0 + P * 14).is_empty());
        // Silent again from then on: lost 2.5 periods after its last change.
        assert_eq!(l.lost(&owners(&["b"]), "a", t0 + P * 15), owners(&["b"]));
    }
}
