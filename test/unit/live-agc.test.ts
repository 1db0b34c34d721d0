import { describe, expect, it } from 'vitest';
import { agcProcess, createAgc, createAgcState } from '../../audio-pipeline/src/live/index.js';
import { rmsDb, speechLike } from '../../audio-pipeline/src/live/test-signals.js';

const FS = 48_000;

function tone(peakDbfs: number, seconds: number, hz = 440): Float32Array {
  const a = 10 ** (peakDbfs / 20);
  const x = new Float32Array(Math.round(FS * seconds));
  for (let i = 0; i < x.length; i++) x[i] = a * Math.sin((2 * Math.PI * hz * i) / FS);
  return x;
}

/** Run in 10 ms blocks, as a live source delivers, recording the gain after each block. */
function run(x: Float32Array, opts = {}): { y: Float32Array; gains: number[]; agc: ReturnType<typeof createAgc> } {
  const agc = createAgc(opts);
  const y = new Float32Array(x.length);
  const gains: number[] = [];
  for (let i = 0; i < x.length; i += 480) {
    agc.process(x.subarray(i, i + 480), y.subarray(i, i + 480));
    gains.push(agc.state.gainDb);
  }
  return { y, gains, agc };
}

const peakDb = (y: Float32Array): number => {
  let p = 0;
  for (const v of y) p = Math.max(p, Math.abs(v));
  return 20 * Math.log10(p);
};
const ceiling = 10 ** (-1 / 20);
const maxAbs = (y: Float32Array): number => y.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

describe('live AGC + limiter', () => {
  it('a −6 dBFS tone converges to the −18 dBFS RMS target without overshooting the ceiling', () => {
    const { y, gains } = run(tone(-6, 10));
    expect(rmsDb(y, 3 * FS, 10 * FS)).toBeCloseTo(-18, 1);
    expect(gains.at(-1)!).toBeCloseTo(-18 - (-6 - 3.0103), 1);
    expect(peakDb(y)).toBeLessThanOrEqual(-1);
    // Converged within 3 s (attack 300 ms); no gain ripple on a steady tone.
    const tail = gains.slice(300);
    expect(Math.max(...tail) - Math.min(...tail)).toBeLessThan(0.05);
  });

  it('a −40 dBFS tone is raised by the +20 dB bound, not to the target, and does not overshoot', () => {
    const { y, gains } = run(tone(-40, 20));
    // −40 dBFS peak = −43 dBFS RMS; +25 dB would be needed, +20 is the bound.
    expect(rmsDb(y, 15 * FS, 20 * FS)).toBeCloseTo(-23, 1);
    expect(Math.max(...gains)).toBeLessThanOrEqual(20 + 1e-9);
    // Monotonic rise: slow release, no pumping above the bound.
    for (let i = 1; i < gains.length; i++) expect(gains[i]!).toBeGreaterThanOrEqual(gains[i - 1]! - 1e-9);
    expect(peakDb(y)).toBeLessThanOrEqual(-1);
  });

  it('the limiter holds the ceiling when a loud input hits a high gain (−40 → −6 dBFS step), then the AGC takes over', () => {
    const x = new Float32Array(20 * FS);
    x.set(tone(-40, 10));
    x.set(tone(-6, 10), 10 * FS);
    const { y, agc } = run(x);
    expect(maxAbs(y)).toBeLessThanOrEqual(ceiling);
    expect(peakDb(y.subarray(10 * FS, 10 * FS + 4800))).toBeCloseTo(-1, 2); // the limiter was working
    expect(agc.state.limitedSamples).toBeGreaterThan(0);
    expect(rmsDb(y, 18 * FS, 20 * FS)).toBeCloseTo(-18, 1);
  });

  it('a hard-clipping input (+6 dBFS beyond full scale) never leaves the ceiling, and NaN does not poison the state', () => {
    const x = tone(6, 2);
    x[1000] = NaN;
    const { y, agc } = run(x, { initialGainDb: 20 });
    expect(y.some((v) => Number.isNaN(v))).toBe(false);
    expect(maxAbs(y)).toBeLessThanOrEqual(ceiling);
    expect(agc.state.gainDb).toBeGreaterThanOrEqual(-10);
  });

  it('speech-like input: the gain follows the talker, not the syllables (no pumping), pauses are gated', () => {
    const x = speechLike(16, 3);
    for (let i = 0; i < x.length; i++) x[i] = x[i]! * 0.5;
    const { y, gains } = run(x);
    const tail = gains.slice(gains.length / 2);
    expect(Math.max(...tail) - Math.min(...tail)).toBeLessThan(3);
    expect(rmsDb(y, 8 * FS)).toBeGreaterThan(-21);
    expect(rmsDb(y, 8 * FS)).toBeLessThan(-15);
    // Silence after speech: the gain is held (gate), not raised to +20 dB.
    const quiet = new Float32Array(5 * FS);
    const agc = createAgc();
    agc.process(x);
    const before = agc.state.gainDb;
    agc.process(quiet);
    expect(Math.abs(agc.state.gainDb - before)).toBeLessThan(0.5);
    agc.process(quiet);
    expect(Math.abs(agc.state.gainDb - before)).toBeLessThan(0.5); // and it stays there
  });

  it('is deterministic and block-size independent (pure over its state)', () => {
    const x = speechLike(3, 8);
    const a = createAgcState();
    const ya = agcProcess(a, x);
    const b = createAgcState();
    const yb = new Float32Array(x.length);
    for (let i = 0; i < x.length; i += 137) agcProcess(b, x.subarray(i, i + 137), yb.subarray(i, i + 137));
    let diff = 0;
    for (let i = 0; i < x.length; i++) diff = Math.max(diff, Math.abs(ya[i]! - yb[i]!));
    expect(diff).toBe(0);
    expect(b.gainDb).toBe(a.gainDb);
    expect(() => createAgcState({ minGainDb: 5, maxGainDb: 0 })).toThrow(RangeError);
    expect(() => createAgcState({ ceilingDbfs: 1 })).toThrow(RangeError);
  });
});
