/**
 * A broadcast day compressed: the controller's clock is injected and stepped from one airing to the next
 * (every cluster's SimClock steps by the same amount, so the ±2 s offsets firmware-sim injected stay).
 * Programmes and schedules go through the HTTP API; media is made by ffmpeg and ingested by the media
 * API; four clusters in two villages play from their caches through the real broker. Judged where a
 * listener would be: the TRUE time at which each cluster's virtual DAC emitted the first audible sample,
 * against the scheduled instant mapped back to true time; and the receipts the controller stored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSteppableClock, receiptCounts, startScheduleHarness, vnTime, type ScheduleHarness, type SchedCluster, type ToneMedia } from '../helpers/schedule-fleet.js';
import { waitFor } from '../helpers/wait.js';

const START_TOLERANCE_MS = 30;
/** Monday 2 March 2026, early morning in the commune (outside the default quiet hours 21:30-05:00). */
const DAY = '2026-03-02';
const at = (hhmmss: string) => vnTime(`${DAY}T${hhmmss}`);

let h: ScheduleHarness;
let tone: ToneMedia;
const C: SchedCluster[] = [];
/** Scheduled instant (controller time) of each airing id, with the nodes it is planned on. */
const planned = new Map<string, { startAt: number; nodes: string[]; scheduleId: string }>();

beforeAll(async () => {
  h = await startScheduleHarness({ prefix: 'day', nodes: 4, villages: 2, clock: createSteppableClock(at('05:00:00')) });
  tone = await h.uploadTone('tone', 2, 440);
  // Two villages (zones alternate over nodes): day-0001 and day-0003 are in day-thon-1.
  const clocks = [{ offsetMs: 2000, driftPpm: 100 }, { offsetMs: -2000, driftPpm: -100 }, { offsetMs: 1300, driftPpm: 60 }, { offsetMs: -700, driftPpm: -40 }];
  for (const [i, co] of clocks.entries()) C.push(await h.cluster(i, co));
  await h.synced();
}, 60_000);
afterAll(async () => { await h?.stop(); });

async function airingsOf(scheduleId: string) {
  const r = await h.ok<{ items: { airingId: string; nodeId: string; startAt: number; state: string }[] }>('GET',
    `/api/v1/airings?scheduleId=${scheduleId}&from=${at('00:00:00')}&to=${at('23:59:00')}`);
  return r.items;
}

/** Step to a few seconds before `startAt`, wait for every planned node's DAC onset there, return the errors. */
async function airNow(startAt: number, nodes: SchedCluster[]) {
  await h.stepTo(startAt - 6000);
  const trueStart = h.trueOf(startAt);
  const onsets = await Promise.all(nodes.map((c) => h.onsetAfter(c, trueStart - 1000)));
  return onsets.map((e) => e.trueMs - trueStart);
}

describe('a day compressed with an injected controller clock', () => {
  it('creates the day through the API: bulletins, a weekly item, a normal item with a priority one overlapping it', async () => {
    await h.ok('POST', '/api/v1/programmes', { id: 'p-bulletin', title: 'Bản tin thời sự', items: [{ kind: 'media', mediaId: tone.id }] });
    await h.ok('POST', '/api/v1/programmes', { id: 'p-weekly', title: 'Chuyên mục nông nghiệp', items: [{ kind: 'chime', chime: 'attention', durationMs: 1000 }] });
    await h.ok('POST', '/api/v1/programmes', {
      id: 'p-normal', title: 'Thông báo của xã', onInterrupt: 'resume',
      items: [{ kind: 'media', mediaId: tone.id }, { kind: 'silence', durationMs: 3000 }, { kind: 'media', mediaId: tone.id }],
    });
    await h.ok('POST', '/api/v1/programmes', { id: 'p-province', title: 'Bản tin tỉnh', priority: 'priority', items: [{ kind: 'chime', chime: 'attention', durationMs: 1000 }] });

    await h.ok('POST', '/api/v1/schedules', { id: 's-bulletin', programmeId: 'p-bulletin', recurrence: { kind: 'daily', times: ['06:00', '17:00'] }, targets: [{ kind: 'commune' }] });
    await h.ok('POST', '/api/v1/schedules', { id: 's-weekly', programmeId: 'p-weekly', recurrence: { kind: 'weekly', weekdays: ['mon'], times: ['09:00'] }, targets: [{ kind: 'zone', id: 'day-thon-1' }] });
    await h.ok('POST', '/api/v1/schedules', { id: 's-normal', programmeId: 'p-normal', recurrence: { kind: 'daily', times: ['11:00'] }, targets: [{ kind: 'commune' }] });
    // 11:00:03, inside the normal item's silence: a cron with seconds.
    const saved = await h.ok<{ conflicts: { scheduleId: string; winner: string; reason: string; nodeIds: string[] }[] }>('POST', '/api/v1/schedules', {
      id: 's-province', programmeId: 'p-province', recurrence: { kind: 'cron', expression: '3 0 11 * * *' }, targets: [{ kind: 'commune' }],
    });
    // The conflict is explained when the schedule is saved: which programme, who wins, where.
    const c = saved.conflicts.find((x) => x.scheduleId === 's-normal');
    expect(c).toBeDefined();
    expect(c!.winner).toBe('this');
    expect(c!.reason).toMatch(/priority/i);
    expect(c!.nodeIds.sort()).toEqual(C.map((x) => x.spec.nodeId).sort());

    for (const s of ['s-bulletin', 's-weekly', 's-normal', 's-province']) {
      for (const a of await airingsOf(s)) {
        const e = planned.get(a.airingId) ?? { startAt: a.startAt, nodes: [], scheduleId: s };
        e.nodes.push(a.nodeId);
        planned.set(a.airingId, e);
      }
    }
    const starts = [...planned.values()].map((p) => `${p.scheduleId}@${new Date(p.startAt + 7 * 3600_000).toISOString().slice(11, 19)}:${p.nodes.length}`).sort();
    expect(starts).toEqual(['s-bulletin@06:00:00:4', 's-bulletin@17:00:00:4', 's-normal@11:00:00:4', 's-province@11:00:03:4', 's-weekly@09:00:00:2']);

    // Every agent acknowledged its latest plan, and cached the media, before the day starts.
    await waitFor(async () => {
      for (const x of C) if (!(await h.api('GET', `/api/v1/nodes/${x.spec.nodeId}/plan`)).body.upToDate) return false;
      return true;
    }, { what: 'plans acknowledged', timeoutMs: 20_000 });
    await waitFor(() => C.every((x) => x.agent.cache.has(tone.sha256)), { what: 'media cached on every agent' });
  });

  it('plays the 06:00 bulletin on every cluster on time', async () => {
    const errs = await airNow(at('06:00:00'), C);
    for (const e of errs) expect(Math.abs(e)).toBeLessThan(START_TOLERANCE_MS);
    // Not a step before it is over: a step jumps every clock, the DAC does not (it would cut the airing).
    const id = [...planned].find(([, p]) => p.scheduleId === 's-bulletin' && p.startAt === at('06:00:00'))![0];
    await h.receiptsUntil(C.map((c) => ({ nodeId: c.spec.nodeId, airingId: id })), 'finished');
  });

  it('plays the weekly item only in its village', async () => {
    const inZone = C.filter((c) => c.spec.zoneId === 'day-thon-1');
    const outZone = C.filter((c) => c.spec.zoneId !== 'day-thon-1');
    const errs = await airNow(at('09:00:00'), inZone);
    for (const e of errs) expect(Math.abs(e)).toBeLessThan(START_TOLERANCE_MS);
    const id = [...planned].find(([, p]) => p.scheduleId === 's-weekly')![0];
    await h.receiptsUntil(inZone.map((c) => ({ nodeId: c.spec.nodeId, airingId: id })), 'finished');
    // By now the item has finished everywhere it plays: the other village stayed silent.
    const t9 = h.trueOf(at('09:00:00'));
    for (const c of outZone) expect(h.onsetsBetween(c, t9 - 2000, t9 + 3000)).toEqual([]);
  });

  it('lets the priority item preempt the normal one at 11:00:03 and resumes the normal one, reporting the policy', async () => {
    const errs = await airNow(at('11:00:00'), C);
    for (const e of errs) expect(Math.abs(e)).toBeLessThan(START_TOLERANCE_MS);
    const tp = h.trueOf(at('11:00:03'));
    const chimes = await Promise.all(C.map((c) => h.onsetAfter(c, tp - 500)));
    for (const e of chimes) expect(Math.abs(e.trueMs - tp)).toBeLessThan(START_TOLERANCE_MS);
    const normal = [...planned].find(([, p]) => p.scheduleId === 's-normal')![0];
    const province = [...planned].find(([, p]) => p.scheduleId === 's-province')![0];
    const rows = await h.receiptsUntil(C.map((c) => ({ nodeId: c.spec.nodeId, airingId: normal })), 'finished');
    for (const c of C) {
      const mine = rows.filter((r) => r.nodeId === c.spec.nodeId && r.airingId === normal);
      expect(mine.map((r) => r.id).sort()).toEqual([`${normal}:finished`, `${normal}:interrupted`, `${normal}:started`, `${normal}:started:2`]);
      const cut = mine.find((r) => r.state === 'interrupted')!;
      expect(cut.reason).toBe('preempted:resume');
      expect(cut.interruptedBy).toBe(province);
      expect(Math.abs(cut.playedMs! - 3000)).toBeLessThan(50);
      expect(mine.find((r) => r.id === `${normal}:started:2`)!.reason).toBe('resumed');
      // Resumed where it was cut: 7 s of programme in all.
      expect(Math.abs(mine.find((r) => r.state === 'finished')!.playedMs! - (2 * tone.durationMs + 3000))).toBeLessThan(50);
    }
    await h.receiptsUntil(C.map((c) => ({ nodeId: c.spec.nodeId, airingId: province })), 'finished');
  });

  it('plays the 17:00 bulletin (past the admin token\'s 12 h and two plan-window steps), and every airing of the day has exactly one started and one finished receipt per cluster', async () => {
    const errs = await airNow(at('17:00:00'), C);
    for (const e of errs) expect(Math.abs(e)).toBeLessThan(START_TOLERANCE_MS);
    const pairs = [...planned].flatMap(([airingId, p]) => p.nodes.map((nodeId) => ({ nodeId, airingId })));
    const rows = await h.receiptsUntil(pairs, 'finished');
    const counts = receiptCounts(rows);
    for (const { nodeId, airingId } of pairs) {
      const resumed = planned.get(airingId)!.scheduleId === 's-normal';
      expect(counts.get(`${nodeId}|${airingId}|started`), `${nodeId} ${airingId}`).toBe(resumed ? 2 : 1);
      expect(counts.get(`${nodeId}|${airingId}|finished`), `${nodeId} ${airingId}`).toBe(1);
      expect(counts.get(`${nodeId}|${airingId}|failed`)).toBeUndefined();
    }
    for (const r of rows) expect(r.airingMatch).toBe('planned');
    // The agents' own view of their start error agrees with the DAC.
    for (const r of rows.filter((x) => x.state === 'started' && x.startErrorMs !== null)) expect(Math.abs(r.startErrorMs!)).toBeLessThan(START_TOLERANCE_MS);
    // "Scheduled vs played" for the day: every airing on every cluster finished.
    const day = await h.ok<{ summary: { total: number; finished: number } }>('GET', `/api/v1/airings?from=${at('00:00:00')}&to=${at('23:59:00')}`);
    expect(day.summary).toMatchObject({ total: pairs.length, finished: pairs.length });
  });
});
