/**
 * An agent cut from the network for hours: its MQTT path goes through a TCP impairment proxy that is
 * black-holed (sockets stay open, nothing passes, as on a dead 4G link); the hours are emulated by
 * stepping the controller's injected clock and every cluster's SimClock, the cut-off one by the step plus
 * what its crystal drifts meanwhile. It plays both of its airings from cache, by its own clock and its
 * last (drift-extrapolated) offset estimate, queues its receipts on disk, and delivers each exactly once
 * when the link returns. A second cluster stays connected throughout, for comparison.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSteppableClock, receiptCounts, startScheduleHarness, vnTime, type ScheduleHarness, type SchedCluster, type ToneMedia } from '../helpers/schedule-fleet.js';
import { waitFor } from '../helpers/wait.js';

const START_TOLERANCE_MS = 30;
/** How closely the cut-off agent follows its own frozen estimate (its start error when synced is ~1 ms). */
const OWN_ESTIMATE_TOLERANCE_MS = 15;
/** Drift-estimate error allowed before the cut; 1 ppm is 3.6 ms per hour offline. */
const DRIFT_ESTIMATE_TOLERANCE_PPM = 15;

const at = (hhmm: string) => vnTime(`2026-03-03T${hhmm}`);

let h: ScheduleHarness;
let tone: ToneMedia;
let cut: SchedCluster;
let online: SchedCluster;
const airingIds: string[] = [];

beforeAll(async () => {
  h = await startScheduleHarness({ prefix: 'off', nodes: 2, villages: 1, clock: createSteppableClock(at('07:30')) });
  tone = await h.uploadTone('tone', 2, 660);
  // The cut-off cluster syncs every 0.7 s so its 32-sample window spans the 20 s its drift fit needs.
  cut = await h.cluster(0, { offsetMs: -1500, driftPpm: 100, proxied: true, agent: { syncIntervalMs: 700 } });
  online = await h.cluster(1, { offsetMs: 1800, driftPpm: -80 });
  await h.synced();
}, 60_000);
afterAll(async () => { await h?.stop(); });

describe('an agent cut from the network for hours', () => {
  it('plays from cache on its own clock, then delivers every queued receipt exactly once on reconnect', async () => {
    await h.ok('POST', '/api/v1/programmes', { id: 'p-off', title: 'Bản tin', items: [{ kind: 'media', mediaId: tone.id }] });
    const s = await h.ok<{ nextAirings: { airingId: string; startAt: number }[] }>('POST', '/api/v1/schedules', {
      id: 's-off', programmeId: 'p-off', recurrence: { kind: 'daily', times: ['09:00', '11:30'] }, targets: [{ kind: 'commune' }],
    });
    const starts = [at('09:00'), at('11:30')];
    expect(s.nextAirings.slice(0, 2).map((a) => a.startAt)).toEqual(starts);
    airingIds.push(...s.nextAirings.slice(0, 2).map((a) => a.airingId));
    await waitFor(() => [cut, online].every((c) => c.agent.cache.has(tone.sha256) && airingIds.every((id) => c.agent.playout.phaseOf(id) === 'waiting')), { what: 'plan applied and media cached' });
    // Before the link goes, the agent has fitted its clock's drift (its estimate runs on that for hours).
    await waitFor(() => Math.abs(cut.agent.clockSource.estimate().driftPpm + cut.driftPpm) < DRIFT_ESTIMATE_TOLERANCE_PPM && h.converged(cut),
      { what: 'drift estimate of the cut-off agent', timeoutMs: 40_000, intervalMs: 200 });

    cut.proxy!.set({ up: { blackhole: true }, down: { blackhole: true } });
    await waitFor(() => !cut.agent.connected(), { what: 'the agent sees its link dead', timeoutMs: 20_000 });
    const cutAt = h.clock.now();
    // Frozen from here: the error of the drift it will extrapolate with (ppm; 1 ppm = 3.6 ms per hour).
    const driftErrPpm = Math.abs(cut.agent.clockSource.estimate().driftPpm + cut.driftPpm);
    expect(driftErrPpm).toBeLessThan(DRIFT_ESTIMATE_TOLERANCE_PPM + 5);

    for (const [i, startAt] of starts.entries()) {
      await h.stepTo(startAt - 6000, { offline: [cut] });
      // What the cut-off agent now believes controller time is, against the truth: its start error will be
      // the opposite of that (it starts when ITS controller time reaches the slot).
      const belief = cut.agent.controllerNow() - h.clock.now();
      const hoursOff = (h.clock.now() - cutAt) / 3600_000;
      expect(Math.abs(belief)).toBeLessThan(START_TOLERANCE_MS + (driftErrPpm + 1) * 3.6 * hoursOff);
      const trueStart = h.trueOf(startAt);
      const [eCut, eOnline] = await Promise.all([h.onsetAfter(cut, trueStart - 2000), h.onsetAfter(online, trueStart - 2000)]);
      expect(Math.abs(eOnline.trueMs - trueStart)).toBeLessThan(START_TOLERANCE_MS);
      expect(Math.abs(eCut.trueMs - trueStart + belief)).toBeLessThan(OWN_ESTIMATE_TOLERANCE_MS);
      // Without the drift extrapolation it would be off by 100 ppm × the hours offline (0.5 s, then 1.4 s).
      expect(Math.abs(eCut.trueMs - trueStart)).toBeLessThan(0.5 * cut.driftPpm * 3.6 * hoursOff);
      await waitFor(() => cut.agent.receipts.pending().some((r) => r.id === `${airingIds[i]}:finished`), { what: `airing ${i + 1} finished, receipt queued offline` });
      await h.receiptsUntil([{ nodeId: online.spec.nodeId, airingId: airingIds[i]! }], 'finished');
    }
    expect(cut.agent.connected()).toBe(false);
    expect(await h.receipts({ nodeId: cut.spec.nodeId })).toEqual([]);
    expect(cut.agent.receipts.pending().map((r) => r.id).sort()).toEqual(airingIds.flatMap((id) => [`${id}:finished`, `${id}:started`]).sort());

    cut.proxy!.set({ up: { blackhole: false }, down: { blackhole: false } });
    await waitFor(() => cut.agent.connected() && cut.agent.receipts.pending().length === 0, { what: 'reconnected and receipt queue drained', timeoutMs: 30_000 });
    const rows = await h.receipts({ nodeId: cut.spec.nodeId });
    const counts = receiptCounts(rows);
    for (const id of airingIds) {
      expect(counts.get(`${cut.spec.nodeId}|${id}|started`)).toBe(1);
      expect(counts.get(`${cut.spec.nodeId}|${id}|finished`)).toBe(1);
    }
    expect(rows).toHaveLength(4);
    for (const r of rows) expect(r.airingMatch).toBe('planned');
    // Its receipts carry controller time from its own estimate: the hours it spent offline are in them.
    const started = rows.filter((r) => r.state === 'started').sort((a, b) => a.at - b.at);
    for (const [i, r] of started.entries()) expect(Math.abs(r.at - starts[i]!)).toBeLessThan(1000);
    const day = await h.ok<{ items: { nodeId: string; state: string }[] }>('GET', `/api/v1/airings?scheduleId=s-off&from=${at('08:00')}&to=${at('12:00')}`);
    expect(day.items.map((x) => x.state)).toEqual(['finished', 'finished', 'finished', 'finished']);
  }, 90_000);
});
