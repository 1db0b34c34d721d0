import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePayload, topicFor } from '../../schemas/src/index.js';
import { startTestController, type TestController } from '../helpers/controller.js';

describe('controller API', () => {
  let t: TestController;
  beforeAll(async () => { t = await startTestController(); });
  afterAll(async () => { await t.stop(); });

  it('answers health and serves an OpenAPI document generated from the schemas', async () => {
    const h = await t.ctl.app.inject({ url: '/api/v1/health' });
    expect(h.statusCode).toBe(200);
    expect(h.json().status).toBe('ok');
    const doc = (await t.ctl.app.inject({ url: '/api/v1/openapi.json' })).json();
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/api/v1/nodes', '/api/v1/zones/{id}', '/api/v1/nodes/{id}/commands', '/api/v1/auth/login']));
    expect(doc.paths['/api/v1/nodes'].post.requestBody.content['application/json'].schema.required).toEqual(expect.arrayContaining(['name', 'zoneId']));
  });

  it('refuses a wrong password and anonymous calls with codes', async () => {
    const bad = await t.ctl.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'admin', password: 'nope-nope' } });
    expect(bad.statusCode).toBe(401);
    expect(bad.json().code).toBe('BAD_CREDENTIALS');
    const anon = await t.ctl.app.inject({ url: '/api/v1/zones' });
    expect(anon.json().code).toBe('UNAUTHENTICATED');
    const forged = await t.ctl.app.inject({ url: '/api/v1/zones', headers: { authorization: 'Bearer forged' } });
    expect(forged.statusCode).toBe(401);
  });

  it('creates, lists, updates and deletes zones; refuses deleting a zone with nodes', async () => {
    const z = await t.api('POST', '/api/v1/zones', { id: 'thon-a', name: 'Thôn A', description: 'đầu làng' });
    expect(z.status).toBe(201);
    expect((await t.api('POST', '/api/v1/zones', { id: 'thon-a', name: 'again' })).body.code).toBe('ZONE_EXISTS');
    expect((await t.api('PATCH', '/api/v1/zones/thon-a', { name: 'Thôn A mới' })).body.name).toBe('Thôn A mới');
    const n = await t.api('POST', '/api/v1/nodes', { id: 'cum-a1', name: 'Cụm A1', zoneId: 'thon-a' });
    expect(n.status).toBe(201);
    const del = await t.api('DELETE', '/api/v1/zones/thon-a');
    expect(del.status).toBe(409);
    expect(del.body.code).toBe('ZONE_NOT_EMPTY');
    expect((await t.api('DELETE', '/api/v1/nodes/cum-a1')).status).toBe(204);
    expect((await t.api('DELETE', '/api/v1/zones/thon-a')).status).toBe(204);
    expect((await t.api('GET', '/api/v1/zones/thon-a')).body.code).toBe('ZONE_NOT_FOUND');
  });

  it('provisions a node with credentials shown once, stores only a hash, and can rotate them', async () => {
    await t.api('POST', '/api/v1/zones', { id: 'thon-b', name: 'Thôn B' });
    const r = await t.api('POST', '/api/v1/nodes', { name: 'Cụm B1', zoneId: 'thon-b', position: { lat: 21.0, lon: 105.8 }, actualOnly: true });
    expect(r.status).toBe(201);
    const { node, credentials } = r.body;
    expect(node.id).toMatch(/^n-[0-9a-f]{10}$/);
    expect(node.actualOnly).toBe(true);
    expect(credentials.username).toBe(node.id);
    expect(credentials.password.length).toBeGreaterThanOrEqual(40);
    expect(credentials.mqttUrl).toMatch(/^mqtt:\/\//);
    const detail = await t.api('GET', `/api/v1/nodes/${node.id}`);
    expect(JSON.stringify(detail.body)).not.toContain(credentials.password);
    const row = t.ctl.store.db.prepare('SELECT secret_hash FROM nodes WHERE id = ?').get(node.id) as { secret_hash: string };
    expect(row.secret_hash).not.toContain(credentials.password);
    expect(row.secret_hash).toMatch(/^[0-9a-f]{64}$/);

    const url = `mqtt://127.0.0.1:${t.ctl.broker!.port}`;
    const c1 = await mqtt.connectAsync(url, { clientId: node.id, username: node.id, password: credentials.password, reconnectPeriod: 0 });
    // The retained config tells the agent its zone and commune.
    const cfg = await new Promise<Buffer>((resolve) => { c1.on('message', (_t, p) => resolve(p)); void c1.subscribeAsync(topicFor('config', node.id)); });
    const parsed = decodePayload('config', cfg);
    expect(parsed.ok && parsed.value.zoneId).toBe('thon-b');
    await c1.endAsync();

    const rot = await t.api('POST', `/api/v1/nodes/${node.id}/credentials`);
    expect(rot.body.credentials.password).not.toBe(credentials.password);
    await expect(mqtt.connectAsync(url, { clientId: node.id, username: node.id, password: credentials.password, reconnectPeriod: 0 })).rejects.toThrow(/Bad username or password/);
    const c2 = await mqtt.connectAsync(url, { clientId: node.id, username: node.id, password: rot.body.credentials.password, reconnectPeriod: 0 });
    await c2.endAsync();
  });

  it('validates node bodies and unknown references', async () => {
    const noZone = await t.api('POST', '/api/v1/nodes', { name: 'x', zoneId: 'no-zone' });
    expect(noZone.status).toBe(404);
    expect(noZone.body.code).toBe('ZONE_NOT_FOUND');
    const bad = await t.api('POST', '/api/v1/nodes', { name: 'x', zoneId: 'Bad Id!' });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/zoneId/);
    expect((await t.api('PATCH', '/api/v1/nodes/nobody', { name: 'y' })).body.code).toBe('NODE_NOT_FOUND');
  });

  it('keeps the audit trail append-only', async () => {
    const audit = await t.api<any[]>('GET', '/api/v1/audit');
    expect(audit.body.some((e) => e.action === 'node.provision')).toBe(true);
    expect(() => t.ctl.store.db.prepare('UPDATE audit SET actor = ?').run('mallory')).toThrow(/append-only/);
    expect(() => t.ctl.store.db.prepare('DELETE FROM audit').run()).toThrow(/append-only/);
  });

  it('folds old raw telemetry into rollups', () => {
    const { store } = t.ctl;
    const tel = (ts: number, temp: number) => JSON.stringify({ temperatureC: temp, power: { batteryV: 12 + temp / 100, mainsV: 230 }, modem: { rssiDbm: -70 }, volume: 50, clock: { offsetMs: 1 } });
    const zone = store.listZones('default')[0]!;
    store.insertNode({ id: 'roll-1', communeId: 'default', zoneId: zone.id, name: 'r', lat: null, lon: null, hardware: '{}', secretHash: '0'.repeat(64), actualOnly: false, createdAt: 0 });
    store.writeTelemetryBatch([0, 60_000, 120_000, 400_000].map((ts, i) => ({ nodeId: 'roll-1', communeId: 'default', ts, json: tel(ts, 30 + i * 10) })));
    const folded = store.compactTelemetry(300_000, 300_000);
    expect(folded).toBe(3);
    const roll = store.telemetryRollup('roll-1', 0, 1e9, 10);
    expect(roll).toHaveLength(1);
    expect(roll[0]!.n).toBe(3);
    expect(roll[0]!.temperature_c).toBeCloseTo(40, 5);
    expect(store.telemetryRaw('roll-1', 0, 1e9, 10).map((r) => r.ts)).toEqual([400_000]);
  });
});

describe('controller restart', () => {
  it('keeps its data and republishes retained node config from SQLite to the fresh embedded broker', async () => {
    const a = await startTestController();
    await a.api('POST', '/api/v1/zones', { id: 'thon-r', name: 'R' });
    const { body } = await a.api('POST', '/api/v1/nodes', { id: 'cum-r', name: 'R1', zoneId: 'thon-r' });
    const dir = a.dir;
    await a.ctl.stop();
    const b = await startTestController({ dir });
    try {
      expect((await b.api('GET', '/api/v1/nodes/cum-r')).body.zoneId).toBe('thon-r');
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.ctl.broker!.port}`, { clientId: 'cum-r', username: 'cum-r', password: body.credentials.password, reconnectPeriod: 0 });
      const cfg = await new Promise<Buffer>((resolve) => { c.on('message', (_t, p) => resolve(p)); void c.subscribeAsync(topicFor('config', 'cum-r')); });
      expect(JSON.parse(String(cfg)).zoneId).toBe('thon-r');
      await c.endAsync();
    } finally {
      await b.stop();
      (await import('node:fs')).rmSync(dir, { recursive: true, force: true });
    }
  });
});
