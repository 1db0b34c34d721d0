// Microphone capture for live voice (issue 5), loaded with audioWorklet.addModule('/web/mic-worklet.js').
//
// Runs on the audio rendering thread: takes the microphone's 128-sample render quanta, mixes them to
// mono, converts them to 48 kHz when the AudioContext runs at another rate, and posts 20 ms blocks
// (960 float32 samples) to the main thread, which sends each as one binary WebSocket frame
// (`format=f32le`, the controller's microphone endpoint). Blocks are transferred, not copied.
//
// Why PCM from an AudioWorklet rather than MediaRecorder/Opus: MediaRecorder hands out data only in
// container chunks; measured in headless Chromium 156 they come every 60 ms at best (first after
// ~60 ms), and other browsers are commonly reported at 100–250 ms. The worklet adds one render quantum
// (2.7 ms) plus the 20 ms block (first block ~14 ms after start, measured). The controller encodes
// Opus once per session after its AGC anyway (RFC 7587), so the browser need not. See app.js.

const TARGET_RATE = 48_000;

class MicCaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options?.processorOptions ?? {};
    this.frameSamples = Math.max(128, Math.min(4800, Math.round(o.frameSamples ?? 960)));
    // `sampleRate` is the AudioContext's rate (a global of AudioWorkletGlobalScope).
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    this.resample = Math.abs(this.step - 1) > 1e-9;
    this.pos = 0; // fractional read position into `prev ++ input` (resampling only)
    this.prev = 0; // last input sample of the previous quantum (interpolation across quanta)
    this.block = new Float32Array(this.frameSamples);
    this.fill = 0;
    this.peak = 0;
    this.sumSq = 0;
    this.running = true;
    this.port.onmessage = (e) => { if (e.data === 'stop') this.running = false; };
  }

  push(v) {
    this.block[this.fill++] = v;
    const a = Math.abs(v);
    if (a > this.peak) this.peak = a;
    this.sumSq += v * v;
    if (this.fill === this.frameSamples) {
      const rms = Math.sqrt(this.sumSq / this.frameSamples);
      // `currentTime` (AudioContext seconds, start of this render quantum) lets the main thread drop
      // blocks that waited too long in its queue (a busy page) instead of sending a burst.
      this.port.postMessage({ pcm: this.block, peak: this.peak, rms, t: currentTime }, [this.block.buffer]);
      this.block = new Float32Array(this.frameSamples);
      this.fill = 0;
      this.peak = 0;
      this.sumSq = 0;
    }
  }

  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true; // not connected yet (or the track ended)
    const n = input[0].length;
    // Mono: the average of the channels (the request asks for one; some devices give two anyway).
    let mono = input[0];
    if (input.length > 1) {
      mono = new Float32Array(n);
      for (const ch of input) for (let i = 0; i < n; i++) mono[i] += ch[i] / input.length;
    }
    if (!this.resample) {
      for (let i = 0; i < n; i++) this.push(mono[i]);
      return true;
    }
    // Linear interpolation over `prev, mono[0..n-1]` (index 0 = prev). Adequate for speech going up
    // (44.1 → 48 kHz, the usual case); going down from 96 kHz it would alias above 24 kHz, which the
    // controller's Opus encoder band-limits anyway.
    const at = (k) => (k === 0 ? this.prev : mono[k - 1]);
    while (this.pos < n) {
      const i = Math.floor(this.pos);
      const f = this.pos - i;
      this.push(at(i) + (at(i + 1) - at(i)) * f);
      this.pos += this.step;
    }
    this.pos -= n;
    this.prev = mono[n - 1];
    return true;
  }
}

registerProcessor('mic-capture', MicCaptureProcessor);
