//! The SIP listener: one rsipstack endpoint (UDP, and TCP when configured) whose incoming
//! transactions are read here. A new INVITE is checked (source network, per-source INVITE
//! rate, SDP, a free RTP port) and handed to a `SipSession` of its own; requests inside a
//! dialog go to the dialog; OPTIONS outside a dialog is answered 200; anything else gets a
//! specific error. Garbage datagrams never reach this loop: the stack's parser drops them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::prelude::*;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::*;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use tokio_util::sync::CancellationToken;

use super::ports::PortPool;
use super::sdp::{self, Session};
use super::session::{Offer, SipSession};
use crate::config::sip::PortRange;
use crate::config::{Cidr, SipConfig};
use crate::registry::Registry;

/// Source addresses whose INVITE rate is tracked at once; past it the oldest are forgotten.
const MAX_TRACKED_SOURCES: usize = 4096;
/// Causes of refused requests logged in full before they are only counted.
const MAX_LOGGED_REFUSALS: u64 = 20;

/// What the running listener tells the switch.
pub struct SipHandle {
    /// The address SIP is bound to (port 0 resolved).
    pub addr: SocketAddr,
    cancel: CancellationToken,
    dialer: super::Dialer,
}

impl Shared {
    /// The arbiter the next inbound session runs on (the current one when there are none).
    pub(super) fn next_arbiter(&self) -> actix::ArbiterHandle {
        let n = self
            .next_arbiter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.arbiters.len() {
            0 => actix::Arbiter::current(),
            len => self.arbiters[n % len].clone(),
        }
    }
}

impl SipHandle {
    /// What places outgoing calls through this listener.
    pub fn dialer(&self) -> super::Dialer {
        self.dialer.clone()
    }

    /// Stops the endpoint (no new SIP traffic is read).
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Drop for SipHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What every SIP session of this switch shares.
pub(super) struct Shared {
    pub registry: Addr<Registry>,
    pub dialogs: Arc<DialogLayer>,
    pub ports: PortPool,
    /// The address put in Contact and SDP.
    pub public_ip: IpAddr,
    /// The call arbiters: each new inbound session (and its call, beside it) goes to the next,
    /// so SIP media spreads over every core.
    pub arbiters: Vec<actix::ArbiterHandle>,
    pub next_arbiter: std::sync::atomic::AtomicUsize,
    pub contact: rsipstack::sip::Uri,
    /// `[sip] symmetric_rtp`: RTP from another address than the SDP's is learnt (NAT).
    pub symmetric_rtp: bool,
}

/// Starts SIP as configured; `None` when `[sip] listen` is unset.
pub async fn start(
    config: &SipConfig,
    registry: Addr<Registry>,
    arbiters: Vec<actix::ArbiterHandle>,
) -> Result<Option<SipHandle>, String> {
    let Some(listen) = config.listen else {
        return Ok(None);
    };
    let range = PortRange::parse(&config.rtp_ports)?;
    let networks = config.networks()?;
    let cancel = CancellationToken::new();
    let transports = TransportLayer::new(cancel.clone());
    let external = config.public_address.map(|ip| SocketAddr::new(ip, 0));
    let udp = UdpConnection::create_connection(listen, external, Some(cancel.child_token()))
        .await
        .map_err(|e| format!("cannot listen for SIP on {listen}: {e}"))?;
    let bound = udp
        .get_addr()
        .get_socketaddr()
        .map_err(|e| format!("SIP listener: {e}"))?;
    transports.add_transport(udp.into());
    if config.transports.iter().any(|t| t == "tcp") {
        let tcp = TcpListenerConnection::new(bound, None)
            .await
            .map_err(|e| format!("cannot listen for SIP over TCP on {bound}: {e}"))?;
        transports.add_transport(tcp.into());
    }
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(cancel.clone())
        .with_transport_layer(transports)
        .with_user_agent("switchboard")
        .build();
    let incoming = endpoint
        .incoming_transactions()
        .map_err(|e| format!("SIP endpoint: {e}"))?;
    let public_ip = config.public_address.unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            rsipstack::transport::SipConnection::resolve_bind_address(bound).ip()
        } else {
            bound.ip()
        }
    });
    let contact = rsipstack::sip::Uri::try_from(
        format!(
            "sip:switchboard@{}",
            SocketAddr::new(public_ip, bound.port())
        )
        .as_str(),
    )
    .map_err(|e| format!("SIP contact: {e}"))?;
    let shared = Arc::new(Shared {
        registry,
        dialogs: Arc::new(DialogLayer::new(endpoint.inner.clone())),
        ports: PortPool::new(bound.ip(), range),
        public_ip,
        arbiters,
        next_arbiter: std::sync::atomic::AtomicUsize::new(0),
        contact,
        symmetric_rtp: config.symmetric_rtp,
    });
    let policy = Policy {
        networks,
        users: config.users.clone(),
        nonces: Mutex::new(std::collections::VecDeque::new()),
        per_second: config.invites_per_second as f64,
        sources: Mutex::new(HashMap::new()),
    };
    let shared_for_dialer = shared.clone();
    let served = cancel.clone();
    actix::spawn(async move {
        tokio::select! {
            _ = endpoint.serve() => {}
            _ = served.cancelled() => {}
        }
    });
    actix::spawn(serve(incoming, shared, policy, cancel.clone()));
    tracing::info!(sip_addr = %bound, %public_ip, rtp_ports = %config.rtp_ports, "SIP listening");
    Ok(Some(SipHandle {
        addr: bound,
        cancel,
        dialer: super::Dialer::new(shared_for_dialer, config.clone()),
    }))
}

/// The realm of the switch's digest challenges.
const REALM: &str = "switchboard";
/// Challenges outstanding at once; the oldest nonce is forgotten past this.
const MAX_NONCES: usize = 1024;

/// What the access rule says of an INVITE.
enum Verdict {
    Admit,
    /// Not from an allowed network and no credentials yet: challenge with this nonce.
    Challenge(String),
    /// Credentials sent and wrong (or a network rule only, and not from it).
    Refuse(&'static str),
}

/// Who may call in, and how fast.
struct Policy {
    networks: Vec<Cidr>,
    users: Vec<crate::config::sip::SipUser>,
    /// Nonces of the challenges sent, oldest first.
    nonces: Mutex<std::collections::VecDeque<String>>,
    per_second: f64,
    /// Tokens left and when they were counted, by source address.
    sources: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Policy {
    /// The access rule, as every ingress has it: an allowed network admits; otherwise, with
    /// users configured, a digest answer to one of our challenges must be right; with neither,
    /// everyone is admitted (loopback, or open on purpose).
    fn verdict(&self, req: &rsipstack::sip::Request, source: Option<IpAddr>) -> Verdict {
        if self.networks.is_empty() && self.users.is_empty() {
            return Verdict::Admit;
        }
        if source.is_some_and(|ip| self.networks.iter().any(|n| n.contains(ip))) {
            return Verdict::Admit;
        }
        if self.users.is_empty() {
            return Verdict::Refuse("address");
        }
        let header = req.headers.iter().find_map(|h| match h {
            Header::Authorization(a) => Some(a),
            _ => None,
        });
        let Some(header) = header else {
            return Verdict::Challenge(self.nonce());
        };
        let Ok(auth) = rsipstack::sip::typed::Authorization::parse(header.value()) else {
            return Verdict::Refuse("bad_credentials");
        };
        let known_nonce = self
            .nonces
            .lock()
            .map(|n| n.iter().any(|x| *x == auth.nonce))
            .unwrap_or(false);
        if !known_nonce || auth.realm != REALM {
            // A stale or foreign nonce: challenge again.
            return Verdict::Challenge(self.nonce());
        }
        let right = self.users.iter().any(|u| {
            crate::protocols::upgrade::secret_eq(&u.username, &auth.username)
                && rsipstack::dialog::authenticate::verify_digest(
                    &auth,
                    &u.password,
                    &req.method,
                    header.value(),
                )
        });
        if right {
            Verdict::Admit
        } else {
            Verdict::Refuse("bad_credentials")
        }
    }

    fn nonce(&self) -> String {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(mut nonces) = self.nonces.lock() {
            if nonces.len() >= MAX_NONCES {
                nonces.pop_front();
            }
            nonces.push_back(nonce.clone());
        }
        nonce
    }

    /// Whether one more INVITE from `source` is kept (a token bucket per source).
    fn admits_rate(&self, source: Option<IpAddr>) -> bool {
        let Some(ip) = source else { return true };
        let Ok(mut sources) = self.sources.lock() else {
            return true;
        };
        let now = Instant::now();
        if sources.len() >= MAX_TRACKED_SOURCES && !sources.contains_key(&ip) {
            sources.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 10);
            if sources.len() >= MAX_TRACKED_SOURCES {
                sources.clear();
            }
        }
        let burst = self.per_second * 2.0;
        let entry = sources.entry(ip).or_insert((burst, now));
        entry.0 =
            (entry.0 + now.duration_since(entry.1).as_secs_f64() * self.per_second).min(burst);
        entry.1 = now;
        if entry.0 >= 1.0 {
            entry.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The source address of a request: the top Via's `received` (the stack adds it when the
/// datagram came from elsewhere than the Via says), else the Via's host.
pub(super) fn source_ip(req: &rsipstack::sip::Request) -> Option<IpAddr> {
    let via = req.top_via_header().ok()?.typed().ok()?;
    let received = via.params.iter().find_map(|p| match p {
        rsipstack::sip::uri::Param::Received(r) => r.parse().ok(),
        _ => None,
    });
    if received.is_some() {
        return received;
    }
    match via.uri.host_with_port.host {
        rsipstack::sip::uri::Host::IpAddr(ip) => Some(ip),
        _ => None,
    }
}

/// Counts refusals by cause, logging the first few of each.
#[derive(Default)]
struct Refusals(HashMap<&'static str, u64>);

impl Refusals {
    fn note(&mut self, cause: &'static str, source: Option<IpAddr>, detail: &str) {
        let n = self.0.entry(cause).or_insert(0);
        *n += 1;
        metrics::counter!("switchboard_sip_refused_total", "cause" => cause).increment(1);
        if *n <= MAX_LOGGED_REFUSALS {
            tracing::warn!(source = ?source, cause, %detail, "SIP request refused");
        }
    }
}

async fn serve(
    mut incoming: rsipstack::transaction::TransactionReceiver,
    shared: Arc<Shared>,
    policy: Policy,
    cancel: CancellationToken,
) {
    let mut refusals = Refusals::default();
    loop {
        let tx = tokio::select! {
            tx = incoming.recv() => tx,
            _ = cancel.cancelled() => None,
        };
        let Some(mut tx) = tx else { break };
        let source = source_ip(&tx.original);
        // Requests inside a dialog go to it.
        if let Some(dialog) = shared.dialogs.match_dialog(&tx) {
            actix::spawn(async move {
                let mut dialog = dialog;
                if let Err(e) = dialog.handle(&mut tx).await {
                    tracing::debug!(error = %e, "SIP in-dialog request failed");
                }
            });
            continue;
        }
        let has_to_tag = tx
            .original
            .to_header()
            .ok()
            .and_then(|to| to.tag().ok().flatten())
            .is_some();
        match tx.original.method {
            Method::Options => reply(tx, StatusCode::OK, vec![]),
            Method::Invite if has_to_tag => {
                refusals.note("unknown_dialog", source, "re-INVITE for no dialog");
                reply(tx, StatusCode::CallTransactionDoesNotExist, vec![]);
            }
            Method::Invite => {
                match policy.verdict(&tx.original, source) {
                    Verdict::Admit => {}
                    Verdict::Challenge(nonce) => {
                        reply(
                            tx,
                            StatusCode::Unauthorized,
                            vec![Header::WwwAuthenticate(
                                format!(
                                    "Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5"
                                )
                                .into(),
                            )],
                        );
                        continue;
                    }
                    Verdict::Refuse(cause) => {
                        refusals.note(cause, source, "not in sip.allow_from, no right credentials");
                        reply(tx, StatusCode::Forbidden, vec![]);
                        continue;
                    }
                }
                if !policy.admits_rate(source) {
                    refusals.note("rate", source, "too many INVITEs from this address");
                    reply(
                        tx,
                        StatusCode::ServiceUnavailable,
                        vec![Header::Other("Retry-After".into(), "5".into())],
                    );
                    continue;
                }
                invite(tx, &shared, &mut refusals, source);
            }
            Method::Ack => {}
            Method::Bye | Method::Cancel | Method::Info | Method::Update | Method::PRack => {
                reply(tx, StatusCode::CallTransactionDoesNotExist, vec![]);
            }
            _ => reply(tx, StatusCode::MethodNotAllowed, vec![]),
        }
    }
}

fn reply(mut tx: Transaction, status: StatusCode, headers: Vec<Header>) {
    actix::spawn(async move {
        let _ = tx.reply_with(status, headers, None).await;
    });
}

/// A new INVITE: its SDP, an RTP port, then a session.
fn invite(tx: Transaction, shared: &Arc<Shared>, refusals: &mut Refusals, source: Option<IpAddr>) {
    let offer = match Session::parse(&tx.original.body).and_then(|s| s.agree().map(|a| (s, a))) {
        Ok(o) => o,
        Err(e) => {
            let cause = match e {
                sdp::SdpError::NoCommonCodec => "no_common_codec",
                _ => "bad_sdp",
            };
            refusals.note(cause, source, &e.to_string());
            reply(
                tx,
                StatusCode::NotAcceptableHere,
                vec![Header::Warning(format!("399 switchboard \"{e}\"").into())],
            );
            return;
        }
    };
    if offer.0.port == 0 {
        refusals.note("bad_sdp", source, "port 0 in the offer");
        reply(tx, StatusCode::NotAcceptableHere, vec![]);
        return;
    }
    let Some(port) = shared.ports.take() else {
        refusals.note("no_rtp_port", source, "every RTP port is in use");
        reply(tx, StatusCode::ServiceUnavailable, vec![]);
        return;
    };
    let (state_tx, state_rx) = shared.dialogs.new_dialog_state_channel();
    let dialog = match shared.dialogs.get_or_create_server_invite(
        &tx,
        state_tx,
        None,
        Some(shared.contact.clone()),
    ) {
        Ok(d) => d,
        Err(e) => {
            refusals.note("bad_request", source, &e.to_string());
            reply(tx, StatusCode::BadRequest, vec![]);
            return;
        }
    };
    let server = dialog;
    let req = tx.original.clone();
    let offer = Offer {
        session: offer.0,
        agreed: offer.1,
        from_user: req
            .from_header()
            .ok()
            .and_then(|f| f.uri().ok())
            .and_then(|u| u.auth.map(|a| a.user)),
        from_host: req
            .from_header()
            .ok()
            .and_then(|f| f.uri().ok())
            .map(|u| u.host_with_port.host.to_string()),
        to_user: req
            .to_header()
            .ok()
            .and_then(|t| t.uri().ok())
            .and_then(|u| u.auth.map(|a| a.user)),
        call_id: req
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default(),
    };
    // The INVITE's server transaction runs beside the session until it ends (ACK, CANCEL,
    // or timer H): 200 OK retransmissions are the stack's.
    let handling = server.clone();
    actix::spawn(async move {
        let mut handling = handling;
        let mut tx = tx;
        if let Err(e) = handling.handle(&mut tx).await {
            tracing::debug!(error = %e, "SIP INVITE transaction ended with an error");
        }
    });
    SipSession::start_inbound(shared.clone(), server, state_rx, port, offer);
}
