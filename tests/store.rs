//! Durable call records against the real switch: records and transcripts survive a restart,
//! a database that goes away loses no event once it is back, recordings are time-aligned
//! stereo. With `SWITCHBOARD_TEST_POSTGRES_URL` set, the store runs on PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use support::*;
use switchboard::media::pcm;
use switchboard::pb::smartivr::SmartIvrResponseType as T;
use uuid::Uuid;

fn menu_with(store: &str) -> String {
    format!("{store}{MENU_FLOW}\n[[routes]]\nbot = \"menu\"\n")
}

fn events(rows: &[switchboard::store::EventRow]) -> Vec<String> {
    rows.iter().map(|e| e.event.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_events_and_transcripts_survive_a_restart() {
    let dir = temp_data_dir();
    let store = store_toml(&dir, &fresh_store_url(&dir).await);
    let first = spawn_app(&menu_with(&store));
    let mut gw = Gateway::dial(&first, "persist-1").await;
    gw.expect_tts("Hello").await;
    gw.expect_tts("Press one").await;
    gw.press("3").await;
    gw.expect_tts("Goodbye").await;
    gw.expect(T::CallEnd).await;
    let before = first.wait_hangup("persist-1").await;
    let id: Uuid = before["id"].as_str().unwrap().parse().unwrap();
    first.handle.store.sync(PATIENCE).await;
    drop(first);

    let second = spawn_app(&menu_with(&store));
    let after = second.call_by_reference("persist-1").await;
    assert_eq!(
        after, before,
        "the stored record is the one the first run showed"
    );
    let (status, by_id) = second.get_json(&format!("/calls/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(by_id, before);

    let stored = second.handle.store.events_of(id).await.unwrap();
    let names = events(&stored);
    assert_eq!(names.first().map(String::as_str), Some("call_created"));
    assert_eq!(names.last().map(String::as_str), Some("call_hangup"));
    for needed in ["call_progressing", "call_updated", "call_terminating"] {
        assert!(names.iter().any(|n| n == needed), "{needed} in {names:?}");
    }

    let (status, transcript) = second
        .get_json(&format!("/api/v1/calls/{id}/transcript"))
        .await;
    assert_eq!(status, 200, "{transcript}");
    let texts: Vec<&str> = transcript["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "text_bot")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Hello.", "Press one, two or three.", "Goodbye."]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_loses_no_event_once_it_is_back() {
    use sqlx::Connection;
    let dir = temp_data_dir();
    let url = sqlite_url(&dir);
    let app = spawn_app(&menu_with(&store_toml(&dir, &url)));
    app.handle.store.sync(PATIENCE).await;

    // Another writer holds the database: every write of the switch fails meanwhile.
    sqlx::any::install_default_drivers();
    let mut lock = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::Executor::execute(&mut lock, "BEGIN EXCLUSIVE")
        .await
        .unwrap();

    let mut gw = Gateway::dial(&app, "locked-1").await;
    gw.expect_tts("Hello").await;
    gw.expect_tts("Press one").await;
    gw.press("3").await;
    gw.expect_tts("Goodbye").await;
    gw.expect(T::CallEnd).await;
    eventually("health reports the failing store", || async {
        let (_, health) = app.get_json("/health").await;
        health["store"]["status"] == "failing" && health["store"]["queued"].as_u64() > Some(0)
    })
    .await;
    let (_, health) = app.get_json("/health").await;
    assert_eq!(health["status"], "degraded", "{health}");

    sqlx::Executor::execute(&mut lock, "ROLLBACK")
        .await
        .unwrap();
    drop(lock);
    let call = app.wait_hangup("locked-1").await;
    let id: Uuid = call["id"].as_str().unwrap().parse().unwrap();
    let names = events(&app.handle.store.events_of(id).await.unwrap());
    assert_eq!(names.first().map(String::as_str), Some("call_created"));
    assert_eq!(names.last().map(String::as_str), Some("call_hangup"));
    for needed in ["call_progressing", "call_terminating"] {
        assert!(names.iter().any(|n| n == needed), "{needed} in {names:?}");
    }
    let (_, health) = app.get_json("/health").await;
    assert_eq!(health["store"]["status"], "ok", "{health}");
    assert_eq!(health["store"]["queued"], 0);
    assert_eq!(health["store"]["dropped"], 0);
}

/// The RMS of `channel` (0 left, 1 right) over [from_ms, to_ms).
fn window_rms(samples: &[i16], channel: usize, from_ms: usize, to_ms: usize) -> f64 {
    let side: Vec<i16> = samples.iter().skip(channel).step_by(2).copied().collect();
    let from = (from_ms * 8).min(side.len());
    let to = (to_ms * 8).min(side.len());
    pcm::rms(&side[from..to])
}

/// The first 20 ms window of `channel` louder than `level`, in ms.
fn onset_ms(samples: &[i16], channel: usize, level: f64) -> Option<usize> {
    let frames = samples.len() / 2 / 160;
    (0..frames)
        .map(|f| f * 20)
        .find(|&ms| window_rms(samples, channel, ms, ms + 20) > level)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_has_the_caller_left_and_the_bot_right_in_time() {
    let app = spawn_app(
        r#"
[bots.rec]
kind = "flow"
actions = [
  { type = "answer" },
  { type = "recording_start", format = "wav" },
  { type = "talk", text = "Hello." },
  { type = "digits_receive", duration = 20000, length = 1 },
  { type = "recording_stop" },
  { type = "hangup" },
]
[[routes]]
bot = "rec"
"#,
    );
    let mut gw = Gateway::dial(&app, "rec-1").await;
    let hello = gw.expect_tts("Hello").await;
    let heard = Instant::now();
    let hello_ms = switchboard::media::wav::parse(&hello.audio_content)
        .unwrap()
        .samples
        .len()
        / 8;
    // The caller speaks a while after the prompt has finished: a gap the recording must keep.
    let speak_at = Duration::from_millis(hello_ms as u64 + 700);
    tokio::time::sleep(speak_at).await;
    let spoke = heard.elapsed().as_millis() as usize;
    for chunk in tone_8k(440.0, 400, 8000.0).chunks(160) {
        gw.send_audio(chunk).await;
    }
    gw.press("1").await;
    gw.expect(T::CallEnd).await;
    let call = app.wait_hangup("rec-1").await;
    let id = call["id"].as_str().unwrap().to_owned();
    let recording_ids = call["recording_ids"].as_array().unwrap();
    assert_eq!(recording_ids.len(), 1, "{call}");
    assert_eq!(call["recording_id"], "00000000-0000-0000-0000-000000000000");

    let list = recordings_when_done(&app, &id).await;
    assert_eq!(list["recordings"][0]["recording_id"], recording_ids[0]);
    let url = list["recordings"][0]["download_url"].as_str().unwrap();
    let r = app.http.get(app.url(url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    let (rate, channels, samples) = wav_samples(&r.bytes().await.unwrap());
    assert_eq!((rate, channels), (8000, 2));

    // The bot's prompt is on the right from when it was sent; the left is quiet then.
    let bot_onset = onset_ms(&samples, 1, 300.0).expect("bot audio on the right");
    assert!(bot_onset < 2000, "bot starts at {bot_onset} ms");
    assert!(
        window_rms(&samples, 0, 0, bot_onset + hello_ms) < 50.0,
        "left quiet while the bot speaks"
    );
    // The caller's tone is on the left, as long after the prompt as the caller waited.
    let caller_onset = onset_ms(&samples, 0, 1000.0).expect("caller audio on the left");
    let gap = caller_onset.saturating_sub(bot_onset);
    assert!(
        gap + 150 >= spoke && gap <= spoke + 400,
        "caller starts {gap} ms after the bot, sent {spoke} ms after the prompt arrived"
    );
    assert!(
        window_rms(&samples, 1, caller_onset, caller_onset + 300) < 50.0,
        "right quiet while the caller speaks"
    );
    assert!(window_rms(&samples, 0, caller_onset + 20, caller_onset + 300) > 3000.0);
}

#[test]
fn an_unusable_database_stops_start_up_with_a_message_naming_it() {
    let dir = temp_data_dir();
    // The database path is a folder: SQLite cannot open it.
    let url = format!("sqlite://{}", dir.display());
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[grpc]\nlisten = \"127.0.0.1:0\"\n{}",
        store_toml(&dir, &url)
    );
    let config = switchboard::config::Config::from_toml(&text).unwrap();
    let err = match switchboard::app::spawn(config) {
        Ok(_) => panic!("the switch started on an unusable database"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&url), "{err}");
}
