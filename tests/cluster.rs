//! Cluster mode against real processes: two (or three) switch binaries sharing one fresh
//! PostgreSQL database and a NATS server, each test with a cluster name of its own. Needs
//! PostgreSQL (`SWITCHBOARD_TEST_POSTGRES_URL`, else postgres://postgres@127.0.0.1:5432/test)
//! and NATS with JetStream (`SWITCHBOARD_TEST_NATS_URL`, else nats://127.0.0.1:4222); the NATS
//! restart test runs a private `/usr/sbin/nats-server`, the balancer test Debian's nginx.

#[path = "support/binary.rs"]
mod binary;
#[path = "support/cluster.rs"]
mod cluster;
mod support;

use serde_json::{json, Value};
use switchboard::pb::live_call::live_call_client::LiveCallClient;
use switchboard::pb::live_call::{client_request, ClientRequest, InitialInfo, ServerResponse};
use tokio_stream::wrappers::ReceiverStream;

use cluster::*;
use support::*;

/// A live_call gRPC caller in `workspace`, kept on the line until dropped.
struct LiveCaller {
    _tx: tokio::sync::mpsc::Sender<ClientRequest>,
    _responses: tonic::Streaming<ServerResponse>,
}

impl LiveCaller {
    async fn dial(grpc: &str, call_id: &str, workspace: &str) -> LiveCaller {
        let mut client = LiveCallClient::connect(grpc.to_owned())
            .await
            .expect("gRPC connects");
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let info = ClientRequest {
            status: true,
            data: Some(client_request::Data::InitialInfo(InitialInfo {
                workspace_id: workspace.into(),
                call_id: call_id.into(),
                customer_phone_number: "+84900000002".into(),
                type_call: "inbound".into(),
                hotline: "1900".into(),
                url_audio_file: String::new(),
            })),
        };
        tx.send(info).await.expect("queue first message");
        let responses = tokio::time::timeout(PATIENCE, client.stream_call(ReceiverStream::new(rx)))
            .await
            .expect("the switch answered the call in time")
            .expect("call accepted")
            .into_inner();
        LiveCaller {
            _tx: tx,
            _responses: responses,
        }
    }
}

/// Waits until node `at` shows call `id` hung up; the record.
async fn wait_hangup(at: &Node, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let call = at.call(id).await;
        if call["status"] == "hangup" {
            return call;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "call {id} never hung up: {call}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_by_one_node_is_read_recorded_moved_and_hung_up_through_another() {
    let nats = nats_url();
    require_nats(&nats).await;
    let db = Database::fresh().await;
    let name = cluster_name();
    let a = Node::start(&db.url, &nats, &name, "node-a", "");
    let b = Node::start(&db.url, &nats, &name, "node-b", "");

    let _gw = Gateway::dial_at(&a.switch.grpc, "fwd-1")
        .await
        .expect("call accepted on A");
    let id = b.answered("fwd-1").await;

    // Read through B's REST and Calls API: A answers.
    let (status, node, call) = b.get(&format!("/calls/{id}"), ADMIN).await;
    assert_eq!((status, node.as_deref()), (200, Some("node-a")), "{call}");
    assert_eq!(call["status"], "progressing");
    let (status, node, got) = b.get(&format!("/api/v1/calls/{id}"), ADMIN).await;
    assert_eq!((status, node.as_deref()), (200, Some("node-a")), "{got}");
    assert_eq!(got["status"], "active");
    // A key of another workspace does not see it, through B as on A.
    let (status, _, _) = b.get(&format!("/calls/{id}"), KEY_A).await;
    assert_eq!(status, 404);

    // Recorded through B.
    let (status, node, started) = b
        .post(
            &format!("/api/v1/calls/{id}/record/start"),
            ADMIN,
            &Value::Null,
        )
        .await;
    assert_eq!(
        (status, node.as_deref()),
        (201, Some("node-a")),
        "{started}"
    );
    let (_, _, got) = b.get(&format!("/api/v1/calls/{id}"), ADMIN).await;
    assert_eq!(got["recording"], true, "{got}");

    // Moved into a room on A through B.
    let (status, _, room) = a
        .post("/api/v1/calls/rooms", ADMIN, &json!({ "name": "on-a" }))
        .await;
    assert_eq!(status, 201, "{room}");
    let room_id = room["room_id"].as_str().expect("room id").to_owned();
    let (status, node, joined) = b
        .post(
            &format!("/api/v1/calls/rooms/{room_id}/join"),
            ADMIN,
            &json!({ "call_id": id }),
        )
        .await;
    assert_eq!((status, node.as_deref()), (200, Some("node-a")), "{joined}");
    let (status, node, got) = b
        .get(&format!("/api/v1/calls/rooms/{room_id}"), ADMIN)
        .await;
    assert_eq!((status, node.as_deref()), (200, Some("node-a")), "{got}");
    assert_eq!(got["current_participants"], 1, "{got}");

    // A room on B does not take a call held by A: a refusal naming A.
    let (status, _, room_b) = b
        .post("/api/v1/calls/rooms", ADMIN, &json!({ "name": "on-b" }))
        .await;
    assert_eq!(status, 201, "{room_b}");
    let (status, _, refused) = b
        .post(
            &format!(
                "/api/v1/calls/rooms/{}/join",
                room_b["room_id"].as_str().unwrap()
            ),
            ADMIN,
            &json!({ "call_id": id }),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["node"], "node-a", "{refused}");

    // Hung up through B's Calls API.
    let (status, node, ended) = b
        .post(&format!("/api/v1/calls/{id}/end"), ADMIN, &Value::Null)
        .await;
    assert_eq!((status, node.as_deref()), (200, Some("node-a")), "{ended}");
    let call = wait_hangup(&b, &id).await;
    assert_eq!(call["hangup_reason"], "normal", "{call}");
    // Once ended, B answers from the store, as a single switch does.
    let (status, node, _) = b
        .post(&format!("/api/v1/calls/{id}/end"), ADMIN, &Value::Null)
        .await;
    assert_eq!((status, node), (409, None));

    // And through B's REST hangup.
    let _gw2 = Gateway::dial_at(&a.switch.grpc, "fwd-2")
        .await
        .expect("call accepted on A");
    let id2 = b.answered("fwd-2").await;
    let (status, node, _) = b
        .post(&format!("/calls/{id2}/hangup"), ADMIN, &Value::Null)
        .await;
    assert_eq!((status, node.as_deref()), (200, Some("node-a")));
    wait_hangup(&b, &id2).await;

    // A call nobody holds or stored: 404 from B itself.
    let missing = uuid::Uuid::new_v4();
    let (status, node, _) = b.get(&format!("/calls/{missing}"), ADMIN).await;
    assert_eq!((status, node), (404, None));
    drop((a, b));
    remove_buckets(&nats, &name).await;
}

/// Reads SSE frames until `want` holds for an event's (name, data); the frames read.
async fn read_events(
    r: &mut reqwest::Response,
    mut want: impl FnMut(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut text = String::new();
    let mut seen = Vec::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .expect("the event came in time")
            .expect("stream readable")
            .expect("stream open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            let mut event = None;
            for line in frame.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(data) = line.strip_prefix("data: ") {
                    let v: Value = serde_json::from_str(data).expect("JSON data");
                    let name = event.take().unwrap_or_default();
                    let done = want(&name, &v);
                    seen.push((name, v));
                    if done {
                        return seen;
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_on_one_node_show_the_workspaces_calls_of_every_node() {
    let nats = nats_url();
    require_nats(&nats).await;
    let db = Database::fresh().await;
    let name = cluster_name();
    let a = Node::start(&db.url, &nats, &name, "node-a", "");
    let b = Node::start(&db.url, &nats, &name, "node-b", "");

    let mut stream = b
        .switch
        .client
        .get(b.url("/events"))
        .bearer_auth(KEY_A)
        .send()
        .await
        .expect("GET /events");
    assert_eq!(stream.status(), 200);
    let _first = tokio::time::timeout(PATIENCE, stream.chunk())
        .await
        .expect("the stream opened in time")
        .expect("readable")
        .expect(": subscribed");

    // A call of workspace b on A, then one of workspace a on A: B's stream for workspace a
    // shows the second and never the first.
    let other = LiveCaller::dial(&a.switch.grpc, "sse-b", "b").await;
    let mine = LiveCaller::dial(&a.switch.grpc, "sse-a", "a").await;
    let seen = read_events(&mut stream, |name, v| {
        name == "call_progressing" && v["reference"] == "sse-a"
    })
    .await;
    assert!(
        seen.iter().all(|(_, v)| v["workspace"] == "a"),
        "only workspace a: {seen:?}"
    );
    assert!(seen.iter().any(|(n, _)| n == "call_created"), "{seen:?}");
    let id = seen[0].1["id"].as_str().expect("call id").to_owned();

    // Its hangup, made through B, comes too.
    let (status, _, _) = b
        .post(&format!("/calls/{id}/hangup"), ADMIN, &Value::Null)
        .await;
    assert_eq!(status, 200);
    let seen = read_events(&mut stream, |name, v| {
        name == "call_hangup" && v["id"] == id
    })
    .await;
    assert!(seen.iter().all(|(_, v)| v["workspace"] == "a"), "{seen:?}");
    drop((other, mine, a, b));
    remove_buckets(&nats, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_calls_are_closed_as_failed_by_a_survivor() {
    // Three switches: A dies, and B and C both survive it; each of A's calls is closed once,
    // whichever survivor gets there first, and both see it.
    let nats = nats_url();
    require_nats(&nats).await;
    let db = Database::fresh().await;
    let name = cluster_name();
    let a = Node::start(&db.url, &nats, &name, "node-a", "");
    let b = Node::start(&db.url, &nats, &name, "node-b", "");
    let c = Node::start(&db.url, &nats, &name, "node-c", "");
    let mut callers = Vec::new();
    for i in 0..3 {
        let gw = Gateway::dial_at(&a.switch.grpc, &format!("lost-{i}"))
            .await
            .expect("call accepted on A");
        callers.push(gw);
    }
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(b.answered(&format!("lost-{i}")).await);
    }

    let mut stream = b
        .switch
        .client
        .get(b.url("/events"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("GET /events");
    let _first = tokio::time::timeout(PATIENCE, stream.chunk())
        .await
        .expect("the stream opened in time")
        .expect("readable")
        .expect(": subscribed");
    let killed_at = std::time::Instant::now();
    a.signal("KILL");
    let mut closed = std::collections::HashSet::new();
    read_events(&mut stream, |name, v| {
        if name == "call_hangup" {
            closed.insert(v["id"].as_str().unwrap_or_default().to_owned());
        }
        closed.len() == ids.len()
    })
    .await;
    let took = killed_at.elapsed();
    for id in &ids {
        let call = b.call(id).await;
        assert_eq!(call["status"], "hangup", "{call}");
        assert_eq!(call["hangup_reason"], "failed", "{call}");
        assert_eq!(call["hangup_detail"], "node lost", "{call}");
        // Closed once: one `call_hangup` event in the store.
        assert_eq!(db.count_events(id, "call_hangup").await, 1, "{call}");
        let seen_by_c = c.call(id).await;
        assert_eq!(seen_by_c["hangup_reason"], "failed", "{seen_by_c}");
    }
    println!("kill -9 to calls closed on the survivor: {took:?} (heartbeat 1 s)");
    drop((a, b, c));
    remove_buckets(&nats, &name).await;
}

/// nginx in front of the nodes, as `docs/cluster.md` shows it: HTTP and WebSocket on one port,
/// gRPC (`grpc_pass`) on another; a non-root foreground process with its files in `dir`.
struct Nginx {
    child: std::process::Child,
    http: u16,
    grpc: u16,
}

impl Nginx {
    fn start(dir: &std::path::Path, nodes: &[&Node]) -> Nginx {
        let (http, grpc) = (free_port(), free_port());
        let host = |url: &str| url.trim_start_matches("http://").to_owned();
        let http_servers: String = nodes
            .iter()
            .map(|n| format!("    server {} max_fails=0;\n", host(&n.switch.http)))
            .collect();
        let grpc_servers: String = nodes
            .iter()
            .map(|n| format!("    server {} max_fails=0;\n", host(&n.switch.grpc)))
            .collect();
        let template = include_str!("cluster/nginx.conf");
        let conf = template
            .replace("{dir}", &dir.display().to_string())
            .replace("{http_port}", &http.to_string())
            .replace("{grpc_port}", &grpc.to_string())
            .replace("{http_servers}", &http_servers)
            .replace("{grpc_servers}", &grpc_servers);
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let child = std::process::Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("/usr/sbin/nginx starts");
        Nginx { child, http, grpc }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_is_not_ready_and_the_balancer_places_new_calls_on_the_other() {
    let nats = nats_url();
    require_nats(&nats).await;
    let db = Database::fresh().await;
    let name = cluster_name();
    let a = Node::start(&db.url, &nats, &name, "node-a", "");
    let b = Node::start(&db.url, &nats, &name, "node-b", "");
    let dir = temp_data_dir();
    let lb = Nginx::start(&dir, &[&a, &b]);
    let lb_http = format!("http://127.0.0.1:{}", lb.http);
    let lb_grpc = format!("http://127.0.0.1:{}", lb.grpc);
    let client = reqwest::Client::new();
    eventually("nginx answers", || async {
        client
            .get(format!("{lb_http}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    // gRPC through nginx (`grpc_pass`).
    let _through = Gateway::dial_at(&lb_grpc, "drain-grpc")
        .await
        .expect("a gRPC call through nginx");
    b.answered("drain-grpc").await;

    // A call held by A keeps A draining (drain_seconds = 30).
    let _held = Gateway::dial_at(&a.switch.grpc, "drain-held")
        .await
        .expect("call accepted on A");
    let held = b.answered("drain-held").await;
    let (_, _, health) = a.get("/health", ADMIN).await;
    assert_eq!(health["ready"], true, "{health}");
    a.signal("TERM");
    eventually("A says it is not ready", || async {
        a.get("/health", ADMIN).await.2["ready"] == false
    })
    .await;
    let (_, _, health) = a.get("/health", ADMIN).await;
    assert_eq!(health["status"], "draining", "{health}");

    // New WebSocket calls through the balancer all land on B (A refuses upgrades with 503 and
    // nginx tries B); the held call is still served through it.
    let mut callers = Vec::new();
    for i in 0..6 {
        let url = format!("ws://127.0.0.1:{}/live-call/websocket/a/b", lb.http);
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("call {i} through nginx refused: {e}"));
        let info = json!({ "initial_info": {
            "workspace_id": "a",
            "call_id": format!("drain-new-{i}"),
            "customer_phone_number": "+84900000001",
            "type_call": "inbound",
            "hotline": "1900",
            "url_audio_file": ""
        } });
        use futures_util::SinkExt;
        ws.send(tokio_tungstenite::tungstenite::Message::Text(
            info.to_string(),
        ))
        .await
        .expect("initial_info sent");
        callers.push(ws);
    }
    for i in 0..6 {
        let id = b.answered(&format!("drain-new-{i}")).await;
        let (status, node, call) = a.get(&format!("/calls/{id}"), ADMIN).await;
        assert_eq!((status, node.as_deref()), (200, Some("node-b")), "{call}");
    }
    let r = client
        .get(format!("{lb_http}/calls/{held}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("GET through nginx");
    assert_eq!(r.status(), 200);
    drop((callers, _through, lb, a, b));
    remove_buckets(&nats, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_call_loses_no_call_and_control_resumes() {
    let mut nats = PrivateNats::start().await;
    let db = Database::fresh().await;
    let name = cluster_name();
    let a = Node::start(&db.url, &nats.url(), &name, "node-a", "");
    let b = Node::start(&db.url, &nats.url(), &name, "node-b", "");
    let gw = Gateway::dial_at(&a.switch.grpc, "nats-down")
        .await
        .expect("call accepted on A");
    let id = b.answered("nats-down").await;
    let (_, node, _) = b.get(&format!("/calls/{id}"), ADMIN).await;
    assert_eq!(node.as_deref(), Some("node-a"));

    nats.stop();
    // Media goes on without NATS: the caller's audio still reaches the call, which lives.
    for _ in 0..50 {
        gw.send_audio(&[0i16; 160]).await;
    }
    let (status, node, call) = a.get(&format!("/calls/{id}"), ADMIN).await;
    assert_eq!((status, node), (200, None));
    assert_eq!(call["status"], "progressing", "{call}");

    nats.restart().await;
    // Both nodes heartbeat again.
    let client = require_nats(&nats.url()).await;
    let js = async_nats::jetstream::new(client);
    let nodes = js
        .get_key_value(format!("switchboard-{name}-nodes"))
        .await
        .expect("the heartbeat bucket survived the restart");
    eventually("both nodes heartbeat again", || async {
        let a = nodes.entry("node-a").await.ok().flatten().is_some();
        let b = nodes.entry("node-b").await.ok().flatten().is_some();
        a && b
    })
    .await;
    // Control through B resumes: the hangup reaches A.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, node, call) = b.get(&format!("/calls/{id}"), ADMIN).await;
        if node.as_deref() == Some("node-a") {
            assert_eq!(call["status"], "progressing", "not lost: {call}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "control never resumed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, node, _) = b
        .post(&format!("/calls/{id}/hangup"), ADMIN, &Value::Null)
        .await;
    assert_eq!((status, node.as_deref()), (200, Some("node-a")));
    let call = wait_hangup(&b, &id).await;
    assert_eq!(call["hangup_reason"], "normal", "{call}");
    // Once, and one call.
    assert_eq!(db.count_events(&id, "call_hangup").await, 1);
    let (_, _, page) = b
        .get("/calls?reference=nats-down&page_size=10", ADMIN)
        .await;
    assert_eq!(page["result"].as_array().map(Vec::len), Some(1), "{page}");
    drop((gw, a, b));
}
