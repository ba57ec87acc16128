//! The small jitter buffer on the way in: RTP packets put back in sequence order, a late
//! packet (older than one already released) dropped, and a gap waited for only while fewer
//! than `depth` packets are held behind it. Bounded: it never holds more than `depth` packets.

use std::collections::BTreeMap;

/// Frames held at most behind a missing one (60 ms at 20 ms frames).
pub const DEPTH: usize = 3;

/// Reorders one stream's packets.
#[derive(Debug)]
pub struct JitterBuffer<T> {
    depth: usize,
    /// Held packets by extended sequence number.
    held: BTreeMap<u64, T>,
    /// The extended sequence number expected next; `None` before the first packet.
    next: Option<u64>,
    /// Packets dropped as late or duplicate.
    pub late: u64,
    /// Sequence numbers skipped as lost.
    pub lost: u64,
}

impl<T> JitterBuffer<T> {
    pub fn new(depth: usize) -> Self {
        JitterBuffer {
            depth: depth.max(1),
            held: BTreeMap::new(),
            next: None,
            late: 0,
            lost: 0,
        }
    }

    /// Forgets the stream (a new SSRC, or media re-negotiated).
    pub fn reset(&mut self) {
        self.held.clear();
        self.next = None;
    }

    /// Takes packet `seq`, and appends to `out` every packet now ready, in order.
    pub fn push(&mut self, seq: u16, item: T, out: &mut Vec<T>) {
        let next = *self.next.get_or_insert(seq as u64 + (1 << 16));
        let ext = extend(next, seq);
        if ext < next || self.held.contains_key(&ext) {
            self.late += 1;
            return;
        }
        self.held.insert(ext, item);
        self.release(out);
    }

    fn release(&mut self, out: &mut Vec<T>) {
        loop {
            let Some(next) = self.next else { return };
            if let Some(item) = self.held.remove(&next) {
                out.push(item);
                self.next = Some(next + 1);
                continue;
            }
            if self.held.len() < self.depth {
                return;
            }
            // Waited long enough: skip to the oldest packet held.
            let Some((&first, _)) = self.held.iter().next() else {
                return;
            };
            self.lost += first - next;
            self.next = Some(first);
        }
    }
}

/// The extended sequence number of `seq` closest to `near`.
fn extend(near: u64, seq: u16) -> u64 {
    let base = near & !0xFFFF;
    let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
    candidates
        .into_iter()
        .map(|b| b + seq as u64)
        .min_by_key(|c| c.abs_diff(near))
        .unwrap_or(base + seq as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u16]) -> (Vec<u16>, u64, u64) {
        let mut jb = JitterBuffer::new(DEPTH);
        let mut out = Vec::new();
        for &s in seqs {
            jb.push(s, s, &mut out);
        }
        (out, jb.late, jb.lost)
    }

    #[test]
    fn in_order_passes_at_once() {
        assert_eq!(run(&[5, 6, 7]).0, vec![5, 6, 7]);
    }

    #[test]
    fn reorders_a_swap() {
        assert_eq!(run(&[1, 3, 2, 4]).0, vec![1, 2, 3, 4]);
    }

    #[test]
    fn skips_a_loss_after_depth_packets() {
        let (out, late, lost) = run(&[1, 3, 4, 5, 2]);
        assert_eq!(out, vec![1, 3, 4, 5]);
        assert_eq!((late, lost), (1, 1));
    }

    #[test]
    fn drops_duplicates_and_wraps() {
        let (out, late, _) = run(&[65534, 65535, 65535, 0, 1]);
        assert_eq!(out, vec![65534, 65535, 0, 1]);
        assert_eq!(late, 1);
    }

    #[test]
    fn never_holds_more_than_depth() {
        let mut jb = JitterBuffer::new(DEPTH);
        let mut out = Vec::new();
        jb.push(0, 0u32, &mut out);
        for s in (2..2000u16).step_by(2) {
            jb.push(s, s as u32, &mut out);
            assert!(jb.held.len() <= DEPTH);
        }
    }
}
