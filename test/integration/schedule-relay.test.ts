/**
 * Scheduled relays: a programme [chime, relay of an external stream, silence] scheduled through the API
 * for three clusters. The controller pulls the stream with ffmpeg (a local HTTP server serving an MP3
 * that ffmpeg made) and sends it live, timed so that its first sample sounds at the relay item's slot;
 * each agent plays it inside the airing, from its plan. Judged at the virtual DACs (true time): the
 * relay's tone starts at the item's scheduled instant on every cluster, and lasts the item. A cluster cut
 * off before the relay is announced still plays the airing from its plan, with silence in the relay's
 * place, and its receipt says the relay was not received.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSteppableClock, startScheduleHarness, vnTime, type ScheduleHarness, type SchedCluster } from '../helpers/schedule-fleet.js';
import { waitFor } from '../helpers/wait.js';

const run = promisify(execFile);
/** Chime onset (played from the plan): the scheduling tests' tolerance. */
const START_TOLERANCE_MS = 30;
/** Relay onset (live path: MP3 → ffmpeg → Opus/RTP → jitter buffer): the same. Measured: under 1 ms. */
const RELAY_TOLERANCE_MS = 30;
const DAY = '2026-03-02';
const at = (hhmm: string) => vnTime(`${DAY}T${hhmm}`);
const CHIME_MS = 2000;
const RELAY_MS = 4000;
const SILENCE_MS = 1000;

let h: ScheduleHarness;
let server: http.Server;
let url: string;
const C: SchedCluster[] = [];

beforeAll(async () => {
  h = await startScheduleHarness({ prefix: 'rel', nodes: 3, villages: 1, clock: createSteppableClock(at('08:00')) });
  // The "radio station": an MP3 stream whose tone starts at its first sample (48 kHz, like the live path).
  const mp3 = path.join(h.tmp, 'station.mp3');
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'aevalsrc=0.3*sin(2*PI*520*t):s=48000:d=10',
    '-ac', '1', '-c:a', 'libmp3lame', '-b:a', '96k', mp3]);
  const body = fs.readFileSync(mp3);
  server = http.createServer((_req, res) => { res.writeHead(200, { 'content-type': 'audio/mpeg' }); res.end(body); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/station.mp3`;
  const clocks = [{ offsetMs: 1500, driftPpm: 60 }, { offsetMs: -1200, driftPpm: -50 }, { offsetMs: 700, driftPpm: 20, proxied: true }];
  for (const [i, co] of clocks.entries()) C.push(await h.cluster(i, co));
  await h.synced();
  await h.ok('POST', '/api/v1/programmes', {
    id: 'p-relay', title: 'Tiếp sóng Đài tiếng nói Việt Nam',
    items: [{ kind: 'chime', chime: 'attention', durationMs: CHIME_MS }, { kind: 'relay', url, durationMs: RELAY_MS }, { kind: 'silence', durationMs: SILENCE_MS }],
  });
}, 60_000);

afterAll(async () => {
  await h?.stop();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
});

/** Schedule the programme once at `hhmm` for the whole commune; wait until every cluster has it waiting. */
async function scheduleAt(id: string, hhmm: string): Promise<{ airingId: string; startAt: number }> {
  const s = await h.ok<{ nextAirings: { airingId: string; startAt: number }[] }>('POST', '/api/v1/schedules', {
    id, programmeId: 'p-relay', recurrence: { kind: 'once', at: `${DAY}T${hhmm}` }, targets: [{ kind: 'commune' }],
  });
  const a = s.nextAirings[0]!;
  expect(a.startAt).toBe(at(hhmm));
  await waitFor(() => C.every((c) => c.agent.playout.phaseOf(a.airingId) === 'waiting'), { what: 'the airing in every plan' });
  return a;
}

/** Chime onset at the airing's start, relay onset at the relay item's start (true times at the DAC). */
async function onsets(c: SchedCluster, startAt: number) {
  const chime = await h.onsetAfter(c, h.trueOf(startAt) - 1000);
  const relay = await h.onsetAfter(c, h.trueOf(startAt + CHIME_MS) - 500);
  return { chimeErr: chime.trueMs - h.trueOf(startAt), relayErr: relay.trueMs - h.trueOf(startAt + CHIME_MS), relay };
}

describe('a relay item of a scheduled programme', () => {
  it('sounds on every cluster at the item\'s scheduled instant, for the item\'s length', async () => {
    const a = await scheduleAt('s-relay-1', '08:05');
    await h.stepTo(a.startAt - 8000);
    const got = await Promise.all(C.map((c) => onsets(c, a.startAt)));
    for (const [i, g] of got.entries()) {
      expect(Math.abs(g.chimeErr), `chime on ${C[i]!.spec.nodeId}`).toBeLessThan(START_TOLERANCE_MS);
      expect(Math.abs(g.relayErr), `relay on ${C[i]!.spec.nodeId}`).toBeLessThan(RELAY_TOLERANCE_MS);
    }
    const rows = await h.receiptsUntil(C.map((c) => ({ nodeId: c.spec.nodeId, airingId: a.airingId })), 'finished');
    // The relay sounded for the whole item: its tone stops where the programme's silence begins.
    const relayEnd = h.trueOf(a.startAt + CHIME_MS + RELAY_MS);
    for (const [i, c] of C.entries()) {
      const off = c.hw.sink.offsets().find((e) => e.trueMs > got[i]!.relay.trueMs);
      expect(off, `relay end on ${c.spec.nodeId}`).toBeDefined();
      expect(Math.abs(off!.trueMs - relayEnd)).toBeLessThan(RELAY_TOLERANCE_MS + 60);
      expect(h.onsetsBetween(c, got[i]!.relay.trueMs + 1, relayEnd - 100)).toEqual([]);
    }
    for (const r of rows.filter((x) => x.airingId === a.airingId && x.state === 'finished')) {
      expect(r.reason).toBeNull();
      expect(Math.abs(r.playedMs! - (CHIME_MS + RELAY_MS + SILENCE_MS))).toBeLessThan(50);
    }
    // One live session, started by the schedule for exactly the airing's nodes, audited.
    const communeId = h.t.ctl.config.RADIO_COMMUNE_ID;
    const sessions = h.t.ctl.live.list(communeId).recent.filter((s) => s.actor === 'schedule');
    expect(sessions).toHaveLength(1);
    const view = h.t.ctl.live.get(communeId, sessions[0]!.sessionId);
    expect(view.kind).toBe('relay');
    expect(view.targets.sort()).toEqual(C.map((c) => c.spec.nodeId).sort());
    expect(view.nodes.every((n) => n.firstPlayingAt !== undefined)).toBe(true);
    const audit = h.t.ctl.store.listAudit(communeId, 100, 0).find((x) => x.action === 'live.start' && x.target === view.sessionId);
    expect(audit?.actor).toBe('schedule');
    expect(audit?.detail).toMatchObject({ url, airing: { airingId: a.airingId, itemIndex: 1 } });
  }, 40_000);

  it('plays silence in the relay\'s place on a cluster that cannot get it, and its receipt says so', async () => {
    const a = await scheduleAt('s-relay-2', '08:10');
    const cut = C[2]!;
    const ok = C.slice(0, 2);
    // Cut off after it has the plan, before the relay session is announced (the 4G link went down).
    cut.proxy!.set({ up: { blackhole: true }, down: { blackhole: true } });
    await waitFor(() => !cut.agent.connected(), { what: 'the cut-off agent sees its link dead', timeoutMs: 20_000 });
    await h.stepTo(a.startAt - 8000, { offline: [cut] });
    const got = await Promise.all(ok.map((c) => onsets(c, a.startAt)));
    for (const g of got) expect(Math.abs(g.relayErr)).toBeLessThan(RELAY_TOLERANCE_MS);
    // The cut-off cluster plays the chime from its plan, then nothing until the airing is over.
    const chime = await h.onsetAfter(cut, h.trueOf(a.startAt) - 1000);
    expect(Math.abs(chime.trueMs - h.trueOf(a.startAt))).toBeLessThan(100);
    await waitFor(() => cut.agent.receipts.pending().some((r) => r.id === `${a.airingId}:finished`), { what: 'the cut-off airing finished, receipt queued', timeoutMs: 20_000 });
    expect(h.onsetsBetween(cut, h.trueOf(a.startAt + 1500), h.trueOf(a.startAt + CHIME_MS + RELAY_MS + SILENCE_MS))).toEqual([]);
    cut.proxy!.set({ up: { blackhole: false }, down: { blackhole: false } });
    const rows = await h.receiptsUntil(C.map((c) => ({ nodeId: c.spec.nodeId, airingId: a.airingId })), 'finished', 30_000);
    const fin = (c: SchedCluster) => rows.find((r) => r.nodeId === c.spec.nodeId && r.airingId === a.airingId && r.state === 'finished')!;
    expect(fin(cut).reason).toBe('relay_not_received:1');
    expect(Math.abs(fin(cut).playedMs! - (CHIME_MS + RELAY_MS + SILENCE_MS))).toBeLessThan(50);
    for (const c of ok) expect(fin(c).reason).toBeNull();
    // The controller's view of the session: the cut-off cluster never joined.
    const communeId = h.t.ctl.config.RADIO_COMMUNE_ID;
    const s = h.t.ctl.live.list(communeId).recent.find((x) => x.actor === 'schedule' && h.t.ctl.live.get(communeId, x.sessionId).nodes.length === 3
      && x.startedAt > a.startAt - 10_000);
    expect(s).toBeDefined();
    const reach = h.t.ctl.live.get(communeId, s!.sessionId).nodes;
    expect(reach.find((n) => n.nodeId === cut.spec.nodeId)!.firstPlayingAt).toBeUndefined();
    for (const c of ok) expect(reach.find((n) => n.nodeId === c.spec.nodeId)!.firstPlayingAt).toBeDefined();
  }, 50_000);

  it('moves a pending relay start when its schedule is edited, and drops it when the schedule is deleted', async () => {
    const relays = h.t.ctl.scheduledRelays;
    const communeId = h.t.ctl.config.RADIO_COMMUNE_ID;
    const pending = (airingId: string) => relays.items().some((x) => x.airingId === airingId && x.state === 'pending');
    // What the runner knows at the very moment the scheduling service reports a re-plan: this listener is
    // registered after the runner's, so it runs right after the runner reconciled, in the same synchronous
    // call, before any poll or periodic refresh could have run.
    const atReplan: { airingId: string; state: string }[][] = [];
    const off = h.t.ctl.scheduling.onReplanned((c) => { if (c === communeId) atReplan.push(relays.items()); });
    try {
      const first = await scheduleAt('s-relay-3', '08:15');
      await waitFor(() => pending(first.airingId), { what: 'the relay start planned' });
      expect(relays.items().find((x) => x.airingId === first.airingId)).toMatchObject({ itemIndex: 1, startAt: first.startAt + CHIME_MS, url, sessionId: null });
      // Edited: another slot, another airing id; the old start is cancelled, the new one planned — at once.
      atReplan.length = 0;
      const moved = await h.ok<{ nextAirings: { airingId: string; startAt: number }[] }>('PATCH', '/api/v1/schedules/s-relay-3', { recurrence: { kind: 'once', at: `${DAY}T08:16` } }, 200);
      const second = moved.nextAirings[0]!;
      expect(second.startAt).toBe(at('08:16'));
      expect(atReplan.length).toBeGreaterThan(0);
      expect(atReplan[0]!.filter((x) => x.airingId === second.airingId).map((x) => x.state)).toEqual(['pending']);
      expect(atReplan[0]!.some((x) => x.airingId === first.airingId)).toBe(false);
      expect(pending(second.airingId) && !relays.items().some((x) => x.airingId === first.airingId)).toBe(true);
      // Deleted: nothing is planned (at once), and nothing starts when its time comes.
      atReplan.length = 0;
      expect((await h.api('DELETE', '/api/v1/schedules/s-relay-3')).status).toBe(204);
      expect(atReplan.length).toBeGreaterThan(0);
      expect(atReplan[0]!.some((x) => x.airingId === second.airingId)).toBe(false);
      expect(relays.items().some((x) => x.airingId === second.airingId)).toBe(false);
      // Past the moment it would have been announced (the item starts at +CHIME_MS).
      await h.stepTo(second.startAt + 500);
      relays.refresh();
      expect(relays.items().filter((x) => x.airingId === first.airingId || x.airingId === second.airingId)).toEqual([]);
      expect(h.t.ctl.live.list(communeId).active).toEqual([]);
    } finally {
      off();
    }
  }, 30_000);

  it('starts a relay item already on air (as after a controller restart) late, for what is left of it', async () => {
    const relays = h.t.ctl.scheduledRelays;
    const communeId = h.t.ctl.config.RADIO_COMMUNE_ID;
    const { delayMs, minJoinMs } = relays.options();
    await h.ok('POST', '/api/v1/programmes', { id: 'p-relay-long', title: 'Tiếp sóng', items: [{ kind: 'relay', url, durationMs: 8000 }] });
    const s = await h.ok<{ nextAirings: { airingId: string; startAt: number }[] }>('POST', '/api/v1/schedules', {
      id: 's-relay-4', programmeId: 'p-relay-long', recurrence: { kind: 'once', at: `${DAY}T08:20` }, targets: [{ kind: 'commune' }],
    });
    const a = s.nextAirings[0]!;
    await waitFor(() => C.every((c) => c.agent.playout.phaseOf(a.airingId) === 'waiting'), { what: 'the airing in every plan' });
    // The runner first sees the item 1 s into it (its next poll after the step): it cannot sound from
    // the start any more, so it starts with the agents' join time and D ahead of it.
    const steppedTo = a.startAt + 1000;
    await h.stepTo(steppedTo);
    relays.refresh();
    const seenBy = h.clock.now();
    const item = relays.items().find((x) => x.airingId === a.airingId)!;
    expect(item.state).toMatch(/starting|running/);
    expect(item.attempts).toBe(1);
    expect(item.audioAt! - steppedTo).toBeGreaterThanOrEqual(delayMs + minJoinMs - 1);
    expect(item.audioAt! - seenBy).toBeLessThanOrEqual(delayMs + minJoinMs + 1);
    // Every cluster plays the airing (started late from its plan) and the relay from `audioAt` on.
    const onsetsAt = await Promise.all(C.map((c) => h.onsetAfter(c, h.trueOf(item.audioAt!) - 500)));
    for (const e of onsetsAt) expect(Math.abs(e.trueMs - h.trueOf(item.audioAt!))).toBeLessThan(RELAY_TOLERANCE_MS);
    await waitFor(() => relays.items().find((x) => x.airingId === a.airingId)?.state === 'done', { what: 'the late relay over', timeoutMs: 15_000 });
    const view = h.t.ctl.live.get(communeId, item.sessionId ?? relays.items().find((x) => x.airingId === a.airingId)!.sessionId!);
    expect(view.endReason).toBe('source_ended');
    expect(view.nodes.every((n) => n.firstPlayingAt !== undefined)).toBe(true);
  }, 30_000);
});
