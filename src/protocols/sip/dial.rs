//! `switchboard dial --sip URI`: places one test call over SIP (UDP) from a user agent of its
//! own, streams a WAV file (or silence) as 20 ms PCMU packets, presses one of the given keys
//! (RFC 4733) after each prompt it hears, and prints what happens. Saves each prompt heard as a
//! WAV file when asked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rsipstack::dialog::dialog::DialogState;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::Uri;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::dtmf::{self, Slot};
use super::rtp::{Clock, Packet, MAX_PACKET};
use super::sdp::{Direction, Local, Session};
use crate::media::{resample_all, wav, TELEPHONE_RATE};

/// Samples per 20 ms packet.
const FRAME: usize = 160;
/// A prompt has ended after this much quiet following speech.
const PROMPT_GAP: Duration = Duration::from_millis(700);
/// Louder than this (RMS of a 20 ms frame) is speech.
const SPEECH_RMS: f64 = 300.0;

/// What to dial.
#[derive(Debug, Clone)]
pub struct SipDialOptions {
    /// `sip:bot@127.0.0.1:5060`.
    pub uri: String,
    pub wav: Option<PathBuf>,
    pub keys: String,
    pub max_seconds: u64,
    pub save_dir: Option<PathBuf>,
}

/// Places the call; returns when it ends.
pub async fn dial(opts: SipDialOptions) -> Result<(), String> {
    let caller_audio = match &opts.wav {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let parsed = wav::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            resample_all(&parsed.samples, parsed.rate, TELEPHONE_RATE)
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    if let Some(dir) = &opts.save_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let callee = Uri::try_from(opts.uri.as_str()).map_err(|e| format!("{}: {e}", opts.uri))?;
    let target: SocketAddr = format!(
        "{}:{}",
        callee.host_with_port.host,
        callee.host_with_port.port.map_or(5060, |p| p.value())
    )
    .parse()
    .map_err(|_| format!("{}: give the switch's IP address and port", opts.uri))?;
    let local_ip = if target.ip().is_loopback() {
        target.ip()
    } else {
        "0.0.0.0".parse().map_err(|_| "address".to_string())?
    };

    let cancel = CancellationToken::new();
    let transports = TransportLayer::new(cancel.clone());
    let udp = UdpConnection::create_connection(
        SocketAddr::new(local_ip, 0),
        None,
        Some(cancel.child_token()),
    )
    .await
    .map_err(|e| format!("SIP socket: {e}"))?;
    let sip_addr = udp.get_addr().get_socketaddr().map_err(|e| e.to_string())?;
    transports.add_transport(udp.into());
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(cancel.clone())
        .with_transport_layer(transports)
        .with_user_agent("switchboard-dial")
        .build();
    let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let serve = endpoint.inner.clone();
    tokio::spawn(async move {
        let _ = serve.serve().await;
    });
    // In-dialog requests (the switch's BYE) reach the dialog through the incoming transactions.
    let mut incoming = endpoint
        .incoming_transactions()
        .map_err(|e| format!("SIP endpoint: {e}"))?;
    let in_dialogs = dialogs.clone();
    tokio::spawn(async move {
        while let Some(mut tx) = incoming.recv().await {
            if let Some(mut dialog) = in_dialogs.match_dialog(&tx) {
                tokio::spawn(async move {
                    let _ = dialog.handle(&mut tx).await;
                });
            } else {
                let _ = tx
                    .reply(rsipstack::sip::StatusCode::CallTransactionDoesNotExist)
                    .await;
            }
        }
    });

    let rtp = UdpSocket::bind(SocketAddr::new(sip_addr.ip(), 0))
        .await
        .map_err(|e| format!("RTP socket: {e}"))?;
    let rtp_port = rtp.local_addr().map_err(|e| e.to_string())?.port();
    let local = Local {
        address: sip_addr.ip(),
        port: rtp_port,
        session_id: 1,
        version: 1,
        direction: Direction::SendRecv,
    };
    let contact =
        Uri::try_from(format!("sip:dial@{sip_addr}").as_str()).map_err(|e| e.to_string())?;
    let option = InviteOption {
        caller: contact.clone(),
        callee,
        content_type: Some("application/sdp".into()),
        offer: Some(local.offer().into_bytes()),
        contact,
        ..Default::default()
    };
    let (state_tx, mut states) = dialogs.new_dialog_state_channel();
    println!("calling {} from {sip_addr}", opts.uri);
    let (dialog, response) = dialogs
        .do_invite(option, state_tx)
        .await
        .map_err(|e| format!("INVITE: {e}"))?;
    let Some(response) = response else {
        return Err("no answer to the INVITE".into());
    };
    let code = response.status_code.code();
    if !(200..300).contains(&code) {
        println!("refused: {code} {}", response.status_code);
        return Err(format!("the call was refused: {code}"));
    }
    let answer = Session::parse(&response.body).map_err(|e| format!("answer SDP: {e}"))?;
    let agreed = answer.agree().map_err(|e| format!("answer SDP: {e}"))?;
    let remote = SocketAddr::new(answer.address, answer.port);
    println!("answered: {code}, media to {remote} ({:?})", agreed.law);

    let mut clock = Clock::new(0x5357_4243, 1, 0);
    let mut keys = opts.keys.chars().filter(|c| crate::media::is_dtmf(*c));
    let mut sender = dtmf::Sender::default();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut buf = vec![0u8; MAX_PACKET];
    let mut packet = Vec::new();
    let mut encoded = Vec::new();
    let mut prompt: Vec<i16> = Vec::new();
    let mut prompts = 0usize;
    let mut last_speech: Option<Instant> = None;
    let mut played = 0usize;
    let mut event_ts = 0u32;
    let started = Instant::now();
    let ended = loop {
        tokio::select! {
            _ = tick.tick() => {
                if started.elapsed() > Duration::from_secs(opts.max_seconds) {
                    let _ = dialog.bye().await;
                    break "hung up after --max-seconds";
                }
                let mut frame = [0i16; FRAME];
                if played < caller_audio.len() {
                    let n = (caller_audio.len() - played).min(FRAME);
                    frame[..n].copy_from_slice(&caller_audio[played..played + n]);
                    played += n;
                }
                match sender.next(FRAME as u32) {
                    Slot::Audio => {
                        encoded.clear();
                        agreed.law.encode(&frame, &mut encoded);
                        clock.audio(agreed.pt, FRAME as u32, &encoded).write(&mut packet);
                        let _ = rtp.send_to(&packet, remote).await;
                    }
                    Slot::Event { event, start } => {
                        if start { event_ts = clock.now(); }
                        if let Some(pt) = agreed.dtmf_pt {
                            let bytes = event.bytes();
                            clock.event(pt, start, event_ts, &bytes).write(&mut packet);
                            let _ = rtp.send_to(&packet, remote).await;
                        }
                        clock.advance(FRAME as u32);
                        clock.new_spurt();
                    }
                    Slot::Pause => { clock.advance(FRAME as u32); clock.new_spurt(); }
                }
                if let Some(at) = last_speech {
                    if at.elapsed() >= PROMPT_GAP {
                        last_speech = None;
                        prompts += 1;
                        println!("heard prompt {prompts}: {:.1} s", prompt.len() as f64 / TELEPHONE_RATE as f64);
                        if let Some(dir) = &opts.save_dir {
                            let path = dir.join(format!("prompt-{prompts}.wav"));
                            if let Err(e) = std::fs::write(&path, wav::encode(&prompt, TELEPHONE_RATE, 1)) {
                                eprintln!("cannot save {}: {e}", path.display());
                            }
                        }
                        prompt.clear();
                        if let Some(key) = keys.next() {
                            println!("pressing {key}");
                            sender.queue(&key.to_string());
                        }
                    }
                }
            }
            got = rtp.recv_from(&mut buf) => {
                let Ok((n, _)) = got else { continue };
                let Ok(p) = Packet::parse(&buf[..n]) else { continue };
                if p.pt != agreed.pt { continue; }
                let mut samples = Vec::with_capacity(FRAME);
                agreed.law.decode(p.payload, &mut samples);
                let rms = (samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt();
                if rms > SPEECH_RMS {
                    last_speech = Some(Instant::now());
                }
                if last_speech.is_some() {
                    prompt.extend_from_slice(&samples);
                }
            }
            state = states.recv() => {
                match state {
                    Some(DialogState::Terminated(_, reason)) => {
                        break if matches!(reason, rsipstack::dialog::dialog::TerminatedReason::UasBye) {
                            "the switch hung up (BYE)"
                        } else {
                            "the call ended"
                        };
                    }
                    Some(_) => {}
                    None => break "the dialog ended",
                }
            }
        }
    };
    println!("{ended}; {prompts} prompts heard");
    cancel.cancel();
    Ok(())
}
