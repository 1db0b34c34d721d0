/**
 * The bench's click track and its detector, shared by the feeder (bench process) and the reader.
 *
 * Track: a 200 Hz bed at −20 dBFS (so an underrun shows as digital silence) plus a 10 ms Hann-windowed
 * chirp 500→4000 Hz (audio-pipeline/src/live/test-signals.ts) every CLICK_PERIOD_MS from CLICK_FIRST_MS
 * on. Deterministic: sample i of the track is a pure function of i. The first click comes 1.5 s in so an
 * attention chime at session start (700 ms) never overlaps a click.
 */
import { chirp } from '../../audio-pipeline/src/live/test-signals.js';

export const RATE = 48_000;
export const CLICK_PERIOD_MS = 500;
export const CLICK_FIRST_MS = 1500;
export const BED_HZ = 200;
export const BED_AMP = 0.1;
export const TEMPLATE = chirp(10, 500, 4000, 0.5, RATE);
const PERIOD = (CLICK_PERIOD_MS * RATE) / 1000;
const FIRST = (CLICK_FIRST_MS * RATE) / 1000;

/** Sample indices (track time) at which clicks start, within the first `samples` samples. */
export function clickStarts(samples: number): number[] {
  const out: number[] = [];
  for (let at = FIRST; at + TEMPLATE.length < samples; at += PERIOD) out.push(at);
  return out;
}

/** Fill `out` with track samples [from, from + out.length). */
export function trackBlock(from: number, out: Float32Array): Float32Array {
  for (let j = 0; j < out.length; j++) {
    const i = from + j;
    let v = BED_AMP * Math.sin((2 * Math.PI * BED_HZ * i) / RATE);
    if (i >= FIRST) {
      const k = (i - FIRST) % PERIOD;
      if (k < TEMPLATE.length) v += TEMPLATE[k]!;
    }
    out[j] = v;
  }
  return out;
}

export function toS16(x: Float32Array): Buffer {
  const b = Buffer.allocUnsafe(x.length * 2);
  for (let i = 0; i < x.length; i++) b.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(x[i]! * 32767))), i * 2);
  return b;
}

/** Normalised cross-correlation of TEMPLATE at lag k in x (−1..1). */
function ncc(x: Float32Array, k: number): number {
  const m = TEMPLATE.length;
  if (k < 0 || k + m > x.length) return -Infinity;
  let s = 0;
  let ex = 0;
  let et = 0;
  for (let i = 0; i < m; i++) {
    const v = x[k + i]!;
    s += v * TEMPLATE[i]!;
    ex += v * v;
    et += TEMPLATE[i]! * TEMPLATE[i]!;
  }
  return ex > 0 ? s / Math.sqrt(ex * et) : 0;
}

/**
 * Click positions (fractional sample index of the chirp's first sample) in a recorded stream. A
 * first-difference filter suppresses the 200 Hz bed (gain 0.026) and keeps the chirp's upper half (gain
 * ≥ 0.2); a threshold crossing finds the candidate, then the normalised cross-correlation with the chirp
 * over ±8 ms, with parabolic interpolation, gives the position to a fraction of a sample.
 */
export function detectClicks(x: Float32Array, threshold = 0.04): number[] {
  const out: number[] = [];
  const refractory = Math.round(0.2 * RATE);
  const win = Math.round(0.008 * RATE);
  let next = 1;
  for (let n = 1; n < x.length; n++) {
    if (n < next) continue;
    if (Math.abs(x[n]! - x[n - 1]!) < threshold) continue;
    let best = -Infinity;
    let bk = n;
    for (let k = n - TEMPLATE.length - win; k <= n + win; k++) {
      const s = ncc(x, k);
      if (s > best) { best = s; bk = k; }
    }
    if (best > 0.5) {
      const l = ncc(x, bk - 1);
      const r = ncc(x, bk + 1);
      let frac = 0;
      const den = l - 2 * best + r;
      if (Number.isFinite(l) && Number.isFinite(r) && den < 0) frac = (0.5 * (l - r)) / den;
      out.push(bk + frac);
      next = bk + refractory;
    } else {
      next = n + Math.round(0.002 * RATE);
    }
  }
  return out;
}

/** Runs of digital silence (|x| < 2e-3 for ≥ minMs) as [start, length] in samples: underruns / gaps. */
export function silentRuns(x: Float32Array, from: number, to: number, minMs = 5): [number, number][] {
  const min = Math.round((minMs * RATE) / 1000);
  const out: [number, number][] = [];
  let start = -1;
  for (let i = Math.max(0, from); i < Math.min(to, x.length); i++) {
    if (Math.abs(x[i]!) < 2e-3) { if (start < 0) start = i; } else {
      if (start >= 0 && i - start >= min) out.push([start, i - start]);
      start = -1;
    }
  }
  if (start >= 0 && Math.min(to, x.length) - start >= min) out.push([start, Math.min(to, x.length) - start]);
  return out;
}
