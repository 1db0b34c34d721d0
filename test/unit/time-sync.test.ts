import { describe, expect, it } from 'vitest';
import { createOffsetEstimator } from '../../edge-agent/src/time-sync.js';

/** Deterministic PRNG so the queueing noise is the same every run. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

/** Simulate exchanges: agent clock = true·(1+drift) + offset; one-way delays with queueing spikes. */
function simulate(o: { offsetMs: number; driftPpm: number; upMs: number; downMs: number; spikes: number; n: number; periodMs: number }) {
  const est = createOffsetEstimator({ minDriftSpanMs: 10_000 });
  const r = rng(7);
  const local = (trueT: number) => trueT * (1 + o.driftPpm * 1e-6) + o.offsetMs;
  let trueT = 1_000_000;
  for (let i = 0; i < o.n; i++) {
    const q1 = r() < o.spikes ? r() * 200 : r() * 2;
    const q2 = r() < o.spikes ? r() * 200 : r() * 2;
    const t0 = local(trueT);
    const t1 = trueT + o.upMs + q1;
    const t2 = t1 + 0.1;
    const t3 = local(t2 + o.downMs + q2);
    est.add({ t0, t1, t2, t3 });
    trueT += o.periodMs;
  }
  // Error of the controller-time estimate at the last local time.
  const l = local(trueT);
  return { est, error: est.toController(l) - trueT };
}

describe('clock-offset estimator', () => {
  it('recovers a +2 s offset within 1.5 ms despite 30 % queueing spikes', () => {
    const { est, error } = simulate({ offsetMs: 2000, driftPpm: 0, upMs: 5, downMs: 5, spikes: 0.3, n: 32, periodMs: 1000 });
    expect(est.estimate().synced).toBe(true);
    expect(Math.abs(error)).toBeLessThan(1.5);
  });
  it('tracks 100 ppm drift and extrapolates between samples', () => {
    const { est, error } = simulate({ offsetMs: -1500, driftPpm: 100, upMs: 3, downMs: 3, spikes: 0.1, n: 32, periodMs: 2000 });
    expect(est.estimate().driftPpm).toBeGreaterThan(-130);
    expect(est.estimate().driftPpm).toBeLessThan(-70); // controller − agent shrinks as the agent runs fast
    expect(Math.abs(error)).toBeLessThan(2);
  });
  it('is biased by half the path asymmetry, as any two-way method is', () => {
    const { error } = simulate({ offsetMs: 0, driftPpm: 0, upMs: 30, downMs: 10, spikes: 0, n: 16, periodMs: 1000 });
    expect(Math.abs(Math.abs(error) - 10)).toBeLessThan(1.5);
  });
  it('a reconnect storm: no fitted drift of thousands of ppm, and a burst of fast exchanges once the path is quiet', () => {
    // Four exchanges during a storm (100–300 ms of queueing, one direction worse), then the path is quiet.
    const est = createOffsetEstimator({ minDriftSpanMs: 10_000 });
    const offset = 800;
    const at = (trueT: number, up: number, down: number) => ({ t0: trueT + offset, t1: trueT + up, t2: trueT + up + 0.1, t3: trueT + up + 0.1 + down + offset });
    const storm = [[250, 20], [180, 30], [300, 10], [120, 60]] as const;
    let t = 1_000_000;
    for (const [up, down] of storm) { est.add(at(t, up, down)); t += 1000; }
    expect(est.estimate().synced).toBe(true);
    expect(est.wantsMore()).toBe(false); // nothing better seen yet: the steady period
    const stormError = Math.abs(est.estimate().offsetMs - offset);
    expect(stormError).toBeGreaterThan(30);
    // The quiet path: the first steady exchange (16 s later) is far better than the storm's.
    t += 16_000;
    est.add(at(t, 1, 1));
    expect(est.wantsMore()).toBe(true);
    // Fast exchanges (1 s) until the estimate rests on quiet samples; a span ≥ 10 s with storm samples in
    // the fit would fit thousands of ppm: refused (≤ 500 ppm), so extrapolation does not walk away.
    let fast = 0;
    while (est.wantsMore() && fast < 20) { t += 1000; est.add(at(t, 1, 1)); fast++; }
    expect(fast).toBeGreaterThan(0);
    expect(fast).toBeLessThanOrEqual(8);
    expect(Math.abs(est.estimate().driftPpm)).toBeLessThanOrEqual(500);
    expect(Math.abs(est.toController(t + 5000 + offset) - (t + 5000))).toBeLessThan(2);
  });
  it('storm samples do not tilt the drift: only samples near the best delay are fitted', () => {
    // Four exchanges in a storm (12–20 ms, queued upstream: offsets biased by ~6–9 ms), then two quiet
    // ones 16–17 s later. The true drift is 0. The low-delay half of six holds one storm sample; fitted,
    // it would give ~−400 ppm and the estimate would be ~6 ms off 16 s later.
    const est = createOffsetEstimator({ minDriftSpanMs: 10_000 });
    const offset = -300;
    const at = (trueT: number, up: number, down: number) => ({ t0: trueT + offset, t1: trueT + up, t2: trueT + up, t3: trueT + up + down + offset });
    let t = 5_000_000;
    for (const up of [19, 13, 17, 15]) { est.add(at(t, up, 1)); t += 1000; }
    t += 13_000;
    est.add(at(t, 1, 1));
    t += 1000;
    est.add(at(t, 1, 1));
    expect(Math.abs(est.estimate().driftPpm)).toBeLessThan(50);
    expect(Math.abs(est.toController(t + 16_000 + offset) - (t + 16_000))).toBeLessThan(1);
  });
  it('a path whose delays always scatter gets a burst per window of samples, not fast exchanges for ever', () => {
    const est = createOffsetEstimator();
    const r = rng(3);
    let t = 0;
    let fast = 0;
    for (let i = 0; i < 200; i++) {
      const up = 1 + r() * 60; const down = 1 + r() * 60;
      est.add({ t0: t, t1: t + up, t2: t + up, t3: t + up + down });
      if (est.wantsMore()) fast++;
      t += 16_000;
    }
    // Unsynced (3 exchanges), then at most 8 fast ones per window of 32 samples.
    expect(fast).toBeLessThanOrEqual(3 + Math.ceil(200 / 32) * 8);
    expect(fast).toBeGreaterThan(0);
  });
  it('converts both ways consistently', () => {
    const { est } = simulate({ offsetMs: 750, driftPpm: 50, upMs: 2, downMs: 2, spikes: 0, n: 16, periodMs: 2000 });
    const l = 5_000_000;
    expect(est.toLocal(est.toController(l))).toBeCloseTo(l, 3);
  });
});
