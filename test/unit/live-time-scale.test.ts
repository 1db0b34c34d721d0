import { describe, expect, it } from 'vitest';
import { expandInto, findPeriod, removePeriod, resumeFrom, seededRandom, speechLike, startExpansion } from '../../audio-pipeline/src/live/index.js';

/*
 * Pitch-synchronous time scaling (time-scale.ts): the period search, removing a period (accelerate) and
 * repeating one with a fading gain (expand), on signals whose right answer is known.
 */
const RATE = 48_000;

function tone(n: number, hz: number, amp = 0.5, phase0 = 0): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = amp * Math.sin(phase0 + (2 * Math.PI * hz * i) / RATE);
  return x;
}
/** A voice-like harmonic series at f0 (period RATE/f0 samples). */
function voiced(n: number, f0: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) { let v = 0; for (let h = 1; h <= 6; h++) v += (0.3 / h) * Math.sin((2 * Math.PI * f0 * h * i) / RATE + h); x[i] = v; }
  return x;
}
function noise(n: number, seed: number, amp = 0.3): Float32Array {
  const r = seededRandom(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = amp * (2 * r() - 1);
  return x;
}
/** The largest step between neighbouring samples: a splice shows as a step far above the signal's own slope. */
function maxStep(x: Float32Array, from = 1, to = x.length): number {
  let m = 0;
  for (let i = Math.max(1, from); i < to; i++) m = Math.max(m, Math.abs(x[i]! - x[i - 1]!));
  return m;
}

describe('findPeriod', () => {
  it('finds the period of a voiced signal (a whole multiple of it at most), ahead and behind', () => {
    const f0 = 137; // 350.4 samples: not a whole number
    const x = voiced(4000, f0);
    for (const [at, dir] of [[0, 1], [4000, -1]] as const) {
      const p = findPeriod(x, at, dir)!;
      const periods = p.lag / (RATE / f0);
      expect(Math.abs(periods - Math.round(periods))).toBeLessThan(0.01);
      expect(p.corr).toBeGreaterThan(0.99);
    }
  });

  it('says white noise does not repeat, and null when two periods do not fit', () => {
    const p = findPeriod(noise(2000, 3), 0, 1)!;
    expect(p.corr).toBeLessThan(0.5);
    expect(findPeriod(noise(200, 3), 0, 1)).toBeNull();
  });

  it('keeps within the lag bounds it is given', () => {
    const x = tone(4000, 50); // 960-sample period: longer than any allowed lag
    const p = findPeriod(x, 0, 1, 120, 300)!;
    expect(p.lag).toBeGreaterThanOrEqual(120);
    expect(p.lag).toBeLessThanOrEqual(300);
  });
});

describe('removePeriod (accelerate)', () => {
  it('removes one period of a tone seamlessly: the rest is the tone, shorter by the period, with no step', () => {
    const x = tone(3000, 200); // period 240
    const len = removePeriod(x, 3000, 100, 240);
    expect(len).toBe(2760);
    const ref = tone(3000, 200);
    for (let i = 0; i < len; i++) expect(Math.abs(x[i]! - ref[i]!)).toBeLessThan(1e-5);
    expect(maxStep(x, 1, len)).toBeLessThan(maxStep(ref) * 1.01);
  });

  it('a period removed from gliding speech leaves no step larger than the speech has itself', () => {
    const src = speechLike(1, 5);
    let worst = 0;
    for (const at of [4800, 12_000, 20_000, 30_000]) {
      const p = findPeriod(src, at, 1)!;
      if (p.corr < 0.9) continue;
      const x = src.slice();
      removePeriod(x, x.length, at, p.lag);
      worst = Math.max(worst, maxStep(x, at - 1, at + p.lag + 1) / maxStep(src, at - 1, at + 2 * p.lag + 1));
    }
    expect(worst).toBeGreaterThan(0); // at least one voiced spot was tried
    expect(worst).toBeLessThan(1.5);
  });

  it('refuses a period that does not fit', () => {
    expect(() => removePeriod(new Float32Array(500), 500, 100, 240)).toThrow(/does not fit/);
  });
});

describe('expansion (expand)', () => {
  it('continues a tone in phase, then fades it to silence within 60 ms', () => {
    const hist = tone(1440, 200, 0.5);
    const ex = startExpansion(hist, RATE)!;
    expect(ex).not.toBeNull();
    const out = new Float32Array(4800);
    const audible = expandInto(ex, out, 0, out.length);
    const truth = tone(1440 + 4800, 200, 0.5).subarray(1440);
    // The first few ms are the tone itself (gain still ~1).
    for (let i = 0; i < 48; i++) expect(Math.abs(out[i]! - truth[i]!)).toBeLessThan(0.01);
    // No step at the joint with what went out before.
    expect(Math.abs(out[0]! - hist[1439]!)).toBeLessThan(maxStep(hist) * 1.05);
    expect(audible).toBeGreaterThan(0.055 * RATE);
    expect(audible).toBeLessThanOrEqual(0.061 * RATE);
    expect(Math.max(...out.subarray(Math.round(0.061 * RATE)).map(Math.abs))).toBe(0);
  });

  it('fades noise out within 20 ms, and does not start on silence', () => {
    const ex = startExpansion(noise(1440, 9), RATE)!;
    const out = new Float32Array(2400);
    expect(expandInto(ex, out, 0, out.length)).toBeLessThanOrEqual(0.021 * RATE);
    expect(startExpansion(new Float32Array(1440), RATE)).toBeNull();
  });

  it('cross-fades real input back in: starts on the expansion, ends on the input', () => {
    const hist = tone(1440, 200, 0.5);
    const ex = startExpansion(hist, RATE)!;
    const pre = new Float32Array(480);
    expandInto(ex, pre, 0, 480);
    const probe = { ...ex, seg: ex.seg };
    const nextExp = new Float32Array(1);
    expandInto(probe, nextExp, 0, 1); // what the expansion would have said next
    const input = tone(120, 200, 0.5, 2 * Math.PI * 200 * (1440 + 480) / RATE + 1); // out of phase on purpose
    const x = input.slice();
    resumeFrom(ex, x, 0, 120);
    expect(Math.abs(x[0]! - nextExp[0]!)).toBeLessThan(0.02);
    expect(Math.abs(x[119]! - input[119]!)).toBeLessThan(0.02);
  });
});
