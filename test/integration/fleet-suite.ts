import crypto from 'node:crypto';
import http from 'node:http';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerOptions } from '../../controller/src/controller.js';
import WebSocket from 'ws';
import { createTcpProxy, type TcpProxy } from '../../firmware-sim/src/impairment-proxy.js';
import { provisionFleet, runFleet, type ProvisionedNode, type RunningFleet } from '../../firmware-sim/src/fleet.js';
import { topicFor } from '../../schemas/src/index.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { nextEvent, waitFor } from '../helpers/wait.js';

const VILLAGES = 3;
const PER_VILLAGE = 8; // 24 agents
const OFFSETS = [-2000, -750, 0, 900, 2000];

export interface BrokerSetup {
  /** Extra controller options (e.g. RADIO_MQTT_URL for an external broker). */
  controller(): Promise<ControllerOptions>;
  /** The broker's address as agents see it. */
  brokerPort(t: TestController): number;
  /** aedes closes a client whose publish is not authorised; Mosquitto drops the message silently. */
  closesOnForbiddenPublish: boolean;
  teardown?(): Promise<void>;
}

/** The fleet integration suite; it runs once per broker (embedded aedes, external Mosquitto). */
export function fleetSuite(name: string, broker: BrokerSetup) {
describe(`fleet on ${name} (24 simulated clusters)`, () => {
  let t: TestController;
  let specs: ProvisionedNode[];
  let fleet: RunningFleet;
  let proxy: TcpProxy;
  let brokerPort: number;

  beforeAll(async () => {
    t = await startTestController(await broker.controller());
    brokerPort = broker.brokerPort(t);
    specs = await provisionFleet({ base: t.base, token: t.token, count: VILLAGES * PER_VILLAGE, villages: VILLAGES, prefix: 'it' });
    // Cluster 0 reaches the broker through an impairment proxy so the test can black-hole its link.
    proxy = await createTcpProxy({ target: { host: '127.0.0.1', port: brokerPort } });
    fleet = await runFleet(specs, {
      telemetryIntervalMs: 400, keepaliveS: 2, syncIntervalMs: 300,
      mqttUrl: (s, i) => (i === 0 ? `mqtt://127.0.0.1:${proxy.port}` : s.mqttUrl),
      hardware: (_s, i) => ({ offsetMs: OFFSETS[i % OFFSETS.length], driftPpm: ((i % 3) - 1) * 100, warmupMs: 200 }),
    });
  });

  afterAll(async () => {
    await fleet?.stop();
    await proxy?.close();
    await t?.stop();
    await broker.teardown?.();
  });

  it('shows every cluster online through the API', async () => {
    await waitFor(async () => {
      const r = await t.api<{ status: string }[]>('GET', '/api/v1/nodes');
      return r.body.length === specs.length && r.body.every((n) => n.status === 'online');
    }, { what: 'all nodes online' });
    const zones = await t.api<{ id: string; nodeCount: number }[]>('GET', '/api/v1/zones');
    expect(zones.body.filter((z) => z.id.startsWith('it-')).map((z) => z.nodeCount)).toEqual([PER_VILLAGE, PER_VILLAGE, PER_VILLAGE]);
  });

  it('stores telemetry with what a technician needs, and keeps history', async () => {
    const id = specs[3]!.nodeId;
    const d = await waitFor(async () => {
      const r = await t.api('GET', `/api/v1/nodes/${id}`);
      return r.body.telemetry ? r.body : undefined;
    }, { what: 'telemetry' });
    const tel = d.telemetry.data;
    expect(tel.lines.length).toBeGreaterThan(0);
    expect(['Viettel', 'VNPT', 'MobiFone']).toContain(tel.modem.operator);
    expect(tel.power.source).toBe('mains');
    expect(typeof tel.clock.offsetMs).toBe('number');
    const hist = await waitFor(async () => {
      const r = await t.api('GET', `/api/v1/nodes/${id}/telemetry`);
      return r.body.raw.length >= 3 ? r.body : undefined;
    }, { what: 'telemetry history' });
    expect(hist.raw[0].temperatureC).toBeTypeOf('number');
  });

  it('estimates each agent clock offset against the offset firmware-sim injected', async () => {
    for (const f of fleet.agents.slice(0, OFFSETS.length)) {
      await waitFor(() => f.agent.clockSource.estimate().samples >= 8, { what: `sync samples of ${f.spec.nodeId}` });
      const local = f.hardware.clock.now();
      const estimatedController = f.agent.clockSource.toController(local);
      const trueNow = f.hardware.simClock!.toTrue(local);
      // Loopback MQTT: error well under 10 ms is expected; the bench measures it through delay.
      expect(Math.abs(estimatedController - trueNow)).toBeLessThan(10);
    }
  });

  it('detects an abruptly killed agent (last will), raises and clears the offline alarm, streams it on the WebSocket', async () => {
    const victim = fleet.agents[5]!;
    const ws = new WebSocket(`${t.base.replace('http', 'ws')}/api/v1/events?token=${t.token}`);
    const events: any[] = [];
    await new Promise<void>((resolve, reject) => { ws.on('message', (m) => { events.push(JSON.parse(String(m))); if (events.length === 1) resolve(); }); ws.on('error', reject); });
    expect(events[0].type).toBe('hello');
    await victim.agent.kill();
    await waitFor(() => events.find((e) => e.type === 'node.status' && e.nodeId === victim.spec.nodeId && e.status === 'offline'), { what: 'offline event' });
    const raised = await waitFor(() => events.find((e) => e.type === 'alarm.raised' && e.alarm.nodeId === victim.spec.nodeId && e.alarm.type === 'offline'), { what: 'offline alarm' });
    await victim.agent.start();
    await waitFor(() => events.find((e) => e.type === 'node.status' && e.nodeId === victim.spec.nodeId && e.status === 'online'), { what: 'online again' });
    const cleared = await waitFor(() => events.find((e) => e.type === 'alarm.cleared' && e.alarm.id === raised.alarm.id), { what: 'alarm cleared' });
    expect(cleared.alarm.clearedAt).toBeGreaterThanOrEqual(raised.alarm.raisedAt);
    ws.close();
  });

  it('detects a silent agent (black-holed link) by keepalive', async () => {
    const victim = fleet.agents[0]!;
    const start = Date.now();
    proxy.set({ up: { blackhole: true }, down: { blackhole: true } });
    await waitFor(() => t.ctl.nodes.get(victim.spec.nodeId)?.status === 'offline', { what: 'keepalive offline', timeoutMs: 20_000 });
    // keepalive 2 s → the broker gives up after 1.5 × 2 s; never before the link went silent.
    expect(Date.now() - start).toBeGreaterThanOrEqual(2000);
    proxy.set({ up: { blackhole: false }, down: { blackhole: false } });
    await waitFor(() => t.ctl.nodes.get(victim.spec.nodeId)?.status === 'online', { what: 'back online', timeoutMs: 30_000 });
  });

  it('raises and clears alarms for injected hardware faults; maintenance mode raises none', async () => {
    const f = fleet.agents[7]!;
    const alarmOf = async (type: string, state: string) => (await t.api<any[]>('GET', `/api/v1/alarms?nodeId=${f.spec.nodeId}&state=${state}`)).body.find((a) => a.type === type);
    f.hardware.inject({ kind: 'line_open', lineId: f.hardware.status().lines[0]!.id });
    const a = await waitFor(() => alarmOf('line_open', 'active'), { what: 'line_open alarm' });
    expect(a.severity).toBe('major');
    f.hardware.inject({ kind: 'mains_fail' });
    await waitFor(() => alarmOf('on_battery', 'active'), { what: 'on_battery alarm' });
    const ack = await t.api('POST', `/api/v1/alarms/${a.id}/ack`);
    expect(ack.body.ackedBy).toBe('admin');
    f.hardware.clear('line_open', f.hardware.status().lines[0]!.id);
    f.hardware.clear('mains_fail');
    await waitFor(async () => !(await alarmOf('line_open', 'active')) && !(await alarmOf('on_battery', 'active')), { what: 'alarms cleared' });

    const m = fleet.agents[8]!;
    expect((await t.api('PATCH', `/api/v1/nodes/${m.spec.nodeId}`, { maintenance: true })).status).toBe(200);
    m.hardware.inject({ kind: 'line_short' });
    // The telemetry after the fault arrives and is evaluated; still no alarm for a node in maintenance.
    await waitFor(async () => (await t.api('GET', `/api/v1/nodes/${m.spec.nodeId}`)).body.telemetry?.data.lines.some((l: any) => l.fault === 'short'), { what: 'short in telemetry' });
    t.ctl.alarms.tick();
    expect((await t.api<any[]>('GET', `/api/v1/alarms?nodeId=${m.spec.nodeId}&state=active`)).body).toEqual([]);
    m.hardware.clear('line_short');
  });

  it('round-trips a command to a whole zone and to one node', async () => {
    const zoneId = specs[1]!.zoneId;
    const r = await t.api('POST', `/api/v1/zones/${zoneId}/commands`, { name: 'set_volume', params: { volume: 35 }, waitMs: 10_000 });
    expect(r.status).toBe(200);
    const online = fleet.agents.filter((f) => f.spec.zoneId === zoneId);
    expect(r.body.results).toHaveLength(online.length);
    for (const row of r.body.results) if (t.ctl.nodes.get(row.nodeId)?.status === 'online') expect(row.status).toBe('ok');
    for (const f of online) if (f.agent.connected()) expect(f.hardware.status().volume).toBe(35);
    const one = await t.api('POST', `/api/v1/nodes/${specs[2]!.nodeId}/commands`, { name: 'test_tone', params: { durationMs: 300, frequencyHz: 1000 } });
    expect(one.body.results[0].status).toBe('ok');
    const again = await t.api('GET', `/api/v1/commands/${one.body.transaction}`);
    expect(again.body.results[0].rttMs).toBeGreaterThanOrEqual(0);
    const audit = await t.api<any[]>('GET', '/api/v1/audit?limit=50');
    expect(audit.body.some((e) => e.action === 'command.set_volume' && e.target === `zone:${zoneId}`)).toBe(true);
  });

  it('moves a node to another zone: it is disconnected, resubscribes, and follows the new zone', async () => {
    const f = fleet.agents[9]!;
    const newZone = specs.find((s) => s.zoneId !== f.spec.zoneId)!.zoneId;
    const reconnected = nextEvent<void>((cb) => f.agent.on('connected', cb), () => true, 15_000, 'reconnect');
    const configured = nextEvent<{ zoneId: string }>((cb) => f.agent.on('config', cb), (c) => c.zoneId === newZone, 15_000, 'new config');
    const r = await t.api('PATCH', `/api/v1/nodes/${f.spec.nodeId}`, { zoneId: newZone });
    expect(r.body.zoneId).toBe(newZone);
    await reconnected;
    await configured;
    await waitFor(() => t.ctl.nodes.get(f.spec.nodeId)?.status === 'online', { what: 'online after the move' });
    const cmd = await t.api('POST', `/api/v1/zones/${newZone}/commands`, { name: 'set_volume', params: { volume: 22 }, waitMs: 10_000 });
    expect(cmd.body.results.find((x: any) => x.nodeId === f.spec.nodeId).status).toBe('ok');
    expect(f.hardware.status().volume).toBe(22);
  });

  it('posts alarms to a webhook, signed', async () => {
    const secret = 'webhook-secret-1';
    const got: { body: string; sig: string | undefined }[] = [];
    const srv = http.createServer((req, res) => {
      let b = '';
      req.on('data', (c) => (b += c));
      req.on('end', () => { got.push({ body: b, sig: req.headers['x-radio-signature'] as string | undefined }); res.end('ok'); });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    const reg = await t.api('POST', '/api/v1/webhooks', { url: `http://127.0.0.1:${port}/hook`, secret });
    expect(reg.status).toBe(201);
    const f = fleet.agents[10]!;
    f.hardware.inject({ kind: 'amplifier' });
    const hit = await waitFor(() => got.find((g) => JSON.parse(g.body).event.alarm?.nodeId === f.spec.nodeId), { what: 'webhook call' });
    expect(hit.sig).toBe(`sha256=${crypto.createHmac('sha256', secret).update(hit.body).digest('hex')}`);
    expect(JSON.parse(hit.body).event.alarm.type).toBe('amplifier_fault');
    f.hardware.clear('amplifier');
    await t.api('DELETE', `/api/v1/webhooks/${reg.body.id}`);
    srv.close();
  });

  describe('bad input', () => {
    const url = () => `mqtt://127.0.0.1:${brokerPort}`;
    const connectErr = (opts: mqtt.IClientOptions) => new Promise<Error>((resolve, reject) => {
      const c = mqtt.connect(url(), { ...opts, reconnectPeriod: 0, protocolVersion: 4 });
      c.on('connect', () => { c.end(true); reject(new Error('connected but should not')); });
      c.on('error', (e) => { c.end(true); resolve(e); });
    });

    it('refuses anonymous and wrong-password connects', async () => {
      expect((await connectErr({ clientId: 'anon' })).message).toMatch(/Bad username or password|Not authorized/i);
      expect((await connectErr({ clientId: specs[0]!.nodeId, username: specs[0]!.nodeId, password: 'wrong' })).message).toMatch(/Bad username or password|Not authorized/i);
      expect((await connectErr({ clientId: 'someone-else', username: specs[0]!.nodeId, password: specs[0]!.password })).message).toMatch(/Identifier rejected|Not authorized/i);
    });

    it('refuses a node publishing on another node\'s topic, and a forbidden subscription', async () => {
      const s = specs[11]!;
      await fleet.byId(s.nodeId)!.agent.kill();
      const c = await mqtt.connectAsync(url(), { clientId: s.nodeId, username: s.username, password: s.password, protocolVersion: 4, reconnectPeriod: 0 });
      // SUBACK 0x80: MQTT.js rejects the subscription.
      await expect(c.subscribeAsync(topicFor('nodeCommand', specs[12]!.nodeId))).rejects.toThrow(/Subscribe error/);
      if (broker.closesOnForbiddenPublish) {
        const closed = new Promise<void>((r) => c.once('close', () => r()));
        c.publish(topicFor('telemetry', specs[12]!.nodeId), '{"forged":true}', { qos: 1 });
        await closed; // aedes closes a client whose publish is not authorised
      } else {
        // Mosquitto drops it silently: publish the forgery, then an allowed marker on the same
        // connection; once the marker has arrived, the forgery (sent first) would have too.
        const invalidBefore = t.ctl.link.counters.invalid;
        c.publish(topicFor('telemetry', specs[12]!.nodeId), '{"forged":true}', { qos: 1 });
        c.publish(topicFor('telemetry', s.nodeId), '{"marker":true}', { qos: 1 });
        await waitFor(() => t.ctl.link.counters.invalid > invalidBefore, { what: 'the marker' });
        // Exactly one invalid message reached the controller: the marker. The forgery (also invalid,
        // and sent first) never did.
        expect(t.ctl.link.counters.invalid - invalidBefore).toBe(1);
      }
      c.end(true);
      await fleet.byId(s.nodeId)!.agent.start();
    });

    it('drops malformed, oversized and wrong-version payloads and keeps running', async () => {
      const s = specs[13]!;
      await fleet.byId(s.nodeId)!.agent.kill();
      const before = t.ctl.link.counters.invalid;
      const c = await mqtt.connectAsync(url(), { clientId: s.nodeId, username: s.username, password: s.password, protocolVersion: 4, reconnectPeriod: 0 });
      const topic = topicFor('telemetry', s.nodeId);
      await c.publishAsync(topic, 'not json', { qos: 1 });
      await c.publishAsync(topic, JSON.stringify({ v: 2, ts: 1 }), { qos: 1 });
      await c.publishAsync(topic, JSON.stringify({ v: 1, ts: 1, pad: 'x'.repeat(300 * 1024) }), { qos: 1 });
      await c.publishAsync(topicFor('event', s.nodeId), JSON.stringify({ v: 1, ts: 1, kind: 'fault', fault: 'meteor', state: 'raised' }), { qos: 1 });
      await waitFor(() => t.ctl.link.counters.invalid >= before + 4, { what: 'invalid counter' });
      c.end(true);
      const h = await fetch(`${t.base}/api/v1/health`);
      expect(h.status).toBe(200);
      await fleet.byId(s.nodeId)!.agent.start();
    });

    it('answers unknown ids with 404 and a code, invalid bodies with the field named', async () => {
      const n = await t.api('GET', '/api/v1/nodes/no-such-node');
      expect(n.status).toBe(404);
      expect(n.body.code).toBe('NODE_NOT_FOUND');
      const z = await t.api('POST', '/api/v1/zones/no-such-zone/commands', { name: 'reboot', params: {} });
      expect(z.body.code).toBe('ZONE_NOT_FOUND');
      const bad = await t.api('POST', `/api/v1/nodes/${specs[0]!.nodeId}/commands`, { name: 'set_volume', params: { volume: 300 } });
      expect(bad.status).toBe(400);
      expect(bad.body.message).toMatch(/volume/);
      const noauth = await fetch(`${t.base}/api/v1/nodes`);
      expect(noauth.status).toBe(401);
    });
  });
});
}
