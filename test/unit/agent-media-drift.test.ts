/**
 * Drift correction of the agent's airing program: the DAC emits 48,000 samples per HARDWARE second, so a
 * clock that runs +100 ppm plays a 10-minute item 60 ms short in controller time unless the program
 * tracks controller time. Simulated clocks (firmware-sim SimClock over a manual true clock) and the
 * agent's own offset estimator fed with exact exchanges; the DAC's pull is emulated block by block with
 * presentation times on the hardware clock.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SAMPLE_RATE } from '../../edge-agent/src/hardware.js';
import { prepareAiringProgram, type AiringProgram, type ProgramTimebase } from '../../audio-pipeline/src/airing-program.js';
import { createOffsetEstimator } from '../../edge-agent/src/time-sync.js';
import { createManualClock, createSimClock, type ManualClock, type SimClock } from '../../firmware-sim/src/sim-clock.js';
import type { AiringItem } from '../../schemas/src/index.js';
import { makeToneOpus, mediaItem, type MediaFile } from '../helpers/agent-playout.js';

const BLOCK = 480;
const MS_PER_BLOCK = (BLOCK / SAMPLE_RATE) * 1000;
const SYNC_EVERY_MS = 16_000;

/** A hardware clock drifting against true (= controller) time, and the agent's estimate of it. */
function rig(driftPpm: number, offsetMs = 1500) {
  const truth: ManualClock = createManualClock(1_780_000_000_000);
  const hw: SimClock = createSimClock({ base: truth, offsetMs, driftPpm });
  // The ±2000 ppm cases stress the program's sample slip beyond any crystal: let the estimator believe
  // such a drift (by default it refuses fits beyond 500 ppm as noise).
  const est = createOffsetEstimator({ maxDriftPpm: 5000 });
  // Exact exchanges (zero path delay): what a perfect network would give the agent's estimator.
  const sync = () => { const l = hw.now(); const c = truth.now(); est.add({ t0: l, t1: c, t2: c, t3: l }); };
  let lastSync = -Infinity;
  const maybeSync = () => { if (truth.now() - lastSync >= SYNC_EVERY_MS) { sync(); lastSync = truth.now(); } };
  // Two minutes of syncing before air, as an agent that has been up a while.
  for (let i = 0; i < 8; i++) { sync(); truth.advance(SYNC_EVERY_MS); }
  lastSync = truth.now() - SYNC_EVERY_MS;
  return { truth, hw, est, maybeSync };
}

/**
 * Pull `seconds` of the program the way the virtual DAC does: block k sounds at hardware time
 * hwStart + k·10 ms (the DAC is paced by the hardware crystal). Returns the samples and, per block,
 * the hardware time it sounds at.
 */
function drive(r: ReturnType<typeof rig>, p: AiringProgram, seconds: number, onBlock?: (pt: number, k: number) => void) {
  const hwStart = r.hw.now();
  const blocks = Math.ceil((seconds * 1000) / MS_PER_BLOCK);
  const out = new Float32Array(blocks * BLOCK);
  for (let k = 0; k < blocks; k++) {
    const pt = hwStart + k * MS_PER_BLOCK;
    r.truth.set(r.hw.toTrue(pt) - 20); // the DAC asks ~20 ms (its buffer) before the block sounds
    r.maybeSync();
    const buf = out.subarray(k * BLOCK, (k + 1) * BLOCK);
    const n = p.read(buf, pt);
    buf.fill(0, n);
    onBlock?.(pt, k);
    if (p.ended()) return { out: out.subarray(0, k * BLOCK + n), hwStart };
  }
  return { out, hwStart };
}

const firstLoud = (x: Float32Array, from: number, thr = 1e-3) => { for (let i = from; i < x.length; i++) if (Math.abs(x[i]!) >= thr) return i; return -1; };

const noMedia = { pathOf: () => undefined };
const TEN_MIN = 600_000;
const tenMinutesThenChime: AiringItem[] = [{ kind: 'silence', durationMs: TEN_MIN }, { kind: 'chime', chime: 'start', durationMs: 1000 }];

describe('airing program tracks controller time (drift correction)', () => {
  for (const ppm of [100, -100]) {
    it(`after 10 minutes at ${ppm > 0 ? '+' : ''}${ppm} ppm the played position matches controller time within 1 ms`, async () => {
      const r = rig(ppm);
      const tb: ProgramTimebase = { toController: (l) => r.est.toController(l) };
      const p = await prepareAiringProgram({ id: 'long', items: tenMinutesThenChime, media: noMedia, timebase: tb });
      const ctlStart = r.hw.toTrue(r.hw.now()); // controller (= true) time of the first sample
      let worstMs = 0;
      let maxChangePerBlock = 0;
      let prevChanges = 0;
      const { out, hwStart } = drive(r, p, 601, (pt) => {
        // Position reached once the block has sounded vs where controller time says it should be.
        const ctlEnd = r.hw.toTrue(pt + MS_PER_BLOCK);
        worstMs = Math.max(worstMs, Math.abs(p.positionMs() - (ctlEnd - ctlStart)));
        const d = p.drift();
        const changes = d.droppedFrames + d.repeatedFrames;
        maxChangePerBlock = Math.max(maxChangePerBlock, changes - prevChanges);
        prevChanges = changes;
      });
      // The chime that follows the ten minutes sounds at controller time start + 10 min.
      const f = firstLoud(out, (TEN_MIN - 1000) * (SAMPLE_RATE / 1000));
      expect(f).toBeGreaterThan(0);
      const chimeCtl = r.hw.toTrue(hwStart + (f / SAMPLE_RATE) * 1000);
      const chimeExpected = ctlStart + TEN_MIN + 1000 / SAMPLE_RATE; // its first non-zero sample is its second
      expect(Math.abs(chimeCtl - chimeExpected)).toBeLessThan(1);
      expect(worstMs).toBeLessThan(1);
      // ~100 ppm of 600 s of samples: 2,880 single-sample corrections, one at a time, the right way round.
      const d = p.drift();
      const expected = Math.abs(ppm) * 1e-6 * TEN_MIN * (SAMPLE_RATE / 1000);
      if (ppm > 0) { expect(d.repeatedFrames).toBeGreaterThan(expected * 0.95); expect(d.droppedFrames).toBeLessThan(expected * 0.02); }
      else { expect(d.droppedFrames).toBeGreaterThan(expected * 0.95); expect(d.repeatedFrames).toBeLessThan(expected * 0.02); }
      expect(maxChangePerBlock).toBe(1);
      expect(d.reanchors).toBe(0);
    });
  }

  it('without a timebase the same item ends 60 ms early in controller time (what the correction removes)', async () => {
    const r = rig(100);
    const p = await prepareAiringProgram({ id: 'raw', items: tenMinutesThenChime, media: noMedia });
    const ctlStart = r.hw.toTrue(r.hw.now());
    const { out, hwStart } = drive(r, p, 601);
    const f = firstLoud(out, (TEN_MIN - 1000) * (SAMPLE_RATE / 1000));
    const chimeCtl = r.hw.toTrue(hwStart + (f / SAMPLE_RATE) * 1000);
    expect(ctlStart + TEN_MIN - chimeCtl).toBeGreaterThan(55);
    expect(p.drift()).toEqual({ droppedFrames: 0, repeatedFrames: 0, errorFrames: 0, reanchors: 0, skippedFrames: 0 });
  });

  it('follows a step of the offset estimate by re-anchoring, not by seconds of slewing', async () => {
    const r = rig(0);
    let step = 0;
    const tb: ProgramTimebase = { toController: (l) => r.est.toController(l) + step };
    const p = await prepareAiringProgram({ id: 'step', items: [{ kind: 'silence', durationMs: 5000 }], media: noMedia, timebase: tb });
    const errs: number[] = [];
    drive(r, p, 5, (_pt, k) => { if (k === 100) step = 800; if (k > 100) errs.push(p.drift().errorFrames); });
    expect(p.drift().reanchors).toBe(1);
    expect(p.drift().droppedFrames + p.drift().repeatedFrames).toBe(0);
    expect(Math.max(...errs.map(Math.abs))).toBeLessThan(1);
  });
});

describe('held to its scheduled instant (dueAt)', () => {
  it('catches up a start 20 ms off the current estimate (the estimate moved after the airing was armed)', async () => {
    const r = rig(80);
    const ctlStart = r.hw.toTrue(r.hw.now());
    const p = await prepareAiringProgram({ id: 'due', items: tenMinutesThenChime.map((it, i) => (i === 0 ? { ...it, durationMs: 60_000 } : it)), media: noMedia, timebase: { toController: (l) => r.est.toController(l) }, dueAt: ctlStart - 20 });
    const { out, hwStart } = drive(r, p, 61.5);
    const f = firstLoud(out, 59_000 * (SAMPLE_RATE / 1000));
    // Where the chime would be had the first sample been on time: 60 s after the due instant.
    expect(Math.abs(r.hw.toTrue(hwStart + (f / SAMPLE_RATE) * 1000) - (ctlStart - 20 + 60_000 + 1000 / SAMPLE_RATE))).toBeLessThan(1);
    // 20 ms = 960 samples to catch up, less the ~230 the +80 ppm crystal gives back over the minute.
    expect(p.drift().droppedFrames - p.drift().repeatedFrames).toBeGreaterThan(600);
  });

  it('keeps a deliberate late start (beyond the slew range) as it is', async () => {
    const r = rig(0);
    const ctlStart = r.hw.toTrue(r.hw.now());
    const p = await prepareAiringProgram({ id: 'late', items: tenMinutesThenChime.map((it, i) => (i === 0 ? { ...it, durationMs: 10_000 } : it)), media: noMedia, timebase: { toController: (l) => r.est.toController(l) }, dueAt: ctlStart - 2000 });
    const { out, hwStart } = drive(r, p, 11.5);
    const f = firstLoud(out, 9000 * (SAMPLE_RATE / 1000));
    expect(Math.abs(r.hw.toTrue(hwStart + (f / SAMPLE_RATE) * 1000) - (ctlStart + 10_000 + 1000 / SAMPLE_RATE))).toBeLessThan(1);
    expect(p.drift()).toMatchObject({ droppedFrames: 0, reanchors: 0 });
  });
});

describe('an xrun (the sink skipped frames) is skipped in the programme too', () => {
  it('stays on controller time after the DAC skipped 1.2 s instead of playing 1.2 s late', async () => {
    const r = rig(60);
    const p = await prepareAiringProgram({ id: 'xrun', items: tenMinutesThenChime.map((it, i) => (i === 0 ? { ...it, durationMs: 20_000 } : it)), media: noMedia, timebase: { toController: (l) => r.est.toController(l) } });
    const hwStart = r.hw.now();
    const ctlStart = r.hw.toTrue(hwStart);
    const out = new Float32Array(BLOCK);
    let chimeCtl: number | undefined;
    for (let k = 0; k < 2500 && chimeCtl === undefined; k++) {
      if (k >= 500 && k < 620) continue; // blocks 500..619 never asked for: 1.2 s of silence at the DAC
      const pt = hwStart + k * MS_PER_BLOCK;
      r.truth.set(r.hw.toTrue(pt) - 20);
      r.maybeSync();
      out.fill(0);
      p.read(out, pt);
      const f = firstLoud(out, 0);
      if (f >= 0) chimeCtl = r.hw.toTrue(pt + (f / SAMPLE_RATE) * 1000);
    }
    expect(Math.abs(p.drift().skippedFrames - 1.2 * SAMPLE_RATE)).toBeLessThan(10); // 1.2 s of hardware time, +60 ppm
    expect(p.drift().reanchors).toBe(0);
    expect(Math.abs(chimeCtl! - (ctlStart + 20_000 + 1000 / SAMPLE_RATE))).toBeLessThan(1);
  });
});

describe('a step of the hardware clock while playing', () => {
  it('is not mistaken for lost audio: the programme plays on, unbroken, on controller time', async () => {
    const r = rig(-40);
    const p = await prepareAiringProgram({ id: 'hwstep', items: tenMinutesThenChime.map((it, i) => (i === 0 ? { ...it, durationMs: 20_000 } : it)), media: noMedia, timebase: { toController: (l) => r.est.toController(l) } });
    const t0 = r.truth.now() + 20;
    const rate = r.hw.rate();
    let chimeTrue: number | undefined;
    const out = new Float32Array(BLOCK);
    for (let k = 0; k < 2500 && chimeTrue === undefined; k++) {
      // The DAC runs on the crystal: block k sounds at a fixed TRUE time, whatever the clock reading says.
      const trueAt = t0 + (k * MS_PER_BLOCK) / rate;
      if (k === 500) r.hw.step(30_000); // `date -s` 30 s ahead, 5 s into the airing
      r.truth.set(trueAt - 20);
      r.maybeSync();
      out.fill(0);
      p.read(out, r.hw.fromTrue(trueAt));
      const f = firstLoud(out, 0);
      if (f >= 0) chimeTrue = trueAt + ((f / SAMPLE_RATE) * 1000) / rate;
    }
    expect(p.drift().skippedFrames).toBe(0);
    expect(p.drift().reanchors).toBeGreaterThanOrEqual(1);
    // Controller time is true time here: the chime is still 20 s after the first sample.
    expect(Math.abs(chimeTrue! - (t0 + 20_000 + 1000 / SAMPLE_RATE))).toBeLessThan(1);
  });
});

describe('drift correction on decoded Opus media', () => {
  let dir: string;
  let tone: MediaFile;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-drift-'));
    tone = await makeToneOpus(dir, 'tone', { seconds: 4, hz: 440, amplitude: 0.5 });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const ppm of [2000, -2000]) {
    it(`slips single samples at ${ppm} ppm without clicks and ends on controller time`, async () => {
      const r = rig(ppm);
      const media = { pathOf: (sha: string) => (sha === tone.sha256 ? tone.file : undefined) };
      // An exaggerated drift (and slew limit) so four seconds of decoded audio carry hundreds of slips.
      const p = await prepareAiringProgram({ id: 'media', items: [mediaItem(tone, 'm-tone')], media, timebase: { toController: (l) => r.est.toController(l) }, maxSlewPpm: 5000 });
      const ctlStart = r.hw.toTrue(r.hw.now());
      let endPt = 0;
      const { out } = drive(r, p, 5, (pt) => { endPt = pt; });
      const d = p.drift();
      expect(d.droppedFrames + d.repeatedFrames).toBeGreaterThan(0.9 * 2000e-6 * 4 * SAMPLE_RATE);
      // Every source sample was played (dropped or not): the item lasts 4 s of CONTROLLER time.
      expect(p.positionMs()).toBeCloseTo(4000, 0);
      const lastCtl = r.hw.toTrue(endPt + (((out.length % BLOCK) || BLOCK) / SAMPLE_RATE) * 1000);
      expect(Math.abs(lastCtl - (ctlStart + 4000))).toBeLessThan(1);
      // A dropped or repeated sample of a 440 Hz sine moves the next step by at most one more step:
      // no discontinuity beyond twice the largest natural one (0.5·2π·440/48k ≈ 0.029).
      const body = out.subarray(SAMPLE_RATE / 10, out.length - SAMPLE_RATE / 10);
      let maxStep = 0;
      for (let i = 1; i < body.length; i++) maxStep = Math.max(maxStep, Math.abs(body[i]! - body[i - 1]!));
      expect(maxStep).toBeLessThan(2.2 * 0.5 * 2 * Math.PI * 440 / SAMPLE_RATE);
    });
  }
});
