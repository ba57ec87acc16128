//! Outgoing SIP calls: where a destination is dialled (a `tel` number through a trunk, a `sip:`
//! URI directly) and the INVITE that starts a `SipSession` placing the call.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::{HostWithPort, Transport, Uri};
use rsipstack::transport::SipAddr;

use super::media_session_placeholder;
use super::sdp::{Direction, Local};
use super::server::Shared;
use super::session::{Offer, Outgoing, SipSession};
use crate::call::state::Address;
use crate::config::{SipConfig, TrunkConfig};
use crate::protocols::leg::CallLink;
use crate::registry::{CallHandle, Dialing};

/// Places outgoing calls; cloned into the Calls API.
#[derive(Clone)]
pub struct Dialer {
    shared: Arc<Shared>,
    config: Arc<SipConfig>,
}

/// Where one call goes.
#[derive(Debug, Clone)]
pub struct Target {
    callee: Uri,
    destination: Option<SipAddr>,
    trunk: Option<TrunkConfig>,
}

impl Dialer {
    pub(super) fn new(shared: Arc<Shared>, config: SipConfig) -> Self {
        Dialer {
            shared,
            config: Arc::new(config),
        }
    }

    /// The trunk named `gateway`, else the first configured.
    fn trunk(&self, gateway: Option<&str>) -> Option<&TrunkConfig> {
        gateway
            .and_then(|g| self.config.trunks.get(g))
            .or_else(|| self.config.trunks.values().next())
    }

    /// Where `destination` would be dialled; `None` when this switch cannot dial it (a `tel`
    /// number with no trunk, another address type, a malformed URI).
    pub fn target(&self, destination: &Address, gateway: Option<&str>) -> Option<Target> {
        let target = destination.target.trim();
        match destination.kind.as_str() {
            "tel" => {
                let trunk = self.trunk(gateway)?.clone();
                let number: String = target
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '*' | '#'))
                    .collect();
                if number.is_empty() {
                    return None;
                }
                let host =
                    HostWithPort::try_from(format!("{}:{}", trunk.host, trunk.port).as_str())
                        .ok()?;
                let callee =
                    Uri::try_from(format!("sip:{number}@{}:{}", trunk.host, trunk.port).as_str())
                        .ok()?;
                Some(Target {
                    callee,
                    destination: Some(SipAddr::new(transport(&trunk.transport), host)),
                    trunk: Some(trunk),
                })
            }
            "sip" => {
                let uri = if target.starts_with("sip:") {
                    target.to_owned()
                } else {
                    format!("sip:{target}")
                };
                let callee = Uri::try_from(uri.as_str()).ok()?;
                Some(Target {
                    callee,
                    destination: None,
                    // Credentials for a directly dialled URI come from the trunk named, if any.
                    trunk: gateway.and_then(|g| self.config.trunks.get(g)).cloned(),
                })
            }
            _ => None,
        }
    }

    /// Places the call `call` to `target`: its RTP port, the INVITE, and the session that sees
    /// it through. An error (no free RTP port, an INVITE that cannot be built) leaves the call
    /// to the caller to end.
    pub fn dial(&self, target: Target, call: &CallHandle, source: &Address) -> Result<(), String> {
        let shared = &self.shared;
        let port = shared
            .ports
            .take()
            .ok_or_else(|| "every RTP port is in use".to_string())?;
        let trunk = target.trunk.as_ref();
        let user = [
            (source.kind == "tel").then(|| source.target.clone()),
            trunk.and_then(|t| t.caller_id.clone()),
            trunk.and_then(|t| t.from_user.clone()),
            trunk.and_then(|t| t.username.clone()),
        ]
        .into_iter()
        .flatten()
        .find(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "switchboard".into());
        let sip_port = shared
            .contact
            .host_with_port
            .port
            .map_or(5060, |p| p.value());
        let caller = Uri::try_from(
            format!("sip:{user}@{}", SocketAddr::new(shared.public_ip, sip_port)).as_str(),
        )
        .map_err(|e| format!("caller URI: {e}"))?;
        let local = Local {
            address: shared.public_ip,
            port: port.port,
            session_id: u64::from(call.id.as_u128() as u32),
            version: 1,
            direction: Direction::SendRecv,
        };
        let credential = trunk.and_then(|t| {
            Some(Credential {
                username: t.username.clone()?,
                password: t.password.clone()?,
                realm: None,
                auth_username: None,
            })
        });
        let option = InviteOption {
            caller,
            callee: target.callee.clone(),
            destination: target.destination.clone(),
            content_type: Some("application/sdp".into()),
            offer: Some(local.offer().into_bytes()),
            contact: shared.contact.clone(),
            credential,
            call_id: Some(call.id.to_string()),
            ..Default::default()
        };
        let (state_tx, state_rx) = shared.dialogs.new_dialog_state_channel();
        let (dialog, invite) = shared
            .dialogs
            .do_invite_async(option, state_tx)
            .map_err(|e| format!("INVITE to {}: {e}", target.callee))?;
        tracing::info!(call = %call.id, callee = %target.callee, "SIP call placed");
        SipSession::start_outbound(
            shared.clone(),
            dialog,
            state_rx,
            port,
            Offer {
                session: media_session_placeholder(),
                agreed: super::sdp::Agreed {
                    law: crate::media::g711::Law::Ulaw,
                    pt: 0,
                    dtmf_pt: Some(super::sdp::DTMF_PT),
                },
                from_user: None,
                from_host: None,
                to_user: None,
                call_id: call.id.to_string(),
            },
            CallLink::new(call.addr.clone(), call.id),
            Outgoing {
                invite: Some(invite),
                ring_timeout: Duration::from_millis(self.config.ring_timeout_ms),
                arbiter: call.arbiter.clone(),
            },
        );
        Ok(())
    }
}

impl Dialing for Dialer {
    fn place(
        &self,
        destination: &Address,
        call: &CallHandle,
        source: &Address,
    ) -> Result<(), String> {
        let target = self.target(destination, None).ok_or_else(|| {
            format!(
                "a `{}` destination `{}` cannot be dialled from this switch",
                destination.kind, destination.target
            )
        })?;
        self.dial(target, call, source)
    }
}

fn transport(name: &str) -> Transport {
    if name == "tcp" {
        Transport::Tcp
    } else {
        Transport::Udp
    }
}

/// The far end's media before its SDP is known: nowhere (nothing is sent to port 0).
pub(super) fn nowhere() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}
