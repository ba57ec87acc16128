//! SIP callers against the real switch: SIPp places calls to a flow bot over UDP on loopback.

mod support;

use support::sip::{
    final_responses, free_udp_port, invite_text, loud, pcm_wav, sipp, sipp_args, sipp_with_files,
    ulaw_wav, wav_data, Ear, Sipp,
};
use support::*;

/// A first port for a test's RTP range: ten ports per switch, a range of its own for each
/// switch of this process (tests run at once), spread by process id.
fn next_rtp_base() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 40;
    30000 + (std::process::id() % 50) as u16 * 400 + n * 10
}

/// `[sip]` on an ephemeral loopback port, with RTP on ten ports from `base`.
fn sip_toml_with(base: u16) -> String {
    format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\nrtp_ports = \"{base}-{}\"\n",
        base + 9
    )
}

/// `[sip]` on an ephemeral loopback port, with a small RTP range of its own.
fn sip_toml() -> String {
    sip_toml_with(next_rtp_base())
}

/// A bot that greets, waits for one key, and hangs up `normal` on 5 (`busy` otherwise, so
/// the record tells whether the key arrived).
const KEY_FLOW: &str = r#"
[bots.keys]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "talk", id = "greeting", text = "Hello, and welcome." },
  { type = "digits_receive", duration = 20000, length = 1 },
  { type = "branch", variable = "digits", default_target_id = "other", target_ids = { "5" = "five" } },
  { type = "hangup", id = "five", reason = "normal" },
  { type = "hangup", id = "other", reason = "busy" },
]
[bots.slow]
kind = "flow"
actions = [
  { type = "sleep", duration = 30000 },
  { type = "answer" },
  { type = "hangup" },
]
[bots.hold]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "talk", text = "Hello." },
  { type = "sleep", duration = 30000 },
  { type = "hangup" },
]
[bots.long]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "sleep", duration = 60000 },
  { type = "hangup" },
]
[bots.digits]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "digits_send", digits = "159" },
  { type = "digits_receive", duration = 20000, length = 1 },
  { type = "branch", variable = "digits", default_target_id = "other", target_ids = { "5" = "five" } },
  { type = "hangup", id = "five", reason = "normal" },
  { type = "hangup", id = "other", reason = "busy" },
]
[[routes]]
bot = "digits"
match = { ingress = "sip", hotline = "digits" }
[[routes]]
bot = "slow"
match = { ingress = "sip", hotline = "slow" }
[[routes]]
bot = "long"
match = { ingress = "sip", hotline = "long" }
[[routes]]
bot = "hold"
match = { ingress = "sip", hotline = "hold" }
[[routes]]
bot = "keys"
match = { ingress = "sip" }
"#;

fn spawn_sip_app() -> TestApp {
    spawn_app(&format!("{}{KEY_FLOW}", sip_toml()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_caller_hears_the_greeting_and_its_key_reaches_the_flow() {
    let base = next_rtp_base();
    let app = spawn_app(&format!("{}{KEY_FLOW}", sip_toml_with(base)));
    let sip = app.handle.sip_addr.expect("SIP listens");
    let ear = Ear::new().await;
    let keys = vec![("hear_port", ear.port.to_string())];
    let files = vec![("caller.wav", ulaw_wav(&tone_8k(440.0, 3000, 8000.0)))];
    let run = tokio::spawn(async move {
        sipp_with_files(sip, "call_dtmf.xml", "bot", "sip-keys-1", &keys, &files).await
    });
    // Junk at every RTP port of the switch while the call runs: datagrams that are not RTP, and
    // RTP from another address's SSRC. The call's own media must not be disturbed.
    let flood = tokio::spawn(async move {
        let junk = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut rtp = vec![0x80u8, 0, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
        rtp.extend_from_slice(&[0u8; 160]);
        for round in 0..400u32 {
            for port in base..base + 10 {
                let to: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
                let _ = junk
                    .send_to(if round % 2 == 0 { &rtp } else { b"junk" }, to)
                    .await;
            }
            tokio::task::yield_now().await;
        }
    });
    // The greeting: a second of audio, some of it speech-loud.
    let heard = ear
        .listen(|h| h.samples.len() >= 8000 && loud(&h.samples, 500.0))
        .await;
    if !loud(&heard.samples, 500.0) {
        let run = run.await.expect("sipp task");
        panic!(
            "no greeting heard ({} packets):\n{}",
            heard.packets, run.output
        );
    }
    assert_eq!(heard.seq_breaks, 0, "sequence numbers run on");
    assert_eq!(heard.ts_breaks, 0, "timestamps run on");
    flood.await.expect("flood");
    let run = run.await.expect("sipp task");
    assert!(run.success, "SIPp failed:\n{}", run.output);
    let call = app.wait_hangup("sip-keys-1").await;
    assert_eq!(
        call["hangup_reason"], "normal",
        "the key 5 reached the flow: {call}"
    );
    assert_eq!(call["hangup_by"], "local", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_caller_holds_resumes_and_hangs_up_with_bye() {
    let app = spawn_sip_app();
    let sip = app.handle.sip_addr.expect("SIP listens");
    let run = sipp(sip, "hold_bye.xml", "hold", "sip-hold-1", &[]).await;
    let call = app.wait_hangup("sip-hold-1").await;
    assert!(run.success, "SIPp failed ({call}):\n{}", run.output);
    assert_eq!(call["hangup_reason"], "normal", "{call}");
    assert_eq!(call["hangup_by"], "remote", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_caller_that_cancels_before_answer_ends_the_call_as_cancel() {
    let app = spawn_sip_app();
    let sip = app.handle.sip_addr.expect("SIP listens");
    let run = sipp(sip, "cancel.xml", "slow", "sip-cancel-1", &[]).await;
    assert!(run.success, "SIPp failed:\n{}", run.output);
    let call = app.wait_hangup("sip-cancel-1").await;
    assert_eq!(call["hangup_reason"], "cancel", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_is_answered_and_bad_input_changes_nothing() {
    let app = spawn_sip_app();
    let sip = app.handle.sip_addr.expect("SIP listens");
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for datagram in [
        &b"\x00\x01\x02garbage"[..],
        b"INVITE sip:x SIP/2.0\r\n\r\n",
        b"INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nContent-Length: 99999\r\n\r\nv=0",
        b"OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\nContent-Length: -4\r\n\r\n",
        &[0xffu8; 1400][..],
    ] {
        junk.send_to(datagram, sip).expect("send");
    }
    let run = sipp(sip, "options.xml", "bot", "sip-options-1", &[]).await;
    assert!(run.success, "SIPp failed:\n{}", run.output);
    let run = sipp(sip, "no_common_codec.xml", "bot", "sip-opus-1", &[]).await;
    assert!(run.success, "an Opus-only offer gets 488:\n{}", run.output);
    // No call was made of any of it.
    let (_, page) = app.get_json("/calls?page_size=5").await;
    assert_eq!(
        page["result"].as_array().map(|a| a.len()),
        Some(0),
        "{page}"
    );
}

/// `[sip]` with a trunk at a SIPp server on `trunk_port`, a short ring timeout, and a greeter
/// for calls the API places.
fn trunk_app(trunk_port: u16, credentials: &str) -> TestApp {
    spawn_app(&format!(
        r#"{}ring_timeout_ms = 1500
[sip.trunks.carrier]
host = "127.0.0.1"
port = {trunk_port}
caller_id = "+15550001"
{credentials}
[bots.greeter]
kind = "flow"
actions = [
  {{ type = "answer" }},
  {{ type = "talk", text = "Hello, this is the switch calling." }},
  {{ type = "hangup" }},
]
[[routes]]
bot = "greeter"
"#,
        sip_toml()
    ))
}

async fn initiate(app: &TestApp, number: &str, reference: &str) -> serde_json::Value {
    let (status, call) = app
        .post_body(
            "/api/v1/calls/initiate",
            &serde_json::json!({
                "destination": { "type": "tel", "target": number },
                "reference": reference,
                "bot": "greeter",
            }),
        )
        .await;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["call"]["direction"], "outgoing", "{call}");
    assert_eq!(call["call"]["status"], "dialing", "{call}");
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_call_through_a_trunk_is_answered_and_heard_both_ways() {
    let port = free_udp_port();
    let ear = Ear::new().await;
    let uas = Sipp::server(
        port,
        "uas_answer.xml",
        &[("hear_port", ear.port.to_string())],
        &[("callee.wav", ulaw_wav(&tone_8k(440.0, 3000, 8000.0)))],
    );
    let app = trunk_app(port, "");
    let call = initiate(&app, "+15551234", "out-answer-1").await;
    let heard = ear
        .listen(|h| h.samples.len() >= 8000 && loud(&h.samples, 500.0))
        .await;
    assert!(
        loud(&heard.samples, 500.0),
        "the callee heard the bot ({} packets)",
        heard.packets
    );
    let run = uas.finish().await;
    assert!(run.success, "SIPp failed:\n{}", run.output);
    let id = call["call_id"].as_str().expect("id");
    let ended = app.wait_hangup_by_id(id).await;
    assert!(ended["tm_progressing"].is_string(), "answered: {ended}");
    assert_eq!(ended["hangup_reason"], "normal", "{ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_callee_ends_the_call_as_busy() {
    let port = free_udp_port();
    let uas = Sipp::server(port, "uas_busy.xml", &[], &[]);
    let app = trunk_app(port, "");
    let call = initiate(&app, "+15551235", "out-busy-1").await;
    let ended = app
        .wait_hangup_by_id(call["call_id"].as_str().expect("id"))
        .await;
    assert_eq!(ended["hangup_reason"], "busy", "{ended}");
    let run = uas.finish().await;
    assert!(run.success, "SIPp failed:\n{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_that_never_answers_ends_as_noanswer_after_the_ring_timeout() {
    let port = free_udp_port();
    let uas = Sipp::server(port, "uas_ring.xml", &[], &[]);
    let app = trunk_app(port, "");
    let call = initiate(&app, "+15551236", "out-ring-1").await;
    let id = call["call_id"].as_str().expect("id");
    let ended = app.wait_hangup_by_id(id).await;
    assert_eq!(ended["hangup_reason"], "noanswer", "{ended}");
    assert!(ended["tm_ringing"].is_string(), "it rang: {ended}");
    let run = uas.finish().await;
    assert!(run.success, "SIPp saw CANCEL:\n{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_end_while_ringing_cancels_the_invite() {
    let port = free_udp_port();
    let uas = Sipp::server(port, "uas_ring.xml", &[], &[]);
    let app = spawn_app(&format!(
        "{}ring_timeout_ms = 60000\n[sip.trunks.carrier]\nhost = \"127.0.0.1\"\nport = {port}\n[bots.greeter]\nkind = \"flow\"\nactions = [{{ type = \"answer\" }}, {{ type = \"hangup\" }}]\n[[routes]]\nbot = \"greeter\"\n",
        sip_toml()
    ));
    let call = initiate(&app, "+15551237", "out-cancel-1").await;
    let id = call["call_id"].as_str().expect("id").to_owned();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, c) = app.get_json(&format!("/calls/{id}")).await;
        if c["status"] == "ringing" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never rang: {c}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (status, body) = app.post_json(&format!("/api/v1/calls/{id}/end")).await;
    assert_eq!(status, 200, "{body}");
    let ended = app.wait_hangup_by_id(&id).await;
    assert_eq!(ended["hangup_reason"], "cancel", "{ended}");
    let run = uas.finish().await;
    assert!(run.success, "SIPp saw CANCEL:\n{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_that_challenges_gets_the_digest_and_answers() {
    let port = free_udp_port();
    let uas = Sipp::server(port, "uas_auth.xml", &[], &[]);
    let app = trunk_app(port, "username = \"trunkuser\"\npassword = \"trunkpass\"\n");
    let call = initiate(&app, "+15551238", "out-auth-1").await;
    let ended = app
        .wait_hangup_by_id(call["call_id"].as_str().expect("id"))
        .await;
    let run = uas.finish().await;
    assert!(run.success, "SIPp failed:\n{}", run.output);
    assert!(ended["tm_progressing"].is_string(), "answered: {ended}");
    assert_eq!(ended["hangup_reason"], "normal", "{ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_outside_the_allowed_networks_must_answer_the_digest_challenge() {
    let app = spawn_app(&format!(
        "{}allow_from = [\"10.0.0.0/8\"]\nusers = [{{ username = \"caller\", password = \"s3cret\" }}]\n{KEY_FLOW}",
        sip_toml()
    ));
    let sip = app.handle.sip_addr.expect("SIP listens");
    let run = sipp_args(
        sip,
        "auth_call.xml",
        "hold",
        "sip-auth-1",
        &["-au", "caller", "-ap", "s3cret"],
    )
    .await;
    assert!(run.success, "the right digest is admitted:\n{}", run.output);
    let call = app.wait_hangup("sip-auth-1").await;
    assert_eq!(call["hangup_reason"], "normal", "{call}");
    let run = sipp_args(
        sip,
        "auth_refused.xml",
        "hold",
        "sip-auth-2",
        &["-au", "caller", "-ap", "wrong"],
    )
    .await;
    assert!(run.success, "a wrong digest gets 403:\n{}", run.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_sip_caller_is_hung_up_after_the_media_timeout() {
    let app = spawn_app(&format!(
        "{}[media]\nmedia_timeout_ms = 1500\n{KEY_FLOW}",
        sip_toml()
    ));
    let sip = app.handle.sip_addr.expect("SIP listens");
    let run = sipp(sip, "silent.xml", "hold", "sip-silent-1", &[]).await;
    assert!(run.success, "SIPp got BYE:\n{}", run.output);
    let call = app.wait_hangup("sip-silent-1").await;
    assert_eq!(call["hangup_reason"], "timeout", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_never_acks_is_hung_up_after_timer_h() {
    // No media timeout: it would end the silent call first (30 s against timer H's 32 s).
    let app = spawn_app(&format!(
        "{}[media]\nmedia_timeout_ms = 0\n{KEY_FLOW}",
        sip_toml()
    ));
    let sip = app.handle.sip_addr.expect("SIP listens");
    let run = sipp(sip, "no_ack.xml", "long", "sip-noack-1", &[]).await;
    assert!(
        run.success,
        "SIPp got BYE after the 200 OK went unacknowledged:\n{}",
        run.output
    );
    let call = app.wait_hangup("sip-noack-1").await;
    assert_eq!(call["hangup_reason"], "failed", "{call}");
    assert_eq!(call["hangup_by"], "local", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_rtp_range_and_an_invite_flood_are_refused_with_503() {
    // One RTP port, and two new INVITEs a second per source.
    let port = next_rtp_base();
    let app = spawn_app(&format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\nrtp_ports = \"{port}-{port}\"\ninvites_per_second = 2\n{KEY_FLOW}"
    ));
    let sip = app.handle.sip_addr.expect("SIP listens");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let me = socket.local_addr().expect("addr");
    // The first call takes the only port (the hold bot answers and waits).
    socket
        .send_to(invite_text(sip, me, "range-1", 40000).as_bytes(), sip)
        .await
        .expect("send");
    let first = final_responses(&socket, |f| f.contains_key("range-1")).await;
    assert_eq!(first.get("range-1"), Some(&200), "{first:?}");
    socket
        .send_to(invite_text(sip, me, "range-2", 40002).as_bytes(), sip)
        .await
        .expect("send");
    let second = final_responses(&socket, |f| f.contains_key("range-2")).await;
    assert_eq!(
        second.get("range-2"),
        Some(&503),
        "no RTP port left: {second:?}"
    );
    // A burst of INVITEs from one source: past the bucket (4), 503.
    for i in 0..20 {
        let id = format!("flood-{i}");
        socket
            .send_to(invite_text(sip, me, &id, 40004).as_bytes(), sip)
            .await
            .expect("send");
    }
    let finals = final_responses(&socket, |f| {
        f.keys().filter(|k| k.starts_with("flood-")).count() == 20
    })
    .await;
    let refused = finals
        .iter()
        .filter(|(k, code)| k.starts_with("flood-") && **code == 503)
        .count();
    assert_eq!(
        refused, 20,
        "every INVITE of the burst is refused (rate or no port): {finals:?}"
    );
    // The first call is still up.
    let call = app.call_by_reference("range-1").await;
    assert_eq!(call["status"], "progressing", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_over_tcp_answers_options_and_calls() {
    let app = spawn_app(&format!(
        "{}transports = [\"udp\", \"tcp\"]\n{KEY_FLOW}",
        sip_toml()
    ));
    let sip = app.handle.sip_addr.expect("SIP listens");
    let run = sipp_args(sip, "options.xml", "bot", "sip-tcp-options", &["-t", "t1"]).await;
    assert!(run.success, "OPTIONS over TCP:\n{}", run.output);
    let run = sipp_args(sip, "hold_bye.xml", "hold", "sip-tcp-1", &["-t", "t1"]).await;
    assert!(run.success, "a call over TCP:\n{}", run.output);
    let call = app.wait_hangup("sip-tcp-1").await;
    assert_eq!(call["hangup_reason"], "normal", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_routes_match_the_from_host() {
    let app = spawn_app(&format!(
        r#"{}{KEY_FLOW}
[[routes]]
bot = "slow"
match = {{ ingress = "sip", from_host = "192.0.2.1" }}
"#,
        sip_toml()
    )
    .replacen(
        "[[routes]]",
        "[[routes]]\nbot = \"hold\"\nmatch = { ingress = \"sip\", from_host = \"127.0.0.1\" }\n[[routes]]",
        1,
    ));
    let sip = app.handle.sip_addr.expect("SIP listens");
    let run = sipp(sip, "hold_bye.xml", "nobody", "sip-from-1", &[]).await;
    assert!(run.success, "SIPp failed:\n{}", run.output);
    let call = app.wait_hangup("sip-from-1").await;
    assert_eq!(call["bot"], "hold", "routed by the From host: {call}");
    assert_eq!(call["source"]["type"], "sip", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_go_out_as_rfc_4733_events_and_come_in_by_sip_info() {
    let app = spawn_sip_app();
    let sip = app.handle.sip_addr.expect("SIP listens");
    let ear = Ear::new().await;
    let keys = vec![("hear_port", ear.port.to_string())];
    let run =
        tokio::spawn(
            async move { sipp(sip, "info_dtmf.xml", "digits", "sip-info-1", &keys).await },
        );
    // The keys, then audio again (the clock runs on after them).
    let heard = ear
        .listen(|h| h.keys.len() >= 3 && h.samples.len() >= 1600)
        .await;
    assert_eq!(
        heard.keys,
        vec!['1', '5', '9'],
        "the bot's keys as telephone events"
    );
    assert_eq!(
        heard.seq_breaks, 0,
        "sequence numbers run on around the events"
    );
    let run = run.await.expect("sipp task");
    assert!(run.success, "SIPp failed:\n{}", run.output);
    let call = app.wait_hangup("sip-info-1").await;
    assert_eq!(
        call["hangup_reason"], "normal",
        "the INFO key 5 reached the flow: {call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_switch_answers_486() {
    let app = spawn_app(&format!(
        "[server]\nmax_calls = 1\n{}{KEY_FLOW}",
        sip_toml()
    ));
    let sip = app.handle.sip_addr.expect("SIP listens");
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let me = socket.local_addr().expect("addr");
    socket
        .send_to(invite_text(sip, me, "full-1", 40000).as_bytes(), sip)
        .await
        .expect("send");
    let first = final_responses(&socket, |f| f.contains_key("full-1")).await;
    assert_eq!(first.get("full-1"), Some(&200), "{first:?}");
    socket
        .send_to(invite_text(sip, me, "full-2", 40002).as_bytes(), sip)
        .await
        .expect("send");
    let second = final_responses(&socket, |f| f.contains_key("full-2")).await;
    assert_eq!(
        second.get("full-2"),
        Some(&486),
        "the switch is full: {second:?}"
    );
}

/// Bots for transfers and codec changes: `transfer` hands the call to a number the switch
/// cannot reach itself (no trunk: the caller's side is asked to transfer it), `codec` greets
/// at length, records the call until a key comes, and hangs up.
const TRANSFER_FLOW: &str = r#"
[bots.transfer]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "connect", destinations = [{ type = "tel", target = "+15557777" }] },
]
[bots.codec]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "recording_start", format = "wav" },
  { type = "talk", text = "Hello, and welcome. This greeting goes on long enough to be heard again once the codec has changed." },
  { type = "digits_receive", duration = 20000, length = 1 },
  { type = "recording_stop" },
  { type = "hangup" },
]
[[routes]]
bot = "codec"
match = { ingress = "sip", hotline = "codec" }
[[routes]]
bot = "transfer"
match = { ingress = "sip" }
"#;

fn transfer_app() -> TestApp {
    spawn_app(&format!("{}{TRANSFER_FLOW}", sip_toml()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_is_a_refer_and_the_switch_hangs_up_once_the_new_call_is_up() {
    let app = transfer_app();
    let sip = app.handle.sip_addr.expect("SIP listens");
    let run = sipp(sip, "transfer.xml", "transfer", "sip-refer-1", &[]).await;
    let call = app.wait_hangup("sip-refer-1").await;
    assert!(run.success, "SIPp failed ({call}):\n{}", run.output);
    assert_eq!(call["hangup_reason"], "normal", "{call}");
    assert_eq!(call["hangup_by"], "local", "{call}");
    assert_eq!(
        call["hangup_detail"], "transferred to sip:+15557777@127.0.0.1",
        "{call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_refer_in_its_allow_gets_no_refer_and_the_call_fails() {
    let app = transfer_app();
    let sip = app.handle.sip_addr.expect("SIP listens");
    let run = sipp(sip, "no_refer.xml", "transfer", "sip-refer-2", &[]).await;
    let call = app.wait_hangup("sip-refer-2").await;
    assert!(
        run.success,
        "SIPp got BYE, no REFER ({call}):\n{}",
        run.output
    );
    assert_eq!(call["hangup_reason"], "failed", "{call}");
    assert_eq!(call["hangup_by"], "local", "{call}");
    let detail = call["hangup_detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("transfer refused") && detail.contains("REFER"),
        "{call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_refer_leaves_the_call_to_the_switch() {
    let app = transfer_app();
    let sip = app.handle.sip_addr.expect("SIP listens");
    let run = sipp(sip, "transfer_declined.xml", "transfer", "sip-refer-3", &[]).await;
    let call = app.wait_hangup("sip-refer-3").await;
    assert!(run.success, "SIPp failed ({call}):\n{}", run.output);
    assert_eq!(call["hangup_reason"], "failed", "{call}");
    let detail = call["hangup_detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("transfer refused") && detail.contains("603"),
        "{call}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_invite_to_pcma_changes_the_codec_at_once() {
    let app = transfer_app();
    let sip = app.handle.sip_addr.expect("SIP listens");
    let ear = Ear::new().await;
    let keys = vec![("hear_port", ear.port.to_string())];
    let run = tokio::spawn(async move {
        sipp(sip, "reinvite_codec.xml", "codec", "sip-codec-1", &keys).await
    });
    // The greeting goes on in A-law (payload type 8) once the re-INVITE is answered.
    let heard = ear.listen(|h| loud(&h.alaw_samples, 500.0)).await;
    if !loud(&heard.alaw_samples, 500.0) {
        let run = run.await.expect("sipp task");
        panic!(
            "no greeting heard in A-law (payload types {:?}):\n{}",
            heard.payload_types, run.output
        );
    }
    // The caller talks back in A-law, then presses a key: the bot hangs up on it.
    let switch_rtp = heard.from.expect("the switch's RTP address");
    ear.talk(
        switch_rtp,
        8,
        switchboard::media::g711::Law::Alaw,
        &tone_8k(440.0, 1000, 8000.0),
        5,
    )
    .await;
    let run = run.await.expect("sipp task");
    assert!(run.success, "SIPp failed:\n{}", run.output);
    let call = app.wait_hangup("sip-codec-1").await;
    assert_eq!(call["hangup_reason"], "normal", "{call}");
    // The switch took the caller's A-law audio: the tone is on the recording's caller side.
    let id = call["id"].as_str().expect("id").to_owned();
    let list = recordings_when_done(&app, &id).await;
    let caller = recorded_caller(&app, &list).await;
    assert!(
        loud(&caller.0, 500.0) && caller.1 > caller.2 * 10.0,
        "the caller's A-law tone recorded (440 Hz power {:.1} against {:.1} at 1300 Hz)",
        caller.1,
        caller.2
    );
}

/// The caller (left) channel of a call's first recording, and its power at 440 Hz and at
/// 1300 Hz.
async fn recorded_caller(app: &TestApp, list: &serde_json::Value) -> (Vec<i16>, f64, f64) {
    let url = list["recordings"][0]["download_url"]
        .as_str()
        .expect("a recording")
        .to_owned();
    let bytes = app
        .http
        .get(app.url(&url))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("recording");
    let (rate, channels, samples) = wav_samples(&bytes);
    assert_eq!(channels, 2, "a stereo recording");
    let caller: Vec<i16> = samples.chunks_exact(2).map(|f| f[0]).collect();
    let tone = tone_power(&caller, rate, 440.0);
    let off = tone_power(&caller, rate, 1300.0);
    (caller, tone, off)
}

/// A flow for baresip: it records the call while it greets, then hangs up.
const INTEROP_FLOW: &str = r#"
[bots.interop]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "recording_start", format = "wav" },
  { type = "talk", text = "Hello from the switch. This is its greeting to a real SIP phone." },
  { type = "recording_stop" },
  { type = "hangup" },
]
[[routes]]
bot = "interop"
match = { ingress = "sip" }
"#;

/// A baresip process (Debian baresip-core) of a test, stopped when dropped.
struct Baresip {
    child: tokio::process::Child,
    dir: std::path::PathBuf,
}

impl Baresip {
    /// Starts baresip on loopback with its own config in a new folder: it plays `source` (a
    /// 8 kHz WAV) as its microphone, dumps what it hears there (`sndfile`), and dials `uri`.
    /// `net_interface` keeps its SDP on loopback too (else it names the host's first address
    /// while its RTP comes from 127.0.0.1, which the switch drops as another source).
    fn dial(uri: &str, source: &[u8]) -> Baresip {
        let dir =
            std::env::temp_dir().join(format!("switchboard-baresip-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("baresip dir");
        let input = dir.join("in.wav");
        std::fs::write(&input, source).expect("baresip input");
        let modules = [
            "/usr/lib/baresip/modules",
            "/usr/lib/x86_64-linux-gnu/baresip/modules",
        ]
        .into_iter()
        .find(|m| std::path::Path::new(m).join("g711.so").exists())
        .unwrap_or("/usr/lib/baresip/modules");
        let config = format!(
            "poll_method epoll\nnet_interface 127.0.0.1\nsip_listen 127.0.0.1:{}\nsip_trans_def udp\n\
             audio_player alsa,null\naudio_alert alsa,null\naudio_source aufile,{}\n\
             module_path {modules}\nmodule g711.so\nmodule aufile.so\nmodule alsa.so\n\
             module sndfile.so\nmodule menu.so\nmodule_app account.so\nsnd_path {}\n",
            free_udp_port(),
            input.display(),
            dir.display()
        );
        std::fs::write(dir.join("config"), config).expect("baresip config");
        std::fs::write(dir.join("accounts"), "<sip:test@127.0.0.1>;regint=0\n")
            .expect("baresip accounts");
        let child = tokio::process::Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .args(["-e", &format!("/dial {uri}"), "-t", "120"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("baresip does not run ({e}): install the Debian package baresip-core")
            });
        Baresip { child, dir }
    }

    /// Stops baresip (SIGTERM, so its files are closed) and answers what it heard.
    async fn stop_and_heard(mut self) -> Vec<i16> {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let mut heard = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("dump-") && name.ends_with("-dec.wav") {
                    heard.extend(wav_data(&std::fs::read(e.path()).unwrap_or_default()));
                }
            }
        }
        heard
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_the_switch_and_each_hears_the_other() {
    let present = std::process::Command::new("baresip")
        .arg("-h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    assert!(
        present,
        "baresip is not installed: install the Debian package baresip-core"
    );
    let app = spawn_app(&format!("{}{INTEROP_FLOW}", sip_toml()));
    let sip = app.handle.sip_addr.expect("SIP listens");
    // baresip's microphone: a 440 Hz tone, long enough for the whole call.
    let source = pcm_wav(&tone_8k(440.0, 20_000, 8000.0), 8000);
    let baresip = Baresip::dial(&format!("sip:interop@{sip}"), &source);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let id = loop {
        let (_, page) = app.get_json("/calls?page_size=1").await;
        if let Some(id) = page["result"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "baresip's call never reached the switch: {page}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let call = app.wait_hangup_by_id(&id).await;
    let heard = baresip.stop_and_heard().await;
    assert_eq!(call["ingress"], "sip", "{call}");
    assert!(call["tm_progressing"].is_string(), "answered: {call}");
    assert_eq!(call["hangup_reason"], "normal", "{call}");
    assert!(
        loud(&heard, 500.0),
        "baresip heard the greeting ({} samples)",
        heard.len()
    );
    // What the switch heard of baresip: its tone on the recording's caller (left) channel.
    let list = recordings_when_done(&app, &id).await;
    let (caller, tone, off) = recorded_caller(&app, &list).await;
    assert!(
        loud(&caller, 500.0) && tone > off * 10.0,
        "the switch heard baresip's 440 Hz tone (power {tone:.1} against {off:.1} at 1300 Hz)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_behind_nat_is_answered_where_its_rtp_comes_from() {
    let base = next_rtp_base();
    let app = spawn_app(&format!("{}{KEY_FLOW}", sip_toml_with(base)));
    let sip = app.handle.sip_addr.expect("SIP listens");
    let ear = std::sync::Arc::new(Ear::new().await);
    // The caller's SDP says 127.0.0.55 (nothing of the test listens there); its RTP comes from
    // the ear's socket on 127.0.0.1.
    let keys = vec![("hear_port", ear.port.to_string())];
    let run =
        tokio::spawn(async move { sipp(sip, "nat_caller.xml", "bot", "sip-nat-1", &keys).await });
    app.wait_for_call("sip-nat-1", |c| c["status"] == "progressing")
        .await;
    // It speaks (and then presses 5) to every port of the switch's range: only the call's
    // own port has a session.
    let talker = ear.clone();
    let talk = tokio::spawn(async move {
        let tone = tone_8k(440.0, 3000, 8000.0);
        let talks = (base..base + 10).map(|port| {
            talker.talk(
                ([127, 0, 0, 1], port).into(),
                0,
                switchboard::media::g711::Law::Ulaw,
                &tone,
                5,
            )
        });
        futures_util::future::join_all(talks).await;
    });
    // Once its RTP has been seen from one place a few times in sequence, the switch answers
    // there: the greeting reaches the ear.
    let heard = ear
        .listen(|h| h.samples.len() >= 8000 && loud(&h.samples, 500.0))
        .await;
    assert!(
        loud(&heard.samples, 500.0),
        "the greeting came back to where the caller's RTP comes from ({} packets)",
        heard.packets
    );
    talk.await.expect("talk");
    let call = app.wait_hangup("sip-nat-1").await;
    assert_eq!(
        call["hangup_reason"], "normal",
        "the key 5 reached the flow: {call}"
    );
    let run = run.await.expect("sipp task");
    assert!(run.success, "SIPp failed:\n{}", run.output);
}
