import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../controller/src/secrets.js';
import { waitFor } from '../helpers/wait.js';
import { startTestController, type TestController } from '../helpers/controller.js';

const vn = (iso: string) => Date.parse(`${iso}:00+07:00`);
const MIN = 60_000;
/** The controller's clock: Monday 2 March 2026, 10:05 in the commune, moving at real speed. */
const BASE = vn('2026-03-02T10:05');
const t0 = performance.now();
const now = () => Math.floor(BASE + (performance.now() - t0));

/** A media row as the media service writes it (its API is not needed to schedule a file). */
function insertMedia(t: TestController, id: string, durationMs: number, communeId = 'default') {
  t.ctl.store.db.prepare(`INSERT INTO media (id, commune_id, media_key, kind, title, input_sha256, profile_id, duration_ms, input, output, processing, peaks,
    opus_file, opus_sha256, opus_size, mp3_file, mp3_sha256, mp3_size, uploaded_by, created_at)
    VALUES (?, ?, ?, 'upload', ?, ?, 'speech', ?, '{}', '{}', '{}', '[]', ?, ?, 1000, ?, ?, 900, 'test', ?)`)
    .run(id, communeId, id, `Title ${id}`, crypto.randomBytes(32).toString('hex'), durationMs, `${id}.opus`, crypto.createHash('sha256').update(id).digest('hex'), `${id}.mp3`, crypto.randomBytes(32).toString('hex'), now());
}

describe('scheduling API', () => {
  let t: TestController;
  let communeId: string;
  const daily = { kind: 'daily', times: ['06:00', '17:00'] };

  beforeAll(async () => {
    t = await startTestController({ now });
    communeId = t.ctl.config.RADIO_COMMUNE_ID;
    await t.api('POST', '/api/v1/zones', { id: 'thon-a', name: 'Thôn A' });
    await t.api('POST', '/api/v1/zones', { id: 'thon-b', name: 'Thôn B' });
    for (const [id, zoneId] of [['a1', 'thon-a'], ['a2', 'thon-a'], ['b1', 'thon-b']]) {
      expect((await t.api('POST', '/api/v1/nodes', { id, name: id, zoneId })).status).toBe(201);
    }
    insertMedia(t, 'm-news', 10 * MIN, communeId);
    insertMedia(t, 'm-music', 20 * MIN, communeId);
  });
  afterAll(async () => { await t.stop(); });

  const auditActions = () => t.ctl.store.listAudit(communeId, 200, 0);

  it('creates, reads, updates programmes with the total duration computed; refuses bad items with codes', async () => {
    const r = await t.api('POST', '/api/v1/programmes', {
      id: 'p-news', title: 'Bản tin sáng', priority: 'normal', volume: 80, onInterrupt: 'resume',
      items: [{ kind: 'chime', chime: 'start', durationMs: 3000 }, { kind: 'media', mediaId: 'm-news' }, { kind: 'silence', durationMs: 2000 }],
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ id: 'p-news', durationMs: 10 * MIN + 5000, volume: 80, onInterrupt: 'resume', scheduleCount: 0 });
    expect(r.body.items[1]).toEqual({ kind: 'media', mediaId: 'm-news', title: 'Title m-news', durationMs: 10 * MIN });
    expect((await t.api('GET', '/api/v1/programmes')).body.map((p: { id: string }) => p.id)).toContain('p-news');
    expect((await t.api('PATCH', '/api/v1/programmes/p-news', { title: 'Bản tin' })).body.title).toBe('Bản tin');

    const unknown = await t.api('POST', '/api/v1/programmes', { title: 'x', items: [{ kind: 'chime', chime: 'start' }, { kind: 'media', mediaId: 'nope' }] });
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: 'MEDIA_NOT_FOUND', message: "items[1]: media 'nope' does not exist in this commune" });
    const empty = await t.api('POST', '/api/v1/programmes', { title: 'x', items: [] });
    expect(empty.status).toBe(400);
    expect(empty.body.code).toBe('EMPTY_PROGRAMME');
    expect(empty.body.message).toMatch(/at least one item/);
    const relay = await t.api('POST', '/api/v1/programmes', { title: 'x', items: [{ kind: 'relay', url: 'rtsp://radio/vov1', durationMs: 60_000 }] });
    expect(relay.status).toBe(400);
    expect(relay.body.message).toMatch(/items\.0\.url.*http/);
    // Without a TTS renderer (the composition root normally provides the media service's), TTS is refused.
    t.ctl.scheduling.setRenderTts(undefined);
    const tts = await t.api('POST', '/api/v1/programmes', { title: 'x', items: [{ kind: 'tts', text: 'Xin chào' }] });
    expect(tts.status).toBe(503);
    expect(tts.body).toMatchObject({ code: 'TTS_UNAVAILABLE', message: expect.stringMatching(/^items\[0\]: text-to-speech is not available/) });
  });

  it('renders TTS items through the injected renderer when saved, and does not re-render unchanged text', async () => {
    const calls: string[] = [];
    t.ctl.scheduling.setRenderTts(async (c, text, voice, actor) => {
      calls.push(`${c}|${text}|${voice}|${actor}`);
      const id = `tts-${calls.length}`;
      insertMedia(t, id, 30_000, c);
      return { id };
    });
    try {
      const r = await t.api('POST', '/api/v1/programmes', { id: 'p-tts', title: 'Thông báo', items: [{ kind: 'tts', text: 'Mất điện chiều nay', voice: 'vi' }] });
      expect(r.status).toBe(201);
      expect(r.body.items[0]).toMatchObject({ kind: 'tts', text: 'Mất điện chiều nay', voice: 'vi', mediaId: 'tts-1', durationMs: 30_000 });
      expect(calls).toEqual([`${communeId}|Mất điện chiều nay|vi|admin`]);
      const u = await t.api('PATCH', '/api/v1/programmes/p-tts', { items: [{ kind: 'chime', chime: 'attention' }, { kind: 'tts', text: 'Mất điện chiều nay', voice: 'vi' }] });
      expect(u.status).toBe(200);
      expect(u.body.items[1].mediaId).toBe('tts-1');
      expect(calls).toHaveLength(1);
      expect(t.ctl.scheduling.isMediaInUse(communeId, 'tts-1')).toBe(true);
    } finally {
      t.ctl.scheduling.setRenderTts(undefined);
    }
  });

  it('creates a daily schedule for the whole commune and distributes it', async () => {
    const r = await t.api('POST', '/api/v1/schedules', { id: 's-daily', programmeId: 'p-news', recurrence: daily, targets: [{ kind: 'commune' }] });
    expect(r.status).toBe(201);
    expect(r.body.schedule).toMatchObject({ id: 's-daily', priority: 'normal', rank: 0, enabled: true, quietOverride: false, programmeTitle: 'Bản tin' });
    expect(r.body.conflicts).toEqual([]);
    expect(r.body.nextAirings.map((a: { startLocal: string }) => a.startLocal)).toEqual(['2026-03-02 17:00', '2026-03-03 06:00', '2026-03-03 17:00', '2026-03-04 06:00', '2026-03-04 17:00']);
    expect(r.body.nextAirings[0].nodeCount).toBe(3);
    const plan = await t.api('GET', '/api/v1/nodes/a1/plan');
    expect(plan.status).toBe(200);
    // Versions grow per change and never fall below the wall clock in seconds (survives a DB restore).
    expect(plan.body.version).toBeGreaterThanOrEqual(Math.floor(now() / 1000) - 5);
    expect(plan.body.airings[0]).toMatchObject({ airingId: r.body.nextAirings[0].airingId, startAt: vn('2026-03-02T17:00') });
    expect(t.ctl.scheduling.isMediaInUse(communeId, 'm-news')).toBe(true);
    expect(t.ctl.scheduling.isMediaInUse(communeId, 'm-music')).toBe(false);
    const del = await t.api('DELETE', '/api/v1/programmes/p-news');
    expect(del.status).toBe(409);
    expect(del.body).toMatchObject({ code: 'PROGRAMME_IN_USE', message: expect.stringContaining("'s-daily'") });
    expect(auditActions().some((a) => a.action === 'schedule.create' && a.target === 's-daily')).toBe(true);
  });

  it('refuses each bad schedule with its code and a message naming the problem', async () => {
    const base = { programmeId: 'p-news', recurrence: daily, targets: [{ kind: 'commune' }] };
    const cases: [unknown, number, string, RegExp][] = [
      [{ ...base, recurrence: { kind: 'cron', expression: '0 25 * * *' } }, 400, 'INVALID_CRON', /recurrence\.expression: invalid cron '0 25 \* \* \*'/],
      [{ ...base, validFrom: '2026-06-01', validUntil: '2026-05-01' }, 400, 'END_BEFORE_START', /validUntil 2026-05-01 is before validFrom 2026-06-01/],
      [{ ...base, programmeId: 'p-none' }, 404, 'PROGRAMME_NOT_FOUND', /programme 'p-none' does not exist/],
      [{ ...base, targets: [{ kind: 'zone', id: 'thon-z' }] }, 404, 'ZONE_NOT_FOUND', /targets\[0\]: zone 'thon-z'/],
      [{ ...base, targets: [{ kind: 'zone', id: 'thon-a' }, { kind: 'node', id: 'zz9' }] }, 404, 'NODE_NOT_FOUND', /targets\[1\]: node 'zz9'/],
      [{ ...base, recurrence: { kind: 'once', at: '2026-03-02T06:00' } }, 400, 'IN_PAST', /2026-03-02T06:00.*in the past/],
      [{ ...base, validUntil: '2026-03-01' }, 400, 'IN_PAST', /validUntil 2026-03-01 is in the past/],
      [{ ...base, recurrence: { kind: 'daily', times: ['6:00'] } }, 400, 'VALIDATION_ERROR', /recurrence\.times\.0: time of day must be HH:MM/],
      [{ ...base, recurrence: { kind: 'once', at: '2026-02-30T06:00' } }, 400, 'VALIDATION_ERROR', /recurrence\.at: no such calendar date/],
      [{ ...base, recurrence: { kind: 'weekly', weekdays: [], times: ['06:00'] } }, 400, 'VALIDATION_ERROR', /weekdays: choose at least one weekday/],
      [{ ...base, targets: [] }, 400, 'VALIDATION_ERROR', /targets: choose at least one target/],
      [{ ...base, recurrence: { kind: 'daily', times: ['06:00', '06:05'] } }, 400, 'SELF_OVERLAP', /06:00 and 06:05 are 5 min apart/],
      [{ ...base, recurrence: { kind: 'daily', times: ['03:15'] } }, 409, 'QUIET_HOURS', /03:15-03:25:05 would sound inside quiet hours 21:30-05:00/],
      [{ ...base, recurrence: { kind: 'daily', times: ['03:15'] }, quietOverride: true }, 400, 'QUIET_OVERRIDE_REASON_REQUIRED', /quietOverrideReason/],
    ];
    for (const [body, status, code, msg] of cases) {
      const r = await t.api('POST', '/api/v1/schedules', body);
      expect({ status: r.status, code: r.body.code }, JSON.stringify(body)).toEqual({ status, code });
      expect(r.body.message, code).toMatch(msg);
    }
    expect((await t.api('GET', '/api/v1/schedules')).body).toHaveLength(1);
  });

  it('quiet hours: refused without override; saved with override and reason, recorded in the audit; emergency exempt', async () => {
    const body = { id: 's-night', programmeId: 'p-news', recurrence: { kind: 'once', at: '2026-03-03T03:15' }, targets: [{ kind: 'node', id: 'b1' }] };
    const refused = await t.api('POST', '/api/v1/schedules', body);
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('QUIET_HOURS');
    expect(refused.body.message).toMatch(/quietOverride/);
    const ok = await t.api('POST', '/api/v1/schedules', { ...body, quietOverride: true, quietOverrideReason: 'sửa chữa sau bão: thử loa ban đêm' });
    expect(ok.status).toBe(201);
    expect(ok.body.schedule).toMatchObject({ quietOverride: true, quietOverrideReason: 'sửa chữa sau bão: thử loa ban đêm' });
    const entry = auditActions().find((a) => a.action === 'schedule.quiet_override' && a.target === 's-night');
    expect(entry?.detail).toMatchObject({ reason: 'sửa chữa sau bão: thử loa ban đêm', slots: ['03:15-03:25:05'] });
    expect(entry?.actor).toBe('admin');
    // The airing carries the flag to the agent (its second lock).
    const plan = t.ctl.store.allRetained().find((r) => r.topic === 'radio/v1/node/b1/plan')!;
    expect(JSON.parse(plan.payload).airings.find((a: { scheduleId: string }) => a.scheduleId === 's-night')).toMatchObject({ quietOverride: true });

    const em = await t.api('POST', '/api/v1/schedules', { ...body, id: 's-flood', priority: 'emergency', recurrence: { kind: 'once', at: '2026-03-04T02:00' } });
    expect(em.status).toBe(201);
    expect(em.body.warnings.join(' ')).toMatch(/emergency priority: sounds inside quiet hours/);
  });

  it('explains conflicts on the same nodes when a schedule is saved (a warning, not a refusal)', async () => {
    const r = await t.api('POST', '/api/v1/schedules', {
      id: 's-zone', programmeId: 'p-news', priority: 'priority', recurrence: { kind: 'weekly', weekdays: ['tue'], times: ['06:05'] }, targets: [{ kind: 'zone', id: 'thon-a' }],
    });
    expect(r.status).toBe(201);
    expect(r.body.conflicts.length).toBeGreaterThanOrEqual(2);
    expect(r.body.conflicts[0]).toMatchObject({
      scheduleId: 's-daily', nodeIds: ['a1', 'a2'], zoneIds: ['thon-a'], winner: 'this', reason: 'higher priority',
      thisStartAt: vn('2026-03-03T06:05'), otherStartAt: vn('2026-03-03T06:00'),
    });
    expect(r.body.conflicts[0].message).toMatch(/overlaps 'Bản tin' \(normal, rank 0\) at 2026-03-03 06:00-06:10:05 on nodes a1, a2 in zone thon-a: this schedule plays/);
    const again = await t.api('GET', '/api/v1/schedules/s-daily/conflicts');
    expect(again.body.conflicts[0]).toMatchObject({ scheduleId: 's-zone', winner: 'other' });
  });

  it('reorders equal-priority schedules by rank; refuses mixing priorities', async () => {
    const r = await t.api('POST', '/api/v1/schedules', { id: 's-music', programmeId: 'p-news', recurrence: { kind: 'daily', times: ['17:05'] }, targets: [{ kind: 'zone', id: 'thon-b' }] });
    expect(r.status).toBe(201);
    expect(r.body.schedule.rank).toBe(2); // after s-daily (0) and s-night (1), the other normal-priority ones
    expect(r.body.conflicts[0]).toMatchObject({ scheduleId: 's-daily', winner: 'other', reason: 'equal priority, lower rank' });
    const ro = await t.api('POST', '/api/v1/schedules/reorder', { ids: ['s-music', 's-daily'] });
    expect(ro.status).toBe(200);
    expect(ro.body.map((s: { id: string; rank: number }) => [s.id, s.rank])).toEqual([['s-music', 0], ['s-daily', 1]]);
    expect((await t.api('GET', '/api/v1/schedules/s-music/conflicts')).body.conflicts[0]).toMatchObject({ winner: 'this', reason: 'equal priority, lower rank' });
    const mixed = await t.api('POST', '/api/v1/schedules/reorder', { ids: ['s-music', 's-zone'] });
    expect(mixed.status).toBe(400);
    expect(mixed.body.code).toBe('MIXED_PRIORITY');
    expect((await t.api('POST', '/api/v1/schedules/reorder', { ids: ['s-music', 's-gone'] })).body.code).toBe('SCHEDULE_NOT_FOUND');
  });

  it('previews what plays where in the next 24 hours, per node and per zone, with the ids the plans carry', async () => {
    const p = await t.api('GET', '/api/v1/preview?hours=24&nodeId=a1');
    expect(p.status).toBe(200);
    const a1 = p.body.nodes[0];
    expect(a1.nodeId).toBe('a1');
    expect(a1.airings.map((a: { startLocal: string; scheduleId: string }) => `${a.startLocal} ${a.scheduleId}`))
      .toEqual(['2026-03-02 17:00 s-daily', '2026-03-03 06:00 s-daily', '2026-03-03 06:05 s-zone']);
    expect(a1.airings[1]).toMatchObject({ wins: false, overlapsWith: [a1.airings[2].airingId] });
    expect(a1.airings[2]).toMatchObject({ wins: true, priority: 'priority' });
    expect(p.body.zones.map((z: { zoneId: string }) => z.zoneId)).toEqual(['thon-a']);
    // Same expansion as the plan: the ids are those the agent receives.
    const plan = JSON.parse(t.ctl.store.allRetained().find((r) => r.topic === 'radio/v1/node/a1/plan')!.payload);
    const planIds = new Set(plan.airings.map((a: { id: string }) => a.id));
    for (const a of a1.airings) expect(planIds.has(a.airingId)).toBe(true);

    const z = await t.api('GET', '/api/v1/preview?hours=24&zoneId=thon-b');
    expect(z.body.nodes.map((n: { nodeId: string }) => n.nodeId)).toEqual(['b1']);
    expect(z.body.zones[0].airings.map((a: { startLocal: string; nodeCount: number }) => `${a.startLocal} x${a.nodeCount}`))
      .toEqual(['2026-03-02 17:00 x1', '2026-03-02 17:05 x1', '2026-03-03 03:15 x1', '2026-03-03 06:00 x1']);
    expect((await t.api('GET', '/api/v1/preview?zoneId=thon-q')).body.code).toBe('ZONE_NOT_FOUND');
  });

  it('configures quiet hours per commune; refuses malformed ones and ones that would silence existing schedules', async () => {
    expect((await t.api('GET', '/api/v1/settings/quiet-hours')).body).toMatchObject({ start: '21:30', end: '05:00', timezone: 'Asia/Ho_Chi_Minh' });
    const same = await t.api('PUT', '/api/v1/settings/quiet-hours', { start: '22:00', end: '22:00' });
    expect(same.status).toBe(400);
    const swapped = await t.api('PUT', '/api/v1/settings/quiet-hours', { start: '05:00', end: '21:30' });
    expect(swapped.body).toMatchObject({ code: 'QUIET_HOURS_MALFORMED', message: expect.stringMatching(/swapped/) });
    expect((await t.api('PUT', '/api/v1/settings/quiet-hours', { start: '9:00', end: '05:00' })).body.code).toBe('VALIDATION_ERROR');
    const clash = await t.api('PUT', '/api/v1/settings/quiet-hours', { start: '20:00', end: '06:30' });
    expect(clash.status).toBe(409);
    expect(clash.body.code).toBe('QUIET_HOURS_CONFLICT');
    expect(clash.body.message).toMatch(/schedule 's-daily' \('Bản tin'\) at 06:00-06:10:05/);
    expect(clash.body.message).not.toMatch(/s-night|s-flood/); // overridden / emergency
    const ok = await t.api('PUT', '/api/v1/settings/quiet-hours', { start: '22:00', end: '04:30' });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ start: '22:00', end: '04:30', updatedBy: 'admin' });
    expect(auditActions().find((a) => a.action === 'settings.quiet_hours')?.detail).toMatchObject({ from: { start: '21:30', end: '05:00' }, to: { start: '22:00', end: '04:30' } });
    const plan = JSON.parse(t.ctl.store.allRetained().find((r) => r.topic === 'radio/v1/node/a2/plan')!.payload);
    expect(plan.quietHours).toEqual({ start: '22:00', end: '04:30' });
  });

  it('stores receipts exactly once, acks duplicates too, and shows airings with their receipt state', async () => {
    const plan = (await t.api('GET', '/api/v1/nodes/a1/plan')).body;
    const airing = plan.airings[0];
    const batch = [
      { id: `${airing.airingId}:started`, airingId: airing.airingId, state: 'started', at: airing.startAt + 12, startErrorMs: 12 },
      { id: `${airing.airingId}:finished`, airingId: airing.airingId, state: 'finished', at: airing.startAt + airing.durationMs, playedMs: airing.durationMs },
      { id: 'aunknown0000:failed', airingId: 'aunknown0000', state: 'failed', at: airing.startAt, reason: 'media_missing' },
    ];
    const first = t.ctl.scheduling.onReceipts('a1', batch as never);
    const second = t.ctl.scheduling.onReceipts('a1', batch as never);
    expect(first.sort()).toEqual(batch.map((b) => b.id).sort());
    expect(second.sort()).toEqual(first);
    const count = t.ctl.store.db.prepare(`SELECT count(*) AS n FROM receipts WHERE node_id = 'a1'`).get() as { n: number };
    expect(count.n).toBe(3);
    // The same receipt id from another node is another receipt (airing ids are shared by a slot's nodes).
    expect(t.ctl.scheduling.onReceipts('a2', [batch[0]!] as never)).toEqual([batch[0]!.id]);

    const rs = (await t.api('GET', `/api/v1/receipts?nodeId=a1`)).body;
    expect(rs).toHaveLength(3);
    expect(rs.find((r: { airingId: string }) => r.airingId === 'aunknown0000')).toMatchObject({ airingMatch: 'unknown', reason: 'media_missing' });
    expect(rs.find((r: { state: string }) => r.state === 'started')).toMatchObject({ airingMatch: 'planned', startErrorMs: 12 });
    expect((await t.api('GET', `/api/v1/receipts?airingId=${airing.airingId}`)).body).toHaveLength(3);
    expect((await t.api('GET', `/api/v1/receipts?from=${airing.startAt + 100}&to=${airing.startAt + airing.durationMs + 1}`)).body).toHaveLength(1);

    const one = await t.api('GET', `/api/v1/airings/${airing.airingId}`);
    expect(one.status).toBe(200);
    const byNode = Object.fromEntries(one.body.items.map((i: { nodeId: string; state: string }) => [i.nodeId, i.state]));
    expect(byNode).toEqual({ a1: 'finished', a2: 'started', b1: 'scheduled' });
    expect(one.body.summary).toMatchObject({ total: 3, finished: 1, started: 1, scheduled: 1 });
    const list = await t.api('GET', `/api/v1/airings?nodeId=a1&from=${vn('2026-03-02T12:00')}&to=${vn('2026-03-03T12:00')}`);
    expect(list.body.items.map((i: { startLocal: string; state: string }) => `${i.startLocal} ${i.state}`))
      .toEqual(['2026-03-02 17:00 finished', '2026-03-03 06:00 scheduled', '2026-03-03 06:05 scheduled']);
    expect((await t.api('GET', '/api/v1/airings/anope')).body.code).toBe('AIRING_NOT_FOUND');
  });

  it('records plan acks per node and exposes version, acked version and missing media', async () => {
    const before = (await t.api('GET', '/api/v1/nodes/a2/plan')).body;
    expect(before).toMatchObject({ ackedVersion: null, upToDate: false });
    t.ctl.scheduling.onPlanAck('a2', { v: 1, ts: now(), version: before.version, status: 'applied', missing: ['m-news'] });
    const after = (await t.api('GET', '/api/v1/nodes/a2/plan')).body;
    expect(after).toMatchObject({ version: before.version, ackedVersion: before.version, ackStatus: 'applied', missing: ['m-news'], upToDate: true });
    // A late ack of an older version never moves it back; an ack of a version never sent is ignored.
    t.ctl.scheduling.onPlanAck('a2', { v: 1, ts: now(), version: before.version + 5, status: 'applied', missing: [] });
    t.ctl.scheduling.onPlanAck('a2', { v: 1, ts: now(), version: before.version - 1 || 1, status: 'rejected', error: 'old', missing: [] });
    expect((await t.api('GET', '/api/v1/nodes/a2/plan')).body.ackedVersion).toBe(before.version);
    expect((await t.api('GET', '/api/v1/nodes/nope/plan')).body.code).toBe('NODE_NOT_FOUND');
  });

  it('updates and deletes schedules: the plan follows, one-off edits are judged on what changed', async () => {
    const planA = (await t.api('GET', '/api/v1/nodes/a1/plan')).body;
    const u = await t.api('PATCH', '/api/v1/schedules/s-zone', { enabled: false });
    expect(u.status).toBe(200);
    const planA2 = (await t.api('GET', '/api/v1/nodes/a1/plan')).body;
    expect(planA2.version).toBeGreaterThan(planA.version);
    expect(planA2.airings.some((a: { title: string; priority: string }) => a.priority === 'priority')).toBe(false);
    const bad = await t.api('PATCH', '/api/v1/schedules/s-daily', { recurrence: { kind: 'daily', times: ['23:00'] } });
    expect(bad.body.code).toBe('QUIET_HOURS');
    expect((await t.api('GET', '/api/v1/schedules/s-daily')).body.recurrence).toEqual(daily);
    expect((await t.api('PATCH', '/api/v1/schedules/s-night', { quietOverride: false })).body.code).toBe('QUIET_HOURS');
    expect((await t.api('DELETE', '/api/v1/schedules/s-zone')).status).toBe(204);
    expect((await t.api('GET', '/api/v1/schedules/s-zone')).body.code).toBe('SCHEDULE_NOT_FOUND');
    expect(auditActions().some((a) => a.action === 'schedule.delete' && a.target === 's-zone')).toBe(true);
  });

  it('a deleted node loses its retained plan; re-created with the same id it gets a plan at a higher version', async () => {
    const before = (await t.api('GET', '/api/v1/nodes/b1/plan')).body.version;
    expect((await t.api('DELETE', '/api/v1/nodes/b1')).status).toBe(204);
    expect(t.ctl.store.allRetained().some((r) => r.topic === 'radio/v1/node/b1/plan')).toBe(false);
    expect((await t.api('POST', '/api/v1/nodes', { id: 'b1', name: 'b1', zoneId: 'thon-b' })).status).toBe(201);
    // Node changes re-plan in a coalesced burst (bulk provisioning must stay linear).
    const after = await waitFor(async () => {
      const b = (await t.api('GET', '/api/v1/nodes/b1/plan')).body;
      return b.version > before ? b : undefined;
    }, { what: 'plan of the re-created node' });
    expect(after.version).toBeGreaterThan(before);
    expect(after.airings.length).toBeGreaterThan(0);
    expect(t.ctl.store.allRetained().some((r) => r.topic === 'radio/v1/node/b1/plan')).toBe(true);
  });

  it('keeps communes apart', async () => {
    t.ctl.store.ensureCommune('xa-khac', 'Xã khác', now());
    t.ctl.store.db.prepare(`INSERT INTO users (commune_id, username, password_hash, role, created_at) VALUES ('xa-khac', 'op2', ?, 'operator', ?)`).run(hashPassword('pw-other-1'), now());
    const login = await t.ctl.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'op2', password: 'pw-other-1' } });
    const h = { authorization: `Bearer ${(login.json() as { token: string }).token}` };
    const get = async (url: string) => { const r = await t.ctl.app.inject({ url, headers: h }); return { status: r.statusCode, body: r.json() }; };
    expect((await get('/api/v1/schedules')).body).toEqual([]);
    expect((await get('/api/v1/programmes')).body).toEqual([]);
    expect((await get('/api/v1/schedules/s-daily')).status).toBe(404);
    expect((await get('/api/v1/receipts')).body).toEqual([]);
    const post = await t.ctl.app.inject({ method: 'POST', url: '/api/v1/programmes', headers: h, payload: { title: 'x', items: [{ kind: 'media', mediaId: 'm-news' }] } });
    expect(post.json().code).toBe('MEDIA_NOT_FOUND');
    expect(t.ctl.scheduling.isMediaInUse('xa-khac', 'm-news')).toBe(false);
  });

  it('describes the routes in the OpenAPI document', async () => {
    const doc = (await t.ctl.app.inject({ url: '/api/v1/openapi.json' })).json();
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining([
      '/api/v1/programmes', '/api/v1/schedules', '/api/v1/schedules/reorder', '/api/v1/preview', '/api/v1/settings/quiet-hours',
      '/api/v1/nodes/{id}/plan', '/api/v1/airings', '/api/v1/receipts',
    ]));
  });
});
