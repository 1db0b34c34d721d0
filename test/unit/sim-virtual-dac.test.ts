import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { PcmSource } from '../../edge-agent/src/hardware.js';
import { createManualClock, createSimClock, type ManualClock, type SimClock } from '../../firmware-sim/src/sim-clock.js';
import { createVirtualDac, type Ticker, type VirtualDacOptions } from '../../firmware-sim/src/virtual-dac.js';
import { readWav } from '../../firmware-sim/src/wav.js';

// Deterministic: a manual true clock and a ticker the test fires by hand, so every figure is exact.

const T0 = 1_700_000_000_000;
const SR = 48_000;

function manualTicker(): Ticker & { tick(): void } {
  const subs = new Set<() => void>();
  return {
    add(fn) {
      subs.add(fn);
      return () => subs.delete(fn);
    },
    stop: () => subs.clear(),
    tick() {
      for (const fn of subs) fn();
    },
  };
}

interface Rig {
  base: ManualClock;
  hw: SimClock;
  ticker: ReturnType<typeof manualTicker>;
  /** Advance true time in steps of `stepMs`, ticking after each. */
  run(ms: number, stepMs?: number): void;
}

function rig(offsetMs: number, driftPpm: number): Rig {
  const base = createManualClock(T0);
  const hw = createSimClock({ offsetMs, driftPpm, base });
  const ticker = manualTicker();
  return {
    base,
    hw,
    ticker,
    run(ms, stepMs = 10) {
      for (let t = 0; t < ms; t += stepMs) {
        base.advance(Math.min(stepMs, ms - t));
        ticker.tick();
      }
    },
  };
}

function dacOn(r: Rig, extra: Partial<VirtualDacOptions> = {}) {
  return createVirtualDac({ clock: r.hw, ticker: r.ticker, latencyMs: 20, periodFrames: 480, ...extra });
}

/** Records every read with its frame index and presentation time; writes the global frame index as data. */
function loggingSource() {
  const reads: { frame: number; pt: number; n: number }[] = [];
  let frame = 0;
  const src: PcmSource = {
    read(out, pt) {
      reads.push({ frame, pt, n: out.length });
      for (let i = 0; i < out.length; i++) out[i] = ((frame + i) % 1000) / 1000;
      frame += out.length;
      return out.length;
    },
  };
  return { src, reads };
}

/** A 5 ms click that starts at hardware-clock time `atHw`. */
function clickSource(atHw: number): PcmSource {
  return {
    read(out, pt) {
      for (let i = 0; i < out.length; i++) {
        const t = pt + (i * 1000) / SR;
        out[i] = t >= atHw && t < atHw + 5 ? 0.8 : 0;
      }
      return out.length;
    },
  };
}

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('virtual DAC timing model (manual clocks)', () => {
  it('prefills latencyMs, stamps frame 0 at start + latency, hands presentation times on the hardware clock', () => {
    const r = rig(1000, 0);
    const dac = dacOn(r);
    const { src, reads } = loggingSource();
    dac.attach(src);
    dac.start();
    // The buffer is prefilled with latencyMs (2 periods) at start.
    expect(reads.map((x) => x.frame)).toEqual([0, 480]);
    expect(dac.trueTimeOfFrame(0)).toBe(T0 + 20);
    expect(reads[0]!.pt).toBeCloseTo(T0 + 1000 + 20, 6);
    expect(reads[1]!.pt).toBeCloseTo(T0 + 1000 + 30, 6);
    r.run(1000);
    // 1 s later: everything up to playhead + latency has been read, nothing more.
    const st = dac.stats();
    expect(st.framesPlayed).toBe((1000 - 20) * 48);
    expect(st.framesRead).toBeGreaterThanOrEqual(st.framesPlayed + 960);
    expect(st.framesRead).toBeLessThan(st.framesPlayed + 960 + 480);
    expect(st.underruns).toBe(0);
    expect(st.lateReads).toBe(0);
    // Every presentation time is the hardware clock's reading when that frame sounds.
    for (const x of reads) expect(r.hw.toTrue(x.pt)).toBeCloseTo(dac.trueTimeOfFrame(x.frame), 3);
    dac.stop();
  });

  it('consumes frames at the drifting hardware rate', () => {
    for (const ppm of [5000, -5000]) {
      const r = rig(0, ppm);
      const dac = dacOn(r);
      dac.start();
      r.run(2020);
      // Playhead started at T0 + 20: 2 s of true time at 48 kHz · (1 + ppm·1e-6).
      expect(dac.stats().framesPlayed).toBe(Math.floor(2000 * 48 * (1 + ppm * 1e-6)));
      expect(dac.trueTimeOfFrame(48_000)).toBeCloseTo(T0 + 20 + 1000 / (1 + ppm * 1e-6), 6);
      dac.stop();
    }
  });

  it('follows a rate change at run time and ignores clock steps (the crystal does not jump)', () => {
    const r = rig(0, 0);
    const dac = dacOn(r);
    const { src, reads } = loggingSource();
    dac.attach(src);
    dac.start();
    r.run(1020);
    expect(dac.stats().framesPlayed).toBe(48_000);
    r.hw.setDrift(10_000);
    r.hw.step(250);
    r.run(1000);
    // The DAC notices the new rate at its next tick (10 ms later here): at most 10 ms × 1 % = 4.8 frames.
    expect(Math.abs(dac.stats().framesPlayed - (48_000 + 48_480))).toBeLessThanOrEqual(5);
    // Presentation times still agree with the (stepped, re-rated) hardware clock.
    for (const x of reads.slice(-50)) expect(r.hw.toTrue(x.pt)).toBeCloseTo(dac.trueTimeOfFrame(x.frame), 3);
    dac.stop();
  });

  it('places a click at the true time its presentation time maps to', () => {
    const r = rig(-1234, 2000);
    const dac = dacOn(r);
    const clickHw = r.hw.fromTrue(T0 + 500);
    dac.attach(clickSource(clickHw));
    const seen: number[] = [];
    dac.on('onset', (e) => seen.push(e.trueMs));
    dac.start();
    r.run(1000);
    expect(seen).toHaveLength(1);
    const onset = dac.onsets()[0]!;
    // Within one sample period of the expected true time.
    expect(Math.abs(onset.trueMs - (T0 + 500))).toBeLessThan(1000 / SR + 1e-6);
    expect(Math.abs(onset.hwMs - clickHw)).toBeLessThan(1000 / SR + 1e-6);
    const off = dac.offsets()[0]!;
    expect(off.trueMs - onset.trueMs).toBeGreaterThan(4.9);
    expect(off.trueMs - onset.trueMs).toBeLessThan(5.2);
    dac.stop();
  });

  it('counts underruns and underrun frames', () => {
    const r = rig(0, 0);
    const dac = dacOn(r);
    let calls = 0;
    dac.attach({
      read(out) {
        calls++;
        out.fill(0.5);
        if (calls % 3 === 0) return out.length - 100; // short read
        if (calls === 10) throw new Error('decoder blew up');
        return out.length;
      },
    });
    const missing: number[] = [];
    dac.on('underrun', (e) => missing.push(e.missing));
    dac.start();
    r.run(300);
    const st = dac.stats();
    const short = Math.floor(calls / 3);
    expect(st.underruns).toBe(short + 1);
    expect(st.underrunFrames).toBe(short * 100 + 480);
    expect(st.sourceErrors).toBe(1);
    expect(missing.length).toBe(st.underruns);
    // No source attached → silence, but not an underrun.
    dac.attach(null);
    r.run(100);
    expect(dac.stats().underruns).toBe(st.underruns);
    dac.stop();
  });

  it('catches up after a late timer, and skips (xrun) beyond maxCatchUpMs', () => {
    const r = rig(0, 0);
    const dac = dacOn(r, { maxCatchUpMs: 500 });
    const { src, reads } = loggingSource();
    dac.attach(src);
    dac.start();
    r.run(100);
    r.base.advance(300); // a 300 ms stall
    r.ticker.tick();
    let st = dac.stats();
    expect(st.lateReads).toBeGreaterThan(0);
    expect(st.maxLateMs).toBeGreaterThan(250);
    expect(st.skippedFrames).toBe(0);
    expect(st.framesRead).toBeGreaterThanOrEqual(st.framesPlayed + 960);
    const readsBefore = reads.length;
    r.base.advance(2000); // a 2 s stall: skip rather than pull 2 s at once
    r.ticker.tick();
    st = dac.stats();
    expect(st.skippedFrames).toBeGreaterThan(1.9 * SR);
    expect(reads.length - readsBefore).toBeLessThanOrEqual(3);
    dac.stop();
  });

  it('records a bounded ring with true-time stamps and writes WAV', async () => {
    const r = rig(0, 3000);
    const dac = dacOn(r, { record: { maxSeconds: 0.1, keep: 'last' } });
    const { src } = loggingSource();
    dac.attach(src);
    dac.start();
    r.run(1000);
    const rec = dac.recording()!;
    expect(rec.samples.length).toBe(4800);
    const framesRead = dac.stats().framesRead;
    expect(rec.startFrame).toBe(framesRead - 4800);
    expect(rec.startTrueMs).toBeCloseTo(dac.trueTimeOfFrame(rec.startFrame), 6);
    expect(rec.trueSampleRate).toBeCloseTo(SR * 1.003, 6);
    // Ring order is preserved: sample i is frame startFrame + i.
    for (const i of [0, 1, 2400, 4799]) expect(rec.samples[i]).toBeCloseTo(((rec.startFrame + i) % 1000) / 1000, 6);
    const dir = await mkdtemp(join(tmpdir(), 'vdac-'));
    dirs.push(dir);
    await dac.writeWav(join(dir, 'out.wav'));
    const wav = await readWav(join(dir, 'out.wav'));
    expect(wav.sampleRate).toBe(SR);
    expect(wav.samples.length).toBe(4800);
    expect(wav.samples[100]).toBeCloseTo(rec.samples[100]!, 3);
    dac.stop();
  });

  it('keep: first holds the beginning; no recording → null and writeWav throws', async () => {
    const r = rig(0, 0);
    const dac = dacOn(r, { record: { maxSeconds: 0.05, keep: 'first' } });
    dac.attach(loggingSource().src);
    dac.start();
    r.run(500);
    const rec = dac.recording()!;
    expect(rec.startFrame).toBe(0);
    expect(rec.samples.length).toBe(2400);
    expect(rec.samples[7]).toBeCloseTo(0.007, 6);
    dac.stop();
    const plain = dacOn(r);
    expect(plain.recording()).toBeNull();
    await expect(plain.writeWav('/nonexistent/x.wav')).rejects.toThrow(/recording is off/);
  });

  it('applies gainAt at the true time each sample sounds', () => {
    const r = rig(0, 0);
    const openAt = T0 + 200.5;
    const dac = dacOn(r, { record: true, gainAt: (t) => (t >= openAt ? 0.5 : 0) });
    dac.attach({
      read(out) {
        out.fill(1);
        return out.length;
      },
    });
    dac.start();
    r.run(400);
    const onset = dac.onsets()[0]!;
    expect(onset.trueMs).toBeGreaterThanOrEqual(openAt);
    expect(onset.trueMs - openAt).toBeLessThan(1000 / SR + 1e-6);
    const rec = dac.recording()!;
    expect(Math.max(...rec.samples)).toBe(0.5);
    dac.stop();
  });

  it('stop drains, start resumes frame indices after the drained buffer', () => {
    const r = rig(0, 0);
    const dac = dacOn(r);
    dac.start();
    dac.start(); // idempotent
    r.run(100);
    dac.stop();
    dac.stop();
    const read = dac.stats().framesRead;
    expect(dac.stats().framesPlayed).toBe(read);
    r.base.advance(1000);
    dac.start();
    expect(dac.trueTimeOfFrame(read)).toBeCloseTo(r.base.now() + 20, 6);
    dac.stop();
  });
});
