/**
 * Clock-offset estimation to the controller, NTP-style (RFC 5905 §8): each exchange gives
 * offset θ = ((t1 − t0) + (t2 − t3)) / 2 and round-trip δ = (t3 − t0) − (t2 − t1).
 * Queueing only ever adds delay, so samples with the smallest δ carry the least error (the "clock filter"
 * idea of RFC 5905 §10): we take the median offset of the lowest-delay third of a sliding window.
 * Drift (rate error, ppm) is the least-squares slope of those filtered offsets against local time, and
 * the estimate is extrapolated with it between samples. An asymmetric path still biases θ by half the
 * asymmetry: no two-way method can see that.
 */
export interface SyncSample { t0: number; t1: number; t2: number; t3: number }

export interface OffsetEstimate {
  /** Controller time − local clock, ms, at local time `at`. */
  offsetMs: number;
  rttMs: number;
  driftPpm: number;
  samples: number;
  synced: boolean;
  at: number;
}

/** Where the agent's "controller time" comes from: this MQTT estimator, or chrony/GPS in the field. */
export interface ClockSource {
  /** Controller time for a local clock reading. */
  toController(localMs: number): number;
  toLocal(controllerMs: number): number;
  estimate(): OffsetEstimate;
}

export interface EstimatorOptions {
  window?: number;
  /** Samples needed before `synced`. */
  minSamples?: number;
  /** Drift is fitted only over at least this span of local time. */
  minDriftSpanMs?: number;
  /**
   * A fitted drift beyond this is noise, not a clock (crystals are within ±100 ppm): it is not used, the
   * previous one stays. Queueing noise over a short span otherwise fits thousands of ppm, and the
   * extrapolated estimate walks away by tens of ms a second. Default 500 ppm.
   */
  maxDriftPpm?: number;
}

export function createOffsetEstimator(opts: EstimatorOptions = {}) {
  const window = opts.window ?? 32;
  const minSamples = opts.minSamples ?? 4;
  const minDriftSpan = opts.minDriftSpanMs ?? 20_000;
  const maxDrift = opts.maxDriftPpm ?? 500;
  /** Delays of the samples the estimate rests on (the lowest-delay third): best and worst. */
  let basis = { min: 0, max: 0 };
  /** Fast exchanges left in the current burst (wantsMore); a new burst only once a window of samples has passed. */
  let burstLeft = 0;
  let sinceBurst = Infinity;
  const BURST = 8;
  const samples: { at: number; offset: number; delay: number }[] = [];
  let est: OffsetEstimate = { offsetMs: 0, rttMs: 0, driftPpm: 0, samples: 0, synced: false, at: 0 };

  function recompute() {
    const sorted = [...samples].sort((a, b) => a.delay - b.delay);
    const best = sorted.slice(0, Math.max(1, Math.ceil(sorted.length / 3)));
    const byOffset = best.map((s) => s.offset).sort((a, b) => a - b);
    const mid = byOffset.length >> 1;
    const median = byOffset.length % 2 ? byOffset[mid]! : (byOffset[mid - 1]! + byOffset[mid]!) / 2;
    const at = best.reduce((a, s) => a + s.at, 0) / best.length;
    let driftPpm = est.driftPpm;
    const first = samples[0]!.at;
    const last = samples[samples.length - 1]!.at;
    // Fit the low-delay half, and of it only samples near the best delay: a storm's samples (queueing
    // in one direction biases their offsets by ms) would tilt the line by hundreds of ppm, and the
    // extrapolation then walks away between exchanges. Too few good samples over too short a span:
    // the previous drift stays.
    const minDelay = Math.min(...samples.map((x) => x.delay));
    const fit = [...samples].sort((a, b) => a.delay - b.delay).slice(0, Math.ceil(samples.length / 2))
      .filter((x) => x.delay <= minDelay + Math.max(5, minDelay));
    const fitSpan = fit.length ? Math.max(...fit.map((x) => x.at)) - Math.min(...fit.map((x) => x.at)) : 0;
    if (last - first >= minDriftSpan && samples.length >= 6 && fit.length >= 3 && fitSpan >= minDriftSpan) {
      const mx = fit.reduce((a, s) => a + s.at, 0) / fit.length;
      const my = fit.reduce((a, s) => a + s.offset, 0) / fit.length;
      let sxy = 0; let sxx = 0;
      for (const s of fit) { sxy += (s.at - mx) * (s.offset - my); sxx += (s.at - mx) ** 2; }
      if (sxx > 0) {
        const fitted = (sxy / sxx) * 1e6;
        if (Math.abs(fitted) <= maxDrift) driftPpm = fitted;
      }
    }
    basis = { min: best[0]!.delay, max: best[best.length - 1]!.delay };
    // At most BURST fast exchanges per window of samples: a path whose delays always scatter must not
    // sync at 1 Hz (at most 8 extra exchanges per 32).
    const scattered = basis.max - basis.min > Math.max(5, 0.5 * basis.min);
    sinceBurst++;
    if (!scattered) burstLeft = 0;
    else if (burstLeft > 0) burstLeft--;
    else if (sinceBurst >= window && samples.length >= minSamples) { burstLeft = BURST; sinceBurst = 0; }
    est = { offsetMs: median, rttMs: best[0]!.delay, driftPpm, samples: samples.length, synced: samples.length >= minSamples, at };
  }

  const self = {
    add(s: SyncSample): { offset: number; delay: number } {
      const offset = ((s.t1 - s.t0) + (s.t2 - s.t3)) / 2;
      const delay = Math.max(0, (s.t3 - s.t0) - (s.t2 - s.t1));
      samples.push({ at: s.t3, offset, delay });
      if (samples.length > window) samples.shift();
      recompute();
      return { offset, delay };
    },
    /** Offset at a local time, extrapolated with the drift estimate. */
    offsetAt(localMs: number): number {
      return est.offsetMs + (est.driftPpm * 1e-6) * (localMs - est.at);
    },
    toController(localMs: number) { return localMs + self.offsetAt(localMs); },
    toLocal(controllerMs: number) {
      // Solve c = l + off(l) by fixed-point iteration: each step shrinks the error by the drift
      // (≤ 1e-3), so three steps are exact to far below a microsecond.
      let l = controllerMs - est.offsetMs;
      for (let i = 0; i < 3; i++) l = controllerMs - self.offsetAt(l);
      return l;
    },
    estimate: () => est,
    /**
     * Should the next exchange come soon? Yes while unsynced, and for a burst of up to 8 exchanges when
     * the estimate rests on samples much worse than its best one (delays spread beyond max(5 ms, half
     * the best)): the path got quieter than the samples we hold (a fleet that synced during a reconnect
     * storm, then the storm passed), so fast exchanges replace them. Otherwise the median of the best
     * third keeps the storm's error for minutes.
     */
    wantsMore(): boolean {
      if (!est.synced) return true;
      return burstLeft > 0;
    },
    reset() { basis = { min: 0, max: 0 }; burstLeft = 0; sinceBurst = Infinity; samples.length = 0; est = { offsetMs: 0, rttMs: 0, driftPpm: 0, samples: 0, synced: false, at: 0 }; },
  };
  return self;
}
export type OffsetEstimator = ReturnType<typeof createOffsetEstimator>;
