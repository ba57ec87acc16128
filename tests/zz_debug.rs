mod support;
use std::sync::Arc;
use support::*;
use switchboard::speech::asr::*;
#[tokio::test]
async fn dbg() {
    let cfg = switchboard::config::AsrConfig::default();
    let asr = Asr::new(&cfg, reqwest::Client::new());
    let phrases: Vec<String> = std::fs::read_to_string("/tmp/ps/phrases.txt").unwrap().lines().filter(|l| !l.is_empty()).map(String::from).collect();
    let g = Arc::new(Grammar::Phrases(phrases.clone()));
    let (mut ok, mut n) = (0, 0);
    for voice in ["en-us", "en-us+m3", "en-us+f2", "en"] {
        for p in &phrases {
            let a8 = speak(p, voice, 8000);
            let audio: Vec<i16> = match std::env::var("MODE").as_deref() { Ok("zs") => a8.iter().flat_map(|s| [s.saturating_mul(2), 0]).collect(), Ok("w16") => speak(p, voice, 16000), Ok("lin") => { let mut v=Vec::new(); for w in a8.windows(2) { v.push(w[0]); v.push(((w[0] as i32+w[1] as i32)/2) as i16);} v }, _ => a8.clone() };
            let rate = if std::env::var("MODE").is_ok() { 16000 } else { 8000 };
            let r = asr.recognize(Request { audio, rate, grammar: g.clone(), language: "en-US".into(), partial: None }).await.unwrap();
            n += 1; if r.text == *p { ok += 1 } else { println!("{voice} {p:?} -> {:?}", r.text) }
        }
    }
    println!("{ok}/{n}");
}
