/** Loudness maths, limiter planning, peaks, profile identity: pure logic, no processes. */
import { describe, expect, it } from 'vitest';
import {
  canonicalJson,
  computePeaks,
  DEFAULT_PROFILE,
  findTrim,
  GainApplier,
  mediaKeyOf,
  parseEbur128Summary,
  PcmMeter,
  planGain,
  profileIdOf,
  resolveProfile,
  summarize,
} from '../../audio-pipeline/src/index.js';
import { F32Reader } from '../../audio-pipeline/src/normalize.js';
import { seededRandom } from '../../audio-pipeline/src/live/test-signals.js';

const SR = 48000;

const rng = seededRandom;

function sine(freq: number, amp: number, seconds: number): Float32Array {
  const x = new Float32Array(Math.round(seconds * SR));
  for (let i = 0; i < x.length; i++) x[i] = amp * Math.sin((2 * Math.PI * freq * i) / SR);
  return x;
}

/** Speech-like test signal: bursts of harmonic "syllables" with a high crest factor and pauses. */
function speechLike(seconds: number, seed = 1): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(Math.round(seconds * SR));
  let i = 0;
  while (i < x.length) {
    const len = Math.floor((0.08 + r() * 0.25) * SR);
    const f0 = 90 + r() * 120;
    const amp = 0.05 + r() * 0.6;
    for (let k = 0; k < len && i + k < x.length; k++) {
      const env = Math.sin((Math.PI * k) / len);
      // pulse-train-ish: sum of harmonics
      let v = 0;
      for (let h = 1; h <= 12; h++) v += Math.sin((2 * Math.PI * f0 * h * k) / SR) / h;
      x[i + k] = amp * env * v * 0.5;
    }
    i += len + Math.floor(r() * 0.15 * SR);
  }
  return x;
}

function meter(x: Float32Array, chunk = 1000): ReturnType<PcmMeter['finish']> {
  const m = new PcmMeter({ expectedSamples: x.length });
  for (let i = 0; i < x.length; i += chunk) m.push(x.subarray(i, Math.min(x.length, i + chunk)));
  return m.finish();
}

describe('PcmMeter (BS.1770-4)', () => {
  it('a 997 Hz sine reads 20·log10(A) − 3.01 LUFS and its peak', () => {
    for (const amp of [0.5, 0.1, 0.02]) {
      const s = summarize(meter(sine(997, amp, 5)));
      expect(s.integratedLufs).toBeCloseTo(20 * Math.log10(amp) - 3.01, 1);
      expect(s.samplePeakDbfs).toBeCloseTo(20 * Math.log10(amp), 1);
      expect(s.truePeakDbtp).toBeGreaterThanOrEqual(s.samplePeakDbfs - 1e-9);
    }
  });

  it('finds inter-sample peaks: a fs/4 sine sampled at 45° peaks 3 dB above its samples', () => {
    const x = new Float32Array(SR);
    for (let i = 0; i < x.length; i++) x[i] = 0.5 * Math.sin((Math.PI / 2) * i + Math.PI / 4);
    const s = summarize(meter(x));
    expect(s.samplePeakDbfs).toBeCloseTo(20 * Math.log10(0.5 * Math.SQRT1_2), 2);
    expect(s.truePeakDbtp).toBeGreaterThan(20 * Math.log10(0.5) - 0.3);
    expect(s.truePeakDbtp).toBeLessThan(20 * Math.log10(0.5) + 0.1);
  });

  it('is independent of chunking', () => {
    const x = speechLike(8);
    const a = summarize(meter(x, 48));
    const b = summarize(meter(x, 7777));
    expect(a.integratedLufs).toBeCloseTo(b.integratedLufs, 6);
    expect(a.truePeakDbtp).toBeCloseTo(b.truePeakDbtp, 6);
  });

  it('gates silence out of the integrated loudness', () => {
    const tone = sine(997, 0.1, 4);
    const padded = new Float32Array(tone.length + 8 * SR);
    padded.set(tone, 4 * SR);
    // Ungated, 8 s of silence would cost 10·log10(4/12) = -4.8 LU; gating leaves only the partial
    // 400 ms blocks at the two edges (a few tenths).
    const diff = summarize(meter(tone)).integratedLufs - summarize(meter(padded)).integratedLufs;
    expect(diff).toBeGreaterThanOrEqual(0);
    expect(diff).toBeLessThan(0.5);
  });

  it('reports -70 LUFS and -inf peak for digital silence', () => {
    const s = summarize(meter(new Float32Array(SR * 2)));
    expect(s.integratedLufs).toBe(-70);
    expect(s.samplePeakDbfs).toBe(-Infinity);
  });
});

describe('planGain + GainApplier', () => {
  it('hits the target exactly as measured afterwards, never exceeding the ceiling', () => {
    for (const seed of [1, 2, 3]) {
      const x = speechLike(20, seed);
      const env = meter(x);
      const range = findTrim(env, -60)!;
      const plan = planGain(env, range, -16, { ceilingDbfs: -4.5, attackMs: 5, releaseMs: 60 });
      expect(plan.predictedLufs).toBeCloseTo(-16, 1);
      expect(plan.maxReductionDb).toBeGreaterThan(0); // crest factor forces limiting here
      const y = new GainApplier(plan).apply(Float32Array.from(x));
      let peak = 0;
      for (const v of y) peak = Math.max(peak, Math.abs(v));
      // Ceiling applies to the envelope's true peak: the samples stay under it.
      expect(20 * Math.log10(peak)).toBeLessThanOrEqual(-4.5 + 1e-4);
      const after = summarize(meter(y));
      expect(Math.abs(after.integratedLufs - -16)).toBeLessThan(0.1);
      expect(y.length).toBe(range.endSample - range.startSample);
    }
  });

  it('uses plain gain when no limiting is needed', () => {
    const x = sine(997, 0.01, 5); // -43 LUFS, peak -40 dBFS
    const env = meter(x);
    const plan = planGain(env, findTrim(env, -60)!, -30, { ceilingDbfs: -1, attackMs: 5, releaseMs: 60 });
    expect(plan.maxReductionDb).toBe(0);
    expect(plan.gainDb).toBeCloseTo(-30 - (20 * Math.log10(0.01) - 3.01), 1);
  });

  it('applies across arbitrary chunk boundaries exactly like in one piece', () => {
    const x = speechLike(6, 9);
    const env = meter(x);
    const plan = planGain(env, findTrim(env, -60)!, -16, { ceilingDbfs: -4, attackMs: 5, releaseMs: 60 });
    const whole = new GainApplier(plan).apply(Float32Array.from(x));
    const ap = new GainApplier(plan);
    const parts: number[] = [];
    for (let i = 0; i < x.length; i += 3001) parts.push(...ap.apply(Float32Array.from(x.subarray(i, i + 3001))));
    expect(parts.length).toBe(whole.length);
    for (let i = 0; i < whole.length; i += 997) expect(parts[i]).toBeCloseTo(whole[i]!, 6);
  });
});

describe('findTrim', () => {
  it('cuts leading and trailing blocks below the threshold, block-aligned', () => {
    const x = new Float32Array(SR * 3);
    x.set(sine(500, 0.3, 1), SR); // sound from 1.000 s to 2.000 s
    const r = findTrim(meter(x), -60)!;
    expect(r.startSample).toBeGreaterThanOrEqual(SR - 48);
    expect(r.startSample).toBeLessThanOrEqual(SR);
    expect(Math.abs(r.endSample - 2 * SR)).toBeLessThanOrEqual(48);
    expect(findTrim(meter(new Float32Array(SR)), -60)).toBeNull();
  });
});

describe('peaks', () => {
  it('gives `buckets` values of max |sample| in 0..1', () => {
    const x = new Float32Array(8000);
    x[4000] = -0.8;
    const p = computePeaks(x, 800);
    expect(p).toHaveLength(800);
    expect(p[400]).toBe(0.8);
    expect(p.filter((v) => v > 0)).toHaveLength(1);
    expect(computePeaks(new Float32Array(10), 800)).toHaveLength(10);
  });
});

describe('F32Reader', () => {
  it('reassembles floats split across chunk boundaries', () => {
    const src = Float32Array.from([0.5, -0.25, 1, 0.125]);
    const bytes = Buffer.from(src.buffer);
    const r = new F32Reader();
    const out = [...r.read(bytes.subarray(0, 3)), ...r.read(bytes.subarray(3, 9)), ...r.read(bytes.subarray(9))];
    expect(out).toEqual([0.5, -0.25, 1, 0.125]);
  });
});

describe('ebur128 summary parser', () => {
  it('parses the ffmpeg 5.1 summary, including -inf peaks', () => {
    const text = `[Parsed_ebur128_0 @ 0x1] Summary:

  Integrated loudness:
    I:         -19.3 LUFS
    Threshold: -29.6 LUFS

  Loudness range:
    LRA:         2.5 LU
    Threshold:  -39.5 LUFS
    LRA low:    -20.6 LUFS
    LRA high:   -18.1 LUFS

  Sample peak:
    Peak:       -inf dBFS

  True peak:
    Peak:        0.4 dBFS
`;
    expect(parseEbur128Summary(text)).toEqual({ integratedLufs: -19.3, lra: 2.5, samplePeakDbfs: -Infinity, truePeakDbtp: 0.4 });
    expect(parseEbur128Summary('no summary here')).toBeNull();
  });
});

describe('processing profile identity', () => {
  it('profileId is stable, key-order independent and changes with any knob', () => {
    const a = profileIdOf(resolveProfile());
    expect(a).toMatch(/^ap\d+-[0-9a-f]{16}$/);
    expect(profileIdOf(resolveProfile({}))).toBe(a);
    expect(profileIdOf(JSON.parse(JSON.stringify(DEFAULT_PROFILE)) as typeof DEFAULT_PROFILE)).toBe(a);
    expect(profileIdOf(resolveProfile({ opus: { bitrateKbps: 24 } }))).not.toBe(a);
    expect(canonicalJson({ b: 1, a: [2, { d: 1, c: 2 }] })).toBe('{"a":[2,{"c":2,"d":1}],"b":1}');
    expect(mediaKeyOf('ab', a)).toMatch(/^[0-9a-f]{64}$/);
    expect(mediaKeyOf('ab', a)).not.toBe(mediaKeyOf('ac', a));
  });

  it('rejects nonsense profiles', () => {
    expect(() => resolveProfile({ targetLufs: 3 })).toThrow(/targetLufs/);
    expect(() => resolveProfile({ opus: { complexity: 11 } })).toThrow(/complexity/);
  });
});
