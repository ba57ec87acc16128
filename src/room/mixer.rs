//! The conference mixer: pure audio arithmetic on a 20 ms clock, no actors, no I/O.
//!
//! Every tick each participant hears the sum of everyone else (mix-minus), summed in 32 bits
//! and clipped to 16. Participants who contributed nothing this tick (silent, muted, or whose
//! jitter buffer is still filling) all hear the same frame, the full mix, computed once and
//! shared (the way Asterisk's softmix shares one frame among listeners). Talkers get a frame of
//! their own: the full sum minus their own voice.
//!
//! Each input has a small jitter buffer: a participant is heard once `PRIME_FRAMES` frames
//! are queued and until its queue runs dry, so one late frame does not click; the queue never
//! holds more than `MAX_QUEUED_FRAMES` (the oldest audio goes first).

use std::collections::VecDeque;
use std::sync::Arc;

use uuid::Uuid;

/// Frames queued before an input is heard (and again after it ran dry).
pub const PRIME_FRAMES: usize = 2;
/// Frames an input may queue; beyond this its oldest audio is dropped.
pub const MAX_QUEUED_FRAMES: usize = 8;

struct Input {
    id: Uuid,
    queue: VecDeque<i16>,
    primed: bool,
    muted: bool,
    /// Whether this input contributed to the current tick's sum.
    spoke: bool,
    /// Samples dropped because the queue was full.
    dropped: u64,
}

/// What one tick produced: one frame per participant, in the order they joined.
pub struct Tick {
    /// The full mix (everyone who spoke), shared by every participant who did not speak.
    pub shared: Arc<[i16]>,
    /// Each participant's frame: the shared one, or its own mix-minus.
    pub frames: Vec<(Uuid, Arc<[i16]>)>,
    /// How many participants spoke this tick.
    pub speakers: usize,
    /// What each participant who spoke said this tick, when the mixer keeps voices
    /// (`keep_voices`: a recording with one track per participant); empty otherwise.
    pub voices: Vec<(Uuid, Vec<i16>)>,
}

/// The mixer of one room.
pub struct Mixer {
    frame: usize,
    inputs: Vec<Input>,
    sum: Vec<i32>,
    silence: Arc<[i16]>,
    /// Whether each tick hands out what every speaker said (`Tick::voices`).
    keep_voices: bool,
}

impl Mixer {
    /// A mixer of `frame` samples per tick (320 for 20 ms at 16 kHz).
    pub fn new(frame: usize) -> Self {
        let frame = frame.max(1);
        Mixer {
            frame,
            inputs: Vec::new(),
            sum: vec![0; frame],
            silence: vec![0; frame].into(),
            keep_voices: false,
        }
    }

    /// Whether ticks hand out each speaker's own frame (`Tick::voices`), for per-participant
    /// recording tracks.
    pub fn keep_voices(&mut self, keep: bool) {
        self.keep_voices = keep;
    }

    /// Whether `frame` is this mixer's shared silent frame (nobody else spoke).
    pub fn is_silence(&self, frame: &Arc<[i16]>) -> bool {
        Arc::ptr_eq(frame, &self.silence)
    }

    pub fn frame_samples(&self) -> usize {
        self.frame
    }

    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Adds a participant (no-op if it is already in).
    pub fn add(&mut self, id: Uuid) {
        if self.inputs.iter().any(|i| i.id == id) {
            return;
        }
        self.inputs.push(Input {
            id,
            queue: VecDeque::with_capacity(self.frame * MAX_QUEUED_FRAMES),
            primed: false,
            muted: false,
            spoke: false,
            dropped: 0,
        });
    }

    /// Removes a participant; answers the samples it lost to a full queue, if it was in.
    pub fn remove(&mut self, id: Uuid) -> Option<u64> {
        let at = self.inputs.iter().position(|i| i.id == id)?;
        Some(self.inputs.remove(at).dropped)
    }

    /// Mutes or unmutes a participant; false if it is not in.
    pub fn set_muted(&mut self, id: Uuid, muted: bool) -> bool {
        match self.inputs.iter_mut().find(|i| i.id == id) {
            Some(input) => {
                input.muted = muted;
                true
            }
            None => false,
        }
    }

    /// Queues a participant's audio (at the room's rate, any length).
    pub fn push(&mut self, id: Uuid, samples: &[i16]) {
        let max = self.frame * MAX_QUEUED_FRAMES;
        let Some(input) = self.inputs.iter_mut().find(|i| i.id == id) else {
            return;
        };
        if input.muted {
            return;
        }
        let samples = if samples.len() > max {
            input.dropped += (samples.len() - max) as u64;
            &samples[samples.len() - max..]
        } else {
            samples
        };
        let over = (input.queue.len() + samples.len()).saturating_sub(max);
        if over > 0 {
            input.queue.drain(..over);
            input.dropped += over as u64;
        }
        input.queue.extend(samples);
    }

    /// Mixes one frame for every participant.
    pub fn tick(&mut self) -> Tick {
        let frame = self.frame;
        self.sum.iter_mut().for_each(|s| *s = 0);
        let mut speakers = 0;
        for input in &mut self.inputs {
            input.spoke = false;
            if input.muted {
                input.queue.clear();
                input.primed = false;
                continue;
            }
            if !input.primed && input.queue.len() >= frame * PRIME_FRAMES {
                input.primed = true;
            }
            if !input.primed {
                continue;
            }
            if input.queue.len() < frame {
                // Ran dry: silent until the buffer fills again.
                input.primed = false;
                continue;
            }
            for (s, v) in self.sum.iter_mut().zip(input.queue.iter().take(frame)) {
                *s += i32::from(*v);
            }
            input.spoke = true;
            speakers += 1;
        }
        let shared: Arc<[i16]> = if speakers == 0 {
            self.silence.clone()
        } else {
            self.sum.iter().map(|s| clip(*s)).collect()
        };
        let mut frames = Vec::with_capacity(self.inputs.len());
        let mut voices = Vec::new();
        for input in &mut self.inputs {
            if !input.spoke {
                frames.push((input.id, shared.clone()));
                continue;
            }
            if self.keep_voices {
                voices.push((input.id, input.queue.iter().take(frame).copied().collect()));
            }
            let own: Arc<[i16]> = if speakers == 1 {
                // Alone in speaking: everyone else is silent, so it hears silence.
                self.silence.clone()
            } else {
                self.sum
                    .iter()
                    .zip(input.queue.iter())
                    .map(|(s, v)| clip(*s - i32::from(*v)))
                    .collect()
            };
            input.queue.drain(..frame);
            frames.push((input.id, own));
        }
        Tick {
            shared,
            frames,
            speakers,
            voices,
        }
    }
}

fn clip(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(tick: &Tick, id: Uuid) -> Vec<i16> {
        tick.frames
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, f)| f.to_vec())
            .unwrap_or_default()
    }

    #[test]
    fn each_hears_the_others_but_not_itself() {
        let mut m = Mixer::new(4);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for id in [a, b, c] {
            m.add(id);
        }
        m.push(a, &[100; 8]);
        m.push(b, &[10; 8]);
        let t = m.tick();
        assert_eq!(t.speakers, 2);
        assert_eq!(frame_of(&t, a), vec![10; 4]);
        assert_eq!(frame_of(&t, b), vec![100; 4]);
        assert_eq!(frame_of(&t, c), vec![110; 4]);
    }

    #[test]
    fn the_sum_is_clipped_to_16_bits() {
        let mut m = Mixer::new(2);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for id in [a, b, c] {
            m.add(id);
        }
        m.push(a, &[30000; 4]);
        m.push(b, &[30000; 4]);
        let t = m.tick();
        assert_eq!(frame_of(&t, c), vec![i16::MAX; 2]);
        assert_eq!(frame_of(&t, a), vec![30000; 2]);
    }

    #[test]
    fn a_muted_participant_is_not_heard() {
        let mut m = Mixer::new(2);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        m.add(a);
        m.add(b);
        m.set_muted(a, true);
        m.push(a, &[500; 4]);
        let t = m.tick();
        assert_eq!(frame_of(&t, b), vec![0; 2]);
    }

    #[test]
    fn inputs_wait_for_the_jitter_buffer_and_queues_are_bounded() {
        let mut m = Mixer::new(2);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        m.add(a);
        m.add(b);
        m.push(a, &[7; 2]);
        assert_eq!(
            frame_of(&m.tick(), b),
            vec![0; 2],
            "one frame is not enough yet"
        );
        m.push(a, &[7; 2]);
        assert_eq!(frame_of(&m.tick(), b), vec![7; 2]);
        m.push(a, &[1; 2 * MAX_QUEUED_FRAMES * 4]);
        assert_eq!(m.inputs[0].queue.len(), 2 * MAX_QUEUED_FRAMES);
        assert!(m.remove(a).is_some_and(|d| d > 0));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn voices_are_handed_out_only_when_kept() {
        let mut m = Mixer::new(2);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        m.add(a);
        m.add(b);
        m.push(a, &[5; 8]);
        assert!(m.tick().voices.is_empty());
        m.keep_voices(true);
        let t = m.tick();
        assert_eq!(t.voices, vec![(a, vec![5, 5])]);
    }

    #[test]
    fn silent_participants_share_one_frame() {
        let mut m = Mixer::new(2);
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            m.add(*id);
        }
        m.push(ids[0], &[3; 4]);
        let t = m.tick();
        let shared: Vec<_> = t.frames[1..].iter().map(|(_, f)| f.clone()).collect();
        assert!(shared.iter().all(|f| Arc::ptr_eq(f, &t.shared)));
        assert_eq!(&*t.shared, &[3, 3]);
    }
}
