import { describe, expect, it } from 'vitest';
import { createManualClock, createSeededRandom, createSimClock, isSimClock, trueClock } from '../../firmware-sim/src/sim-clock.js';

const T0 = 1_700_000_000_000;

describe('sim clock', () => {
  it('applies offset and drift: now = T0 + offset + (true − T0)·(1 + drift·1e-6)', () => {
    const base = createManualClock(T0);
    const c = createSimClock({ offsetMs: 1500, driftPpm: 100, base });
    expect(c.now()).toBe(T0 + 1500);
    base.advance(1_000_000); // 1000 s of true time
    expect(c.now()).toBeCloseTo(T0 + 1500 + 1_000_000 * (1 + 100e-6), 3);
    expect(c.offsetMs()).toBeCloseTo(1500 + 100, 3); // +100 ppm over 1000 s = +100 ms
    expect(c.rate()).toBeCloseTo(1.0001, 12);
    expect(c.driftPpm()).toBeCloseTo(100, 3);
  });

  it('negative offset and drift', () => {
    const base = createManualClock(T0);
    const c = createSimClock({ offsetMs: -2000, driftPpm: -50, base });
    base.advance(3_600_000);
    expect(c.offsetMs()).toBeCloseTo(-2000 - 180, 3); // −50 ppm over 1 h = −180 ms
  });

  it('fromTrue and toTrue are inverse and give the injected offset at any instant', () => {
    const base = createManualClock(T0);
    const c = createSimClock({ offsetMs: 250, driftPpm: 5000, base });
    for (const dt of [-10_000, 0, 1234.5, 86_400_000]) {
      const t = T0 + dt;
      expect(c.toTrue(c.fromTrue(t))).toBeCloseTo(t, 3);
      expect(c.offsetAt(t)).toBeCloseTo(250 + dt * 5000e-6, 3);
    }
  });

  it('setDrift re-anchors without a jump and keeps history exact', () => {
    const base = createManualClock(T0);
    const c = createSimClock({ offsetMs: 0, driftPpm: 1000, base });
    base.advance(10_000);
    const before = c.now();
    c.setDrift(-1000);
    expect(c.now()).toBeCloseTo(before, 3); // no jump
    base.advance(10_000);
    expect(c.offsetMs()).toBeCloseTo(10 - 10, 3); // +10 ms then −10 ms
    // An instant before the change still converts with the old rate.
    expect(c.fromTrue(T0 + 5000)).toBeCloseTo(T0 + 5000 * 1.001, 3);
    expect(c.toTrue(T0 + 5000 * 1.001)).toBeCloseTo(T0 + 5000, 3);
    // And one after it with the new rate.
    expect(c.fromTrue(T0 + 15_000)).toBeCloseTo(T0 + 10_010 + 5000 * 0.999, 3);
  });

  it('step and setOffset jump the clock; backward steps resolve to the latest occurrence', () => {
    const base = createManualClock(T0);
    const c = createSimClock({ base });
    base.advance(1000);
    c.step(-500); // sim shows T0+500 again at true T0+1000
    expect(c.now()).toBe(T0 + 500);
    expect(c.offsetAt(T0 + 999)).toBe(0);
    expect(c.offsetAt(T0 + 1000)).toBe(-500);
    // Sim T0+700 was shown at true T0+700 and again at T0+1200: latest wins.
    base.advance(500);
    expect(c.toTrue(T0 + 700)).toBeCloseTo(T0 + 1200, 3);
    // Sim time before the step that was never repeated resolves to the old segment.
    expect(c.toTrue(T0 + 200)).toBeCloseTo(T0 + 200, 3);

    c.setOffset(3000);
    expect(c.offsetMs()).toBe(3000);
    // Sim times jumped over by a forward step map to the instant of the step.
    expect(c.toTrue(T0 + 2000)).toBe(T0 + 1500);
  });

  it('rejects impossible values', () => {
    expect(() => createSimClock({ driftPpm: -1e6 })).toThrow(RangeError);
    expect(() => createSimClock({ offsetMs: Number.NaN })).toThrow(RangeError);
    const c = createSimClock();
    expect(() => c.setDrift(Number.POSITIVE_INFINITY)).toThrow(RangeError);
    expect(() => c.step(Number.NaN)).toThrow(RangeError);
  });

  it('defaults to the machine true clock and is recognised as a SimClock', () => {
    const c = createSimClock({ offsetMs: 10_000 });
    expect(isSimClock(c)).toBe(true);
    expect(isSimClock(trueClock)).toBe(false);
    expect(c.base).toBe(trueClock);
    const t = trueClock.now();
    expect(c.now() - t).toBeGreaterThan(9_990);
    expect(c.now() - t).toBeLessThan(10_100);
  });
});

describe('seeded random', () => {
  it('is reproducible per seed, distinct across seeds, in [0, 1)', () => {
    const a = createSeededRandom(42);
    const b = createSeededRandom(42);
    const c = createSeededRandom('node-7');
    const xs = Array.from({ length: 1000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b()));
    expect(xs.slice(0, 10)).not.toEqual(Array.from({ length: 10 }, () => c()));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.45);
    expect(mean).toBeLessThan(0.55);
  });
});
