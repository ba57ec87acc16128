//! RTP packets (RFC 3550): the fixed header read and written, CSRCs, the header extension and
//! padding read past; and the sending clock, whose sequence number and timestamp run on
//! without a break across prompts, silence and DTMF.

use thiserror::Error;

/// The fixed header's length.
pub const HEADER: usize = 12;
/// The largest RTP datagram read (an Ethernet MTU; G.711 at 20 ms is 172 bytes).
pub const MAX_PACKET: usize = 1500;

/// One RTP packet, borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RtpError {
    #[error("datagram too short for RTP ({0} bytes)")]
    TooShort(usize),
    #[error("not RTP version 2")]
    Version,
    #[error("header extension or padding past the end of the datagram")]
    Truncated,
}

impl<'a> Packet<'a> {
    /// Reads one datagram.
    pub fn parse(data: &'a [u8]) -> Result<Packet<'a>, RtpError> {
        if data.len() < HEADER {
            return Err(RtpError::TooShort(data.len()));
        }
        if data[0] >> 6 != 2 {
            return Err(RtpError::Version);
        }
        let padding = data[0] & 0x20 != 0;
        let extension = data[0] & 0x10 != 0;
        let csrcs = (data[0] & 0x0F) as usize;
        let mut start = HEADER + 4 * csrcs;
        if extension {
            let words = data.get(start + 2..start + 4).ok_or(RtpError::Truncated)?;
            start += 4 + 4 * u16::from_be_bytes([words[0], words[1]]) as usize;
        }
        let mut end = data.len();
        if padding {
            let pad = data[end - 1] as usize;
            end = end.checked_sub(pad).ok_or(RtpError::Truncated)?;
        }
        if start > end {
            return Err(RtpError::Truncated);
        }
        Ok(Packet {
            marker: data[1] & 0x80 != 0,
            pt: data[1] & 0x7F,
            seq: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            payload: &data[start..end],
        })
    }

    /// Writes the packet into `out` (cleared first).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(0x80);
        out.push(((self.marker as u8) << 7) | (self.pt & 0x7F));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// The sending side of one RTP stream: one SSRC, a sequence number that goes up by one per
/// packet and a timestamp that goes up by the samples each frame covers, whatever is sent.
#[derive(Debug)]
pub struct Clock {
    pub ssrc: u32,
    seq: u16,
    timestamp: u32,
    /// The next audio packet starts a talkspurt (marker bit).
    spurt: bool,
}

impl Clock {
    pub fn new(ssrc: u32, seq: u16, timestamp: u32) -> Self {
        Clock {
            ssrc,
            seq,
            timestamp,
            spurt: true,
        }
    }

    /// The header of the next audio frame of `samples` samples; the clock moves past it.
    pub fn audio<'a>(&mut self, pt: u8, samples: u32, payload: &'a [u8]) -> Packet<'a> {
        let p = Packet {
            marker: std::mem::take(&mut self.spurt),
            pt,
            seq: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            payload,
        };
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        p
    }

    /// A packet of an event (RFC 4733) at `timestamp` (the event's start), taking a sequence
    /// number but leaving the audio timestamp to `advance`.
    pub fn event<'a>(
        &mut self,
        pt: u8,
        marker: bool,
        timestamp: u32,
        payload: &'a [u8],
    ) -> Packet<'a> {
        let p = Packet {
            marker,
            pt,
            seq: self.seq,
            timestamp,
            ssrc: self.ssrc,
            payload,
        };
        self.seq = self.seq.wrapping_add(1);
        p
    }

    /// The timestamp the next frame will carry.
    pub fn now(&self) -> u32 {
        self.timestamp
    }

    /// Moves the timestamp past `samples` not sent as audio (an event's frame).
    pub fn advance(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// The next audio packet starts a talkspurt (after an event).
    pub fn new_spurt(&mut self) {
        self.spurt = true;
    }
}

/// The datagrams of a call's RTP socket as a stream its session reads itself (`add_stream`):
/// no task and no mailbox between the socket and the session. Each datagram is at most
/// `MAX_PACKET` bytes (the rest of a longer one is cut off by the kernel); the session's
/// context yields to its other work after 16 in a row, so a flood cannot starve it.
pub struct Datagrams {
    socket: std::sync::Arc<tokio::net::UdpSocket>,
    buf: Box<[u8]>,
}

impl Datagrams {
    pub fn new(socket: std::sync::Arc<tokio::net::UdpSocket>) -> Self {
        Datagrams {
            socket,
            buf: vec![0u8; MAX_PACKET].into_boxed_slice(),
        }
    }
}

/// One datagram and where it came from.
pub struct Datagram {
    pub data: Vec<u8>,
    pub from: std::net::SocketAddr,
}

impl futures_util::Stream for Datagrams {
    type Item = Datagram;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Datagram>> {
        let this = self.get_mut();
        loop {
            let mut buf = tokio::io::ReadBuf::new(&mut this.buf);
            match this.socket.poll_recv_from(cx, &mut buf) {
                std::task::Poll::Ready(Ok(from)) => {
                    return std::task::Poll::Ready(Some(Datagram {
                        data: buf.filled().to_vec(),
                        from,
                    }))
                }
                // An ICMP error from an earlier send (port unreachable): the socket goes on.
                std::task::Poll::Ready(Err(_)) => continue,
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let mut clock = Clock::new(0xdead_beef, 65535, u32::MAX - 100);
        let mut buf = Vec::new();
        clock.audio(0, 160, &[1, 2, 3]).write(&mut buf);
        let p = Packet::parse(&buf).unwrap();
        assert!(p.marker);
        assert_eq!((p.pt, p.seq, p.ssrc), (0, 65535, 0xdead_beef));
        assert_eq!(p.payload, &[1, 2, 3]);
        clock.audio(0, 160, &[]).write(&mut buf);
        let p = Packet::parse(&buf).unwrap();
        assert!(!p.marker);
        assert_eq!(p.seq, 0);
        assert_eq!(p.timestamp, 59);
    }

    #[test]
    fn reads_past_csrcs_extension_and_padding() {
        let mut d = vec![0x80 | 0x20 | 0x10 | 1, 8, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        d.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        d.extend_from_slice(&[0xBE, 0xDE, 0, 1, 7, 7, 7, 7]); // an extension of one word
        d.extend_from_slice(&[5, 6]); // payload
        d.extend_from_slice(&[0, 2]); // two bytes of padding
        let p = Packet::parse(&d).unwrap();
        assert_eq!(p.pt, 8);
        assert_eq!(p.payload, &[5, 6]);
    }

    #[test]
    fn refuses_bad_datagrams() {
        assert_eq!(Packet::parse(&[0x80; 5]), Err(RtpError::TooShort(5)));
        assert_eq!(Packet::parse(&[0x40; 12]), Err(RtpError::Version));
        let mut d = vec![
            0x90, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xBE, 0xDE, 0xFF, 0xFF,
        ];
        assert_eq!(Packet::parse(&d), Err(RtpError::Truncated));
        d = vec![0xA0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 200];
        assert_eq!(Packet::parse(&d), Err(RtpError::Truncated));
        // Every short prefix of a good packet is refused, never a panic.
        for n in 0..HEADER {
            assert!(Packet::parse(&[0xBF; HEADER][..n]).is_err());
        }
        let _ = Packet::parse(&[0xBF; 64]);
    }
}
