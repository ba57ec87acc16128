//! SIP peers for the tests: SIPp runs a scenario from `tests/sip/` against the switch, and a
//! UDP socket of the test stands in for a caller's ear where SIPp cannot record what it hears.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::app::PATIENCE;

/// A free UDP port on loopback (bound, read, released).
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// The path of a SIPp scenario under `tests/sip/`.
pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sip")
        .join(name)
}

/// What SIPp said when it finished.
pub struct SippRun {
    pub success: bool,
    pub output: String,
}

/// Runs `scenario` once against the switch's SIP address, calling `service`, with the call id
/// `call_id` and `keys` as `-key NAME VALUE`; answers when SIPp exits.
pub async fn sipp(
    sip: SocketAddr,
    scenario_name: &str,
    service: &str,
    call_id: &str,
    keys: &[(&str, String)],
) -> SippRun {
    sipp_with_files(sip, scenario_name, service, call_id, keys, &[]).await
}

/// `sipp`, with `files` written into SIPp's working folder first (SIPp reads the files of
/// `rtp_stream` by a name fixed in the scenario: keys are not expanded there).
pub async fn sipp_with_files(
    sip: SocketAddr,
    scenario_name: &str,
    service: &str,
    call_id: &str,
    keys: &[(&str, String)],
    files: &[(&str, Vec<u8>)],
) -> SippRun {
    let args = vec![
        sip.to_string(),
        "-s".into(),
        service.into(),
        "-cid_str".into(),
        call_id.into(),
        "-p".into(),
        free_udp_port().to_string(),
    ];
    Sipp::start(scenario_name, args, keys, files).finish().await
}

/// `sipp` with further SIPp arguments (`-au NAME -ap PASSWORD`).
pub async fn sipp_args(
    sip: SocketAddr,
    scenario_name: &str,
    service: &str,
    call_id: &str,
    extra: &[&str],
) -> SippRun {
    let mut args = vec![
        sip.to_string(),
        "-s".into(),
        service.into(),
        "-cid_str".into(),
        call_id.into(),
        "-p".into(),
        free_udp_port().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    Sipp::start(scenario_name, args, &[], &[]).finish().await
}

/// A SIPp process running one scenario.
pub struct Sipp {
    child: tokio::process::Child,
    dir: PathBuf,
}

impl Sipp {
    /// A SIPp server (UAS) on 127.0.0.1:`port` for one call of `scenario_name`.
    pub fn server(
        port: u16,
        scenario_name: &str,
        keys: &[(&str, String)],
        files: &[(&str, Vec<u8>)],
    ) -> Sipp {
        Sipp::start(
            scenario_name,
            vec!["-p".into(), port.to_string()],
            keys,
            files,
        )
    }

    /// A SIPp server (UAS) on 127.0.0.1:`port` that sends back every RTP packet it gets on
    /// its media port (`-rtp_echo`), for one call of `scenario_name`.
    pub fn echo_server(port: u16, scenario_name: &str) -> Sipp {
        Sipp::start(
            scenario_name,
            vec!["-p".into(), port.to_string(), "-rtp_echo".into()],
            &[],
            &[],
        )
    }

    fn start(
        scenario_name: &str,
        args: Vec<String>,
        keys: &[(&str, String)],
        files: &[(&str, Vec<u8>)],
    ) -> Sipp {
        let dir = std::env::temp_dir().join(format!("switchboard-sipp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("sipp dir");
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).expect("sipp file");
        }
        let mut cmd = tokio::process::Command::new("sipp");
        cmd.args(&args)
            .arg("-sf")
            .arg(scenario(scenario_name))
            .args(["-m", "1", "-l", "1", "-i", "127.0.0.1"])
            .args(["-mp", &free_udp_port().to_string()])
            .args(["-timeout", "60s", "-timeout_error", "-nostdin"])
            .args(["-trace_err", "-trace_msg"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in keys {
            cmd.args(["-key", k, v]);
        }
        let child = cmd.spawn().expect("sipp runs (Debian package sip-tester)");
        Sipp { child, dir }
    }

    /// Waits for SIPp to finish its call.
    pub async fn finish(self) -> SippRun {
        let out = tokio::time::timeout(PATIENCE * 3, self.child.wait_with_output())
            .await
            .expect("sipp finished in time")
            .expect("sipp output");
        // SIPp's message and error traces, for a failure's message.
        let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    let Ok(text) = std::fs::read_to_string(e.path()) else {
                        continue;
                    };
                    let tail: String = text
                        .chars()
                        .rev()
                        .take(6000)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    output.push_str(&format!("\n--- {}\n{tail}", e.path().display()));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        SippRun {
            success: out.status.success(),
            output,
        }
    }
}

/// A μ-law 8 kHz mono WAV of `samples` (what SIPp's `rtp_stream` plays).
pub fn ulaw_wav(samples: &[i16]) -> Vec<u8> {
    let mut data = Vec::new();
    switchboard::media::g711::Law::Ulaw.encode(samples, &mut data);
    let mut w = Vec::with_capacity(58 + data.len());
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(50 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&18u32.to_le_bytes());
    w.extend_from_slice(&7u16.to_le_bytes()); // μ-law
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8u16.to_le_bytes());
    w.extend_from_slice(&0u16.to_le_bytes());
    w.extend_from_slice(b"fact");
    w.extend_from_slice(&4u32.to_le_bytes());
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    w
}

/// What a caller's ear took in: RTP packets to a port of the test.
pub struct Ear {
    socket: tokio::net::UdpSocket,
    pub port: u16,
}

/// What the ear heard.
#[derive(Debug, Default)]
pub struct Heard {
    pub packets: usize,
    /// Packets whose sequence number did not follow the one before.
    pub seq_breaks: usize,
    /// Audio packets whose timestamp did not move by 160 from the audio packet just before.
    pub ts_breaks: usize,
    pub samples: Vec<i16>,
    /// A-law audio (payload type 8), decoded.
    pub alaw_samples: Vec<i16>,
    pub payload_types: Vec<u8>,
    /// Where the packets came from (the switch's RTP port), once one came.
    pub from: Option<SocketAddr>,
    /// Keys sent as RFC 4733 events (payload type 101), one per event, in order.
    pub keys: Vec<char>,
    /// The timestamp of the last event seen.
    last_event: Option<u32>,
}

impl Ear {
    pub async fn new() -> Ear {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = socket.local_addr().expect("addr").port();
        Ear { socket, port }
    }

    /// Sends RTP to `to` from the ear's port: `samples` as 20 ms packets of `pt` in `law`
    /// paced at 20 ms, then the RFC 4733 event `key` (payload type 101, three end packets).
    pub async fn talk(
        &self,
        to: SocketAddr,
        pt: u8,
        law: switchboard::media::g711::Law,
        samples: &[i16],
        key: u8,
    ) {
        let ssrc = 0x5eed_0001u32;
        let mut seq = 1u16;
        let mut ts = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for frame in samples.chunks(160) {
            tick.tick().await;
            let mut p = vec![0x80, pt];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&ts.to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            law.encode(frame, &mut p);
            let _ = self.socket.send_to(&p, to).await;
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
        }
        for _ in 0..3 {
            tick.tick().await;
            let mut p = vec![0x80, 101];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&ts.to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            p.extend_from_slice(&[key, 0x80 | 10, 0x03, 0x20]);
            let _ = self.socket.send_to(&p, to).await;
            seq = seq.wrapping_add(1);
        }
    }

    /// Listens until `enough` says so (or the patience runs out), decoding μ-law and A-law.
    pub async fn listen(&self, enough: impl Fn(&Heard) -> bool) -> Heard {
        let mut heard = Heard::default();
        let mut buf = vec![0u8; 2048];
        let mut last: Option<(u16, u32)> = None;
        let mut last_seq: Option<u16> = None;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !enough(&heard) {
            let Ok(Ok((n, from))) =
                tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await
            else {
                break;
            };
            heard.from = Some(from);
            let p = &buf[..n];
            if n < 12 {
                continue;
            }
            let pt = p[1] & 0x7f;
            let seq = u16::from_be_bytes([p[2], p[3]]);
            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
            heard.packets += 1;
            if !heard.payload_types.contains(&pt) {
                heard.payload_types.push(pt);
            }
            if pt == 101 && n >= 16 && heard.last_event != Some(ts) {
                heard.last_event = Some(ts);
                let key = match p[12] {
                    c @ 0..=9 => (b'0' + c) as char,
                    10 => '*',
                    11 => '#',
                    c => (b'A' + c.saturating_sub(12)) as char,
                };
                heard.keys.push(key);
            }
            // Sequence numbers run on across every packet of the stream (audio and events);
            // timestamps by 160 from one audio packet to the next.
            if let Some(s) = last_seq {
                if seq != s.wrapping_add(1) {
                    heard.seq_breaks += 1;
                }
            }
            last_seq = Some(seq);
            if pt != 0 {
                last = None;
            }
            if pt == 0 {
                if let Some((_, t)) = last {
                    if ts != t.wrapping_add(160) {
                        heard.ts_breaks += 1;
                    }
                }
                last = Some((seq, ts));
                switchboard::media::g711::Law::Ulaw.decode(&p[12..], &mut heard.samples);
            }
            if pt == 8 {
                switchboard::media::g711::Law::Alaw.decode(&p[12..], &mut heard.alaw_samples);
            }
        }
        heard
    }
}

/// A 16-bit PCM mono WAV of `samples` at `rate`.
pub fn pcm_wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut w = Vec::with_capacity(44 + data.len());
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    w
}

/// The 16-bit samples of a WAV file's `data` chunk, to the end of the file (a file whose
/// writer did not fix its sizes is read whole).
pub fn wav_data(bytes: &[u8]) -> Vec<i16> {
    let Some(at) = bytes.windows(4).position(|w| w == b"data") else {
        return Vec::new();
    };
    bytes
        .get(at + 8..)
        .unwrap_or(&[])
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Whether `samples` hold speech-loud audio somewhere (an RMS over 20 ms above `level`).
pub fn loud(samples: &[i16], level: f64) -> bool {
    samples.chunks(160).any(|c| {
        let sum: f64 = c.iter().map(|&s| (s as f64) * (s as f64)).sum();
        (sum / c.len() as f64).sqrt() > level
    })
}

/// A minimal INVITE from `from` (whose RTP is at `rtp_port`) to `bot` at `sip`, with a PCMU
/// offer; `call_id` must be unique.
pub fn invite_text(sip: SocketAddr, from: SocketAddr, call_id: &str, rtp_port: u16) -> String {
    let sdp = format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    format!(
        "INVITE sip:bot@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}\r\nFrom: <sip:t@{from}>;tag={call_id}\r\nTo: <sip:bot@{sip}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:t@{from}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The status codes of the final responses that come to `socket` until `done` says so (or the
/// patience runs out), by Call-ID.
pub async fn final_responses(
    socket: &tokio::net::UdpSocket,
    done: impl Fn(&std::collections::HashMap<String, u16>) -> bool,
) -> std::collections::HashMap<String, u16> {
    let mut finals = std::collections::HashMap::new();
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(&finals) {
        let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
        else {
            break;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        let Some(code) = text
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse::<u16>().ok())
        else {
            continue;
        };
        if code < 200 {
            continue;
        }
        let call_id = text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap_or("")
            .trim()
            .to_owned();
        finals.entry(call_id).or_insert(code);
    }
    finals
}
