//! `[sip]`: the SIP listener, its RTP port range, who may call in, and the trunks calls go out
//! through. Absent, or without `listen`, the switch speaks no SIP.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use super::Cidr;

/// The SIP settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Where SIP listens (`0.0.0.0:5060`); unset, SIP is off. Port 0 takes a free port (tests).
    pub listen: Option<SocketAddr>,
    /// The transports served on `listen`: `udp` and/or `tcp`.
    pub transports: Vec<String>,
    /// The address peers reach this switch at (Contact and SDP) when it is behind NAT; unset,
    /// the listener's address (or, on a wildcard listener, the first interface's).
    pub public_address: Option<IpAddr>,
    /// The UDP ports RTP uses, one per call (`"20000-20999"`); a call that finds none free is
    /// refused with 503.
    pub rtp_ports: String,
    /// Networks callers may call in from (CIDR). On a non-loopback listener the switch refuses
    /// to start with no network unless `allow_unauthenticated` is set.
    pub allow_from: Vec<String>,
    /// Digest credentials callers may present (RFC 3261 §22): a caller from outside
    /// `allow_from` is challenged (401) and must answer with one of them, else 403.
    pub users: Vec<SipUser>,
    /// Admit callers from anywhere on a non-loopback listener, on purpose.
    pub allow_unauthenticated: bool,
    /// New INVITEs a second kept from one source address (a burst of twice this is allowed);
    /// past it the source gets 503 with Retry-After.
    pub invites_per_second: u32,
    /// How long an outgoing call may ring before it ends with `noanswer`.
    pub ring_timeout_ms: u64,
    /// Symmetric RTP (a peer behind NAT): RTP that comes from another address than its SDP
    /// gives is taken once `RTP_PROBATION` packets in sequence came from it, and the call's
    /// audio is sent back there. Off: only the SDP's address is heard and sent to.
    pub symmetric_rtp: bool,
    /// Trunks by name, for outgoing calls (the first by name is used when a request names none).
    pub trunks: BTreeMap<String, TrunkConfig>,
}

impl SipConfig {
    /// Whether the switch can dial destinations of address type `kind`: a `sip:` URI whenever
    /// SIP is on, a `tel` number when a trunk is configured too.
    pub fn can_dial(&self, kind: &str) -> bool {
        self.listen.is_some()
            && match kind {
                "sip" => true,
                "tel" => !self.trunks.is_empty(),
                _ => false,
            }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: None,
            transports: vec!["udp".into()],
            public_address: None,
            rtp_ports: "20000-20999".into(),
            allow_from: Vec::new(),
            users: Vec::new(),
            allow_unauthenticated: false,
            invites_per_second: 20,
            ring_timeout_ms: 60_000,
            symmetric_rtp: true,
            trunks: BTreeMap::new(),
        }
    }
}

/// A caller's digest credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipUser {
    pub username: String,
    pub password: String,
}

/// One SIP trunk (a carrier or PBX) outgoing calls go through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub host: String,
    #[serde(default = "default_sip_port")]
    pub port: u16,
    #[serde(default = "default_transport")]
    pub transport: String,
    /// Digest credentials, used when the trunk answers 401 or 407.
    pub username: Option<String>,
    pub password: Option<String>,
    /// The user part of the From URI (defaults to `username`, then `switchboard`).
    pub from_user: Option<String>,
    /// The number shown to the called party when the request gives no source.
    pub caller_id: Option<String>,
}

fn default_sip_port() -> u16 {
    5060
}

fn default_transport() -> String {
    "udp".into()
}

/// The RTP port range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("`{text}` is not FIRST-LAST"))?;
        let first: u16 = a
            .trim()
            .parse()
            .map_err(|_| format!("`{a}` is not a port"))?;
        let last: u16 = b
            .trim()
            .parse()
            .map_err(|_| format!("`{b}` is not a port"))?;
        if first == 0 || first > last {
            return Err(format!("`{text}` is empty or starts at 0"));
        }
        Ok(PortRange { first, last })
    }

    pub fn len(&self) -> usize {
        (self.last - self.first) as usize + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl SipConfig {
    /// Whether SIP is on.
    pub fn enabled(&self) -> bool {
        self.listen.is_some()
    }

    /// The networks, parsed.
    pub fn networks(&self) -> Result<Vec<Cidr>, String> {
        self.allow_from
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.parse()
                    .map_err(|e| format!("sip.allow_from[{i}] `{t}`: {e}"))
            })
            .collect()
    }

    /// Checks the section on its own.
    pub fn validate(&self) -> Result<(), String> {
        PortRange::parse(&self.rtp_ports).map_err(|e| format!("sip.rtp_ports: {e}"))?;
        for t in &self.transports {
            if t != "udp" && t != "tcp" {
                return Err(format!("sip.transports: `{t}` is not udp or tcp"));
            }
        }
        if self.transports.is_empty() {
            return Err("sip.transports is empty".into());
        }
        self.networks()?;
        if self.invites_per_second == 0 {
            return Err("sip.invites_per_second must be at least 1".into());
        }
        if let Some(listen) = self.listen {
            if !listen.ip().is_loopback()
                && self.allow_from.is_empty()
                && self.users.is_empty()
                && !self.allow_unauthenticated
            {
                return Err(format!(
                    "SIP on {listen} has no access rule: set sip.allow_from or sip.users, or sip.allow_unauthenticated = true"
                ));
            }
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.username.is_empty() || u.password.is_empty() {
                return Err(format!("sip.users[{i}]: username and password must be set"));
            }
        }
        for (name, trunk) in &self.trunks {
            if trunk.host.trim().is_empty() {
                return Err(format!("sip.trunks.{name}.host is empty"));
            }
            if trunk.transport != "udp" && trunk.transport != "tcp" {
                return Err(format!(
                    "sip.trunks.{name}.transport `{}` is not udp or tcp",
                    trunk.transport
                ));
            }
            if trunk.username.is_some() != trunk.password.is_some() {
                return Err(format!(
                    "sip.trunks.{name}: username and password go together"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(
            PortRange::parse("20000-20999"),
            Ok(PortRange {
                first: 20000,
                last: 20999
            })
        );
        assert_eq!(PortRange::parse("5-5").unwrap().len(), 1);
        assert!(PortRange::parse("9-3").is_err());
        assert!(PortRange::parse("0-3").is_err());
        assert!(PortRange::parse("70000-70001").is_err());
        assert!(PortRange::parse("100").is_err());
    }

    #[test]
    fn a_public_listener_needs_a_rule() {
        let mut c = SipConfig {
            listen: Some("0.0.0.0:5060".parse().unwrap()),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("no access rule"));
        c.allow_from = vec!["10.0.0.0/8".into()];
        assert!(c.validate().is_ok());
        c.listen = Some("127.0.0.1:0".parse().unwrap());
        c.allow_from.clear();
        assert!(c.validate().is_ok());
    }
}
