//! The OpenAPI document: it describes every route the code registers, reads as OpenAPI 3, and
//! its Swagger UI is served. Both are open even when the API needs a key.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use support::*;

/// Every `(METHOD, path)` registered with `.route(PATH, web::METHOD()…)` or
/// `web::resource(PATH).route(web::METHOD()…)` under `src/`, with `web::scope(PREFIX)`
/// prefixes applied and `const NAME: &str = "…"` paths resolved. The switch registers its HTTP
/// routes only these ways.
fn registered_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                for (method, route) in routes_in(&text) {
                    routes.insert((method, route));
                }
            }
        }
    }
    routes
}

/// The routes one source file registers.
fn routes_in(text: &str) -> Vec<(String, String)> {
    let consts: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("pub ").unwrap_or(l.trim());
            let rest = rest.strip_prefix("const ")?;
            let (name, value) = rest.split_once(": &str = \"")?;
            Some((name.to_owned(), value.split('"').next()?.to_owned()))
        })
        .collect();
    // Scopes: (prefix, parenthesis depth at which the scope's expression ends).
    let mut scopes: Vec<(String, usize)> = Vec::new();
    // Resources: (path, parenthesis depth at which the resource's expression ends).
    let mut resources: Vec<(String, usize)> = Vec::new();
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
            continue;
        }
        if let Some(after) = rest.strip_prefix("web::scope(\"") {
            let prefix = after.split('"').next().unwrap_or("");
            // The scope covers what is chained onto it inside the enclosing call.
            scopes.push((prefix.to_owned(), depth));
        }
        if let Some(after) = rest.strip_prefix("web::resource(\"") {
            let path = after.split('"').next().unwrap_or("");
            resources.push((path.to_owned(), depth));
        }
        if let Some(after) = rest.strip_prefix(".route(") {
            let args = after.trim_start();
            let (path, tail) = if let (Some(m), Some((path, _))) =
                (args.strip_prefix("web::"), resources.last())
            {
                // `.route(web::METHOD()…)` on a resource.
                let method = m.split('(').next().unwrap_or("").to_uppercase();
                let prefix: String = scopes.iter().map(|(p, _)| p.as_str()).collect();
                found.push((method, format!("{prefix}{path}")));
                // Past the dot only: the parenthesis is counted below like any other.
                i += 1;
                continue;
            } else if let Some(lit) = args.strip_prefix('"') {
                let end = lit.find('"').expect("closing quote");
                (lit[..end].to_owned(), &lit[end + 1..])
            } else {
                let end = args
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(0);
                let name = &args[..end];
                match consts.get(name) {
                    Some(p) => (p.clone(), &args[end..]),
                    // Not an HTTP route (e.g. the config's route matcher).
                    None => {
                        i += 1;
                        continue;
                    }
                }
            };
            let tail = tail.trim_start().trim_start_matches(',').trim_start();
            if let Some(m) = tail.strip_prefix("web::") {
                let method = m.split('(').next().unwrap_or("").to_uppercase();
                let prefix: String = scopes.iter().map(|(p, _)| p.as_str()).collect();
                found.push((method, format!("{prefix}{path}")));
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.saturating_sub(1);
                while scopes.last().is_some_and(|(_, d)| *d > depth) {
                    scopes.pop();
                }
                while resources.last().is_some_and(|(_, d)| *d > depth) {
                    resources.pop();
                }
            }
            _ => {}
        }
        i += c.len_utf8();
    }
    found
}

#[test]
fn route_reader_reads_resources() {
    let text = r#"
fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .service(web::resource("/r").route(web::get().to(r)).route(web::post().to(r2)))
            .service(
                web::resource("/{id}/s")
                    .route(web::delete().to(s)),
            ),
    )
    .route("/after", web::get().to(e));
}
"#;
    assert_eq!(
        routes_in(text),
        vec![
            ("GET".into(), "/api/r".into()),
            ("POST".into(), "/api/r".into()),
            ("DELETE".into(), "/api/{id}/s".into()),
            ("GET".into(), "/after".into()),
        ]
    );
}

#[test]
fn route_reader_applies_scopes_and_constants() {
    let text = r#"
const PATH: &str = "/x/stream";
fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1/calls")
            .route("/a", web::post().to(a))
            .route(
                "/{id}/b",
                web::get().to(b),
            ),
    )
    .route("/c", web::get().to(c))
    .route(PATH, web::get().to(d));
    assert!(c.route("smartivr", "", "").is_some());
}
"#;
    assert_eq!(
        routes_in(text),
        vec![
            ("POST".into(), "/api/v1/calls/a".into()),
            ("GET".into(), "/api/v1/calls/{id}/b".into()),
            ("GET".into(), "/c".into()),
            ("GET".into(), "/x/stream".into()),
        ]
    );
}

/// Every `$ref` in `v` points at something in `doc`.
fn check_refs(doc: &Value, v: &Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let pointer = r.strip_prefix('#').expect("local reference");
                assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
            }
            map.values().for_each(|x| check_refs(doc, x));
        }
        Value::Array(items) => items.iter().for_each(|x| check_refs(doc, x)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_the_document_is_openapi_3() {
    // A key is required for the API: the document and its UI stay open.
    let app = spawn_app("[auth]\napi_keys = [{ key = \"k3y\" }]\n");
    let (status, calls) = app.get_json("/calls").await;
    assert_eq!(status, 401, "{calls}");

    let response = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("the document is JSON");

    let version = doc["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3."), "OpenAPI 3, got {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path} has no responses");
            for requirement in op["security"].as_array().into_iter().flatten() {
                for scheme in requirement.as_object().expect("requirement").keys() {
                    assert!(
                        doc["components"]["securitySchemes"][scheme].is_object(),
                        "{method} {path} names an unknown scheme {scheme}"
                    );
                }
            }
        }
    }
    check_refs(&doc, &doc);
    let bearer = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(
        doc["paths"]["/calls/{id}"]["get"]["security"][0]["api_key"],
        serde_json::json!([])
    );

    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let registered = registered_routes();
    assert!(
        registered.len() >= 20,
        "the route reader found too few routes: {registered:?}"
    );
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "registered but not in the OpenAPI document: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(stale.is_empty(), "documented but not registered: {stale:?}");

    // Swagger UI: `/docs` sends the browser to `/docs/`, which is HTML pointing at the document.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_redirects
        .get(app.url("/docs"))
        .send()
        .await
        .expect("GET /docs");
    assert!(r.status().is_redirection(), "{}", r.status());
    let r = app
        .http
        .get(app.url("/docs"))
        .send()
        .await
        .expect("GET /docs");
    assert_eq!(r.status(), 200);
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = r.text().await.expect("HTML");
    assert!(html.contains("swagger-ui"), "{html}");
    let r = app
        .http
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .expect("GET the initializer");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("script").contains("/openapi.json"));
}
