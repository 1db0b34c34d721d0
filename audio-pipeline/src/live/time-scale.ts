/**
 * Pitch-synchronous time scaling of live input (48 kHz mono float), the two operations a low-latency
 * voice path needs when its input does not arrive on time (WebRTC's NetEq does the same on the receive
 * side, calling them "expand" and "accelerate"):
 *
 * - expand: the input is late, so a frame must leave without all of its samples. Instead of digital
 *   silence (a hole the listener hears as a click), the last pitch period is repeated with a fading
 *   gain; a steady tone or a held vowel goes on seamlessly, noise fades out within ~20 ms, and a long
 *   stall still ends in silence. When real input comes back it is cross-faded in.
 * - accelerate: the late input then sits queued behind what was synthesised, and every later word
 *   would sound that much later. One pitch period is removed where the signal repeats itself (the
 *   segment is cross-faded with the next period), so the backlog shrinks without cutting a syllable
 *   and without changing the pitch.
 *
 * The period is found by normalised cross-correlation, first on a 4:1 decimated copy (cheap), then
 * refined at full rate around the best coarse lag.
 */

/** Shortest period searched: 2.5 ms (400 Hz). */
export const MIN_PERIOD = 120;
/** Longest period searched: 15 ms (67 Hz, below any speaking voice). */
export const MAX_PERIOD = 720;
const DECIMATE = 4;

/** Normalised cross-correlation of x[a..a+n) and x[b..b+n); 1 when both are silent, 0 when only one is. */
export function ncc(x: Float32Array, a: number, b: number, n: number): number {
  let xy = 0;
  let xx = 0;
  let yy = 0;
  for (let i = 0; i < n; i++) {
    const u = x[a + i]!;
    const v = x[b + i]!;
    xy += u * v;
    xx += u * u;
    yy += v * v;
  }
  const tiny = 1e-10 * n;
  if (xx < tiny && yy < tiny) return 1;
  if (xx < tiny || yy < tiny) return 0;
  return xy / Math.sqrt(xx * yy);
}

export interface Period {
  /** Samples. */
  lag: number;
  /** Normalised correlation of the two neighbouring periods, −1…1. */
  corr: number;
}

/**
 * The best period L in [minLag, maxLag] of the signal around `at`:
 * - dir 1 (ahead): x[at..at+L) against x[at+L..at+2L), which must lie within x;
 * - dir −1 (behind): x[at−2L..at−L) against x[at−L..at).
 * maxLag is clipped to what x holds. Returns null when not even minLag fits.
 */
export function findPeriod(x: Float32Array, at: number, dir: 1 | -1, minLag = MIN_PERIOD, maxLag = MAX_PERIOD): Period | null {
  const room = dir === 1 ? x.length - at : at;
  maxLag = Math.min(maxLag, Math.floor(room / 2));
  if (maxLag < minLag) return null;
  // Coarse: a box-filtered 4:1 copy of the 2·maxLag samples concerned.
  const dn = Math.floor((2 * maxLag) / DECIMATE);
  const d = new Float32Array(dn);
  const start = dir === 1 ? at : at - dn * DECIMATE;
  for (let i = 0; i < dn; i++) {
    const j = start + i * DECIMATE;
    d[i] = (x[j]! + x[j + 1]! + x[j + 2]! + x[j + 3]!) * 0.25;
  }
  let bestC = -2;
  let bestL = 0;
  const lo = Math.ceil(minLag / DECIMATE);
  const hi = Math.floor(maxLag / DECIMATE);
  for (let l = lo; l <= hi; l++) {
    const c = dir === 1 ? ncc(d, 0, l, l) : ncc(d, dn - 2 * l, dn - l, l);
    if (c > bestC) { bestC = c; bestL = l; }
  }
  if (bestL === 0) return null;
  // Fine: full rate around the coarse lag.
  let best: Period = { lag: 0, corr: -2 };
  for (let L = Math.max(minLag, bestL * DECIMATE - DECIMATE); L <= Math.min(maxLag, bestL * DECIMATE + DECIMATE); L++) {
    const c = dir === 1 ? ncc(x, at, at + L, L) : ncc(x, at - 2 * L, at - L, L);
    if (c > best.corr) best = { lag: L, corr: c };
  }
  return best.lag ? best : null;
}

/**
 * Remove one period of L samples at x[at]: x[at..at+L) becomes a cross-fade from itself into
 * x[at+L..at+2L) (so it starts where x[at−1] left off and ends where x[at+2L] goes on), and the rest
 * moves L samples forward. Returns the new length.
 */
export function removePeriod(x: Float32Array, len: number, at: number, L: number): number {
  if (L <= 0 || at + 2 * L > len) throw new RangeError(`removePeriod: ${L} at ${at} does not fit in ${len}`);
  for (let i = 0; i < L; i++) {
    const w = (i + 0.5) / L;
    x[at + i] = x[at + i]! * (1 - w) + x[at + L + i]! * w;
  }
  x.copyWithin(at + L, at + 2 * L, len);
  return len - L;
}

/** An expansion in progress: the period being repeated, where in it we are, and the fading gain. */
export interface Expansion {
  seg: Float32Array;
  pos: number;
  gain: number;
  /** Gain lost per sample. */
  step: number;
}

/** A voiced (periodic) signal fades over this long; 4 × 15 ms periods at most. */
export const EXPAND_FADE_VOICED = 0.06;
/** An unvoiced one (noise, fricatives) sooner: repeating a noise segment would buzz. */
export const EXPAND_FADE_UNVOICED = 0.02;
/** Real input after an expansion is cross-faded in over this many samples (2.5 ms). */
export const RESUME_CROSSFADE = 120;

/**
 * Start an expansion from `hist`, the samples that went out last (its end is the latest); null when
 * they are silent (silence goes on as silence) or too short to hold two periods.
 */
export function startExpansion(hist: Float32Array, rate: number): Expansion | null {
  let e = 0;
  for (let i = hist.length - MAX_PERIOD; i < hist.length; i++) e += hist[i]! * hist[i]!;
  if (e < 1e-10 * MAX_PERIOD) return null;
  const p = findPeriod(hist, hist.length, -1);
  if (!p) return null;
  const voiced = p.corr >= 0.7;
  return { seg: hist.slice(hist.length - p.lag), pos: 0, gain: 1, step: 1 / ((voiced ? EXPAND_FADE_VOICED : EXPAND_FADE_UNVOICED) * rate) };
}

/** Write n samples of the expansion at out[off]; returns how many of them were not silent. */
export function expandInto(ex: Expansion, out: Float32Array, off: number, n: number): number {
  let audible = 0;
  for (let j = 0; j < n; j++) {
    out[off + j] = ex.seg[ex.pos]! * ex.gain;
    if (ex.gain > 0) audible++;
    ex.pos = ex.pos + 1 === ex.seg.length ? 0 : ex.pos + 1;
    ex.gain = Math.max(0, ex.gain - ex.step);
  }
  return audible;
}

/** Cross-fade the expansion out and real input in over out[off..off+n) (the input is already there). */
export function resumeFrom(ex: Expansion, out: Float32Array, off: number, n: number): void {
  for (let j = 0; j < n; j++) {
    const w = (j + 0.5) / n;
    out[off + j] = out[off + j]! * w + ex.seg[ex.pos]! * ex.gain * (1 - w);
    ex.pos = ex.pos + 1 === ex.seg.length ? 0 : ex.pos + 1;
    ex.gain = Math.max(0, ex.gain - ex.step);
  }
}
