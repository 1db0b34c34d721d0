/**
 * Deterministic test and bench signals (48 kHz mono float): no fixture files, no binaries.
 */

/**
 * mulberry32: a seeded PRNG for reproducible test signals, bench series and the simulator's noise, loss
 * and jitter (firmware-sim's createSeededRandom). Not for anything that must be unpredictable.
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Vowel-like speech stand-in: a glottal-ish harmonic series (f0 gliding 100–180 Hz) shaped by three
 * formants that move per "syllable", syllabic amplitude modulation at ~4 Hz with short pauses, and a
 * little breath noise. Peak about −6 dBFS. Enough structure for codec, PLC and correlation tests.
 */
export function speechLike(seconds: number, seed = 1, sampleRate = 48_000): Float32Array {
  const n = Math.round(seconds * sampleRate);
  const out = new Float32Array(n);
  const rnd = seededRandom(seed);
  const syll = Math.round(0.25 * sampleRate);
  let phase = 0;
  let f1 = 500;
  let f2 = 1500;
  let f3 = 2500;
  let t1 = f1;
  let t2 = f2;
  let t3 = f3;
  let f0Base = 130;
  for (let i = 0; i < n; i++) {
    if (i % syll === 0) {
      t1 = 300 + rnd() * 500;
      t2 = 900 + rnd() * 1400;
      t3 = 2300 + rnd() * 700;
      f0Base = 100 + rnd() * 80;
    }
    // Formants glide (coarticulation).
    f1 += (t1 - f1) * 0.002;
    f2 += (t2 - f2) * 0.002;
    f3 += (t3 - f3) * 0.002;
    const t = i / sampleRate;
    const f0 = f0Base * (1 + 0.03 * Math.sin(2 * Math.PI * 5 * t));
    phase += (2 * Math.PI * f0) / sampleRate;
    let v = 0;
    for (let h = 1; h * f0 < 4000; h++) {
      const fh = h * f0;
      const g = 1 / (1 + ((fh - f1) / 120) ** 2) + 0.5 / (1 + ((fh - f2) / 180) ** 2) + 0.25 / (1 + ((fh - f3) / 250) ** 2);
      v += (g / h ** 0.5) * Math.sin(h * phase);
    }
    const pos = (i % syll) / syll;
    const env = pos < 0.8 ? Math.sin((Math.PI * pos) / 0.8) ** 0.7 : 0; // a short pause after each syllable
    out[i] = 0.12 * env * v + 0.002 * (rnd() * 2 - 1);
  }
  return out;
}

/** Linear chirp burst f0→f1 over `ms` with a Hann window: a sharp cross-correlation peak. */
export function chirp(ms: number, f0 = 500, f1 = 4000, amplitude = 0.5, sampleRate = 48_000): Float32Array {
  const n = Math.round((ms * sampleRate) / 1000);
  const out = new Float32Array(n);
  const T = n / sampleRate;
  for (let i = 0; i < n; i++) {
    const t = i / sampleRate;
    const w = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1));
    out[i] = amplitude * w * Math.sin(2 * Math.PI * (f0 * t + ((f1 - f0) / (2 * T)) * t * t));
  }
  return out;
}

/**
 * A bed of low-level pink-ish noise with a chirp every `periodMs` (first at `firstMs`). Returns the
 * signal and the sample index of each chirp, for alignment by cross-correlation.
 */
export function chirpTrack(seconds: number, o: { periodMs?: number; firstMs?: number; chirpMs?: number; bedLevel?: number; seed?: number; sampleRate?: number } = {}): { signal: Float32Array; chirpAt: number[]; chirp: Float32Array } {
  const fs = o.sampleRate ?? 48_000;
  const n = Math.round(seconds * fs);
  const signal = new Float32Array(n);
  const rnd = seededRandom(o.seed ?? 3);
  const bed = o.bedLevel ?? 0.05;
  // Paul Kellet's economy pink filter.
  let b0 = 0;
  let b1 = 0;
  let b2 = 0;
  for (let i = 0; i < n; i++) {
    const w = rnd() * 2 - 1;
    b0 = 0.99765 * b0 + w * 0.099046;
    b1 = 0.963 * b1 + w * 0.2965164;
    b2 = 0.57 * b2 + w * 1.0526913;
    signal[i] = bed * 0.25 * (b0 + b1 + b2 + w * 0.1848);
  }
  const c = chirp(o.chirpMs ?? 10, 500, 4000, 0.5, fs);
  const chirpAt: number[] = [];
  const period = Math.round(((o.periodMs ?? 250) * fs) / 1000);
  for (let at = Math.round(((o.firstMs ?? 100) * fs) / 1000); at + c.length < n; at += period) {
    for (let i = 0; i < c.length; i++) signal[at + i] = signal[at + i]! + c[i]!;
    chirpAt.push(at);
  }
  return { signal, chirpAt, chirp: c };
}

/**
 * Lag (in samples, fractional by parabolic interpolation) at which `template` best matches `x`
 * within [from, to): argmax of the normalised cross-correlation, and the peak's value (−1..1).
 */
export function bestLag(x: Float32Array, template: Float32Array, from: number, to: number): { lag: number; score: number } {
  const m = template.length;
  let et = 0;
  for (let i = 0; i < m; i++) et += template[i]! * template[i]!;
  const score = (k: number): number => {
    if (k < 0 || k + m > x.length) return -Infinity;
    let s = 0;
    let ex = 0;
    for (let i = 0; i < m; i++) {
      const v = x[k + i]!;
      s += v * template[i]!;
      ex += v * v;
    }
    return ex > 0 ? s / Math.sqrt(ex * et) : 0;
  };
  let best = -Infinity;
  let bk = from;
  for (let k = Math.max(0, from); k < Math.min(to, x.length - m + 1); k++) {
    const s = score(k);
    if (s > best) {
      best = s;
      bk = k;
    }
  }
  const l = score(bk - 1);
  const r = score(bk + 1);
  let frac = 0;
  if (Number.isFinite(l) && Number.isFinite(r)) {
    const den = l - 2 * best + r;
    if (den < 0) frac = (0.5 * (l - r)) / den;
  }
  return { lag: bk + frac, score: best };
}

/** SNR (dB) of `x` against reference `ref` over [from, to). */
export function snrDb(x: Float32Array, ref: Float32Array, from = 0, to = Math.min(x.length, ref.length)): number {
  let s = 0;
  let e = 0;
  for (let i = from; i < to; i++) {
    s += ref[i]! ** 2;
    e += (x[i]! - ref[i]!) ** 2;
  }
  return e === 0 ? Infinity : 10 * Math.log10(s / e);
}

export function rmsDb(x: Float32Array, from = 0, to = x.length): number {
  let s = 0;
  for (let i = from; i < to; i++) s += x[i]! ** 2;
  return 10 * Math.log10(Math.max(s / Math.max(1, to - from), 1e-20));
}
