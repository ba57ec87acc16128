//! Sample-rate conversion with a real anti-aliasing filter, behind one small interface.
//!
//! The default engine is rubato's synchronous FFT resampler (pure Rust, no allocation per
//! chunk). The C libsamplerate engine (`samplerate` crate, SincMediumQuality) can be selected
//! when the crate is built with the `samplerate` feature; `BENCHMARKS.md` compares the two.
//! Linear interpolation is never used to downsample: it aliases.
//!
//! Exact 2:1 downsampling (16 → 8 kHz, 48 → 24 kHz: a WebSocket caller's 16 kHz echoed back
//! at 8 kHz) takes a fast path on the default engine: a half-band FIR decimator (`Halfband`),
//! which costs a fraction of the FFT resampler on 20 ms frames (BENCHMARKS.md).

use rubato::{FftFixedInOut, Resampler};
use thiserror::Error;

/// Which resampling engine converts rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// rubato `FftFixedInOut`: fixed-ratio FFT convolution, pure Rust.
    #[default]
    Rubato,
    /// libsamplerate through the `samplerate` crate, SincMediumQuality.
    #[cfg(feature = "samplerate")]
    Samplerate,
}

/// A resampler could not be built for these rates.
#[derive(Debug, Error)]
#[error("cannot resample {from} Hz to {to} Hz: {reason}")]
pub struct ResampleError {
    pub from: u32,
    pub to: u32,
    pub reason: String,
}

/// Input chunk length the streaming resampler works in, in milliseconds of input.
const STREAM_CHUNK_MS: u32 = 20;

enum Inner {
    /// Same rate on both sides: samples pass through untouched.
    Passthrough,
    /// Exactly 2:1 down.
    Halfband(Box<Halfband>),
    Rubato(Box<RubatoState>),
    #[cfg(feature = "samplerate")]
    Samplerate(Box<SendSamplerate>),
}

/// libsamplerate's converter state, movable between threads.
#[cfg(feature = "samplerate")]
struct SendSamplerate(samplerate::Samplerate);

// SAFETY: the converter is a heap object with no thread affinity; it is owned by one
// resampler and only ever used through `&mut`, so moving it to another thread is sound.
#[cfg(feature = "samplerate")]
unsafe impl Send for SendSamplerate {}

struct RubatoState {
    engine: FftFixedInOut<f32>,
    /// Input waiting for a whole chunk.
    pending: Vec<f32>,
    input: [Vec<f32>; 1],
    output: [Vec<f32>; 1],
}

/// A streaming mono resampler: feed any number of samples, get converted samples out.
///
/// It holds back less than one input chunk (20 ms) plus the filter's delay. `reset` drops
/// everything held, so no stale audio leaks out after a flush (barge-in).
pub struct StreamResampler {
    from: u32,
    inner: Inner,
}

impl StreamResampler {
    /// A resampler on the default engine.
    pub fn new(from: u32, to: u32) -> Result<Self, ResampleError> {
        Self::with_engine(Engine::default(), from, to)
    }

    /// A resampler on a chosen engine.
    pub fn with_engine(engine: Engine, from: u32, to: u32) -> Result<Self, ResampleError> {
        let err = |reason: String| ResampleError { from, to, reason };
        if from == 0 || to == 0 {
            return Err(err("rates must be positive".into()));
        }
        if from == to {
            return Ok(Self {
                from,
                inner: Inner::Passthrough,
            });
        }
        let inner = match engine {
            Engine::Rubato if from == to * 2 => Inner::Halfband(Box::default()),
            Engine::Rubato => {
                let chunk = super::samples_for_ms(from, STREAM_CHUNK_MS).max(1);
                let engine = FftFixedInOut::<f32>::new(from as usize, to as usize, chunk, 1)
                    .map_err(|e| err(e.to_string()))?;
                let input = [vec![0.0; engine.input_frames_max()]];
                let output = [vec![0.0; engine.output_frames_max()]];
                Inner::Rubato(Box::new(RubatoState {
                    pending: Vec::with_capacity(engine.input_frames_max() * 2),
                    engine,
                    input,
                    output,
                }))
            }
            #[cfg(feature = "samplerate")]
            Engine::Samplerate => Inner::Samplerate(Box::new(SendSamplerate(
                samplerate::Samplerate::new(
                    samplerate::ConverterType::SincMediumQuality,
                    from,
                    to,
                    1,
                )
                .map_err(|e| err(e.to_string()))?,
            ))),
        };
        Ok(Self { from, inner })
    }

    /// The input rate.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output samples of filter delay at the start of the stream.
    pub fn delay(&self) -> usize {
        match &self.inner {
            Inner::Passthrough => 0,
            Inner::Halfband(_) => HALFBAND_DELAY / 2,
            Inner::Rubato(state) => state.engine.output_delay(),
            #[cfg(feature = "samplerate")]
            Inner::Samplerate(_) => 0,
        }
    }

    /// Converts `input`, appending whatever output is ready to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        match &mut self.inner {
            Inner::Passthrough => out.extend_from_slice(input),
            Inner::Halfband(state) => state.push(input, out),
            Inner::Rubato(state) => state.push(input, out),
            #[cfg(feature = "samplerate")]
            Inner::Samplerate(engine) => {
                let floats: Vec<f32> = input.iter().map(|&s| to_f32(s)).collect();
                if let Ok(converted) = engine.0.process(&floats) {
                    out.extend(converted.into_iter().map(to_i16));
                }
            }
        }
    }

    /// Pushes out everything held back (the tail of an utterance), padding with silence.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        match &mut self.inner {
            Inner::Passthrough => {}
            Inner::Halfband(state) => {
                state.push(&[0; 2 * HALFBAND_DELAY], out);
                **state = Halfband::default();
            }
            Inner::Rubato(state) => {
                // Finish the partial chunk with silence, then push silence until the filter's
                // delay has come out.
                if !state.pending.is_empty() {
                    let chunk = state.engine.input_frames_next();
                    state.pending.resize(chunk, 0.0);
                    state.drain_chunks(out);
                }
                let delay = state.engine.output_delay();
                let mut pushed = 0;
                while pushed < delay {
                    let chunk = state.engine.input_frames_next();
                    state.pending.resize(chunk, 0.0);
                    let before = out.len();
                    state.drain_chunks(out);
                    pushed += out.len() - before;
                }
                state.engine.reset();
            }
            #[cfg(feature = "samplerate")]
            Inner::Samplerate(engine) => {
                if let Ok(converted) = engine.0.process_last(&[]) {
                    out.extend(converted.into_iter().map(to_i16));
                }
                let _ = engine.0.reset();
            }
        }
    }

    /// Drops all held audio and filter state.
    pub fn reset(&mut self) {
        match &mut self.inner {
            Inner::Passthrough => {}
            Inner::Halfband(state) => **state = Halfband::default(),
            Inner::Rubato(state) => {
                state.pending.clear();
                state.engine.reset();
            }
            #[cfg(feature = "samplerate")]
            Inner::Samplerate(engine) => {
                let _ = engine.0.reset();
            }
        }
    }
}

/// The half-band filter's delay in input samples: its taps span twice this plus one.
const HALFBAND_DELAY: usize = 44;

/// The non-zero taps of the half-band filter beside its centre (which is 0.5): the taps at
/// odd distances 1, 3, … 43 from the centre, the same on both sides. A Kaiser-windowed sinc
/// (β 10: about −99 dB stop band, 3.4 kHz pass band edge at 16 kHz), normalised to unit
/// gain at DC.
fn halfband_taps() -> &'static [f32; HALFBAND_DELAY / 2] {
    static TAPS: std::sync::OnceLock<[f32; HALFBAND_DELAY / 2]> = std::sync::OnceLock::new();
    TAPS.get_or_init(|| {
        let beta = 10.0f64;
        let n = (2 * HALFBAND_DELAY) as f64;
        let bessel_i0 = |x: f64| {
            let (mut sum, mut term) = (1.0, 1.0);
            for k in 1..50 {
                term *= (x / 2.0) * (x / 2.0) / (k as f64 * k as f64);
                sum += term;
            }
            sum
        };
        let window = |j: f64| {
            let r = 2.0 * j / n - 1.0;
            bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(beta)
        };
        let center = HALFBAND_DELAY as f64;
        let mut side = [0.0f64; HALFBAND_DELAY / 2];
        for (k, tap) in side.iter_mut().enumerate() {
            let d = (2 * k + 1) as f64;
            let x = std::f64::consts::PI * d / 2.0;
            *tap = 0.5 * x.sin() / x * window(center + d);
        }
        // Unit gain at DC: the centre (0.5) plus both sides.
        let sum = 0.5 + 2.0 * side.iter().sum::<f64>();
        let mut taps = [0.0f32; HALFBAND_DELAY / 2];
        for (t, s) in taps.iter_mut().zip(side) {
            *t = (s / sum) as f32;
        }
        taps
    })
}

/// The half-band filter's taps that touch the samples of the other parity than the output's
/// centre, in order: `2 * HALFBAND_DELAY / 2` of them, the taps at distances −43, −41, … 43.
/// With those samples gathered contiguously, each output is one dense dot product.
const HALFBAND_SPAN: usize = HALFBAND_DELAY;

fn halfband_dense() -> &'static [f32; HALFBAND_SPAN] {
    static DENSE: std::sync::OnceLock<[f32; HALFBAND_SPAN]> = std::sync::OnceLock::new();
    DENSE.get_or_init(|| {
        let side = halfband_taps();
        let mut dense = [0.0f32; HALFBAND_SPAN];
        for (j, tap) in dense.iter_mut().enumerate() {
            // Distance from the centre: 2j − 43 (odd), so the side tap (|d| − 1) / 2.
            let d = (2 * j as isize - (HALFBAND_DELAY as isize - 1)).unsigned_abs();
            *tap = side[(d - 1) / 2];
        }
        dense
    })
}

/// A 2:1 decimating half-band FIR, streaming: one output for every second input sample.
#[derive(Clone)]
struct Halfband {
    /// The last `2 * HALFBAND_DELAY` input samples, then the new ones.
    window: Vec<f32>,
    /// The samples of `window` of the other parity than the output centres, contiguous.
    other: Vec<f32>,
    /// Whether the next input sample completes an output (every second sample does).
    odd: bool,
    /// The centre tap after DC normalisation.
    center: f32,
}

impl Default for Halfband {
    fn default() -> Self {
        let side = halfband_taps();
        let sum: f32 = 2.0 * side.iter().sum::<f32>();
        Halfband {
            window: vec![0.0; 2 * HALFBAND_DELAY],
            other: Vec::new(),
            odd: false,
            center: 1.0 - sum,
        }
    }
}

/// Outputs computed together by the half-band decimator: each tap is multiplied into this
/// many consecutive outputs at once, which the compiler turns into vector instructions.
const HALFBAND_BLOCK: usize = 8;

/// Set: the half-band decimator keeps its portable code even where AVX2 is there (for the
/// comparison in `cargo bench --bench resample`).
static PORTABLE_SIMD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the half-band decimator use its portable code (`true`) or the best this CPU runs.
#[doc(hidden)]
pub fn use_portable_simd(portable: bool) {
    PORTABLE_SIMD.store(portable, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this CPU has AVX2 (asked once) and it is not turned off.
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    !PORTABLE_SIMD.load(std::sync::atomic::Ordering::Relaxed)
        && *AVX2.get_or_init(|| std::is_x86_feature_detected!("avx2"))
}

impl Halfband {
    /// Converts `input`, appending the output to `out`. On x86-64 machines with AVX2 the same
    /// code is compiled a second time for them: an 8-output block becomes one 256-bit vector
    /// per sum instead of two 128-bit ones. The operations and their order are the same, so
    /// the samples are identical either way (no fused multiply-add).
    fn push(&mut self, input: &[i16], out: &mut Vec<i16>) {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2, checked at run time just above.
            return unsafe { self.push_avx2(input, out) };
        }
        self.push_portable(input, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn push_avx2(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.push_portable(input, out)
    }

    #[inline(always)]
    fn push_portable(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let dense = halfband_dense();
        let keep = 2 * HALFBAND_DELAY;
        self.window.extend(input.iter().map(|&s| to_f32(s)));
        // Output for the sample at index i (i ≥ keep): centred on c = i − HALFBAND_DELAY; its
        // side taps reach c − 43 … c + 43, every second sample, the other parity than c.
        let first = keep + usize::from(self.odd);
        let first_centre = first - HALFBAND_DELAY;
        let first_side = first_centre + 1 - HALFBAND_DELAY;
        let outputs = (self.window.len() + 1).saturating_sub(first) / 2;
        self.other.clear();
        self.other
            .extend(self.window[first_side..].iter().step_by(2));
        out.reserve(outputs);
        // Output n takes other[n .. n + HALFBAND_SPAN]. Taps at even and odd positions sum
        // apart (two independent chains), in the same order in the block and the single
        // path, so a sample comes out the same however the input was chunked.
        let mut n = 0;
        while n + HALFBAND_BLOCK <= outputs {
            let Some(span) = self.other.get(n..n + HALFBAND_BLOCK + HALFBAND_SPAN - 1) else {
                break;
            };
            let mut even = [0.0f32; HALFBAND_BLOCK];
            let mut odd = [0.0f32; HALFBAND_BLOCK];
            for j in (0..HALFBAND_SPAN).step_by(2) {
                let (h0, h1) = (dense[j], dense[j + 1]);
                let x0 = &span[j..j + HALFBAND_BLOCK];
                let x1 = &span[j + 1..j + 1 + HALFBAND_BLOCK];
                for lane in 0..HALFBAND_BLOCK {
                    even[lane] += h0 * x0[lane];
                    odd[lane] += h1 * x1[lane];
                }
            }
            for lane in 0..HALFBAND_BLOCK {
                let c = first_centre + 2 * (n + lane);
                out.push(to_i16(
                    self.center * self.window[c] + even[lane] + odd[lane],
                ));
            }
            n += HALFBAND_BLOCK;
        }
        while n < outputs {
            let Some(side) = self.other.get(n..n + HALFBAND_SPAN) else {
                break;
            };
            let (mut even, mut odd) = (0.0f32, 0.0f32);
            for (x, h) in side.chunks_exact(2).zip(dense.chunks_exact(2)) {
                even += h[0] * x[0];
                odd += h[1] * x[1];
            }
            let c = first_centre + 2 * n;
            out.push(to_i16(self.center * self.window[c] + even + odd));
            n += 1;
        }
        let next = first + 2 * n;
        self.odd = next == self.window.len() + 1;
        let excess = self.window.len() - keep;
        self.window.drain(..excess);
    }
}

impl RubatoState {
    /// Converts `input`: whole chunks straight from it, only a remainder through `pending`,
    /// so 20 ms frames (the usual case) are never copied twice.
    fn push(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let chunk = self.engine.input_frames_next();
        let mut rest = input;
        if !self.pending.is_empty() {
            let take = (chunk - self.pending.len()).min(rest.len());
            self.pending.extend(rest[..take].iter().map(|&s| to_f32(s)));
            rest = &rest[take..];
            self.drain_chunks(out);
            if !self.pending.is_empty() {
                return;
            }
        }
        while rest.len() >= chunk {
            for (dst, &src) in self.input[0][..chunk].iter_mut().zip(&rest[..chunk]) {
                *dst = to_f32(src);
            }
            self.run_chunk(out);
            rest = &rest[chunk..];
        }
        self.pending.extend(rest.iter().map(|&s| to_f32(s)));
    }

    /// Resamples the chunk in `input` into `out`.
    fn run_chunk(&mut self, out: &mut Vec<i16>) {
        match self
            .engine
            .process_into_buffer(&self.input, &mut self.output, None)
        {
            Ok((_, written)) => out.extend(self.output[0][..written].iter().map(|&s| to_i16(s))),
            Err(e) => {
                // Buffers are sized from the engine itself, so this cannot happen; if it
                // ever does, losing one chunk is better than stopping the call.
                tracing::error!(error = %e, "resampler refused a chunk");
            }
        }
    }

    fn drain_chunks(&mut self, out: &mut Vec<i16>) {
        let mut consumed = 0;
        loop {
            let need = self.engine.input_frames_next();
            if self.pending.len() - consumed < need {
                break;
            }
            self.input[0][..need].copy_from_slice(&self.pending[consumed..consumed + need]);
            consumed += need;
            self.run_chunk(out);
        }
        self.pending.drain(..consumed);
    }
}

/// One direction of a call's rate boundary (caller to bot, bot to caller, caller to room):
/// streamed audio from one rate to another. Made only where the two rates differ (`between`
/// answers `None` for equal rates), so audio already at the right rate is never touched.
pub struct RateConverter {
    resampler: StreamResampler,
    to: u32,
    /// Counts each chunk converted, when the owner asked (`counted`): added to the metric
    /// every `CHUNK_BATCH` chunks and when the converter is dropped.
    chunks: Option<metrics::Counter>,
    pending_chunks: u32,
}

/// Converted chunks are added to their metric in batches of this many (a second of 20 ms
/// chunks), so a chunk costs a local add.
const CHUNK_BATCH: u32 = 50;

impl Drop for RateConverter {
    fn drop(&mut self) {
        self.flush_count();
    }
}

impl RateConverter {
    /// A converter from `from` to `to` Hz; `None` when the rates are equal.
    pub fn between(from: u32, to: u32) -> Result<Option<Self>, ResampleError> {
        if from == to {
            return Ok(None);
        }
        Ok(Some(RateConverter {
            resampler: StreamResampler::new(from, to)?,
            to,
            chunks: None,
            pending_chunks: 0,
        }))
    }

    /// The same converter, counting every chunk it converts on `chunks`.
    pub fn counted(mut self, chunks: metrics::Counter) -> Self {
        self.chunks = Some(chunks);
        self
    }

    /// The input rate.
    pub fn from_rate(&self) -> u32 {
        self.resampler.from_rate()
    }

    /// The output rate.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Converts `input`, appending whatever output is ready to `out`.
    pub fn convert(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.chunks.is_some() {
            self.pending_chunks += 1;
            if self.pending_chunks >= CHUNK_BATCH {
                self.flush_count();
            }
        }
        self.resampler.process(input, out);
    }

    fn flush_count(&mut self) {
        if let (Some(chunks), 1..) = (&self.chunks, self.pending_chunks) {
            chunks.increment(u64::from(self.pending_chunks));
        }
        self.pending_chunks = 0;
    }

    /// `input` converted, in a new buffer.
    pub fn converted(&mut self, input: &[i16]) -> Vec<i16> {
        let mut out = Vec::with_capacity(
            input.len() * self.to as usize / self.from_rate().max(1) as usize + 16,
        );
        self.convert(input, &mut out);
        out
    }

    /// Pushes out everything held back (the tail of an utterance).
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        self.resampler.flush(out);
    }

    /// Drops all held audio and filter state.
    pub fn reset(&mut self) {
        self.resampler.reset();
    }
}

/// Brings audio declared at any rate to one fixed rate, with a streaming resampler for the
/// rate in use (chunks of one stream normally share a rate; a change starts a new one).
pub struct RateAdapter {
    to: u32,
    resampler: Option<StreamResampler>,
}

impl RateAdapter {
    /// An adapter to `to` Hz.
    pub fn new(to: u32) -> Self {
        RateAdapter {
            to,
            resampler: None,
        }
    }

    /// `samples` at `rate`, converted to the adapter's rate (moved through when equal).
    pub fn convert(&mut self, rate: u32, samples: Vec<i16>) -> Vec<i16> {
        if rate == self.to {
            return samples;
        }
        let mut out =
            Vec::with_capacity(samples.len() * self.to as usize / rate.max(1) as usize + 16);
        self.convert_into(rate, &samples, &mut out);
        out
    }

    /// `samples` at `rate`, converted and appended to `out`.
    pub fn convert_into(&mut self, rate: u32, samples: &[i16], out: &mut Vec<i16>) {
        if rate == self.to {
            out.extend_from_slice(samples);
            return;
        }
        if self
            .resampler
            .as_ref()
            .is_none_or(|r| r.from_rate() != rate)
        {
            self.resampler = StreamResampler::new(rate, self.to).ok();
        }
        if let Some(r) = self.resampler.as_mut() {
            r.process(samples, out);
        }
    }
}

fn to_f32(s: i16) -> f32 {
    s as f32 / 32768.0
}

/// Rounds half away from zero, as `f32::round` does, without its library call (the default
/// x86-64 target has no rounding instruction); `as` saturates at the i16 range.
fn to_i16(s: f32) -> i16 {
    let v = s * 32768.0;
    (v + 0.5f32.copysign(v)) as i16
}

/// Converts a whole utterance at once, compensating the filter delay so that the output is
/// time-aligned with the input and `len * to / from` samples long.
pub fn resample_all(input: &[i16], from: u32, to: u32) -> Result<Vec<i16>, ResampleError> {
    if from == to {
        return Ok(input.to_vec());
    }
    let mut resampler = StreamResampler::new(from, to)?;
    let expected = (input.len() as u64 * to as u64 / from as u64) as usize;
    let delay = resampler.delay();
    let mut out = Vec::with_capacity(expected + delay + 1024);
    resampler.process(input, &mut out);
    resampler.flush(&mut out);
    let start = delay.min(out.len());
    let mut aligned = out.split_off(start);
    aligned.resize(expected, 0);
    Ok(aligned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<i16> {
        let n = (rate as f64 * seconds) as usize;
        (0..n)
            .map(|i| {
                (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin())
                    as i16
            })
            .collect()
    }

    fn level_db(samples: &[i16]) -> f64 {
        20.0 * (crate::media::pcm::rms(samples) / 32768.0)
            .max(1e-12)
            .log10()
    }

    #[test]
    fn passband_tone_keeps_its_level() {
        let input = tone(1000.0, 24000, 1.0, 10000.0);
        let out = resample_all(&input, 24000, 8000).unwrap();
        assert_eq!(out.len(), 8000);
        let middle = &out[1000..7000];
        let expected = level_db(&tone(1000.0, 8000, 1.0, 10000.0));
        assert!((level_db(middle) - expected).abs() < 0.1);
    }

    #[test]
    fn tone_above_new_nyquist_is_removed() {
        // 5 kHz cannot exist at 8 kHz; an anti-aliasing filter must remove it, where linear
        // interpolation would fold it down to 3 kHz.
        let input = tone(5000.0, 24000, 1.0, 10000.0);
        let out = resample_all(&input, 24000, 8000).unwrap();
        assert!(level_db(&out[1000..7000]) < -80.0);
    }

    #[test]
    fn streaming_matches_any_chunking() {
        let input = tone(440.0, 16000, 0.5, 8000.0);
        let mut a = StreamResampler::new(16000, 8000).unwrap();
        let mut b = StreamResampler::new(16000, 8000).unwrap();
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        a.process(&input, &mut out_a);
        for chunk in input.chunks(77) {
            b.process(chunk, &mut out_b);
        }
        assert_eq!(out_a, out_b);
        assert!(!out_a.is_empty());
    }

    #[test]
    fn the_halfband_computes_its_filter_exactly() {
        // The decimator, against the filter written out directly: output m is centred on
        // input sample 2m − HALFBAND_DELAY (samples before the start are zero).
        let input = tone(1234.0, 16000, 0.1, 12000.0);
        let mut r = StreamResampler::new(16000, 8000).unwrap();
        let mut out = Vec::new();
        for chunk in input.chunks(333) {
            r.process(chunk, &mut out);
        }
        let taps = halfband_taps();
        let centre = 1.0 - 2.0 * taps.iter().map(|&t| f64::from(t)).sum::<f64>();
        let at = |i: isize| -> f64 {
            usize::try_from(i)
                .ok()
                .and_then(|i| input.get(i))
                .map_or(0.0, |&s| f64::from(s))
        };
        for (m, &got) in out.iter().enumerate() {
            let c = 2 * m as isize - HALFBAND_DELAY as isize;
            let mut want = centre * at(c);
            for (k, &t) in taps.iter().enumerate() {
                let d = 2 * k as isize + 1;
                want += f64::from(t) * (at(c - d) + at(c + d));
            }
            assert!(
                (f64::from(got) - want).abs() <= 1.0,
                "sample {m}: {got} vs {want}"
            );
        }
        assert!(out.len() >= input.len() / 2 - HALFBAND_DELAY);
    }

    #[test]
    fn reset_forgets_held_audio() {
        let mut r = StreamResampler::new(24000, 8000).unwrap();
        let mut out = Vec::new();
        r.process(&tone(1000.0, 24000, 0.015, 10000.0), &mut out);
        r.reset();
        out.clear();
        r.process(&vec![0; 4800], &mut out);
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn a_converter_is_made_only_between_different_rates() {
        assert!(RateConverter::between(8000, 8000).unwrap().is_none());
        assert!(RateConverter::between(0, 8000).is_err());
        let up = RateConverter::between(8000, 16000).unwrap().unwrap();
        assert_eq!((up.from_rate(), up.to_rate()), (8000, 16000));
    }

    #[test]
    fn a_converter_works_both_ways_and_streams_like_its_resampler() {
        for (from, to) in [(16000, 8000), (8000, 16000), (48000, 8000), (8000, 24000)] {
            let input = tone(440.0, from, 0.5, 8000.0);
            let mut converter = RateConverter::between(from, to).unwrap().unwrap();
            let mut reference = StreamResampler::new(from, to).unwrap();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for frame in input.chunks(crate::media::samples_for_ms(from, 20)) {
                converter.convert(frame, &mut a);
            }
            reference.process(&input, &mut b);
            assert_eq!(a, b, "{from} -> {to}");
            // Half a second in, about half a second out (less what the filter holds back).
            let expected = to as usize / 2;
            assert!(
                a.len() > expected * 8 / 10 && a.len() <= expected,
                "{from} -> {to}: {}",
                a.len()
            );
            converter.flush(&mut a);
            assert!(a.len() >= expected, "{from} -> {to}: {}", a.len());
            // The tone keeps its level through the boundary.
            let middle = &a[a.len() / 4..a.len() * 3 / 4];
            let want = level_db(&tone(440.0, to, 0.5, 8000.0));
            assert!((level_db(middle) - want).abs() < 0.5, "{from} -> {to}");
        }
    }

    #[test]
    fn a_reset_converter_forgets_held_audio() {
        let mut c = RateConverter::between(16000, 8000).unwrap().unwrap();
        let mut out = Vec::new();
        c.convert(&tone(1000.0, 16000, 0.015, 10000.0), &mut out);
        c.reset();
        out.clear();
        c.convert(&[0; 3200], &mut out);
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn two_to_one_is_a_halfband_that_keeps_the_pass_band_and_removes_aliases() {
        for (from, to) in [(16000, 8000), (48000, 24000)] {
            let r = StreamResampler::new(from, to).unwrap();
            assert!(matches!(r.inner, Inner::Halfband(_)), "{from} -> {to}");
        }
        let nyquist = 4000.0;
        for freq in [300.0, 1000.0, 3400.0] {
            let out = resample_all(&tone(freq, 16000, 1.0, 10000.0), 16000, 8000).unwrap();
            assert_eq!(out.len(), 8000);
            let want = level_db(&tone(freq, 8000, 1.0, 10000.0));
            let got = level_db(&out[1000..7000]);
            assert!(
                (got - want).abs() < 0.1,
                "{freq} Hz: {got:.2} dB, want {want:.2}"
            );
        }
        for freq in [4800.0, 6000.0, 7500.0] {
            assert!(freq > nyquist);
            let out = resample_all(&tone(freq, 16000, 1.0, 10000.0), 16000, 8000).unwrap();
            let got = level_db(&out[1000..7000]);
            assert!(got < -90.0, "{freq} Hz folds in at {got:.1} dB");
        }
        // In time with its input: a click comes out where it went in.
        let mut click = vec![0i16; 1600];
        click[800] = 20000;
        let out = resample_all(&click, 16000, 8000).unwrap();
        let peak = out
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.unsigned_abs())
            .map(|(i, _)| i);
        assert_eq!(peak, Some(400));
    }

    #[test]
    fn espeak_rate_converts() {
        let out = resample_all(&tone(500.0, 22050, 1.0, 5000.0), 22050, 8000).unwrap();
        assert_eq!(out.len(), 8000);
    }
}
