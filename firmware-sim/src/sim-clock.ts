import { seededRandom } from '../../audio-pipeline/src/live/test-signals.js';
import type { Clock } from '../../edge-agent/src/clock.js';

/**
 * TRUE time of this machine (ms since the Unix epoch, sub-millisecond). Every timing figure that the
 * benches print (start error, skew, latency) is measured on this clock, never on a simulated one.
 */
export const trueClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
};

/** A clock that knows how fast it runs against true time (1 = exact; 1 + 100e-6 = +100 ppm). */
export interface RatedClock extends Clock {
  /** Current rate d(this clock)/d(true time). */
  rate(): number;
}

export function isRatedClock(c: Clock): c is RatedClock {
  return typeof (c as Partial<RatedClock>).rate === 'function';
}

/**
 * A simulated hardware clock (the cluster's RTC/system clock) that is offset from and drifts against
 * true time. The model is piecewise linear: within a segment that starts at true time T0 with sim time S0,
 *
 *     sim(t) = S0 + (t − T0) · (1 + driftPpm · 1e-6)
 *
 * and the first segment has S0 = T0 + offsetMs, T0 fixed at creation. `step`/`setOffset` start a new
 * segment with a jump (what `date -s` or a hard NTP step does); `setDrift` starts a new segment without a
 * jump (the crystal warmed up). All segments are kept, so `fromTrue`/`toTrue` are exact for any instant,
 * including instants before a later change: a bench can ask "what offset was injected when this sample
 * played" long after the fact.
 */
export interface SimClock extends RatedClock {
  /** The true-time clock this one is derived from. */
  readonly base: Clock;
  /** Current offset: now() − base.now(), ms. */
  offsetMs(): number;
  /** Current drift, parts per million (positive = this clock runs fast). */
  driftPpm(): number;
  /** Step the clock so that, from this instant, now() − true = offsetMs. */
  setOffset(offsetMs: number): void;
  /** Step the clock by deltaMs (positive = jump forward). */
  step(deltaMs: number): void;
  /** Change the rate from this instant on; no jump. */
  setDrift(driftPpm: number): void;
  /** Sim time shown by this clock at true time `trueMs`. */
  fromTrue(trueMs: number): number;
  /**
   * True time at which this clock showed `simMs`. After a backward step a sim time can occur twice;
   * the latest occurrence wins.
   */
  toTrue(simMs: number): number;
  /** Injected offset (sim − true) at true time `trueMs`. */
  offsetAt(trueMs: number): number;
}

export interface SimClockOptions {
  offsetMs?: number;
  driftPpm?: number;
  /** Source of true time; a manual clock in unit tests. Default: `trueClock`. */
  base?: Clock;
}

interface Segment {
  /** True time at which this segment starts. */
  t0: number;
  /** Sim time at t0. */
  s0: number;
  rate: number;
}

/** Keep history bounded for clocks that are changed in a loop by a long bench. */
const MAX_SEGMENTS = 10_000;

function rateOf(driftPpm: number): number {
  if (!Number.isFinite(driftPpm)) throw new RangeError(`driftPpm must be finite, got ${driftPpm}`);
  const r = 1 + driftPpm * 1e-6;
  if (r <= 0) throw new RangeError(`driftPpm ${driftPpm} would stop or reverse the clock`);
  return r;
}

export function createSimClock(opts: SimClockOptions = {}): SimClock {
  const base = opts.base ?? trueClock;
  const offset0 = opts.offsetMs ?? 0;
  if (!Number.isFinite(offset0)) throw new RangeError(`offsetMs must be finite, got ${offset0}`);
  const t0 = base.now();
  const segments: Segment[] = [{ t0, s0: t0 + offset0, rate: rateOf(opts.driftPpm ?? 0) }];

  const current = (): Segment => segments[segments.length - 1]!;

  /** Segment in force at true time t (the first one also covers instants before creation). */
  const segmentAtTrue = (t: number): Segment => {
    for (let i = segments.length - 1; i > 0; i--) {
      const s = segments[i]!;
      if (s.t0 <= t) return s;
    }
    return segments[0]!;
  };

  const fromTrue = (t: number): number => {
    const s = segmentAtTrue(t);
    return s.s0 + (t - s.t0) * s.rate;
  };

  const toTrue = (sim: number): number => {
    // Walk back from the newest segment: segment i covers sim values from s0 up to where segment i+1
    // took over (exclusive), or to +∞ for the newest.
    for (let i = segments.length - 1; i >= 0; i--) {
      const s = segments[i]!;
      const next = segments[i + 1];
      const simEnd = next ? s.s0 + (next.t0 - s.t0) * s.rate : Infinity;
      if (sim >= s.s0 && sim < simEnd) return s.t0 + (sim - s.s0) / s.rate;
      // A forward step skipped this sim time: the clock "passed" it at the instant of the step.
      if (next && sim >= simEnd && sim < next.s0) return next.t0;
    }
    // Before the clock existed: extrapolate the first segment.
    const s = segments[0]!;
    return s.t0 + (sim - s.s0) / s.rate;
  };

  const push = (seg: Segment): void => {
    segments.push(seg);
    if (segments.length > MAX_SEGMENTS) segments.splice(0, segments.length - MAX_SEGMENTS);
  };

  return {
    base,
    now: () => fromTrue(base.now()),
    rate: () => current().rate,
    offsetMs() {
      const t = base.now();
      return fromTrue(t) - t;
    },
    driftPpm: () => (current().rate - 1) * 1e6,
    setOffset(offsetMs) {
      if (!Number.isFinite(offsetMs)) throw new RangeError(`offsetMs must be finite, got ${offsetMs}`);
      const t = base.now();
      push({ t0: t, s0: t + offsetMs, rate: current().rate });
    },
    step(deltaMs) {
      if (!Number.isFinite(deltaMs)) throw new RangeError(`deltaMs must be finite, got ${deltaMs}`);
      const t = base.now();
      push({ t0: t, s0: fromTrue(t) + deltaMs, rate: current().rate });
    },
    setDrift(driftPpm) {
      const rate = rateOf(driftPpm);
      const t = base.now();
      push({ t0: t, s0: fromTrue(t), rate });
    },
    fromTrue,
    toTrue,
    offsetAt: (t) => fromTrue(t) - t,
  };
}

export function isSimClock(c: Clock): c is SimClock {
  const s = c as Partial<SimClock>;
  return isRatedClock(c) && typeof s.toTrue === 'function' && typeof s.fromTrue === 'function' && s.base !== undefined;
}

/** A clock whose time only moves when told to: for unit tests of clock maths. */
export interface ManualClock extends Clock {
  set(ms: number): void;
  advance(ms: number): void;
}

export function createManualClock(startMs = 1_700_000_000_000): ManualClock {
  let t = startMs;
  return {
    now: () => t,
    set(ms) {
      t = ms;
    },
    advance(ms) {
      t += ms;
    },
  };
}

/**
 * Seeded PRNG (mulberry32): reproducible noise for simulated hardware and reproducible loss/jitter in the
 * impairment proxy. Not for anything that needs to be unpredictable. Returns floats in [0, 1).
 */
export function createSeededRandom(seed: number | string = 1): () => number {
  return seededRandom(typeof seed === 'number' ? seed : hashString(seed));
}

/** FNV-1a, so string seeds (node ids) give distinct streams. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
