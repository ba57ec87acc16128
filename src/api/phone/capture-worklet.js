// Microphone capture for the softphone page: mono audio at the context's rate in, 20 ms
// chunks of 16 kHz signed 16-bit samples out (posted to the page, which sends them as
// `play_audio`). Two one-pole low-pass stages keep most energy above 8 kHz from folding
// back; linear interpolation then picks the 16 kHz samples.

const OUT_RATE = 16000;
const CHUNK = OUT_RATE / 50; // 20 ms
const CUTOFF_HZ = 7000;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    // `sampleRate` is the context's rate (a global of the worklet scope).
    this.step = sampleRate / OUT_RATE;
    this.filter = this.step > 1;
    this.alpha = 1 - Math.exp((-2 * Math.PI * CUTOFF_HZ) / sampleRate);
    this.lp1 = 0;
    this.lp2 = 0;
    this.prev = 0;
    this.pos = 0;
    this.chunk = new Int16Array(CHUNK);
    this.filled = 0;
  }

  push(value) {
    const v = Math.max(-1, Math.min(1, value));
    this.chunk[this.filled++] = v < 0 ? v * 0x8000 : v * 0x7fff;
    if (this.filled === CHUNK) {
      const out = this.chunk;
      this.port.postMessage(out.buffer, [out.buffer]);
      this.chunk = new Int16Array(CHUNK);
      this.filled = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) {
      return true;
    }
    const samples = input[0];
    for (let i = 0; i < samples.length; i++) {
      let x = samples[i];
      if (this.filter) {
        this.lp1 += this.alpha * (x - this.lp1);
        this.lp2 += this.alpha * (this.lp1 - this.lp2);
        x = this.lp2;
      }
      // Output samples fall between the previous input (0) and this one (1).
      while (this.pos < 1) {
        this.push(this.prev + (x - this.prev) * this.pos);
        this.pos += this.step;
      }
      this.pos -= 1;
      this.prev = x;
    }
    return true;
  }
}

registerProcessor("capture-16k", CaptureProcessor);
