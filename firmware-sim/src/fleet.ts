import { pino, type Logger } from 'pino';
import { createAgent, type Agent, type AgentOptions } from '../../edge-agent/src/agent.js';
import { createSimHardware, type SimHardware, type SimHardwareOptions } from './sim-hardware.js';
import { createTicker } from './virtual-dac.js';

export interface ProvisionedNode {
  nodeId: string;
  zoneId: string;
  name: string;
  username: string;
  password: string;
  mqttUrl: string;
  httpBase: string;
}

export const VILLAGE_NAMES = ['Thôn Đông', 'Thôn Tây', 'Thôn Nam', 'Thôn Bắc', 'Thôn Trung', 'Thôn Thượng', 'Thôn Hạ', 'Thôn Mới'];

/** Minimal API client (fetch) used by the fleet launcher, the demo and benches. */
export async function login(base: string, username: string, password: string): Promise<string> {
  const r = await fetch(`${base}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
  if (!r.ok) throw new Error(`login failed: ${r.status} ${await r.text()}`);
  return ((await r.json()) as { token: string }).token;
}

async function call<T>(base: string, token: string, method: string, p: string, body?: unknown): Promise<{ status: number; body: T }> {
  const r = await fetch(`${base}${p}`, {
    method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await r.text();
  return { status: r.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/**
 * Create `villages` zones and `count` nodes spread over them through the controller's API (the same path
 * a technician's provisioning takes). Existing zones with the same ids are reused.
 */
export async function provisionFleet(o: { base: string; token: string; count: number; villages: number; prefix?: string; concurrency?: number; position?: { lat: number; lon: number }; reuse?: boolean }): Promise<ProvisionedNode[]> {
  const prefix = o.prefix ?? 'sim';
  const zones: string[] = [];
  for (let v = 0; v < o.villages; v++) {
    const id = `${prefix}-thon-${v + 1}`;
    const r = await call(o.base, o.token, 'POST', '/api/v1/zones', { id, name: VILLAGE_NAMES[v % VILLAGE_NAMES.length] + (v >= VILLAGE_NAMES.length ? ` ${v + 1}` : '') });
    if (r.status !== 201 && r.status !== 409) throw new Error(`zone create failed: ${r.status} ${JSON.stringify(r.body)}`);
    zones.push(id);
  }
  const out: ProvisionedNode[] = new Array(o.count);
  let next = 0;
  const base = o.position ?? { lat: 21.03, lon: 105.85 };
  async function worker() {
    for (;;) {
      const i = next++;
      if (i >= o.count) return;
      const zoneId = zones[i % zones.length]!;
      const nodeId = `${prefix}-${String(i + 1).padStart(4, '0')}`;
      const name = `Cụm loa ${Math.floor(i / zones.length) + 1} – ${zoneId}`;
      const r = await call<{ credentials: { username: string; password: string; mqttUrl: string; httpBase: string }; code?: string; message?: string }>(o.base, o.token, 'POST', '/api/v1/nodes', {
        id: nodeId, name, zoneId, position: { lat: base.lat + (i % 17) * 0.004, lon: base.lon + (i % 13) * 0.004 },
      });
      if (r.status === 409 && o.reuse) {
        // Already provisioned (a demo restarted on the same data dir): new credentials, same node.
        const rot = await call<{ credentials: { username: string; password: string; mqttUrl: string; httpBase: string } }>(o.base, o.token, 'POST', `/api/v1/nodes/${nodeId}/credentials`);
        if (rot.status !== 200) throw new Error(`node ${nodeId} credential rotation failed: ${rot.status}`);
        out[i] = { nodeId, zoneId, name, ...rot.body.credentials };
        continue;
      }
      if (r.status !== 201) throw new Error(`node ${nodeId} provisioning failed: ${r.status} ${r.body.message ?? ''}`);
      out[i] = { nodeId, zoneId, name, ...r.body.credentials };
    }
  }
  await Promise.all(Array.from({ length: o.concurrency ?? 8 }, worker));
  return out;
}

export interface FleetAgent { spec: ProvisionedNode; agent: Agent; hardware: SimHardware }

export interface RunFleetOptions {
  log?: Logger;
  telemetryIntervalMs?: number;
  keepaliveS?: number;
  syncIntervalMs?: number;
  /** Override the broker URL (e.g. an impairment proxy in front of the broker). */
  mqttUrl?: string | ((spec: ProvisionedNode, i: number) => string);
  hardware?: (spec: ProvisionedNode, i: number) => Partial<SimHardwareOptions>;
  /** Start agents in batches of this size, yielding between batches. */
  batch?: number;
  /** Per-agent option overrides (dataDir, lead times, …). */
  agent?: (spec: ProvisionedNode, i: number) => Partial<AgentOptions>;
}

/** Run agents on simulated hardware in this process. */
export async function runFleet(specs: ProvisionedNode[], o: RunFleetOptions = {}) {
  const log = o.log ?? pino({ level: 'silent' });
  const ticker = createTicker(10);
  const fleet: FleetAgent[] = specs.map((spec, i) => {
    const hardware = createSimHardware({ nodeId: spec.nodeId, seed: spec.nodeId, dac: { ticker }, log, ...(o.hardware?.(spec, i) ?? {}) });
    const url = typeof o.mqttUrl === 'function' ? o.mqttUrl(spec, i) : (o.mqttUrl ?? spec.mqttUrl);
    const agent = createAgent({
      nodeId: spec.nodeId, credentials: { username: spec.username, password: spec.password }, brokerUrl: url, hardware, log,
      telemetryIntervalMs: o.telemetryIntervalMs ?? 15_000, keepaliveS: o.keepaliveS ?? 8, syncIntervalMs: o.syncIntervalMs,
      onReboot: () => { void agent.stop().then(() => agent.start()); },
      ...(o.agent?.(spec, i) ?? {}),
    });
    return { spec, agent, hardware };
  });
  // Start in batches, yielding to the event loop between them so connects pipeline instead of one
  // synchronous SYN burst; waiting for each batch to finish would serialise on its slowest handshake.
  const batch = o.batch ?? 200;
  const connected: Promise<void>[] = [];
  for (let i = 0; i < fleet.length; i += batch) {
    for (const { agent, spec } of fleet.slice(i, i + batch)) {
      connected.push(new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { off(); reject(new Error(`agent ${spec.nodeId} did not connect within 60 s`)); }, 60_000);
        const off = agent.on('connected', () => { clearTimeout(timer); off(); resolve(); });
        void agent.start();
      }));
    }
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(connected);
  return {
    agents: fleet,
    byId: (id: string) => fleet.find((f) => f.spec.nodeId === id),
    async stop() {
      await Promise.all(fleet.map(async (f) => { await f.agent.stop(); f.agent.dispose(); await f.hardware.close(); }));
      ticker.stop();
    },
  };
}
export type RunningFleet = Awaited<ReturnType<typeof runFleet>>;
