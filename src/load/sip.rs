//! The SIP caller of `switchboard load`: a user agent as plain as a load generator should be
//! (one UDP socket for signalling and one for RTP per call, requests written as text), so the
//! generator's own cost stays small beside the switch's. It places a call with a PCMU offer,
//! acknowledges the answer, streams 20 ms packets with a burst of tone each second, measures
//! the echo's round trip and the spacing of the packets the switch sends (jitter against the
//! 20 ms clock), and hangs up with BYE.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::callers::{tone, CallCtx, BURST_EVERY_MS, BURST_RMS};
use super::micros_since;
use super::stats::Counters;
use crate::media::g711::Law;
use crate::media::pcm;
use crate::protocols::sip::rtp::{Clock, Packet, MAX_PACKET};
use crate::protocols::sip::sdp::Session;

/// Samples in one 20 ms PCMU packet.
const FRAME: usize = 160;
/// How long a request is retransmitted (every 500 ms, as timer A would start) before the call
/// counts as failed.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
const RETRANSMIT: Duration = Duration::from_millis(500);

/// A dialog as the caller keeps it: enough to write ACK and BYE.
struct Dialog {
    switch: SocketAddr,
    local: SocketAddr,
    call_id: String,
    from_tag: String,
    /// The To header of the answer, with the switch's tag.
    to: String,
    /// Where in-dialog requests go (the answer's Contact URI).
    target: String,
}

impl Dialog {
    fn request(&self, method: &str, cseq: u32, branch: &str) -> String {
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:load@{local}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            target = self.target,
            local = self.local,
            tag = self.from_tag,
            to = self.to,
            call_id = self.call_id,
        )
    }
}

/// The status code of a response, or `None` for a request.
fn status(msg: &str) -> Option<u16> {
    let rest = msg.strip_prefix("SIP/2.0 ")?;
    rest.get(..3)?.parse().ok()
}

/// The value of the first header `name` (case-insensitive, compact forms not needed here).
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Places the call and waits for its answer: the dialog and the switch's RTP address, or
/// `Err(true)` when the switch refused it (a final error response), `Err(false)` on no answer.
async fn invite(
    sip: &UdpSocket,
    switch: SocketAddr,
    rtp_port: u16,
    i: usize,
) -> Result<(Dialog, SocketAddr), bool> {
    let local = sip.local_addr().map_err(|_| false)?;
    let call_id = format!("load-{i}-{}", uuid::Uuid::new_v4().simple());
    let from_tag = format!("t{i}");
    let branch = uuid::Uuid::new_v4().simple().to_string();
    let sdp = format!(
        "v=0\r\no=load {i} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n",
        ip = local.ip()
    );
    let request = format!(
        "INVITE sip:load@{switch} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:load@{local}>;tag={from_tag}\r\nTo: <sip:load@{switch}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:load@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let deadline = Instant::now() + ANSWER_WAIT;
    let mut buf = vec![0u8; 4096];
    let mut provisional = false;
    loop {
        if !provisional {
            sip.send_to(request.as_bytes(), switch)
                .await
                .map_err(|_| false)?;
        }
        let wait = if provisional {
            deadline.saturating_duration_since(Instant::now())
        } else {
            RETRANSMIT
        };
        let Ok(Ok((n, _))) = tokio::time::timeout(wait, sip.recv_from(&mut buf)).await else {
            if Instant::now() >= deadline {
                return Err(false);
            }
            continue;
        };
        let msg = String::from_utf8_lossy(&buf[..n]);
        match status(&msg) {
            Some(100..=199) => provisional = true,
            Some(200) => {
                let to = header(&msg, "To").ok_or(false)?.to_string();
                let target = header(&msg, "Contact")
                    .map(|c| c.trim_matches(|ch| ch == '<' || ch == '>').to_string())
                    .unwrap_or_else(|| format!("sip:load@{switch}"));
                let media = Session::parse(body(&msg).as_bytes()).map_err(|_| false)?;
                let dialog = Dialog {
                    switch,
                    local,
                    call_id,
                    from_tag,
                    to,
                    target,
                };
                let ack = dialog.request("ACK", 1, &uuid::Uuid::new_v4().simple().to_string());
                sip.send_to(ack.as_bytes(), switch)
                    .await
                    .map_err(|_| false)?;
                return Ok((dialog, SocketAddr::new(media.address, media.port)));
            }
            Some(code) if code >= 300 => {
                // A final refusal: acknowledged on the INVITE's own branch, as RFC 3261 says.
                let to = header(&msg, "To").unwrap_or("").to_string();
                let ack = format!(
                    "ACK sip:load@{switch} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:load@{local}>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = sip.send_to(ack.as_bytes(), switch).await;
                return Err(true);
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(false);
        }
    }
}

/// Hangs up: BYE until its 200 OK (or the wait runs out).
async fn bye(sip: &UdpSocket, dialog: &Dialog) {
    let request = dialog.request("BYE", 2, &uuid::Uuid::new_v4().simple().to_string());
    let deadline = Instant::now() + ANSWER_WAIT;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        if sip
            .send_to(request.as_bytes(), dialog.switch)
            .await
            .is_err()
        {
            return;
        }
        if let Ok(Ok((n, _))) = tokio::time::timeout(RETRANSMIT, sip.recv_from(&mut buf)).await {
            let msg = String::from_utf8_lossy(&buf[..n]);
            if status(&msg).is_some_and(|s| s >= 200) && header(&msg, "CSeq") == Some("2 BYE") {
                return;
            }
        }
    }
}

/// One SIP caller streaming against the echo flow until the run stops.
pub(super) async fn sip_caller(i: usize, ctx: Arc<CallCtx>) {
    let c = &ctx.counters;
    let Some(switch) = ctx.opts.sip else {
        return Counters::add(&c.failed, 1);
    };
    let (Ok(sip), Ok(rtp)) = (
        UdpSocket::bind("127.0.0.1:0").await,
        UdpSocket::bind("127.0.0.1:0").await,
    ) else {
        return Counters::add(&c.failed, 1);
    };
    let Ok(rtp_port) = rtp.local_addr().map(|a| a.port()) else {
        return Counters::add(&c.failed, 1);
    };
    let (dialog, media) = match invite(&sip, switch, rtp_port, i).await {
        Ok(d) => d,
        Err(true) => return Counters::add(&c.refused, 1),
        Err(false) => return Counters::add(&c.failed, 1),
    };
    Counters::add(&c.admitted, 1);
    let rtp = Arc::new(rtp);
    let pending = Arc::new(AtomicU64::new(0));
    let reader = {
        let (rtp, pending, ctx) = (rtp.clone(), pending.clone(), ctx.clone());
        tokio::spawn(async move {
            let c = &ctx.counters;
            let mut buf = vec![0u8; MAX_PACKET];
            let mut samples = Vec::with_capacity(FRAME);
            let mut last: Option<(u16, Duration)> = None;
            // The kernel stamps each datagram as it arrives (SO_TIMESTAMPNS): the spacing is
            // measured on those stamps, so this generator's own scheduling on the same cores
            // is not counted against the switch. Without them, the time it is read.
            let stamped = nix::sys::socket::setsockopt(
                &*rtp,
                nix::sys::socket::sockopt::ReceiveTimestampns,
                &true,
            )
            .is_ok();
            let epoch = Instant::now();
            loop {
                let received = tokio::select! {
                    r = rtp.async_io(tokio::io::Interest::READABLE, || receive(&rtp, &mut buf)) => match r { Ok(r) => r, Err(_) => break },
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if ctx.stop.load(Ordering::Relaxed) { break } else { continue }
                    }
                };
                let (n, stamp) = received;
                // One time scale per call: the kernel's stamps, or the time of reading.
                let now = match (stamped, stamp) {
                    (true, at) => at,
                    (false, _) => Some(epoch.elapsed()),
                };
                let Ok(packet) = Packet::parse(&buf[..n]) else {
                    continue;
                };
                if packet.pt != 0 {
                    continue;
                }
                Counters::add(&c.frames_received, 1);
                // Packets sent back to back by the switch's 20 ms clock: how far each one's
                // spacing is from 20 ms.
                if let (Some((seq, at)), Some(now)) = (last, now) {
                    if packet.seq == seq.wrapping_add(1) {
                        let gap = now.saturating_sub(at).as_secs_f64() * 1000.0;
                        c.jitter(Duration::from_secs_f64((gap - 20.0).abs() / 1000.0));
                    }
                }
                last = now.map(|now| (packet.seq, now));
                samples.clear();
                Law::Ulaw.decode(packet.payload, &mut samples);
                if pcm::rms(&samples) > BURST_RMS / 4.0 {
                    let sent = pending.swap(0, Ordering::Relaxed);
                    if sent != 0 {
                        let at = micros_since(ctx.epoch);
                        c.latency(Duration::from_micros(at.saturating_sub(sent)));
                    }
                }
            }
        })
    };
    let tone: Vec<i16> = tone(8000, 20);
    let (mut silence, mut burst) = (Vec::new(), Vec::new());
    Law::Ulaw.encode(&vec![0; FRAME], &mut silence);
    Law::Ulaw.encode(&tone, &mut burst);
    let mut clock = Clock::new(rand_ssrc(i), (i as u16).wrapping_mul(7), 0);
    let mut out = Vec::with_capacity(MAX_PACKET);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let burst_every = BURST_EVERY_MS / 20;
    let mut k: u64 = 0;
    while !ctx.stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        // Ten packets (200 ms) of tone each second: its echo gives one round trip.
        let phase = k % burst_every;
        if phase == 0 && pending.swap(micros_since(ctx.epoch), Ordering::Relaxed) != 0 {
            Counters::add(&c.bursts_lost, 1);
        }
        let payload = if phase < 10 { &burst } else { &silence };
        clock.audio(0, FRAME as u32, payload).write(&mut out);
        if rtp.send_to(&out, media).await.is_err() {
            Counters::add(&c.failed, 1);
            break;
        }
        Counters::add(&c.frames_sent, 1);
        k += 1;
    }
    bye(&sip, &dialog).await;
    let _ = reader.await;
}

/// A different SSRC per caller, without a random source.
fn rand_ssrc(i: usize) -> u32 {
    (i as u32).wrapping_mul(2_654_435_761).wrapping_add(0x5EED)
}

/// One datagram from `socket` into `buf`, with the kernel's receive time (`SO_TIMESTAMPNS`,
/// wall clock) when it gave one.
fn receive(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, Option<Duration>)> {
    use std::os::fd::AsRawFd;
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let msg = nix::sys::socket::recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)?;
    let mut stamp = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for cmsg in cmsgs {
            if let nix::sys::socket::ControlMessageOwned::ScmTimestampns(ts) = cmsg {
                stamp = Some(Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32));
            }
        }
    }
    Ok((msg.bytes, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_as_a_user_agent_needs() {
        let msg = "SIP/2.0 200 OK\r\nTo: <sip:x@h>;tag=abc\r\ncontact: <sip:switchboard@127.0.0.1:5060>\r\n\r\nv=0\r\n";
        assert_eq!(status(msg), Some(200));
        assert_eq!(header(msg, "to"), Some("<sip:x@h>;tag=abc"));
        assert_eq!(
            header(msg, "Contact"),
            Some("<sip:switchboard@127.0.0.1:5060>")
        );
        assert_eq!(body(msg), "v=0\r\n");
        assert_eq!(status("BYE sip:x SIP/2.0\r\n\r\n"), None);
    }
}
