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
    let nats = nats_url();
    require_nats(&nats).await;
    let db = Database::fresh().await;
    let name = cluster_name();
    let a = Node::start(&db.url, &nats, &name, "node-a", "");
    let b = Node::start(&db.url, &nats, &name, "node-b", "");
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
    }
    println!("kill -9 to calls closed on the survivor: {took:?} (heartbeat 1 s)");
    drop((a, b));
    remove_buckets(&nats, &name).await;
}
