//! Request bodies on the HTTP listener: a read deadline, a size limit, and the same JSON error
//! shape for the answers actix-web gives by itself (405, 408, 413).
//!
//! actix-web's `client_request_timeout` covers only the request head; a client that then
//! trickles its body one byte at a time would hold its connection forever. `BodyGuard` wraps
//! every request's payload (WebSocket upgrades excepted: their payload is the socket) in a
//! stream that fails once `[http] body_timeout_ms` has passed since the head arrived; the
//! request is then answered 408 and the connection closed. It also turns any error answer
//! that is not JSON (405 from a resource without the method, 413 from a size limit, …) into
//! `{"error": {"code", "message"}}`.

use std::cell::Cell;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::error::PayloadError;
use actix_web::http::{header, StatusCode};
use actix_web::web::Bytes;
use actix_web::HttpMessage as _;
use futures_util::future::LocalBoxFuture;
use futures_util::Stream;

use super::error_json;

/// Largest request body the APIs read, in bytes. Every API body is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest text of an error answer kept as the JSON message.
const MAX_MESSAGE_BYTES: usize = 512;

/// The middleware: a body read deadline and JSON error answers.
#[derive(Debug, Clone, Copy)]
pub struct BodyGuard {
    timeout: Duration,
}

impl BodyGuard {
    /// Request bodies must arrive whole within `timeout` of their head.
    pub fn new(timeout: Duration) -> Self {
        BodyGuard { timeout }
    }
}

impl<S, B> Transform<S, ServiceRequest> for BodyGuard
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = BodyGuardService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(BodyGuardService {
            service: Rc::new(service),
            timeout: self.timeout,
        }))
    }
}

/// The middleware's service (see `BodyGuard`).
pub struct BodyGuardService<S> {
    service: Rc<S>,
    timeout: Duration,
}

impl<S, B> Service<ServiceRequest> for BodyGuardService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let expired = Rc::new(Cell::new(false));
        if !req.headers().contains_key(header::UPGRADE) {
            match req.take_payload() {
                Payload::None => {}
                inner => req.set_payload(Payload::Stream {
                    payload: Box::pin(TimedPayload {
                        inner,
                        deadline: Box::pin(tokio::time::sleep(self.timeout)),
                        expired: expired.clone(),
                        timeout: self.timeout,
                    }),
                }),
            }
        }
        let method = req.method().clone();
        let path = req.path().to_owned();
        let timeout = self.timeout;
        let service = self.service.clone();
        Box::pin(async move {
            let res = service.call(req).await?;
            if expired.get() {
                let mut response = error_json(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} ms",
                        timeout.as_millis()
                    ),
                );
                // The rest of the body is not worth waiting for.
                response
                    .head_mut()
                    .set_connection_type(actix_web::http::ConnectionType::Close);
                return Ok(res.into_response(response).map_into_right_body());
            }
            if !needs_json(&res) {
                return Ok(res.map_into_left_body());
            }
            let (req, response) = res.into_parts();
            let status = response.status();
            let text = response
                .into_body()
                .try_into_bytes()
                .ok()
                .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
                .filter(|t| !t.is_empty() && t.len() <= MAX_MESSAGE_BYTES);
            let message = match status {
                StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
                StatusCode::PAYLOAD_TOO_LARGE => {
                    format!("the request body is larger than the limit of {MAX_BODY_BYTES} bytes")
                }
                _ => text.unwrap_or_else(|| {
                    status
                        .canonical_reason()
                        .unwrap_or("request failed")
                        .to_owned()
                }),
            };
            let response = error_json(status, message);
            Ok(ServiceResponse::new(req, response).map_into_right_body())
        })
    }
}

/// An error answer whose body is not already JSON.
fn needs_json<B>(res: &ServiceResponse<B>) -> bool {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    !res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// A request payload that fails once its deadline has passed.
struct TimedPayload {
    inner: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Set when the deadline cut the body off, so the answer becomes 408.
    expired: Rc<Cell<bool>>,
    timeout: Duration,
}

impl Stream for TimedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.expired.get() {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.set(true);
            let message = format!(
                "request body not received within {} ms",
                this.timeout.as_millis()
            );
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                message,
            )))));
        }
        Poll::Pending
    }
}
