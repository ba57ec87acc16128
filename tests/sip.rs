//! SIP callers against the real switch: SIPp places calls to a flow bot over UDP on loopback.

mod support;

use support::sip::{free_udp_port, loud, sipp, sipp_with_files, ulaw_wav, Ear};
use support::*;

/// `[sip]` on an ephemeral loopback port, with a small RTP range of its own.
fn sip_toml() -> String {
    let base = 30000 + (std::process::id() % 2000) as u16 * 10;
    let _ = free_udp_port();
    format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\nrtp_ports = \"{base}-{}\"\n",
        base + 9
    )
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
[[routes]]
bot = "slow"
match = { ingress = "sip", hotline = "slow" }
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
    let app = spawn_sip_app();
    let sip = app.handle.sip_addr.expect("SIP listens");
    let ear = Ear::new().await;
    let keys = vec![("hear_port", ear.port.to_string())];
    let files = vec![("caller.wav", ulaw_wav(&tone_8k(440.0, 3000, 8000.0)))];
    let run = tokio::spawn(async move {
        sipp_with_files(sip, "call_dtmf.xml", "bot", "sip-keys-1", &keys, &files).await
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
