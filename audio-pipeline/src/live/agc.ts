/**
 * Automatic gain control and peak limiter for live microphone input (speech), applied before the Opus
 * encoder. Ingest normalises files to EBU R128 offline (normalize.ts); a live microphone cannot wait
 * for a second pass, so this is the streaming equivalent for speech:
 *
 * 1. Level detector: short-term mean square, one-pole smoothed with `levelWindowMs` (≈ a syllable or
 *    two), evaluated per 1 ms control block.
 * 2. Gate: a fast detector (50 ms) decides whether someone is talking; while it is below `gateDbfs`
 *    (pauses, room noise) neither the level nor the gain moves, so silence between sentences neither
 *    drags the level estimate down nor pumps the gain up.
 * 3. Gain computer: wanted gain = target − level, bounded to [minGainDb, maxGainDb]; the gain moves
 *    towards it in the dB domain with `attackMs` when it must fall (input got louder) and the slower
 *    `releaseMs` when it must rise, so the gain follows the talker, not each syllable (no pumping).
 *    The gain is interpolated linearly across each control block (no zipper noise).
 * 4. Limiter without look-ahead (a live path cannot afford the delay): instant attack, exponential
 *    release, ceiling `ceilingDbfs`. Since the limiter gain never exceeds ceiling/|x| for the current
 *    sample, the output never exceeds the ceiling — a hard guarantee, at the price of some distortion
 *    on the first sample of a transient (the AGC's slow gain makes that rare).
 *
 * The processing is a pure function of (state, input): `agcProcess` mutates only the state object it
 * is given, so it is deterministic and testable block by block.
 */

export interface AgcOptions {
  sampleRate?: number;
  /** Target short-term RMS level, dBFS; default −18. */
  targetDbfs?: number;
  /** Gain bounds, dB; default −10 .. +20. */
  minGainDb?: number;
  maxGainDb?: number;
  /** Time constant for falling gain (input got louder), ms; default 300. */
  attackMs?: number;
  /** Time constant for rising gain (input got quieter), ms; default 2000. */
  releaseMs?: number;
  /** Level detector time constant, ms; default 400. */
  levelWindowMs?: number;
  /** Below this short-term level the gain is held; default −50 dBFS. */
  gateDbfs?: number;
  /** Limiter ceiling, dBFS sample peak; default −1. */
  ceilingDbfs?: number;
  /** Limiter release time constant, ms; default 80. */
  limiterReleaseMs?: number;
  /** Gain at start, dB; default 0. */
  initialGainDb?: number;
}

export interface AgcState {
  readonly opts: Readonly<Required<AgcOptions>>;
  /** Smoothed mean square of the input while active (linear), NaN before the first active block. */
  meanSquare: number;
  /** Fast (50 ms) mean square, for the gate. */
  fastMeanSquare: number;
  /** Current AGC gain, dB. */
  gainDb: number;
  /** Current limiter gain (linear, ≤ 1). */
  limiterGain: number;
  /** Samples processed. */
  samples: number;
  /** Samples whose limiter reduced the level by more than 0.01 dB. */
  limitedSamples: number;
  /** Position inside the current 1 ms control block, and its running sum of squares. */
  blockPos: number;
  blockSum: number;
  /** Linear gain at the start of the current block and its per-sample increment. */
  gainLin: number;
  gainStep: number;
}

const CONTROL_MS = 1;

function resolve(o: AgcOptions): Required<AgcOptions> {
  const r = {
    sampleRate: o.sampleRate ?? 48_000,
    targetDbfs: o.targetDbfs ?? -18,
    minGainDb: o.minGainDb ?? -10,
    maxGainDb: o.maxGainDb ?? 20,
    attackMs: o.attackMs ?? 300,
    releaseMs: o.releaseMs ?? 2000,
    levelWindowMs: o.levelWindowMs ?? 400,
    gateDbfs: o.gateDbfs ?? -50,
    ceilingDbfs: o.ceilingDbfs ?? -1,
    limiterReleaseMs: o.limiterReleaseMs ?? 80,
    initialGainDb: o.initialGainDb ?? 0,
  };
  if (!(r.minGainDb <= r.maxGainDb)) throw new RangeError('AGC minGainDb must be ≤ maxGainDb');
  if (!(r.ceilingDbfs <= 0)) throw new RangeError('AGC ceilingDbfs must be ≤ 0');
  for (const k of ['attackMs', 'releaseMs', 'levelWindowMs', 'limiterReleaseMs', 'sampleRate'] as const) {
    if (!(r[k] > 0)) throw new RangeError(`AGC ${k} must be > 0`);
  }
  return r;
}

export function createAgcState(opts: AgcOptions = {}): AgcState {
  const o = resolve(opts);
  const g = Math.min(o.maxGainDb, Math.max(o.minGainDb, o.initialGainDb));
  return { opts: o, meanSquare: NaN, fastMeanSquare: 0, gainDb: g, limiterGain: 1, samples: 0, limitedSamples: 0, blockPos: 0, blockSum: 0, gainLin: 10 ** (g / 20), gainStep: 0 };
}

const dbOf = (ms: number): number => 10 * Math.log10(Math.max(ms, 1e-20));

/**
 * Process one block (any length): output[i] = limiter(input[i] · agcGain). `output` may be `input`
 * (in place). Returns `output`.
 */
export function agcProcess(st: AgcState, input: Float32Array, output: Float32Array = new Float32Array(input.length)): Float32Array {
  if (output.length < input.length) throw new RangeError('AGC output shorter than input');
  const o = st.opts;
  const fs = o.sampleRate;
  const blockLen = Math.max(1, Math.round((fs * CONTROL_MS) / 1000));
  const blockSec = blockLen / fs;
  const levelCoef = 1 - Math.exp(-blockSec / (o.levelWindowMs / 1000));
  const fastCoef = 1 - Math.exp(-blockSec / 0.05);
  const attackCoef = 1 - Math.exp(-blockSec / (o.attackMs / 1000));
  const releaseCoef = 1 - Math.exp(-blockSec / (o.releaseMs / 1000));
  const limRelease = 1 - Math.exp(-1 / ((o.limiterReleaseMs / 1000) * fs));
  const ceiling = 10 ** (o.ceilingDbfs / 20);
  // Outputs are float32: clamp to the largest float32 not above the ceiling, so the stored value obeys it too.
  const ceil32 = Math.fround(ceiling) > ceiling ? Math.fround(ceiling * (1 - 2 ** -23)) : Math.fround(ceiling);
  let lim = st.limiterGain;
  let g = st.gainLin;
  let limited = 0;
  for (let i = 0; i < input.length; i++) {
    let x = input[i]!;
    if (x !== x) x = 0; // NaN from a broken source must not poison the state
    st.blockSum += x * x;
    g += st.gainStep;
    const y = x * g;
    const a = y < 0 ? -y : y;
    const need = a > ceiling ? ceiling / a : 1;
    if (need < lim) lim = need; // instant attack: this sample already fits
    else lim += (need - lim) * limRelease;
    if (lim < 0.99885) limited++; // > 0.01 dB of reduction
    let v = y * lim;
    // Rounding can leave v a hair above the ceiling; the guarantee is exact.
    if (v > ceil32) v = ceil32;
    else if (v < -ceil32) v = -ceil32;
    output[i] = v;
    if (++st.blockPos === blockLen) {
      // Control update once per block: level, then the gain target for the next block.
      const ms = st.blockSum / blockLen;
      st.blockSum = 0;
      st.blockPos = 0;
      st.fastMeanSquare += (ms - st.fastMeanSquare) * fastCoef;
      if (dbOf(st.fastMeanSquare) > o.gateDbfs) {
        st.meanSquare = st.meanSquare === st.meanSquare ? st.meanSquare + (ms - st.meanSquare) * levelCoef : ms;
        const level = dbOf(st.meanSquare);
        const want = Math.min(o.maxGainDb, Math.max(o.minGainDb, o.targetDbfs - level));
        const coef = want < st.gainDb ? attackCoef : releaseCoef;
        st.gainDb += (want - st.gainDb) * coef;
      }
      const next = 10 ** (st.gainDb / 20);
      st.gainStep = (next - g) / blockLen;
    }
  }
  st.gainLin = g;
  st.limiterGain = lim;
  st.samples += input.length;
  st.limitedSamples += limited;
  return output;
}

export interface Agc {
  process(input: Float32Array, output?: Float32Array): Float32Array;
  readonly state: AgcState;
  reset(): void;
}

/** Convenience wrapper holding the state. */
export function createAgc(opts: AgcOptions = {}): Agc {
  let st = createAgcState(opts);
  return {
    process: (input, output) => agcProcess(st, input, output),
    get state() {
      return st;
    },
    reset() {
      st = createAgcState(opts);
    },
  };
}
