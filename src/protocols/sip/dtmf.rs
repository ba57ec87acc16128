//! DTMF as RFC 4733 telephone events both ways, and as SIP INFO bodies
//! (`application/dtmf-relay` and `application/dtmf`).

/// How long each key sent lasts, in samples at 8 kHz (100 ms).
pub const KEY_SAMPLES: u32 = 800;
/// The pause after each key sent, in 20 ms frames.
pub const GAP_FRAMES: u32 = 3;
/// The volume sent (dBm0 below zero).
const VOLUME: u8 = 10;
/// End packets sent per key (RFC 4733 §2.5.1.4 asks for three).
const END_REPEATS: u32 = 3;
/// Keys waiting to be sent at most.
pub const MAX_QUEUED_KEYS: usize = 64;

/// The key of event code `code`.
pub fn key(code: u8) -> Option<char> {
    Some(match code {
        0..=9 => (b'0' + code) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + code - 12) as char,
        _ => return None,
    })
}

/// The event code of `key`.
pub fn code(key: char) -> Option<u8> {
    Some(match key {
        '0'..='9' => key as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => key as u8 - b'A' + 12,
        'a'..='d' => key as u8 - b'a' + 12,
        _ => return None,
    })
}

/// One telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub code: u8,
    pub end: bool,
    pub duration: u16,
}

impl Event {
    pub fn parse(payload: &[u8]) -> Option<Event> {
        let b = payload.get(..4)?;
        Some(Event {
            code: b[0],
            end: b[1] & 0x80 != 0,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    pub fn bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [self.code, ((self.end as u8) << 7) | VOLUME, d[0], d[1]]
    }
}

/// Turns received events into keys: each event (one RTP timestamp) gives its key once, at its
/// first packet, however many updates and end packets repeat it.
#[derive(Debug, Default)]
pub struct Receiver {
    last: Option<u32>,
}

impl Receiver {
    /// The key of the event packet at `timestamp`, if it is a new event.
    pub fn take(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let event = Event::parse(payload)?;
        if self.last == Some(timestamp) {
            return None;
        }
        self.last = Some(timestamp);
        key(event.code)
    }
}

/// What the sender puts in the next 20 ms slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Audio (or silence) as usual.
    Audio,
    /// This event packet: `start` marks the first packet of the event (marker bit); all of an
    /// event's packets carry the timestamp of its start.
    Event { event: Event, start: bool },
    /// Nothing this slot: the pause after an event (the clock still moves).
    Pause,
}

/// Keys queued to send, played out one 20 ms slot at a time.
#[derive(Debug, Default)]
pub struct Sender {
    queue: std::collections::VecDeque<u8>,
    /// The key being sent and how many slots of it are done.
    current: Option<(u8, u32)>,
}

impl Sender {
    /// Queues `digits`; keys that are not DTMF are skipped, and keys past the queue's bound
    /// dropped. Answers how many were queued.
    pub fn queue(&mut self, digits: &str) -> usize {
        let mut queued = 0;
        for c in digits.chars() {
            if let Some(code) = code(c) {
                if self.queue.len() < MAX_QUEUED_KEYS {
                    self.queue.push_back(code);
                    queued += 1;
                }
            }
        }
        queued
    }

    /// Whether a key is being sent or waits.
    pub fn busy(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty()
    }

    /// What the slot of `frame_samples` samples carries.
    pub fn next(&mut self, frame_samples: u32) -> Slot {
        if self.current.is_none() {
            match self.queue.pop_front() {
                Some(code) => self.current = Some((code, 0)),
                None => return Slot::Audio,
            }
        }
        let Some((code, done)) = self.current.as_mut() else {
            return Slot::Audio;
        };
        let key_slots = KEY_SAMPLES / frame_samples.max(1);
        let slot = *done;
        *done += 1;
        let code = *code;
        let total = key_slots + END_REPEATS - 1 + GAP_FRAMES;
        if *done >= total {
            self.current = None;
        }
        if slot < key_slots {
            let end = slot + 1 == key_slots;
            Slot::Event {
                event: Event {
                    code,
                    end,
                    duration: ((slot + 1) * frame_samples) as u16,
                },
                start: slot == 0,
            }
        } else if slot < key_slots + END_REPEATS - 1 {
            Slot::Event {
                event: Event {
                    code,
                    end: true,
                    duration: (key_slots * frame_samples) as u16,
                },
                start: false,
            }
        } else {
            Slot::Pause
        }
    }
}

/// The key of a SIP INFO body: `Signal=5` lines (`application/dtmf-relay`) or a bare key
/// (`application/dtmf`).
pub fn info_key(content_type: &str, body: &str) -> Option<char> {
    let ct = content_type.trim().to_ascii_lowercase();
    let raw = if ct.starts_with("application/dtmf-relay") {
        body.lines().find_map(|l| {
            let (name, value) = l.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?
    } else if ct.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    let mut chars = raw.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        // `Signal=10` and `Signal=11` as event codes.
        return raw.parse::<u8>().ok().and_then(key);
    }
    let c = c.to_ascii_uppercase();
    crate::media::is_dtmf(c).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_keys() {
        for c in "0123456789*#ABCD".chars() {
            assert_eq!(key(code(c).unwrap()), Some(c));
        }
        assert_eq!(code('x'), None);
        assert_eq!(key(16), None);
    }

    #[test]
    fn an_event_gives_its_key_once() {
        let mut r = Receiver::default();
        let start = Event {
            code: 5,
            end: false,
            duration: 160,
        }
        .bytes();
        let end = Event {
            code: 5,
            end: true,
            duration: 800,
        }
        .bytes();
        assert_eq!(r.take(1000, &start), Some('5'));
        assert_eq!(r.take(1000, &start), None);
        assert_eq!(r.take(1000, &end), None);
        assert_eq!(r.take(2000, &end), Some('5'));
        assert_eq!(r.take(3000, &[1, 2]), None);
    }

    #[test]
    fn sender_plays_a_key_then_pauses() {
        let mut s = Sender::default();
        assert_eq!(s.queue("1x#"), 2);
        let slots: Vec<Slot> = (0..40).map(|_| s.next(160)).collect();
        let first = slots
            .iter()
            .position(|s| matches!(s, Slot::Event { start: true, .. }));
        assert_eq!(first, Some(0));
        // 5 event slots, 2 repeated ends, 3 pauses, then the next key starts.
        assert!(matches!(
            slots[4],
            Slot::Event {
                event: Event {
                    end: true,
                    duration: 800,
                    ..
                },
                ..
            }
        ));
        assert!(matches!(
            slots[6],
            Slot::Event {
                event: Event { end: true, .. },
                start: false
            }
        ));
        assert_eq!(slots[7], Slot::Pause);
        assert!(matches!(
            slots[10],
            Slot::Event {
                event: Event { code: 11, .. },
                start: true
            }
        ));
        assert_eq!(slots[39], Slot::Audio);
        assert!(!s.busy());
    }

    #[test]
    fn info_bodies() {
        assert_eq!(
            info_key("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            info_key("application/dtmf-relay", "Signal= #\r\n"),
            Some('#')
        );
        assert_eq!(
            info_key("application/dtmf-relay", "Signal=11\r\n"),
            Some('#')
        );
        assert_eq!(info_key("application/dtmf", "b"), Some('B'));
        assert_eq!(info_key("text/plain", "5"), None);
        assert_eq!(info_key("application/dtmf-relay", "Signal=xyz"), None);
    }
}
