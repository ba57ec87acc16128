//! TLS on both listeners with a certificate made at test time: HTTPS (REST and `/metrics`),
//! wss:// (a live-call caller) and gRPC over TLS (health and a SmartIVR call).

mod support;

use std::path::Path;
use std::sync::Arc;

use support::*;
use switchboard::app::{self, AppHandle};
use switchboard::config::Config;
use switchboard::pb::smartivr::smart_ivr_phonegateway_client::SmartIvrPhonegatewayClient;
use switchboard::pb::smartivr::{Config as IvrConfig, SmartIvrRequest, SmartIvrResponseType};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A self-signed certificate for `localhost`, written under `dir`: (certificate PEM, paths).
fn certificate(dir: &Path) -> (String, String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("certificate made");
    let cert_pem = made.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).expect("write certificate");
    std::fs::write(&key, made.key_pair.serialize_pem()).expect("write key");
    (
        cert_pem,
        cert.display().to_string(),
        key.display().to_string(),
    )
}

/// A switch with TLS on both listeners and the menu flow.
fn spawn_tls_app(dir: &Path, cert: &str, key: &str) -> AppHandle {
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n\
         [grpc]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n\
         {}{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n",
        store_toml(dir, &sqlite_url(dir))
    );
    let config = Config::from_toml(&text).expect("TLS config is valid");
    app::spawn(config).expect("switch starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_with_a_test_certificate() {
    let dir = temp_data_dir();
    let (cert_pem, cert, key) = certificate(&dir);
    let app = spawn_tls_app(&dir, &cert, &key);
    let port = app.http_addr.port();

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("PEM"))
        .resolve("localhost", app.http_addr)
        .build()
        .expect("HTTPS client");
    let health = client
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .expect("HTTPS GET /health");
    assert_eq!(health.status().as_u16(), 200);
    let metrics = client
        .get(format!("https://localhost:{port}/metrics"))
        .send()
        .await
        .expect("HTTPS GET /metrics");
    assert_eq!(metrics.status().as_u16(), 200);
    // Plain HTTP is not served on a TLS listener.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/health", app.http_addr))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));

    // A live-call caller over wss://.
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(c.expect("certificate")).expect("root added");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(app.http_addr)
        .await
        .expect("TCP connects");
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(
        format!("wss://localhost:{port}/live-call/websocket/tls-1/+84900000001"),
        tcp,
        None,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls))),
    )
    .await
    .expect("wss:// upgrade");
    let mut caller = WsCaller { ws };
    caller.send_json(initial_info("tls-1", "1900")).await;
    match caller.next().await {
        WsEvent::Json(v) => assert!(v.get("audio_output").is_some(), "{v}"),
        other => panic!("expected the greeting's audio, got {other:?}"),
    }
}

use rustls::pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_with_a_test_certificate() {
    let dir = temp_data_dir();
    let (cert_pem, cert, key) = certificate(&dir);
    let app = spawn_tls_app(&dir, &cert, &key);

    let channel = Endpoint::from_shared(format!("https://{}", app.grpc_addr))
        .expect("URL")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&cert_pem))
                .domain_name("localhost"),
        )
        .expect("client TLS")
        .connect()
        .await
        .expect("gRPC over TLS connects");

    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check over TLS")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(SmartIvrRequest {
        config: Some(IvrConfig {
            conversation_id: "tls-call".into(),
        }),
        ..Default::default()
    })
    .await
    .expect("queue first message");
    let mut responses = SmartIvrPhonegatewayClient::new(channel)
        .call_to_bot(ReceiverStream::new(rx))
        .await
        .expect("call accepted over TLS")
        .into_inner();
    let first = tokio::time::timeout(PATIENCE, responses.message())
        .await
        .expect("a response in time")
        .expect("stream open")
        .expect("a response");
    assert_eq!(first.r#type, SmartIvrResponseType::ResultTts as i32);
    drop(tx);
}

#[test]
fn a_bad_certificate_is_refused_naming_the_key() {
    let dir = temp_data_dir();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not PEM").expect("write");
    let text = format!(
        "[grpc]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{0}\"\ntls_key = \"{0}\"\n",
        junk.display()
    );
    let Err(e) = Config::from_toml(&text) else {
        panic!("refused");
    };
    assert!(e.to_string().contains("grpc.tls_cert"), "{e}");
    let only_one = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"{}\"\n",
        junk.display()
    );
    let Err(e) = Config::from_toml(&only_one) else {
        panic!("refused");
    };
    assert!(e.to_string().contains("http.tls_key"), "{e}");
}
