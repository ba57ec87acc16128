//! The softphone page at `GET /phone`: a person calls a route from the browser over the
//! live-call WebSocket, talks through the microphone, and sees the call's events and
//! transcript.
//!
//! The page is plain HTML, CSS and JavaScript kept in `src/api/phone/` and built into the
//! binary; nothing is loaded from elsewhere. Like `/openapi.json` the page is open (it holds
//! no secrets): what it calls keeps its own access rule, and the page asks for an API key or
//! a live-call token when it is answered 401.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::error_json;

/// Scripts, styles, connections (including the WebSocket) and media from this origin only;
/// no inline script or style, no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; media-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's files: name under `/phone/`, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "phone.js",
        "text/javascript; charset=utf-8",
        include_str!("phone/phone.js"),
    ),
    (
        "capture-worklet.js",
        "text/javascript; charset=utf-8",
        include_str!("phone/capture-worklet.js"),
    ),
    (
        "phone.css",
        "text/css; charset=utf-8",
        include_str!("phone/phone.css"),
    ),
];

/// A response with the page's security headers.
fn strict(content_type: &'static str, body: &'static str) -> HttpResponse {
    let mut response = HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// The softphone page.
#[utoipa::path(
    get,
    path = "/phone",
    tag = "pages",
    responses((status = 200, description = "The softphone page", content_type = "text/html", body = String))
)]
pub(super) async fn page() -> HttpResponse {
    strict("text/html; charset=utf-8", include_str!("phone/phone.html"))
}

/// A script or style sheet of the softphone page.
#[utoipa::path(
    get,
    path = "/phone/{file}",
    tag = "pages",
    params(("file" = String, Path, description = "`phone.js`, `capture-worklet.js` or `phone.css`")),
    responses(
        (status = 200, description = "The file"),
        (status = 404, description = "No such file", body = super::views::ErrorView)
    )
)]
pub(super) async fn asset(file: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(name, _, _)| *name == file.as_str()) {
        Some((_, content_type, body)) => strict(content_type, body),
        None => error_json(StatusCode::NOT_FOUND, "no such resource".into()),
    }
}

/// Registers the page and its files.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/phone", web::get().to(page))
        .route("/phone/{file}", web::get().to(asset));
}
