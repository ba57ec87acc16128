//! What the caller hears: queued bot audio, paced at real time or gathered into utterances.
//!
//! Pure state without actix, owned by `Outbound` (`outbound.rs`). Toward callers that
//! play audio as it arrives (`Delivery::Paced`) it hands out one 20 ms frame per tick and says
//! which prompts have finished playing. Toward callers that play whole files it gathers
//! streamed chunks into one utterance.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::media::{samples_for_ms, FRAME_MS};

enum Queued {
    Prompt {
        id: u64,
        audio: Arc<[i16]>,
        pos: usize,
    },
    Stream {
        samples: Vec<i16>,
        pos: usize,
    },
}

impl Queued {
    fn remaining(&self) -> usize {
        match self {
            Queued::Prompt { audio, pos, .. } => audio.len() - pos,
            Queued::Stream { samples, pos } => samples.len() - pos,
        }
    }
}

/// One paced frame and the prompts that finished with it.
pub struct Frame {
    pub samples: Arc<[i16]>,
    pub finished: Vec<u64>,
}

/// Queued audio for one caller at one rate.
pub struct Playout {
    frame_len: usize,
    queue: VecDeque<Queued>,
    queued_samples: usize,
    /// Above this many queued samples, the oldest streamed audio is dropped.
    max_queued: usize,
    /// Streamed audio gathered into the current utterance (whole-utterance callers).
    gathered: Vec<i16>,
    /// Samples dropped because the caller fell too far behind.
    pub dropped_samples: u64,
}

impl Playout {
    /// A playout at `rate` that holds at most `max_buffered_ms` of streamed audio.
    pub fn new(rate: u32, max_buffered_ms: u32) -> Self {
        Playout {
            frame_len: samples_for_ms(rate, FRAME_MS).max(1),
            queue: VecDeque::new(),
            queued_samples: 0,
            max_queued: samples_for_ms(rate, max_buffered_ms),
            gathered: Vec::new(),
            dropped_samples: 0,
        }
    }

    /// Queues a whole prompt for paced play.
    pub fn push_prompt(&mut self, id: u64, audio: Arc<[i16]>) {
        self.queued_samples += audio.len();
        self.queue.push_back(Queued::Prompt { id, audio, pos: 0 });
    }

    /// Queues streamed audio for paced play, dropping the oldest streamed audio past the bound.
    pub fn push_stream(&mut self, samples: Vec<i16>) {
        if samples.is_empty() {
            return;
        }
        self.queued_samples += samples.len();
        self.queue.push_back(Queued::Stream { samples, pos: 0 });
        while self.queued_samples > self.max_queued {
            let Some(idx) = self
                .queue
                .iter()
                .position(|q| matches!(q, Queued::Stream { .. }))
            else {
                break;
            };
            if let Some(q) = self.queue.remove(idx) {
                let n = q.remaining();
                self.queued_samples -= n;
                self.dropped_samples += n as u64;
            }
        }
    }

    /// Whether anything waits to be played.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Milliseconds of audio waiting.
    pub fn queued_samples(&self) -> usize {
        self.queued_samples
    }

    /// The next 20 ms frame (the last one of a queue may be short), or `None` when idle.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.queue.is_empty() {
            return None;
        }
        let mut frame = Vec::with_capacity(self.frame_len);
        let mut finished = Vec::new();
        while frame.len() < self.frame_len {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let want = self.frame_len - frame.len();
            let (taken, done) = match front {
                Queued::Prompt { audio, pos, .. } => {
                    let n = want.min(audio.len() - *pos);
                    frame.extend_from_slice(&audio[*pos..*pos + n]);
                    *pos += n;
                    (n, *pos == audio.len())
                }
                Queued::Stream { samples, pos } => {
                    let n = want.min(samples.len() - *pos);
                    frame.extend_from_slice(&samples[*pos..*pos + n]);
                    *pos += n;
                    (n, *pos == samples.len())
                }
            };
            self.queued_samples -= taken;
            if done {
                if let Some(Queued::Prompt { id, .. }) = self.queue.pop_front() {
                    finished.push(id);
                }
            }
        }
        Some(Frame {
            samples: frame.into(),
            finished,
        })
    }

    /// Drops everything queued; returns the prompts that were cut off.
    pub fn clear(&mut self) -> Vec<u64> {
        self.queued_samples = 0;
        self.gathered.clear();
        self.queue
            .drain(..)
            .filter_map(|q| match q {
                Queued::Prompt { id, .. } => Some(id),
                Queued::Stream { .. } => None,
            })
            .collect()
    }

    /// Adds streamed audio to the utterance being gathered (whole-utterance callers); past
    /// the bound the oldest gathered audio is dropped and counted.
    pub fn gather(&mut self, samples: &[i16]) {
        self.gathered.extend_from_slice(samples);
        if self.gathered.len() > self.max_queued {
            let excess = self.gathered.len() - self.max_queued;
            self.gathered.drain(..excess);
            self.dropped_samples += excess as u64;
        }
    }

    /// Samples gathered so far.
    pub fn gathered_len(&self) -> usize {
        self.gathered.len()
    }

    /// Takes the gathered utterance, if any.
    pub fn take_gathered(&mut self) -> Option<Vec<i16>> {
        (!self.gathered.is_empty()).then(|| std::mem::take(&mut self.gathered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_is_paced_in_frames_and_marked_done_on_its_last() {
        let mut p = Playout::new(8000, 1000);
        p.push_prompt(7, vec![1i16; 1000].into());
        let mut frames = 0;
        let mut done = Vec::new();
        while let Some(f) = p.next_frame() {
            frames += 1;
            done.extend(f.finished);
            if frames < 7 {
                assert!(done.is_empty());
            }
        }
        assert_eq!(frames, 7); // 6 × 160 + 40
        assert_eq!(done, vec![7]);
        assert!(p.is_empty());
    }

    #[test]
    fn frames_span_queued_items() {
        let mut p = Playout::new(8000, 1000);
        p.push_stream(vec![1; 100]);
        p.push_prompt(1, vec![2i16; 100].into());
        let f = p.next_frame().unwrap();
        assert_eq!(f.samples.len(), 160);
        assert!(f.finished.is_empty());
        let f = p.next_frame().unwrap();
        assert_eq!(f.samples.len(), 40);
        assert_eq!(f.finished, vec![1]);
    }

    #[test]
    fn streamed_audio_past_the_bound_drops_oldest() {
        let mut p = Playout::new(8000, 100); // 800 samples
        for _ in 0..10 {
            p.push_stream(vec![0; 160]);
        }
        assert!(p.queued_samples() <= 800);
        assert_eq!(p.dropped_samples, 800);
    }

    #[test]
    fn gathered_audio_past_the_bound_drops_oldest() {
        let mut p = Playout::new(8000, 100); // 800 samples
        p.gather(&[1; 500]);
        p.gather(&[2; 500]);
        let g = p.take_gathered().unwrap();
        assert_eq!(g.len(), 800);
        assert_eq!(g[0], 1);
        assert_eq!(g[799], 2);
        assert_eq!(p.dropped_samples, 200);
    }

    #[test]
    fn clear_reports_cut_prompts() {
        let mut p = Playout::new(8000, 100);
        p.push_prompt(3, vec![0i16; 500].into());
        p.push_stream(vec![0; 10]);
        assert_eq!(p.clear(), vec![3]);
        assert!(p.next_frame().is_none());
    }
}
