import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePayload, encodePayload, topicFor, type Plan, type ReceiptAck } from '../../schemas/src/index.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { nextEvent, waitFor } from '../helpers/wait.js';

const vn = (iso: string) => Date.parse(`${iso}:00+07:00`);
/** Controller clock: 10:05 in the commune, far from a plan-window step boundary for the whole test. */
const BASE = vn('2026-03-02T10:05');
const t0 = performance.now();
/** Stepped forward by the rolling-window test (a day compressed: the controller only sees this clock). */
let shift = 0;
const now = () => Math.floor(BASE + shift + (performance.now() - t0));

/** A node as the broker sees it: its own credentials, its plan and receipt acks collected as they arrive. */
interface FakeNode {
  id: string;
  client: MqttClient;
  plans: Plan[];
  acks: ReceiptAck[];
  on(cb: (kind: 'plan' | 'ack') => void): () => void;
}

async function connectNode(t: TestController, id: string, password: string): Promise<FakeNode> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${t.ctl.broker!.port}`, { clientId: id, username: id, password, protocolVersion: 4, reconnectPeriod: 0 });
  const listeners = new Set<(kind: 'plan' | 'ack') => void>();
  const n: FakeNode = {
    id, client, plans: [], acks: [],
    on(cb) { listeners.add(cb); return () => listeners.delete(cb); },
  };
  client.on('message', (topic, payload) => {
    if (topic === topicFor('plan', id)) {
      const r = decodePayload('plan', payload);
      if (!r.ok) throw new Error(r.error);
      n.plans.push(r.value);
      for (const l of listeners) l('plan');
    } else if (topic === topicFor('receiptAck', id)) {
      const r = decodePayload('receiptAck', payload);
      if (!r.ok) throw new Error(r.error);
      n.acks.push(r.value);
      for (const l of listeners) l('ack');
    }
  });
  await client.subscribeAsync({ [topicFor('plan', id)]: { qos: 1 }, [topicFor('receiptAck', id)]: { qos: 1 } });
  return n;
}

const nextPlan = (n: FakeNode) => { const seen = n.plans.length; return nextEvent<'plan' | 'ack'>((cb) => n.on(cb), (k) => k === 'plan' && n.plans.length > seen, 15_000, `a plan on ${n.id}`).then(() => n.plans.at(-1)!); };
const nextAck = (n: FakeNode) => { const seen = n.acks.length; return nextEvent<'plan' | 'ack'>((cb) => n.on(cb), (k) => k === 'ack' && n.acks.length > seen, 15_000, `a receipt ack on ${n.id}`).then(() => n.acks.at(-1)!); };

describe('plan distribution and receipts over a real broker', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'radio-sched-'));
  let t: TestController;
  const creds = new Map<string, string>();
  const fleet = new Map<string, FakeNode>();

  beforeAll(async () => {
    t = await startTestController({ now, dir });
    await t.api('POST', '/api/v1/zones', { id: 'thon-a', name: 'Thôn A' });
    await t.api('POST', '/api/v1/zones', { id: 'thon-b', name: 'Thôn B' });
    for (const [id, zoneId] of [['a1', 'thon-a'], ['a2', 'thon-a'], ['b1', 'thon-b'], ['b2', 'thon-b']] as const) {
      const r = await t.api('POST', '/api/v1/nodes', { id, name: id, zoneId });
      creds.set(id, r.body.credentials.password);
    }
    t.ctl.store.db.prepare(`INSERT INTO media (id, commune_id, media_key, kind, title, input_sha256, profile_id, duration_ms, input, output, processing, peaks,
      opus_file, opus_sha256, opus_size, mp3_file, mp3_sha256, mp3_size, uploaded_by, created_at)
      VALUES ('m-news', ?, 'k', 'upload', 'Bản tin', ?, 'speech', 600000, '{}', '{}', '{}', '[]', 'f.opus', ?, 4800, 'f.mp3', ?, 4000, 'test', ?)`)
      .run(t.ctl.config.RADIO_COMMUNE_ID, 'a'.repeat(64), crypto.createHash('sha256').update('opus').digest('hex'), 'b'.repeat(64), now());
    expect((await t.api('POST', '/api/v1/programmes', { id: 'p-news', title: 'Bản tin', items: [{ kind: 'chime', chime: 'start' }, { kind: 'media', mediaId: 'm-news' }] })).status).toBe(201);
    expect((await t.api('POST', '/api/v1/schedules', { id: 's-daily', programmeId: 'p-news', recurrence: { kind: 'daily', times: ['06:00', '17:00'] }, targets: [{ kind: 'commune' }] })).status).toBe(201);
  });
  afterAll(async () => {
    for (const n of fleet.values()) await n.client.endAsync(true);
    await t?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('each node receives its retained plan when it subscribes', async () => {
    for (const id of creds.keys()) {
      const n = await connectNode(t, id, creds.get(id)!);
      fleet.set(id, n);
    }
    await waitFor(() => [...fleet.values()].every((n) => n.plans.length === 1), { what: 'a retained plan on every node' });
    for (const n of fleet.values()) {
      const p = n.plans[0]!;
      expect(p.nodeId).toBe(n.id);
      expect(p.timezone).toBe('Asia/Ho_Chi_Minh');
      expect(p.quietHours).toEqual({ start: '21:30', end: '05:00' });
      expect(p.to - p.from).toBeGreaterThanOrEqual(48 * 3600_000);
      expect(p.from).toBeLessThanOrEqual(now());
      const first = p.airings.find((a) => a.startAt >= now())!;
      expect(first.startAt).toBe(vn('2026-03-02T17:00'));
      expect(first.items[1]).toMatchObject({ kind: 'media', mediaId: 'm-news', sizeBytes: 4800, durationMs: 600000, path: '/api/v1/media/m-news/audio?format=opus' });
    }
    // One slot, one airing id, on every node.
    expect(new Set([...fleet.values()].map((n) => n.plans[0]!.airings[0]!.id)).size).toBe(1);
  });

  it('a schedule for one zone re-sends only to that zone\'s nodes', async () => {
    const a1 = fleet.get('a1')!; const a2 = fleet.get('a2')!; const b1 = fleet.get('b1')!;
    const versions = Object.fromEntries([...fleet.values()].map((n) => [n.id, n.plans.at(-1)!.version]));
    const got = Promise.all([nextPlan(a1), nextPlan(a2)]);
    const r = await t.api('POST', '/api/v1/schedules', { id: 's-zone-a', programmeId: 'p-news', recurrence: { kind: 'daily', times: ['12:00'] }, targets: [{ kind: 'zone', id: 'thon-a' }] });
    expect(r.status).toBe(201);
    const [pa1, pa2] = await got;
    expect(pa1.version).toBeGreaterThan(versions.a1!);
    expect(pa2.version).toBeGreaterThan(versions.a2!);
    expect(pa1.airings.some((a) => a.scheduleId === 's-zone-a')).toBe(true);
    expect((await t.api('GET', '/api/v1/nodes/b1/plan')).body.version).toBe(versions.b1);
    expect((await t.api('GET', '/api/v1/nodes/b2/plan')).body.version).toBe(versions.b2);

    // Proof that nothing reached b1 meanwhile: the next change that does concern it arrives as its very
    // next message (MQTT keeps per-topic order from one publisher).
    const gotB = nextPlan(b1);
    expect((await t.api('POST', '/api/v1/schedules', { id: 's-b1', programmeId: 'p-news', recurrence: { kind: 'daily', times: ['12:30'] }, targets: [{ kind: 'node', id: 'b1' }] })).status).toBe(201);
    const pb1 = await gotB;
    expect(pb1.version).toBeGreaterThan(versions.b1!);
    expect(b1.plans).toHaveLength(2);
    expect(fleet.get('b2')!.plans).toHaveLength(1);
    expect(a1.plans).toHaveLength(2);
  });

  it('records the plan ack a node publishes', async () => {
    const a1 = fleet.get('a1')!;
    const version = a1.plans.at(-1)!.version;
    await a1.client.publishAsync(topicFor('planAck', 'a1'), encodePayload('planAck', { v: 1, ts: now(), version, status: 'applied', missing: ['m-news'] }), { qos: 1 });
    const st = await waitFor(async () => { const r = await t.api('GET', '/api/v1/nodes/a1/plan'); return r.body.ackedVersion === version ? r.body : undefined; }, { what: 'the ack recorded' });
    expect(st).toMatchObject({ version, ackedVersion: version, ackStatus: 'applied', missing: ['m-news'], upToDate: true });
  });

  it('acks a receipt batch with its ids after storing it; the same batch again is acked and stored once', async () => {
    const a1 = fleet.get('a1')!;
    const airing = a1.plans.at(-1)!.airings[0]!;
    const batch = encodePayload('receipts', {
      v: 1, ts: now(), receipts: [
        { id: `${airing.id}:started`, airingId: airing.id, state: 'started', at: airing.startAt + 8, startErrorMs: 8 },
        { id: `${airing.id}:finished`, airingId: airing.id, state: 'finished', at: airing.startAt + airing.durationMs, playedMs: airing.durationMs },
      ],
    });
    const ack1 = nextAck(a1);
    await a1.client.publishAsync(topicFor('receipts', 'a1'), batch, { qos: 1 });
    expect((await ack1).ids.sort()).toEqual([`${airing.id}:finished`, `${airing.id}:started`]);
    const ack2 = nextAck(a1);
    await a1.client.publishAsync(topicFor('receipts', 'a1'), batch, { qos: 1 });
    expect((await ack2).ids.sort()).toEqual([`${airing.id}:finished`, `${airing.id}:started`]);
    const n = t.ctl.store.db.prepare(`SELECT count(*) AS n FROM receipts WHERE node_id = 'a1'`).get() as { n: number };
    expect(n.n).toBe(2);
    const st = await t.api('GET', `/api/v1/airings/${airing.id}`);
    expect(st.body.items.find((i: { nodeId: string }) => i.nodeId === 'a1').state).toBe('finished');
  });

  it('the rolling re-plan moves every node\'s window forward; an airing over without receipts shows as no_receipt', async () => {
    const before = Object.fromEntries([...fleet.values()].map((n) => [n.id, n.plans.at(-1)!]));
    const got = Promise.all([...fleet.values()].map((n) => nextPlan(n)));
    shift = 8 * 3600_000; // 18:05 in the commune: the 17:00 bulletin is over
    expect(t.ctl.scheduling.tick().published.sort()).toEqual(['a1', 'a2', 'b1', 'b2']);
    for (const p of await got) {
      const prev = before[p.nodeId]!;
      expect(p.version).toBeGreaterThan(prev.version);
      expect(p.from).toBeGreaterThan(prev.from);
      expect(p.to - now()).toBeGreaterThanOrEqual(48 * 3600_000);
      expect(p.airings.every((a) => a.startAt < p.to && a.startAt + a.durationMs > p.from)).toBe(true);
    }
    // Nothing changed since: the timer's next run re-sends nothing.
    expect(t.ctl.scheduling.tick().published).toEqual([]);
    const list = await t.api('GET', `/api/v1/airings?nodeId=b2&from=${vn('2026-03-02T16:00')}&to=${vn('2026-03-02T18:00')}`);
    expect(list.body.items.map((i: { startLocal: string; state: string }) => `${i.startLocal} ${i.state}`)).toEqual(['2026-03-02 17:00 no_receipt']);
    expect(list.body.summary).toMatchObject({ total: 1, noReceipt: 1 });
  });

  it('after a restart the retained plans come back from SQLite with the same versions, nothing re-sent', async () => {
    const before = Object.fromEntries([...fleet.values()].map((n) => [n.id, n.plans.at(-1)!]));
    for (const n of fleet.values()) await n.client.endAsync(true);
    fleet.clear();
    await t.ctl.stop();
    t = await startTestController({ now, dir });
    const b2 = await connectNode(t, 'b2', creds.get('b2')!);
    fleet.set('b2', b2);
    const p = await waitFor(() => b2.plans[0], { what: 'the republished plan' });
    expect(p.version).toBe(before.b2!.version);
    expect(p.airings.map((a) => a.id)).toEqual(before.b2!.airings.map((a) => a.id));
    expect((await t.api('GET', '/api/v1/nodes/a1/plan')).body.version).toBe(before.a1!.version);
  });
});
