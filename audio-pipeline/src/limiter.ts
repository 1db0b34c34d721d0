/**
 * Fast loudness normalisation with a predictable limiter.
 *
 * ffmpeg's loudnorm reaches the target by running at 192 kHz (~25× realtime here). A plain
 * "gain + alimiter" graph is fast but misses the target on speech with a high crest factor: the
 * limiter eats 2–3 LU that nobody accounts for. So we plan the limiter ourselves:
 *
 * 1. While the analysis pass decodes the input (48 kHz mono float), `PcmMeter` (meter.ts) keeps,
 *    per 1 ms block, the peak and the K-weighted energy (BS.1770-4).
 * 2. `planGain` simulates a look-ahead limiter on that envelope (the gain curve is per block, the
 *    exact curve that will be applied) and bisects the make-up gain until the gated integrated
 *    loudness of the limited signal hits the target.
 * 3. `GainApplier` applies that same curve sample by sample (linear between block boundaries) while
 *    the render pass streams PCM from the decoder to the encoders.
 *
 * Because the simulated and the applied curve are the same, the prediction is accurate to a few
 * hundredths of a LU (K-weighting of a slowly varying gain ≈ gain × K-weighting); the codec's own
 * loudness and peak changes are caught by verifying the decoded output.
 * The curve never exceeds, inside block j, the gain that keeps block j's peak at the ceiling, so
 * the pre-encode peak is guaranteed; codec overshoot is the job of ProcessingProfile.codecHeadroomDb
 * and of the verify-and-retry loop in ingest.ts.
 */
import { BLOCK, HOP_BLOCKS, hopEnergies, integratedFromHops, type Envelope } from './meter.js';

export { BLOCK, SAMPLE_RATE, type Envelope } from './meter.js';

export interface TrimRange {
  /** First kept sample (block aligned). */
  startSample: number;
  /** One past the last kept sample. */
  endSample: number;
}

/**
 * Leading/trailing silence: blocks whose sample peak is at or below `thresholdDbfs`.
 * Returns null when every block is below the threshold.
 */
export function findTrim(env: Envelope, thresholdDbfs: number): TrimRange | null {
  const thr = 10 ** (thresholdDbfs / 20);
  let first = -1;
  for (let j = 0; j < env.blocks; j++) {
    if (env.peak[j]! > thr) {
      first = j;
      break;
    }
  }
  if (first < 0) return null;
  let last = first;
  for (let j = env.blocks - 1; j > first; j--) {
    if (env.peak[j]! > thr) {
      last = j;
      break;
    }
  }
  return { startSample: first * BLOCK, endSample: Math.min(env.samples, (last + 1) * BLOCK) };
}

export interface LimiterSettings {
  /** Peak ceiling, dBFS (applied to the envelope's per-block peak: true peak where measured). */
  ceilingDbfs: number;
  /**
   * Extra per-block reduction of the ceiling, dB ≥ 0, indexed from the first block of the range:
   * where the decoded codec output overshot on a previous attempt (codec-aware repair).
   */
  ceilingCutDb?: Float32Array;
  /** Upper bound of the make-up gain, dB (default 30): beyond it the target is declared unreachable. */
  maxGainDb?: number;
  attackMs: number;
  releaseMs: number;
}

export interface GainPlan {
  range: TrimRange;
  /** Static make-up gain, dB. */
  gainDb: number;
  ceilingDbfs: number;
  /** Predicted integrated loudness of the limited signal. */
  predictedLufs: number;
  /** Deepest limiter gain reduction, dB (0 = limiter idle). */
  maxReductionDb: number;
  /** Linear limiter gain at each block boundary of the range (length = blocks in range + 1). */
  boundaryGains: Float32Array;
}

function rangeBlocks(range: TrimRange): { b0: number; n: number } {
  const b0 = Math.floor(range.startSample / BLOCK);
  const n = Math.ceil((range.endSample - range.startSample) / BLOCK);
  return { b0, n };
}

/**
 * Limiter gain curve for a static gain `g` (linear), per block of the range: `req[j]` is the gain
 * that keeps block j at the ceiling; look-ahead (attack) is a linear ramp over `attackBlocks` ahead
 * of each limited block; release is an exponential recovery (time constant `releaseMs`).
 * Writes boundary gains into `bg` (length n+1; b_j = min(g_{j-1}, g_j), so the linear ramp inside
 * block j never exceeds g_j ≤ req_j) and, fused in the same pass, the gain-weighted K energy of
 * every 100 ms hop into `hops`. Returns the deepest reduction (linear, ≤ 1).
 */
function evaluateCurve(
  env: Envelope,
  b0: number,
  n: number,
  g: number,
  ceiling: Float32Array | number,
  attackBlocks: number,
  releaseCoef: number,
  req: Float32Array,
  bg: Float32Array,
  hops: Float64Array,
): number {
  const peak = env.peak;
  const energy = env.energy;
  let limited = 0;
  for (let j = 0; j < n; j++) {
    const p = peak[b0 + j]! * g;
    const c = typeof ceiling === 'number' ? ceiling : ceiling[j]!;
    if (p > c) {
      req[j] = c / p;
      limited++;
    } else req[j] = 1;
  }
  const nh = hops.length;
  if (limited === 0) {
    bg.fill(1, 0, n + 1);
    for (let h = 0; h < nh; h++) {
      let e = 0;
      for (let j = h * HOP_BLOCKS, end = j + HOP_BLOCKS; j < end; j++) e += energy[b0 + j]!;
      hops[h] = e;
    }
    return 1;
  }
  const A = Math.max(1, attackBlocks);
  // Limited blocks within the look-ahead window [j, j+A): lets unlimited stretches skip the scan.
  let inWindow = 0;
  for (let k = 0; k < Math.min(n, A); k++) if (req[k]! < 1) inWindow++;
  let prev = 1;
  let prevBoundary = 1;
  let min = 1;
  let hopE = 0;
  for (let j = 0; j < n; j++) {
    let a = 1;
    if (inWindow > 0) {
      a = req[j]!;
      const lim = Math.min(n - 1, j + A - 1);
      for (let k = j + 1; k <= lim; k++) {
        const r = req[k]!;
        if (r < 1) {
          const ramp = r + ((1 - r) * (k - j)) / A;
          if (ramp < a) a = ramp;
        }
      }
    }
    // slide the window: drop j, add j+A
    if (req[j]! < 1) inWindow--;
    if (j + A < n && req[j + A]! < 1) inWindow++;
    const released = prev + (1 - prev) * releaseCoef;
    const gj = a < released ? a : released;
    if (gj < min) min = gj;
    // boundary j = min(g_{j-1}, g_j); block j-1 spans boundaries j-1..j
    const b = j === 0 ? gj : prev < gj ? prev : gj;
    bg[j] = b;
    if (j > 0) {
      const x = prevBoundary;
      hopE += energy[b0 + j - 1]! * ((x * x + x * b + b * b) / 3);
      if (j % HOP_BLOCKS === 0) {
        const h = j / HOP_BLOCKS - 1;
        if (h < nh) hops[h] = hopE;
        hopE = 0;
      }
    }
    prevBoundary = b;
    prev = gj;
  }
  bg[n] = prev;
  hopE += energy[b0 + n - 1]! * ((prevBoundary * prevBoundary + prevBoundary * prev + prev * prev) / 3);
  if (n % HOP_BLOCKS === 0) {
    const h = n / HOP_BLOCKS - 1;
    if (h < nh) hops[h] = hopE;
  }
  return min;
}

/** Integrated loudness of a range as the model sees it (no gain, no limiting). */
export function modelLoudness(env: Envelope, range: TrimRange): number {
  const { b0, n } = rangeBlocks(range);
  if (n <= 0) return -70;
  return loudnessOf(env, b0, n, hopEnergies(env, b0, n), 1);
}

function loudnessOf(env: Envelope, b0: number, n: number, hops: Float64Array, gainSq: number, bg?: Float32Array): number {
  if (n < 4 * HOP_BLOCKS) {
    // Shorter than one 400 ms gating block: BS.1770 has no complete block; use the whole range.
    let e = 0;
    for (let j = 0; j < n; j++) {
      const a = bg ? bg[j]! : 1;
      const b = bg ? bg[j + 1]! : 1;
      e += env.energy[b0 + j]! * ((a * a + a * b + b * b) / 3);
    }
    return e > 0 ? -0.691 + 10 * Math.log10((e * gainSq) / (n * BLOCK)) : -70;
  }
  return integratedFromHops(hops, gainSq);
}

/**
 * The search behind planGain, as a generator that yields after each evaluation of the limiter
 * model so that an async caller can let the event loop breathe (10 min of audio = 600 k blocks).
 * Loudness of the limited signal is non-decreasing in the make-up gain: bracket, then
 * Illinois (modified regula falsi) to 0.002 dB.
 */
function* searchGain(env: Envelope, range: TrimRange, targetLufs: number, lim: LimiterSettings): Generator<void, GainPlan, void> {
  const { b0, n } = rangeBlocks(range);
  const req = new Float32Array(n);
  const bg = new Float32Array(n + 1);
  const hops = new Float64Array(Math.floor(n / HOP_BLOCKS));
  const ceilingLin = 10 ** (lim.ceilingDbfs / 20);
  let ceiling: Float32Array | number = ceilingLin;
  if (lim.ceilingCutDb) {
    const c = new Float32Array(n);
    for (let j = 0; j < n; j++) c[j] = ceilingLin * 10 ** (-(lim.ceilingCutDb[j] ?? 0) / 20);
    ceiling = c;
  }
  const attackBlocks = Math.max(1, Math.round(lim.attackMs));
  const releaseCoef = 1 - Math.exp(-1 / Math.max(1, lim.releaseMs));
  const evalAt = (gainDb: number): { f: number; min: number } => {
    const g = 10 ** (gainDb / 20);
    const min = evaluateCurve(env, b0, n, g, ceiling, attackBlocks, releaseCoef, req, bg, hops);
    return { f: loudnessOf(env, b0, n, hops, g * g, bg) - targetLufs, min };
  };

  const base = modelLoudness(env, range);
  if (!(base > -70)) throw new RangeError('planGain: the range has no measurable loudness');
  const cap = lim.maxGainDb ?? 30;
  let lo = Math.min(targetLufs - base, cap);
  let flo = evalAt(lo).f;
  yield;
  let chosen = lo;
  if (flo < -0.001 && lo < cap) {
    // Limiting costs loudness: bracket upwards (never past the cap), then refine.
    let hi = Math.min(cap, lo - flo * 2 + 1);
    let fhi = evalAt(hi).f;
    yield;
    while (fhi < 0 && hi < cap) {
      lo = hi;
      flo = fhi;
      hi = Math.min(cap, hi + 6);
      fhi = evalAt(hi).f;
      yield;
    }
    if (fhi < 0) chosen = hi;
    else {
      let side = 0;
      chosen = hi;
      for (let i = 0; i < 40 && hi - lo > 0.002; i++) {
        const x = hi - (fhi * (hi - lo)) / (fhi - flo);
        const fx = evalAt(x).f;
        yield;
        chosen = x;
        if (Math.abs(fx) < 0.001) break;
        if (fx < 0) {
          lo = x;
          flo = fx;
          if (side === -1) fhi /= 2;
          side = -1;
        } else {
          hi = x;
          fhi = fx;
          if (side === 1) flo /= 2;
          side = 1;
        }
      }
    }
  }
  // Leave the curve of the chosen gain in `bg`.
  const final = evalAt(chosen);
  return {
    range,
    gainDb: chosen,
    ceilingDbfs: lim.ceilingDbfs,
    predictedLufs: final.f + targetLufs,
    maxReductionDb: final.min < 1 ? -20 * Math.log10(final.min) : 0,
    boundaryGains: bg,
  };
}

/** Find the make-up gain that puts the limited signal at `targetLufs` (synchronous). */
export function planGain(env: Envelope, range: TrimRange, targetLufs: number, lim: LimiterSettings): GainPlan {
  const it = searchGain(env, range, targetLufs, lim);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
  }
}

/** planGain, yielding to the event loop between model evaluations (use it in a server). */
export async function planGainAsync(env: Envelope, range: TrimRange, targetLufs: number, lim: LimiterSettings): Promise<GainPlan> {
  const it = searchGain(env, range, targetLufs, lim);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * Applies a GainPlan to the decoded stream (the same 48 kHz mono samples the envelope saw, from
 * sample 0): drops samples outside the trim range and scales the rest in place.
 */
export class GainApplier {
  private pos = 0;
  private readonly g: number;
  private readonly start: number;
  private readonly end: number;

  constructor(private readonly plan: GainPlan) {
    this.g = 10 ** (plan.gainDb / 20);
    this.start = plan.range.startSample;
    this.end = plan.range.endSample;
  }

  /** Returns the (possibly shorter) processed view of `x` that belongs to the output. */
  apply(x: Float32Array): Float32Array {
    const from = this.pos;
    const to = from + x.length;
    this.pos = to;
    const s = Math.max(from, this.start);
    const e = Math.min(to, this.end);
    if (e <= s) return x.subarray(0, 0);
    const out = x.subarray(s - from, e - from);
    const bg = this.plan.boundaryGains;
    const g = this.g;
    let n = s - this.start;
    for (let i = 0; i < out.length; i++, n++) {
      const j = (n / BLOCK) | 0;
      const frac = (n - j * BLOCK) / BLOCK;
      const a = bg[j]!;
      const b = bg[j + 1] ?? a;
      out[i] = out[i]! * g * (a + (b - a) * frac);
    }
    return out;
  }
}

