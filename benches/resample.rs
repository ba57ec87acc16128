//! Resampling 24 kHz → 8 kHz in 20 ms frames: speed (× realtime on one core), passband loss
//! at 3.4 kHz and aliasing of a 5 kHz tone, for every engine built in. Run:
//!   cargo bench --bench resample                        (rubato only)
//!   cargo bench --bench resample --features samplerate  (rubato and libsamplerate; needs cmake)

use std::time::Instant;

use switchboard::media::resample::{Engine, StreamResampler};

const FROM: u32 = 24000;
const TO: u32 = 8000;
const SECONDS: usize = 60;

fn tone(freq: f64, seconds: f64) -> Vec<i16> {
    let n = (FROM as f64 * seconds) as usize;
    (0..n)
        .map(|i| {
            (16000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / FROM as f64).sin()) as i16
        })
        .collect()
}

/// Streams `input` through a fresh resampler in 20 ms frames.
fn run(engine: Engine, input: &[i16]) -> Vec<i16> {
    let mut r = StreamResampler::with_engine(engine, FROM, TO).expect("engine builds");
    let mut out = Vec::with_capacity(input.len() / 3 + 1024);
    for frame in input.chunks((FROM / 50) as usize) {
        r.process(frame, &mut out);
    }
    out
}

fn rms_db_f32(samples: &[f32]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| (s as f64).powi(2)).sum();
    20.0 * (sum / samples.len().max(1) as f64)
        .sqrt()
        .max(1e-15)
        .log10()
}

/// Level change of a tone through the engine, in floating point (so that rejection below
/// one 16-bit step still shows), measured away from the edges.
fn gain_db(engine: Engine, freq: f64) -> f64 {
    let n = FROM as usize * 2;
    let input: Vec<f32> = (0..n)
        .map(|i| (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / FROM as f64).sin()) as f32)
        .collect();
    let out: Vec<f32> = match engine {
        Engine::Rubato => {
            use rubato::Resampler;
            let mut r = rubato::FftFixedInOut::<f32>::new(FROM as usize, TO as usize, 480, 1)
                .expect("rubato");
            let mut out = Vec::new();
            let mut buf = vec![vec![0f32; r.output_frames_max()]];
            for chunk in input.chunks_exact(r.input_frames_next()) {
                let (_, n) = r
                    .process_into_buffer(&[chunk], &mut buf, None)
                    .expect("chunk");
                out.extend_from_slice(&buf[0][..n]);
            }
            out
        }
        #[cfg(feature = "samplerate")]
        Engine::Samplerate => samplerate::convert(
            FROM,
            TO,
            1,
            samplerate::ConverterType::SincMediumQuality,
            &input,
        )
        .expect("samplerate"),
    };
    let skip = (TO / 5) as usize;
    rms_db_f32(&out[skip..out.len() - skip]) - rms_db_f32(&input)
}

fn main() {
    let engines = [
        Some(("rubato FftFixedInOut", Engine::Rubato)),
        #[cfg(feature = "samplerate")]
        Some(("libsamplerate SincMediumQuality", Engine::Samplerate)),
    ];

    // Speech-like input: a sum of tones across the band.
    let a = tone(440.0, SECONDS as f64);
    let b = tone(1900.0, SECONDS as f64);
    let input: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x / 2 + y / 2).collect();

    println!("Resampling {SECONDS} s of {FROM} Hz mono to {TO} Hz in 20 ms frames, one core");
    println!("| engine | × realtime per core | loss at 3.4 kHz | 5 kHz alias |");
    println!("|---|---|---|---|");
    let mut baseline = None;
    for (name, engine) in engines.into_iter().flatten() {
        // Warm up, then take the best of three runs.
        let _ = run(engine, &input[..FROM as usize]);
        let mut best = f64::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            let out = run(engine, &input);
            std::hint::black_box(&out);
            best = best.min(start.elapsed().as_secs_f64());
        }
        let realtime = SECONDS as f64 / best;
        let ratio = match baseline {
            None => {
                baseline = Some(realtime);
                String::new()
            }
            Some(base) => format!(" ({:.2}× the first engine)", realtime / base),
        };
        println!(
            "| {name} | {realtime:.0}×{ratio} | {:.2} dB | {:.0} dB |",
            gain_db(engine, 3400.0),
            gain_db(engine, 5000.0)
        );
    }
    #[cfg(not(feature = "samplerate"))]
    println!("(build with --features samplerate to compare libsamplerate)");
    halfband();
}

/// The exact 2:1 step (16 → 8 kHz, the live-call echo's path): its half-band decimator in the
/// portable build (the baseline) and with the vector width this CPU has, in one process.
fn halfband() {
    use switchboard::media::resample::{use_portable_simd, RateConverter};
    let input: Vec<i16> = tone(700.0, SECONDS as f64 * 1.5);
    let frames = input.chunks(320).count();
    println!();
    println!("Half-band 16 → 8 kHz, {frames} frames of 20 ms, one core (best of five)");
    println!("| code | µs per 20 ms frame | × realtime per core | |");
    println!("|---|---|---|---|");
    let mut baseline = None;
    let mut outputs = Vec::new();
    for (name, portable) in [("portable (SSE2)", true), ("this CPU's widest", false)] {
        use_portable_simd(portable);
        let mut best = f64::MAX;
        let mut out = Vec::new();
        for _ in 0..5 {
            let mut c = RateConverter::between(16000, 8000)
                .expect("2:1 converter")
                .expect("rates differ");
            out = Vec::with_capacity(input.len() / 2 + 64);
            let start = Instant::now();
            for frame in input.chunks(320) {
                c.convert(frame, &mut out);
            }
            best = best.min(start.elapsed().as_secs_f64());
            std::hint::black_box(&out);
        }
        let per_frame = best * 1e6 / frames as f64;
        let ratio = match baseline {
            None => {
                baseline = Some(per_frame);
                String::new()
            }
            Some(base) => format!("{:.2}× faster", base / per_frame),
        };
        println!(
            "| {name} | {per_frame:.3} | {:.0}× | {ratio} |",
            frames as f64 * 0.02 / best
        );
        outputs.push(out);
    }
    use_portable_simd(false);
    assert_eq!(outputs[0], outputs[1], "both codes give the same samples");
}
