import { afterEach, describe, expect, it } from 'vitest';
import { createSimHardware, type SimHardware } from '../../firmware-sim/src/sim-hardware.js';
import { createPlayer, toneProgram, type Program } from '../../edge-agent/src/player.js';
import { nextEvent } from '../helpers/wait.js';

/** A program that plays a constant level for `frames` (easy to find in a recording). */
function level(id: string, value: number, frames: number): Program {
  let pos = 0;
  return {
    id, kind: 'airing',
    read(out) { const n = Math.min(out.length, frames - pos); out.fill(value, 0, n); pos += n; return n; },
    ended: () => pos >= frames,
  };
}

let hw: SimHardware | undefined;
afterEach(async () => { await hw?.close(); hw = undefined; });

describe('player: scheduled start by sample position', () => {
  it('places the first sample at the armed hardware-clock instant, whatever the clock offset and drift', async () => {
    hw = createSimHardware({ nodeId: 'p1', offsetMs: 1500, driftPpm: 90, dac: { gain: 'unity' } });
    const player = createPlayer({ sink: hw.sink, now: () => hw!.clock.now() });
    const at = hw.clock.now() + 250.37;
    let startedAt: number | undefined;
    const onset = nextEvent<{ hwMs: number; trueMs: number }>((cb) => { hw!.sink.on('onset', cb); return () => hw!.sink.off('onset', cb); });
    player.schedule(toneProgram('t1', 1000, 200, 48_000), { priority: 'normal', origin: 'scheduled' }, at, { onStart: (pt) => { startedAt = pt; } });
    const e = await onset;
    // The tone's first sample is 0 (sin 0): the onset is the first sample above threshold, within ~0.2 ms.
    expect(e.hwMs - at).toBeGreaterThanOrEqual(-0.03);
    expect(e.hwMs - at).toBeLessThan(0.5);
    expect(Math.abs(e.trueMs - hw.simClock!.toTrue(at))).toBeLessThan(0.5);
    expect(Math.abs(startedAt! - at)).toBeLessThan(1000 / 48_000 + 1e-6);
  });

  it('switches to a preempting program at its exact sample and reports the interruption', async () => {
    hw = createSimHardware({ nodeId: 'p2', offsetMs: -2000, dac: { gain: 'unity', record: { maxSeconds: 5 } } });
    const player = createPlayer({ sink: hw.sink, now: () => hw!.clock.now() });
    const ends: string[] = [];
    player.play(level('normal', 0.2, 48_000 * 3), { priority: 'normal', origin: 'scheduled' }, (why, by) => ends.push(`${why}:${by?.id ?? ''}`));
    const at = hw.clock.now() + 400.5;
    const started = new Promise<number>((resolve) => player.schedule(level('urgent', 0.8, 4800), { priority: 'priority', origin: 'scheduled' }, at, { onStart: resolve }));
    const pt = await started;
    expect(ends).toEqual(['preempted:urgent']);
    const ended = new Promise<void>((resolve) => { const off = player.onChange(() => { if (!player.playing()) { off(); resolve(); } }); });
    await ended;
    const rec = hw.sink.recording()!;
    const k = rec.samples.findIndex((x) => x > 0.5);
    expect(k).toBeGreaterThan(0);
    expect(rec.samples[k - 1]).toBeCloseTo(0.2, 5);
    const switchTrue = hw.sink.trueTimeOfFrame(rec.startFrame + k);
    expect(Math.abs(switchTrue - hw.simClock!.toTrue(at))).toBeLessThan(1000 / 48_000 + 0.01);
    expect(Math.abs(pt - at)).toBeLessThan(1000 / 48_000 + 1e-6);
  });

  it('holds back an equal-priority program armed while another plays (the incumbent keeps the speakers)', async () => {
    hw = createSimHardware({ nodeId: 'p3', dac: { gain: 'unity' } });
    const player = createPlayer({ sink: hw.sink, now: () => hw!.clock.now() });
    player.play(level('first', 0.3, 48_000), { priority: 'normal', origin: 'scheduled' });
    const blocked = new Promise<string>((resolve) => player.schedule(level('second', 0.5, 480), { priority: 'normal', origin: 'scheduled' }, hw!.clock.now() + 100, { onBlocked: (p) => resolve(p.id) }));
    expect(await blocked).toBe('first');
    expect(player.playing()?.program.id).toBe('first');
    player.stop();
  });

  it('runs the sink only while something is loaded or armed (idle agents cost no DAC ticks)', async () => {
    hw = createSimHardware({ nodeId: 'p4', dac: { gain: 'unity' } });
    const calls: string[] = [];
    const sink = hw.sink;
    const spy = {
      sampleRate: sink.sampleRate, attach: (s: Parameters<typeof sink.attach>[0]) => sink.attach(s), stats: () => sink.stats(),
      start: () => { calls.push('start'); sink.start(); }, stop: () => { calls.push('stop'); sink.stop(); },
    };
    const player = createPlayer({ sink: spy, now: () => hw!.clock.now() });
    expect(calls).toEqual([]);
    player.schedule(level('x', 0.3, 480), { priority: 'normal', origin: 'scheduled' }, hw.clock.now() + 5000);
    expect(player.unschedule('x')).toBe(true);
    expect(calls).toEqual(['start', 'stop']);
    const done = new Promise<void>((resolve) => player.schedule(level('y', 0.3, 480), { priority: 'normal', origin: 'scheduled' }, hw!.clock.now() + 20, { onEnd: () => resolve() }));
    await done;
    await new Promise<void>((r) => queueMicrotask(r));
    expect(calls).toEqual(['start', 'stop', 'start', 'stop']);
  });
});
