//! Forwarded control: a request naming a call or room another node holds is served there.
//!
//! On the node the client reached (`Forward`, an actix-web middleware): a request whose path
//! names a call (`/calls/{id}`, `/calls/{id}/hangup`, `/api/v1/calls/{id}/…`) or a room
//! (`/api/v1/calls/rooms/{id}/…`) that this node does not hold goes, whole (method, path,
//! query, `Authorization`, `Content-Type`, body, the client's address), as one NATS request:
//! for a call to `…call.<id>.cmd`, which every node hears and only the holder answers; for a
//! room to `…node.<node>.cmd` of the node the room bucket names. The answer (status, type,
//! body) goes back to the client unchanged, with `X-Switchboard-Node` naming the node that
//! served it. Not forwarded, and served here from the store as before: a call the store shows
//! ended, a request nobody answers in `request_timeout_ms` (the call is gone or its node is
//! down), live event streams (`/calls/{id}/events`: events come here over NATS).
//!
//! On the node holding it (`Responder`): the request is served by this node's own HTTP
//! service on a loopback listener, marked with this process's secret so the access rule
//! checks the client's address and key rather than the loopback's, and never forwarded again.

use std::future::{ready, Ready};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::Addr;
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpResponse};
use async_nats::HeaderMap;
use bytes::{Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use tokio::sync::{watch, Semaphore};
use uuid::Uuid;

use super::{Cluster, Subjects, MAX_SERVING};
use crate::api::body::MAX_BODY_BYTES;
use crate::registry::{FindCall, Registry};
use crate::room::directory::FindRoom;
use crate::store::Store;

/// Marks a request another node forwarded here (its value: this process's secret).
pub const FORWARDED_HEADER: &str = "x-switchboard-forwarded";
/// The address of the client a forwarded request came from.
pub const PEER_HEADER: &str = "x-switchboard-peer";
/// Names the node that served a forwarded request.
pub const NODE_HEADER: &str = "x-switchboard-node";

const H_METHOD: &str = "Sb-Method";
const H_PATH: &str = "Sb-Path";
const H_PEER: &str = "Sb-Peer";
const H_AUTH: &str = "Sb-Authorization";
const H_TYPE: &str = "Sb-Content-Type";
const H_ROOM: &str = "Sb-Room";
const H_STATUS: &str = "Sb-Status";
const H_NODE: &str = "Sb-Node";
const H_MISS: &str = "Sb-Miss";
/// Response headers passed back to the client.
const PASSED_HEADERS: &[&str] = &["content-type", "www-authenticate", "content-disposition"];
/// Headers are passed as `Sb-H-<name>`.
const H_PASSED: &str = "Sb-H-";
/// Room of a miss: its node no longer holds it.
const MISS: &str = "1";
/// How long a forwarded request's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// This process's secret for requests it serves for other nodes (random, never sent off the
/// host: only the loopback listener sees it).
fn secret() -> &'static str {
    static SECRET: OnceLock<String> = OnceLock::new();
    SECRET.get_or_init(|| Uuid::new_v4().simple().to_string())
}

/// The client address of a request another node forwarded here, when the request carries this
/// process's secret; `None` for every other request.
pub fn forwarded_peer(req: &actix_web::HttpRequest) -> Option<IpAddr> {
    let marked = req.headers().get(FORWARDED_HEADER)?.as_bytes();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(marked, secret().as_bytes())) {
        return None;
    }
    req.headers().get(PEER_HEADER)?.to_str().ok()?.parse().ok()
}

/// What a request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Call(Uuid),
    Room(Uuid),
}

/// The call or room a request path names, if it is one that is forwarded.
fn target(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(6, '/').collect();
    match parts.as_slice() {
        ["calls", id] | ["calls", id, "hangup"] => Uuid::parse_str(id).ok().map(Target::Call),
        ["api", "v1", "calls", "rooms", id, ..] => Uuid::parse_str(id).ok().map(Target::Room),
        ["api", "v1", "calls", id, ..] => Uuid::parse_str(id).ok().map(Target::Call),
        _ => None,
    }
}

/// The middleware; does nothing without a cluster.
#[derive(Clone)]
pub struct Forward {
    inner: Option<Arc<Ctx>>,
}

struct Ctx {
    cluster: Cluster,
    registry: Addr<Registry>,
    store: Store,
}

impl Forward {
    pub fn new(cluster: Option<Cluster>, registry: Addr<Registry>, store: Store) -> Forward {
        Forward {
            inner: cluster.map(|cluster| {
                Arc::new(Ctx {
                    cluster,
                    registry,
                    store,
                })
            }),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Forward
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B, BoxBody>>;
    type Error = actix_web::Error;
    type Transform = ForwardService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ForwardService {
            service: Rc::new(service),
            ctx: self.inner.clone(),
        }))
    }
}

pub struct ForwardService<S> {
    service: Rc<S>,
    ctx: Option<Arc<Ctx>>,
}

impl<S, B> Service<ServiceRequest> for ForwardService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B, BoxBody>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let local = |service: Rc<S>, req: ServiceRequest| async move {
            service.call(req).await.map(|r| r.map_into_left_body())
        };
        let (Some(ctx), Some(target)) = (self.ctx.clone(), target(req.path())) else {
            return Box::pin(local(service, req));
        };
        if req.headers().contains_key(FORWARDED_HEADER) {
            return Box::pin(local(service, req));
        }
        Box::pin(async move {
            let Some(subject) = ctx.remote_subject(target).await else {
                return local(service, req).await;
            };
            let body = match tokio::time::timeout(BODY_TIMEOUT, read_body(&mut req)).await {
                Ok(Ok(body)) => body,
                Ok(Err(status)) => {
                    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                        format!(
                            "the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
                        )
                    } else {
                        "the request body could not be read".to_owned()
                    };
                    let response = crate::http_error::error_json(status, message);
                    return Ok(req.into_response(response).map_into_right_body());
                }
                Err(_) => {
                    let response = crate::http_error::error_json(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the request body did not arrive within {} s",
                            BODY_TIMEOUT.as_secs()
                        ),
                    );
                    return Ok(req.into_response(response).map_into_right_body());
                }
            };
            let mut headers = HeaderMap::new();
            headers.insert(H_METHOD, req.method().as_str());
            let path = req
                .uri()
                .path_and_query()
                .map_or(req.path().to_owned(), |p| p.as_str().to_owned());
            headers.insert(H_PATH, path.as_str());
            if let Some(peer) = req.peer_addr() {
                headers.insert(H_PEER, peer.ip().to_string().as_str());
            }
            for (name, key) in [
                (actix_web::http::header::AUTHORIZATION, H_AUTH),
                (actix_web::http::header::CONTENT_TYPE, H_TYPE),
            ] {
                if let Some(value) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
                    headers.insert(key, value);
                }
            }
            if let Target::Room(room) = target {
                headers.insert(H_ROOM, room.to_string().as_str());
            }
            match ctx.cluster.request(subject, headers, body.clone()).await {
                Some(reply) => Ok(req.into_response(reply).map_into_right_body()),
                None => {
                    // Nobody answered: served here, from the store.
                    req.set_payload(bytes_payload(body));
                    local(service, req).await
                }
            }
        })
    }
}

fn bytes_payload(body: Bytes) -> actix_web::dev::Payload {
    let (_, mut payload) = actix_http::h1::Payload::create(true);
    payload.unread_data(body);
    actix_web::dev::Payload::from(payload)
}

/// Reads a request body up to `MAX_BODY_BYTES`.
async fn read_body(req: &mut ServiceRequest) -> Result<Bytes, StatusCode> {
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

impl Ctx {
    /// Where to send a request for `target`, when another node holds it.
    async fn remote_subject(&self, target: Target) -> Option<String> {
        match target {
            Target::Call(id) => {
                if self
                    .registry
                    .send(FindCall { id })
                    .await
                    .ok()
                    .flatten()
                    .is_some()
                {
                    return None;
                }
                // A call the store shows ended is served here without asking anyone.
                if let Ok(Some(record)) = self.store.get_call(id).await {
                    if record.status == crate::call::state::Status::Hangup {
                        return None;
                    }
                }
                Some(self.cluster.subjects().call(id))
            }
            Target::Room(id) => {
                if self
                    .registry
                    .send(FindRoom { id })
                    .await
                    .ok()
                    .flatten()
                    .is_some()
                {
                    return None;
                }
                let node = self.cluster.room_node(id).await?;
                (node != self.cluster.node_id()).then(|| self.cluster.subjects().node(&node))
            }
        }
    }
}

impl Cluster {
    /// Sends a forwarded request and turns the answer into the response; `None` when nobody
    /// answered (or the node no longer holds the room).
    async fn request(
        &self,
        subject: String,
        headers: HeaderMap,
        body: Bytes,
    ) -> Option<HttpResponse> {
        let client = self.client().clone();
        let timeout = self.request_timeout();
        let sent = self
            .runtime()
            .spawn(async move {
                client
                    .send_request(
                        subject,
                        async_nats::Request::new()
                            .headers(headers)
                            .payload(body)
                            .timeout(Some(timeout)),
                    )
                    .await
            })
            .await
            .ok()?;
        let reply = match sent {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!(error = %e, "cluster: forwarded request not answered");
                return None;
            }
        };
        let headers = reply.headers.as_ref()?;
        if headers.get(H_MISS).is_some() {
            return None;
        }
        let status = headers
            .get(H_STATUS)
            .and_then(|s| s.as_str().parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::BAD_GATEWAY);
        let mut response = HttpResponse::build(status);
        for name in PASSED_HEADERS {
            if let Some(value) = headers.get(format!("{H_PASSED}{name}").as_str()) {
                response.insert_header((*name, value.as_str()));
            }
        }
        if let Some(node) = headers.get(H_NODE) {
            response.insert_header((NODE_HEADER, node.as_str()));
        }
        Some(response.body(reply.payload))
    }
}

/// Serves the requests other nodes forward to this one.
#[derive(Clone)]
pub struct Responder {
    client: async_nats::Client,
    subjects: Subjects,
    registry: Addr<Registry>,
    node_id: String,
    internal: SocketAddr,
    http: reqwest::Client,
    serving: Arc<Semaphore>,
}

impl Responder {
    pub(super) fn new(
        client: async_nats::Client,
        subjects: Subjects,
        node_id: String,
        registry: Addr<Registry>,
        internal: SocketAddr,
        timeout: Duration,
    ) -> Responder {
        Responder {
            client,
            subjects,
            registry,
            node_id,
            internal,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .no_proxy()
                .build()
                .unwrap_or_default(),
            serving: Arc::new(Semaphore::new(MAX_SERVING)),
        }
    }

    /// Answers the call requests for the calls this node holds; stays silent on the others.
    pub(super) async fn serve_calls(
        self,
        mut requests: async_nats::Subscriber,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let msg = tokio::select! {
                _ = stop.changed() => return,
                msg = requests.next() => match msg { Some(m) => m, None => return },
            };
            let (Some(reply), Some(id)) = (msg.reply.clone(), self.subjects.call_of(&msg.subject))
            else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                if this
                    .registry
                    .send(FindCall { id })
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                {
                    return;
                }
                this.answer(reply, msg).await;
            });
        }
    }

    /// Answers the requests sent to this node (a room's); a miss when it no longer holds the
    /// room.
    pub(super) async fn serve_node(
        self,
        mut requests: async_nats::Subscriber,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let msg = tokio::select! {
                _ = stop.changed() => return,
                msg = requests.next() => match msg { Some(m) => m, None => return },
            };
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let room = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(H_ROOM))
                    .and_then(|r| Uuid::parse_str(r.as_str()).ok());
                let held = match room {
                    Some(id) => this
                        .registry
                        .send(FindRoom { id })
                        .await
                        .ok()
                        .flatten()
                        .is_some(),
                    None => false,
                };
                if !held {
                    let mut headers = HeaderMap::new();
                    headers.insert(H_MISS, MISS);
                    let _ = this
                        .client
                        .publish_with_headers(reply, headers, Bytes::new())
                        .await;
                    return;
                }
                this.answer(reply, msg).await;
            });
        }
    }

    /// Serves one forwarded request on the loopback listener and publishes the answer.
    async fn answer(&self, reply: async_nats::Subject, msg: async_nats::Message) {
        let (status, headers, body) = match self.serving.clone().try_acquire_owned() {
            Ok(_permit) => self.serve(&msg).await,
            Err(_) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "this switch is serving too many forwarded requests; try again",
            ),
        };
        let max = self.client.max_payload().saturating_sub(4096);
        let (status, mut headers, body) = if body.len() > max {
            error(StatusCode::BAD_GATEWAY, "the answer is too large to forward between switches; ask the switch holding the call")
        } else {
            (status, headers, body)
        };
        headers.insert(H_STATUS, status.as_u16().to_string().as_str());
        headers.insert(H_NODE, self.node_id.as_str());
        if let Err(e) = self.client.publish_with_headers(reply, headers, body).await {
            tracing::warn!(error = %e, "cluster: answer to a forwarded request not sent");
        }
    }

    async fn serve(&self, msg: &async_nats::Message) -> (StatusCode, HeaderMap, Bytes) {
        let Some(h) = msg.headers.as_ref() else {
            return error(
                StatusCode::BAD_REQUEST,
                "a forwarded request without headers",
            );
        };
        let get = |name: &str| h.get(name).map(|v| v.as_str().to_owned());
        let (Some(method), Some(path)) = (get(H_METHOD), get(H_PATH)) else {
            return error(
                StatusCode::BAD_REQUEST,
                "a forwarded request without method or path",
            );
        };
        let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "a forwarded request with a bad method",
            );
        };
        if !path.starts_with('/') || target(path.split('?').next().unwrap_or("")).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                "a forwarded request for a path that is not forwarded",
            );
        }
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.internal))
            .header(FORWARDED_HEADER, secret())
            .body(msg.payload.clone());
        if let Some(peer) = get(H_PEER) {
            request = request.header(PEER_HEADER, peer);
        }
        if let Some(auth) = get(H_AUTH) {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        if let Some(kind) = get(H_TYPE) {
            request = request.header(reqwest::header::CONTENT_TYPE, kind);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    &format!("the switch holding it could not serve it: {e}"),
                )
            }
        };
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut headers = HeaderMap::new();
        for name in PASSED_HEADERS {
            if let Some(value) = response.headers().get(*name).and_then(|v| v.to_str().ok()) {
                headers.insert(format!("{H_PASSED}{name}").as_str(), value);
            }
        }
        match response.bytes().await {
            Ok(body) => (status, headers, body),
            Err(e) => error(
                StatusCode::BAD_GATEWAY,
                &format!("the switch holding it could not serve it: {e}"),
            ),
        }
    }
}

fn error(status: StatusCode, message: &str) -> (StatusCode, HeaderMap, Bytes) {
    let body = serde_json::json!({"error": {"code": status.as_u16(), "message": message}});
    let mut headers = HeaderMap::new();
    headers.insert(
        format!("{H_PASSED}content-type").as_str(),
        "application/json",
    );
    (status, headers, Bytes::from(body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_naming_calls_and_rooms() {
        let id = Uuid::new_v4();
        assert_eq!(target(&format!("/calls/{id}")), Some(Target::Call(id)));
        assert_eq!(
            target(&format!("/calls/{id}/hangup")),
            Some(Target::Call(id))
        );
        assert_eq!(target(&format!("/calls/{id}/events")), None);
        assert_eq!(
            target(&format!("/api/v1/calls/{id}/end")),
            Some(Target::Call(id))
        );
        assert_eq!(
            target(&format!("/api/v1/calls/{id}/record/start")),
            Some(Target::Call(id))
        );
        assert_eq!(
            target(&format!("/api/v1/calls/rooms/{id}/join")),
            Some(Target::Room(id))
        );
        assert_eq!(target("/api/v1/calls/rooms"), None);
        assert_eq!(target("/api/v1/calls/initiate"), None);
        assert_eq!(target("/calls"), None);
        assert_eq!(target("/calls/not-a-uuid"), None);
    }
}
