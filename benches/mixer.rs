//! The conference mixer alone: µs of one core per room per 20 ms tick, for rooms of 2, 5, 10
//! and 50 participants at 16 kHz, with everyone talking (the worst case: every participant
//! gets a mix-minus frame of its own) and with one talker (everyone else shares one frame).
//! The baseline, run in the same process, is copying each participant one frame (the least
//! any mixer must do). Run:
//!   cargo bench --bench mixer

use std::hint::black_box;
use std::time::Instant;

use switchboard::room::mixer::Mixer;
use uuid::Uuid;

const FRAME: usize = 320;
const TICKS: usize = 5000;

fn run(participants: usize, talkers: usize) -> f64 {
    let mut mixer = Mixer::new(FRAME);
    let ids: Vec<Uuid> = (0..participants).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        mixer.add(*id);
    }
    let voice: Vec<i16> = (0..FRAME)
        .map(|i| ((i * 37) % 2000) as i16 - 1000)
        .collect();
    // Fill the jitter buffers first.
    for id in ids.iter().take(talkers) {
        mixer.push(*id, &voice);
        mixer.push(*id, &voice);
    }
    let start = Instant::now();
    for _ in 0..TICKS {
        for id in ids.iter().take(talkers) {
            mixer.push(*id, &voice);
        }
        black_box(mixer.tick());
    }
    start.elapsed().as_secs_f64() * 1e6 / TICKS as f64
}

fn baseline(participants: usize) -> f64 {
    let voice: Vec<i16> = vec![7; FRAME];
    let start = Instant::now();
    for _ in 0..TICKS {
        let frames: Vec<Vec<i16>> = (0..participants).map(|_| voice.clone()).collect();
        black_box(frames);
    }
    start.elapsed().as_secs_f64() * 1e6 / TICKS as f64
}

fn main() {
    println!("mixer, 16 kHz, 20 ms ticks ({TICKS} ticks per figure)");
    println!(
        "{:>12} {:>16} {:>16} {:>16} {:>10} {:>14}",
        "participants", "all talk µs", "one talks µs", "copy-only µs", "ratio", "% core/room"
    );
    for n in [2, 5, 10, 50] {
        let all = run(n, n);
        let one = run(n, 1);
        let base = baseline(n);
        println!(
            "{n:>12} {all:>16.2} {one:>16.2} {base:>16.2} {:>9.1}x {:>13.3}%",
            all / base,
            all / 20_000.0 * 100.0
        );
    }
}
