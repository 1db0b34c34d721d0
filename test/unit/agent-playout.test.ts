/**
 * The playout engine on its own: real simulated hardware and DAC, the real cache (a file placed in it),
 * the receipt queue in memory, an identity clock source. Covers what the integration suite does not:
 * recovery after a crash mid-air, equal-priority conflicts, a plan change while playing.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Receipt } from '../../schemas/src/index.js';
import { createMediaCache } from '../../edge-agent/src/cache.js';
import { systemTimers } from '../../edge-agent/src/clock.js';
import { createPlayer } from '../../edge-agent/src/player.js';
import { createPlayout } from '../../edge-agent/src/playout.js';
import { createReceiptQueue } from '../../edge-agent/src/receipts.js';
import type { ClockSource } from '../../edge-agent/src/time-sync.js';
import { createSimHardware, type SimHardware } from '../../firmware-sim/src/sim-hardware.js';
import { airing, makeToneOpus, mediaItem, plan, type MediaFile } from '../helpers/agent-playout.js';
import { waitFor } from '../helpers/wait.js';

let dir: string;
let tone: MediaFile;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-playout-unit-'));
  tone = await makeToneOpus(dir, 'tone', { seconds: 1 });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let hw: SimHardware | undefined;
let stopAll: (() => void) | undefined;
afterEach(async () => { stopAll?.(); stopAll = undefined; await hw?.close(); hw = undefined; });

function rig(receiptDir?: string) {
  hw = createSimHardware({ nodeId: 'unit-1', warmupMs: 50, dac: { gain: 'unity' } });
  const h = hw;
  const identity: ClockSource = { toController: (l) => l, toLocal: (c) => c, estimate: () => ({ offsetMs: 0, rttMs: 0, driftPpm: 0, samples: 8, synced: true, at: 0 }) };
  const mediaDir = fs.mkdtempSync(path.join(dir, 'media-'));
  fs.copyFileSync(tone.file, path.join(mediaDir, `${tone.sha256}.opus`));
  const cache = createMediaCache({ dir: mediaDir, credentials: { username: 'u', password: 'p' } });
  const sent: Receipt[] = [];
  const receipts = createReceiptQueue({ ...(receiptDir ? { dir: receiptDir } : {}), send: (b) => { sent.push(...b); return true; } });
  const player = createPlayer({ sink: h.sink, now: () => h.clock.now() });
  const volumes: (number | undefined)[] = [];
  const playout = createPlayout({
    hw: h, player, clock: h.clock, timers: systemTimers, clockSource: identity, cache, receipts, prepareLeadMs: 300,
    setProgrammeVolume: (v) => volumes.push(v), onCacheWarning: () => {},
  });
  cache.start(); receipts.start(); playout.start();
  const stop = () => { playout.stop(); player.detach(); cache.stop(); receipts.stop(); };
  stopAll = stop;
  const now = () => h.clock.now();
  const receipt = (id: string) => waitFor(() => sent.find((r) => r.id === id), { what: `receipt ${id}`, timeoutMs: 10_000 });
  return { playout, receipts, sent, now, receipt, volumes, stop, player };
}

describe('agent playout engine', () => {
  it('after a crash mid-air, reports the interruption and resumes where the airing was (resume policy)', async () => {
    const receiptDir = fs.mkdtempSync(path.join(dir, 'receipts-'));
    const first = rig(receiptDir);
    const startAt = Math.round(first.now() + 500);
    const p = plan('unit-1', 1, [airing({ id: 'unit-airing-crash', startAt, onInterrupt: 'resume', items: [mediaItem(tone, 'm1')] })]);
    first.playout.setPlan(p);
    await first.receipt('unit-airing-crash:started');
    // "Crash" 300 ms in: the engine stops without receipts, the ledger says it had started.
    await waitFor(() => first.now() >= startAt + 300, { what: '300 ms of airing', intervalMs: 5 });
    first.stop();
    await hw!.close();

    const second = rig(receiptDir);
    second.playout.setPlan(p);
    const cut = await second.receipt('unit-airing-crash:interrupted');
    expect(cut.reason).toBe('agent_restart:resume');
    const again = await second.receipt('unit-airing-crash:started:2');
    expect(again.reason).toBe('resumed');
    expect(again.playedMs).toBeGreaterThanOrEqual(300);
    const done = await second.receipt('unit-airing-crash:finished');
    expect(Math.abs(done.playedMs! - 1000)).toBeLessThan(30); // the rest of it, not the whole again
  });

  it('holds back an overlapping equal-priority airing and drops it per its policy (failed: preempted)', async () => {
    const r = rig();
    const t0 = Math.round(r.now() + 500);
    r.playout.setPlan(plan('unit-1', 1, [
      airing({ id: 'unit-airing-first', startAt: t0, items: [mediaItem(tone, 'm1')] }),
      airing({ id: 'unit-airing-second', startAt: t0 + 300, onInterrupt: 'drop', items: [{ kind: 'chime', chime: 'end', durationMs: 300 }] }),
    ]));
    const failed = await r.receipt('unit-airing-second:failed');
    expect(failed.reason).toBe('preempted');
    expect(failed.interruptedBy).toBe('unit-airing-first');
    await r.receipt('unit-airing-first:finished');
    expect(r.sent.some((x) => x.id === 'unit-airing-second:started')).toBe(false);
  });

  it('stops an airing the new plan no longer contains (interrupted: cancelled) and restores the volume', async () => {
    const r = rig();
    const t0 = Math.round(r.now() + 400);
    r.playout.setPlan(plan('unit-1', 1, [airing({ id: 'unit-airing-gone', startAt: t0, volume: 90, items: [mediaItem(tone, 'm1')] })]));
    await r.receipt('unit-airing-gone:started');
    expect(r.volumes.at(-1)).toBe(90);
    r.playout.setPlan(plan('unit-1', 2, []));
    const cut = await r.receipt('unit-airing-gone:interrupted');
    expect(cut.reason).toBe('cancelled');
    expect(r.volumes.at(-1)).toBeUndefined();
    expect(r.player.playing()).toBeUndefined();
  });

  it('keeps no timer when nothing is planned and powers the amplifier off after the last airing', async () => {
    const r = rig();
    r.playout.setPlan(plan('unit-1', 1, []));
    expect(r.playout.nextWake()).toBeUndefined();
    const startAt = Math.round(r.now() + 300_000);
    r.playout.setPlan(plan('unit-1', 2, [airing({ id: 'unit-airing-later', startAt, items: [{ kind: 'chime', chime: 'start', durationMs: 200 }] })]));
    // One timer, set for the preparation (start − warm-up − lead), not a polling loop.
    expect(r.playout.nextWake()! - (startAt - 50 - 300)).toBeLessThan(1);
    r.playout.setPlan(plan('unit-1', 3, [airing({ id: 'unit-airing-amp', startAt: Math.round(r.now() + 300), items: [{ kind: 'chime', chime: 'start', durationMs: 200 }] })]));
    await waitFor(() => hw!.status().amplifier.power || undefined, { what: 'amplifier on before the airing' });
    await r.receipt('unit-airing-amp:finished');
    await waitFor(() => !hw!.status().amplifier.power, { what: 'amplifier off after it' });
    expect(r.playout.ampNeeded()).toBe(false);
    expect(r.playout.nextWake()).toBeUndefined();
  });
});
