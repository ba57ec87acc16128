//! The small SDP the switch speaks (RFC 4566 / RFC 3264 offer-answer): one audio stream,
//! PCMU or PCMA at 8 kHz, RFC 4733 `telephone-event`, `ptime`, and the direction attribute.
//! Anything else in a peer's SDP is read past.

use std::fmt::Write as _;
use std::net::IpAddr;

use thiserror::Error;

use crate::media::g711::Law;

/// The largest SDP body read.
pub const MAX_SDP: usize = 8 * 1024;
/// Lines of SDP read at most (a body made of empty lines is refused, not walked).
const MAX_LINES: usize = 256;
/// The packetisation the switch sends and asks for.
pub const PTIME_MS: u32 = 20;
/// The dynamic payload type the switch offers `telephone-event` on.
pub const DTMF_PT: u8 = 101;

/// Which way media flows, from the point of view of the SDP's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction that answers this one (RFC 3264 §6.1).
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the author of the SDP wants to hear audio.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// Whether this direction puts the other side on hold (RFC 3264 §8.4).
    pub fn is_hold(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }
}

/// One payload type offered on the audio line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub pt: u8,
    /// The encoding name in upper case (`PCMU`, `TELEPHONE-EVENT`, ...).
    pub name: String,
    pub rate: u32,
}

/// What the switch takes from a peer's SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Where to send RTP (the media-level `c=` over the session-level one).
    pub address: IpAddr,
    pub port: u16,
    pub formats: Vec<Format>,
    pub ptime: Option<u32>,
    pub direction: Direction,
}

/// The codec and events both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    pub law: Law,
    /// The audio payload type (0 or 8).
    pub pt: u8,
    /// The peer's `telephone-event` payload type, when it offered one.
    pub dtmf_pt: Option<u8>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP body over {MAX_SDP} bytes")]
    TooLarge,
    #[error("SDP is not UTF-8")]
    NotText,
    #[error("SDP has no audio stream")]
    NoAudio,
    #[error("SDP has no connection address")]
    NoAddress,
    #[error("bad SDP line `{0}`")]
    BadLine(String),
    #[error("no common codec (the switch takes PCMU and PCMA)")]
    NoCommonCodec,
}

impl Session {
    /// Reads a peer's SDP.
    pub fn parse(body: &[u8]) -> Result<Session, SdpError> {
        if body.len() > MAX_SDP {
            return Err(SdpError::TooLarge);
        }
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
        let mut session_addr = None;
        let mut media_addr = None;
        let mut port = None;
        let mut pts: Vec<u8> = Vec::new();
        let mut formats: Vec<Format> = Vec::new();
        let mut ptime = None;
        let mut session_dir = None;
        let mut media_dir = None;
        // Only the first audio stream counts; lines of other streams are skipped.
        let mut in_audio = false;
        let mut seen_audio = false;
        for line in text.lines().take(MAX_LINES) {
            let line = line.trim_end_matches('\r');
            let Some((kind, value)) = line.split_once('=') else {
                continue;
            };
            match kind {
                "m" => {
                    in_audio = false;
                    let mut parts = value.split_whitespace();
                    if parts.next() == Some("audio") && !seen_audio {
                        let p = parts
                            .next()
                            .and_then(|p| p.split('/').next())
                            .and_then(|p| p.parse::<u16>().ok())
                            .ok_or_else(|| SdpError::BadLine(line.into()))?;
                        let _proto = parts.next();
                        pts = parts.filter_map(|p| p.parse().ok()).take(32).collect();
                        port = Some(p);
                        in_audio = true;
                        seen_audio = true;
                    }
                }
                "c" => {
                    let addr = value
                        .split_whitespace()
                        .nth(2)
                        .and_then(|a| a.split('/').next())
                        .and_then(|a| a.parse::<IpAddr>().ok())
                        .ok_or_else(|| SdpError::BadLine(line.into()))?;
                    if in_audio {
                        media_addr = Some(addr);
                    } else if !seen_audio {
                        session_addr = Some(addr);
                    }
                }
                "a" if in_audio || !seen_audio => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    let dir = match name {
                        "sendrecv" => Some(Direction::SendRecv),
                        "sendonly" => Some(Direction::SendOnly),
                        "recvonly" => Some(Direction::RecvOnly),
                        "inactive" => Some(Direction::Inactive),
                        _ => None,
                    };
                    if let Some(dir) = dir {
                        if in_audio {
                            media_dir = Some(dir);
                        } else {
                            session_dir = Some(dir);
                        }
                    } else if name == "rtpmap" && in_audio {
                        if let Some(f) = rtpmap(arg) {
                            if formats.len() < 32 {
                                formats.push(f);
                            }
                        }
                    } else if name == "ptime" && in_audio {
                        ptime = arg.trim().parse().ok().filter(|p| (10..=200).contains(p));
                    }
                }
                _ => {}
            }
        }
        let port = port.ok_or(SdpError::NoAudio)?;
        let address = media_addr.or(session_addr).ok_or(SdpError::NoAddress)?;
        // Static payload types need no rtpmap.
        let mut listed = Vec::new();
        for pt in pts {
            if let Some(f) = formats.iter().find(|f| f.pt == pt) {
                listed.push(f.clone());
            } else if let Some(name) = static_name(pt) {
                listed.push(Format {
                    pt,
                    name: name.into(),
                    rate: 8000,
                });
            }
        }
        let mut direction = media_dir.or(session_dir).unwrap_or(Direction::SendRecv);
        // The old way to hold: a zero connection address (RFC 2543).
        if address.is_unspecified() && direction == Direction::SendRecv {
            direction = Direction::SendOnly;
        }
        Ok(Session {
            address,
            port,
            formats: listed,
            ptime,
            direction,
        })
    }

    /// The codec to use with this peer: its first G.711 format, and its telephone-event.
    pub fn agree(&self) -> Result<Agreed, SdpError> {
        let audio = self
            .formats
            .iter()
            .find_map(|f| match (f.name.as_str(), f.rate) {
                ("PCMU", 8000) => Some((Law::Ulaw, f.pt)),
                ("PCMA", 8000) => Some((Law::Alaw, f.pt)),
                _ => None,
            })
            .ok_or(SdpError::NoCommonCodec)?;
        let dtmf_pt = self
            .formats
            .iter()
            .find(|f| f.name == "TELEPHONE-EVENT" && f.rate == 8000)
            .map(|f| f.pt);
        Ok(Agreed {
            law: audio.0,
            pt: audio.1,
            dtmf_pt,
        })
    }
}

fn static_name(pt: u8) -> Option<&'static str> {
    match pt {
        0 => Some("PCMU"),
        8 => Some("PCMA"),
        _ => None,
    }
}

/// `a=rtpmap:PT NAME/RATE[/CHANNELS]`.
fn rtpmap(arg: &str) -> Option<Format> {
    let (pt, rest) = arg.trim().split_once(' ')?;
    let mut parts = rest.trim().split('/');
    let name = parts.next()?.to_ascii_uppercase();
    let rate = parts.next()?.parse().ok()?;
    Some(Format {
        pt: pt.parse().ok()?,
        name,
        rate,
    })
}

/// What the switch says in its own SDP.
#[derive(Debug, Clone)]
pub struct Local {
    /// The address peers send RTP to (the public address when behind NAT).
    pub address: IpAddr,
    pub port: u16,
    /// The `o=` session id and version (the version goes up with every new SDP in a dialog).
    pub session_id: u64,
    pub version: u64,
    pub direction: Direction,
}

impl Local {
    /// An offer: PCMU, PCMA and telephone-event.
    pub fn offer(&self) -> String {
        self.render(&[(0, "PCMU"), (8, "PCMA")], Some(DTMF_PT))
    }

    /// The answer to a peer's offer, with what was agreed (the peer's payload type numbers).
    pub fn answer(&self, agreed: &Agreed) -> String {
        let name = match agreed.law {
            Law::Ulaw => "PCMU",
            Law::Alaw => "PCMA",
        };
        self.render(&[(agreed.pt, name)], agreed.dtmf_pt)
    }

    fn render(&self, audio: &[(u8, &str)], dtmf: Option<u8>) -> String {
        let ip = match self.address {
            IpAddr::V4(_) => "IP4",
            IpAddr::V6(_) => "IP6",
        };
        let mut s = String::with_capacity(320);
        let _ = write!(
            s,
            "v=0\r\no=switchboard {} {} IN {ip} {}\r\ns=switchboard\r\nc=IN {ip} {}\r\nt=0 0\r\nm=audio {} RTP/AVP",
            self.session_id, self.version, self.address, self.address, self.port
        );
        for (pt, _) in audio {
            let _ = write!(s, " {pt}");
        }
        if let Some(pt) = dtmf {
            let _ = write!(s, " {pt}");
        }
        s.push_str("\r\n");
        for (pt, name) in audio {
            let _ = write!(s, "a=rtpmap:{pt} {name}/8000\r\n");
        }
        if let Some(pt) = dtmf {
            let _ = write!(
                s,
                "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"
            );
        }
        let _ = write!(
            s,
            "a=ptime:{PTIME_MS}\r\na={}\r\n",
            self.direction.attribute()
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\n";

    #[test]
    fn reads_an_offer_and_agrees_on_its_first_g711() {
        let s = Session::parse(SIPP.as_bytes()).unwrap();
        assert_eq!(s.address, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s.port, 6000);
        assert_eq!(s.direction, Direction::SendRecv);
        let a = s.agree().unwrap();
        assert_eq!(a.law, Law::Alaw);
        assert_eq!(a.pt, 8);
        assert_eq!(a.dtmf_pt, Some(101));
    }

    #[test]
    fn static_types_need_no_rtpmap_and_other_streams_are_skipped() {
        let body = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\nm=video 5000 RTP/AVP 96\r\na=recvonly\r\n";
        let s = Session::parse(body.as_bytes()).unwrap();
        assert_eq!(s.port, 4000);
        assert_eq!(s.direction, Direction::SendOnly);
        assert!(s.direction.is_hold());
        let a = s.agree().unwrap();
        assert_eq!((a.law, a.pt, a.dtmf_pt), (Law::Ulaw, 0, None));
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let opus =
            "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(
            Session::parse(opus.as_bytes()).unwrap().agree(),
            Err(SdpError::NoCommonCodec)
        );
        assert_eq!(
            Session::parse(b"v=0\r\nc=IN IP4 1.2.3.4\r\n"),
            Err(SdpError::NoAudio)
        );
        assert_eq!(
            Session::parse(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
            Err(SdpError::NoAddress)
        );
        assert!(matches!(
            Session::parse(b"c=IN IP4 1.2.3.4\r\nm=audio 99999 RTP/AVP 0\r\n"),
            Err(SdpError::BadLine(_))
        ));
        assert_eq!(
            Session::parse(&[b'a'; MAX_SDP + 1]),
            Err(SdpError::TooLarge)
        );
        assert_eq!(Session::parse(&[0xff, 0xfe]), Err(SdpError::NotText));
    }

    #[test]
    fn zero_address_is_hold() {
        let body = "c=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            Session::parse(body.as_bytes()).unwrap().direction,
            Direction::SendOnly
        );
    }

    #[test]
    fn our_answer_reads_back() {
        let local = Local {
            address: "192.0.2.7".parse().unwrap(),
            port: 20002,
            session_id: 42,
            version: 1,
            direction: Direction::SendRecv,
        };
        let offered = Session::parse(SIPP.as_bytes()).unwrap().agree().unwrap();
        let answer = local.answer(&offered);
        let back = Session::parse(answer.as_bytes()).unwrap();
        assert_eq!(back.port, 20002);
        assert_eq!(back.agree().unwrap(), offered);
        assert!(answer.contains("a=ptime:20\r\n"));
        let offer = Session::parse(local.offer().as_bytes()).unwrap();
        assert_eq!(offer.agree().unwrap().law, Law::Ulaw);
        assert_eq!(offer.agree().unwrap().dtmf_pt, Some(DTMF_PT));
        assert_eq!(Direction::SendOnly.answer(), Direction::RecvOnly);
    }
}
