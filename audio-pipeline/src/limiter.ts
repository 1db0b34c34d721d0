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
 * Compute the limiter's boundary gains for a static gain `g` (linear). Writes into `out`
 * (length n+1) and returns the deepest reduction (linear, ≤ 1).
 * Attack: a linear ramp over `attackMs` ahead of each peak (look-ahead); release: exponential
 * recovery with time constant `releaseMs`.
 */
function limiterCurve(
  env: Envelope,
  b0: number,
  n: number,
  g: number,
  ceiling: number,
  cut: Float32Array | null,
  attackBlocks: number,
  releaseCoef: number,
  req: Float32Array,
  out: Float32Array,
): number {
  let any = false;
  for (let j = 0; j < n; j++) {
    const p = env.peak[b0 + j]! * g;
    const c = cut ? ceiling * cut[j]! : ceiling;
    if (p > c) {
      req[j] = c / p;
      any = true;
    } else req[j] = 1;
  }
  if (!any) {
    out.fill(1, 0, n + 1);
    return 1;
  }
  let prev = 1;
  let min = 1;
  const A = Math.max(1, attackBlocks);
  // `out` temporarily holds per-block gains in [0, n); boundaries are derived afterwards.
  for (let j = 0; j < n; j++) {
    // Look-ahead: the gain must already be on its way down for a peak within A blocks.
    let a = req[j]!;
    const lim = Math.min(n - 1, j + A - 1);
    for (let k = j + 1; k <= lim; k++) {
      const r = req[k]!;
      if (r < 1) {
        const ramp = r + ((1 - r) * (k - j)) / A;
        if (ramp < a) a = ramp;
      }
    }
    const released = prev + (1 - prev) * releaseCoef;
    const gj = a < released ? a : released;
    out[j] = gj;
    prev = gj;
    if (gj < min) min = gj;
  }
  // Boundary gains: b_j = min(g_{j-1}, g_j), so that inside block j the interpolated gain never
  // exceeds g_j ≤ req_j (sample-peak guarantee).
  const last = out[n - 1]!;
  let before = out[0]!;
  for (let j = 1; j < n; j++) {
    const cur = out[j]!;
    out[j] = before < cur ? before : cur;
    before = cur;
  }
  out[n] = last;
  return min;
}

/** Predicted integrated loudness of the range after static gain `g` and boundary gains `bg` (null = none). */
function predict(env: Envelope, b0: number, n: number, g: number, bg: Float32Array | null): number {
  const hops = hopEnergies(env, b0, n, bg ? (j) => gainSq(bg, j) : undefined);
  if (n < 4 * HOP_BLOCKS) {
    // Shorter than one 400 ms gating block: BS.1770 has no complete block; use the whole range.
    let e = 0;
    for (let j = 0; j < n; j++) e += env.energy[b0 + j]! * (bg ? gainSq(bg, j) : 1);
    return e > 0 ? -0.691 + 10 * Math.log10((e * g * g) / (n * BLOCK)) : -70;
  }
  return integratedFromHops(hops, g * g);
}

/** Mean of the squared linear ramp between two boundary gains. */
function gainSq(bg: Float32Array, j: number): number {
  const a = bg[j]!;
  const b = bg[j + 1]!;
  return (a * a + a * b + b * b) / 3;
}

/** Integrated loudness of a range as the model sees it (no gain, no limiting). */
export function modelLoudness(env: Envelope, range: TrimRange): number {
  const { b0, n } = rangeBlocks(range);
  if (n <= 0) return -70;
  return predict(env, b0, n, 1, null);
}

/**
 * Find the make-up gain that puts the limited signal at `targetLufs`.
 * Returns the plan (gain, curve, predicted loudness). Bisection: the limited loudness is
 * non-decreasing in the make-up gain.
 */
export function planGain(env: Envelope, range: TrimRange, targetLufs: number, lim: LimiterSettings): GainPlan {
  const { b0, n } = rangeBlocks(range);
  const req = new Float32Array(n);
  const curve = new Float32Array(n + 1);
  const ceiling = 10 ** (lim.ceilingDbfs / 20);
  const attackBlocks = Math.max(1, Math.round(lim.attackMs));
  const releaseCoef = 1 - Math.exp(-1 / Math.max(1, lim.releaseMs));
  let cut: Float32Array | null = null;
  if (lim.ceilingCutDb) {
    cut = new Float32Array(n);
    for (let j = 0; j < n; j++) cut[j] = 10 ** (-(lim.ceilingCutDb[j] ?? 0) / 20);
  }

  const base = predict(env, b0, n, 1, null);
  const evalAt = (gainDb: number): { lufs: number; min: number } => {
    const g = 10 ** (gainDb / 20);
    const min = limiterCurve(env, b0, n, g, ceiling, cut, attackBlocks, releaseCoef, req, curve);
    return { lufs: predict(env, b0, n, g, curve), min };
  };
  if (!(base > -70)) throw new RangeError('planGain: the range has no measurable loudness');
  let lo = targetLufs - base;
  let chosen = lo;
  const first = evalAt(lo);
  if (first.min < 1 && Math.abs(first.lufs - targetLufs) > 0.005) {
    // Limiting costs loudness: search upwards (at most +24 dB of make-up).
    let hi = lo + 24;
    if (evalAt(hi).lufs < targetLufs) {
      chosen = hi;
    } else {
      for (let i = 0; i < 30 && hi - lo > 0.002; i++) {
        const mid = (lo + hi) / 2;
        if (evalAt(mid).lufs < targetLufs) lo = mid;
        else hi = mid;
      }
      chosen = (lo + hi) / 2;
    }
  }
  // Recompute the curve for the chosen gain (the scratch curve holds the last evaluation).
  const final = evalAt(chosen);
  return {
    range,
    gainDb: chosen,
    ceilingDbfs: lim.ceilingDbfs,
    predictedLufs: final.lufs,
    maxReductionDb: final.min < 1 ? -20 * Math.log10(final.min) : 0,
    boundaryGains: curve,
  };
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

