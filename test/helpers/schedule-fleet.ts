/**
 * Harness for the scheduling integration tests: a real controller whose clock can be stepped (a day
 * compressed), media made by ffmpeg and uploaded through the media API, programmes and schedules created
 * through the HTTP API, and edge agents on firmware-sim hardware whose clocks are offset and drift.
 *
 * Clocks: the controller reads TRUE time + D (D stepped by the test); each cluster's SimClock reads
 * TRUE time + D + its own offset (and drifts). Stepping moves D and every SimClock by the same amount, so
 * controller − agent offsets stay what firmware-sim injected; a scheduled instant S (controller time)
 * sounds at TRUE time S − D, which is what the virtual DAC's onsets are compared with.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createAgent, type Agent, type AgentOptions } from '../../edge-agent/src/agent.js';
import { provisionFleet, type ProvisionedNode } from '../../firmware-sim/src/fleet.js';
import { createTcpProxy, type TcpProxy } from '../../firmware-sim/src/impairment-proxy.js';
import { trueClock } from '../../firmware-sim/src/sim-clock.js';
import { createSimHardware, type SimHardware } from '../../firmware-sim/src/sim-hardware.js';
import type { SoundEdge } from '../../firmware-sim/src/virtual-dac.js';
import { startTestController, type TestController } from './controller.js';
import { nextEvent, waitFor } from './wait.js';

const run = promisify(execFile);
const PASSWORD = 'test-password';

/** "YYYY-MM-DDTHH:MM[:SS]" in the commune's time (Asia/Ho_Chi_Minh, UTC+7, no DST) → epoch ms. */
export const vnTime = (local: string) => Date.parse(`${local.length === 16 ? `${local}:00` : local}+07:00`);

/** Controller clock = true time + D; D moves only when the test steps it. */
export interface SteppableClock {
  now(): number;
  /** D: controller time − true time, ms. */
  offsetMs(): number;
  step(deltaMs: number): void;
}

export function createSteppableClock(startAt: number): SteppableClock {
  let d = startAt - trueClock.now();
  return { now: () => trueClock.now() + d, offsetMs: () => d, step(ms) { d += ms; } };
}

export interface ToneMedia { id: string; durationMs: number; sha256: string; sizeBytes: number }

/** A sine tone made by ffmpeg (WAV) and uploaded through POST /api/v1/media, like an operator's file. */
export async function uploadTone(base: string, token: string, dir: string, o: { name: string; seconds: number; hz: number; amplitude?: number }): Promise<ToneMedia> {
  const wav = path.join(dir, `${o.name}.wav`);
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i',
    `aevalsrc=${o.amplitude ?? 0.3}*sin(2*PI*${o.hz}*t):s=48000:d=${o.seconds}`, '-ac', '1', wav]);
  const form = new FormData();
  form.append('file', new Blob([fs.readFileSync(wav)]), `${o.name}.wav`);
  const up = await fetch(`${base}/api/v1/media`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form });
  if (up.status !== 201) throw new Error(`media upload failed: ${up.status} ${await up.text()}`);
  const m = (await up.json()) as { id: string; durationMs: number; formats: { opus: { sha256: string; sizeBytes: number } } };
  return { id: m.id, durationMs: m.durationMs, sha256: m.formats.opus.sha256, sizeBytes: m.formats.opus.sizeBytes };
}

export interface SchedCluster {
  spec: ProvisionedNode;
  hw: SimHardware;
  agent: Agent;
  dataDir: string;
  /** Offset injected by firmware-sim against the CONTROLLER clock (agent − controller), ms. */
  offsetMs: number;
  driftPpm: number;
  proxy?: TcpProxy;
}

export interface ReceiptRow { id: string; nodeId: string; airingId: string; state: string; at: number; startErrorMs: number | null; reason: string | null; interruptedBy: string | null; playedMs: number | null; airingMatch: string; receivedAt: number }

export async function startScheduleHarness(o: { prefix: string; nodes: number; villages: number; clock: SteppableClock; agent?: Partial<AgentOptions> }) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `sched-${o.prefix}-`));
  const clock = o.clock;
  const t: TestController = await startTestController({ now: () => clock.now() });
  let token = t.token;
  const clusters: SchedCluster[] = [];

  async function login() {
    const r = await t.ctl.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'admin', password: PASSWORD } });
    token = (r.json() as { token: string }).token;
  }
  /** JSON API call as admin; logs in again when the token expired (a compressed day outlives its 12 h TTL). */
  async function api<T = any>(method: string, p: string, body?: unknown): Promise<{ status: number; body: T }> {
    for (let attempt = 0; ; attempt++) {
      const r = await t.ctl.app.inject({ method: method as 'GET', url: p, headers: { authorization: `Bearer ${token}` }, ...(body !== undefined ? { payload: body as object } : {}) });
      if (r.statusCode === 401 && attempt === 0) { await login(); continue; }
      return { status: r.statusCode, body: (r.body ? r.json() : undefined) as T };
    }
  }
  async function ok<T = any>(method: string, p: string, body?: unknown, status = method === 'POST' ? 201 : 200): Promise<T> {
    const r = await api<T>(method, p, body);
    if (r.status !== status) throw new Error(`${method} ${p} → ${r.status}: ${JSON.stringify(r.body)}`);
    return r.body;
  }

  const specs = await provisionFleet({ base: t.base, token, count: o.nodes, villages: o.villages, prefix: o.prefix });

  const h = {
    t, tmp, clock, specs, clusters, api, ok,
    uploadTone: (name: string, seconds: number, hz: number) => uploadTone(t.base, token, tmp, { name, seconds, hz }),
    startAgent: (c: Omit<SchedCluster, 'agent'>, extra: Partial<AgentOptions> = {}) => startAgent(c, { ...o.agent, ...extra }),
    /** Node i on simulated hardware: its clock reads controller time + offsetMs, drifting driftPpm. */
    async cluster(i: number, co: { offsetMs: number; driftPpm: number; proxied?: boolean; agent?: Partial<AgentOptions> }): Promise<SchedCluster> {
      const c = await startCluster(specs[i]!, { ...co, controllerOffsetMs: clock.offsetMs(), dataDir: path.join(tmp, specs[i]!.nodeId), agent: { ...o.agent, ...co.agent } });
      clusters.push(c);
      return c;
    },
    /** The agent's estimate of controller time agrees with the controller's clock within `tolMs`. */
    converged: (c: SchedCluster, tolMs = 2) => c.agent.clockSource.estimate().synced && Math.abs(c.agent.controllerNow() - clock.now()) < tolMs,
    async synced(cs: SchedCluster[] = clusters) {
      await waitFor(() => cs.every((c) => h.converged(c)), { what: 'clock sync of every agent', timeoutMs: 20_000 });
    },
    /**
     * Step the controller clock and every cluster's clock by `deltaMs` (hours pass in an instant). An
     * `offline` cluster's clock also gains what its crystal would have drifted meanwhile: cut off, its
     * agent must extrapolate that with its own drift estimate. Connected agents re-sync, so their drift
     * over the step is not replayed. Then the rolling re-plan runs (its timer is real-time: it cannot
     * notice a step), connected agents' estimates are awaited, and every agent's playout recomputes its
     * wake-up (its one timer is real-time too, at most 5 min: without this it sleeps through the step).
     */
    async step(deltaMs: number, so: { offline?: SchedCluster[] } = {}) {
      clock.step(deltaMs);
      for (const c of clusters) c.hw.simClock!.step(deltaMs + (so.offline?.includes(c) ? deltaMs * c.driftPpm * 1e-6 : 0));
      t.ctl.scheduling.tick();
      await h.synced(clusters.filter((c) => !so.offline?.includes(c)));
      for (const c of clusters) c.agent.playout.clockChanged();
    },
    /** Step so that the controller reads `ctlTarget`. */
    stepTo(ctlTarget: number, so: { offline?: SchedCluster[] } = {}) { return h.step(ctlTarget - clock.now(), so); },
    /** TRUE time at which controller instant `ctlMs` occurs (with the current step). */
    trueOf: (ctlMs: number) => ctlMs - clock.offsetMs(),
    onsetAfter,
    onsetsBetween: (c: SchedCluster, fromTrue: number, toTrue: number) => c.hw.sink.onsets().filter((e) => e.trueMs >= fromTrue && e.trueMs < toTrue),
    async receipts(q: { nodeId?: string; airingId?: string } = {}): Promise<ReceiptRow[]> {
      const qs = new URLSearchParams({ limit: '5000', ...(q.nodeId ? { nodeId: q.nodeId } : {}), ...(q.airingId ? { airingId: q.airingId } : {}) });
      return ok<ReceiptRow[]>('GET', `/api/v1/receipts?${qs}`);
    },
    /** Wait until every (node, airing) pair has a receipt in `state` stored by the controller. */
    async receiptsUntil(pairs: { nodeId: string; airingId: string }[], state: string, timeoutMs = 20_000): Promise<ReceiptRow[]> {
      let rows: ReceiptRow[] = [];
      let missing: string[] = [];
      try {
        await waitFor(async () => {
          rows = await h.receipts();
          const have = new Set(rows.filter((r) => r.state === state).map((r) => `${r.nodeId}|${r.airingId}`));
          missing = pairs.map((p) => `${p.nodeId}|${p.airingId}`).filter((k) => !have.has(k));
          return missing.length === 0;
        }, { what: `${state} receipts of ${pairs.length} (node, airing) pairs`, timeoutMs, intervalMs: 100 });
      } catch (e) {
        const stored = missing.map((k) => `${k}: [${rows.filter((r) => `${r.nodeId}|${r.airingId}` === k).map((r) => `${r.id} ${r.reason ?? ''}`).join(', ')}]`);
        throw new Error(`${(e as Error).message}; missing ${stored.join('; ')}`);
      }
      return rows;
    },
    async stop() {
      for (const c of clusters) await stopCluster(c);
      await t.stop();
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
  return h;
}
export type ScheduleHarness = Awaited<ReturnType<typeof startScheduleHarness>>;

/** The first onset the cluster's DAC emits at or after true time `after`. */
export function onsetAfter(c: SchedCluster, after: number, timeoutMs = 20_000): Promise<SoundEdge> {
  const seen = c.hw.sink.onsets().find((e) => e.trueMs >= after);
  if (seen) return Promise.resolve(seen);
  return nextEvent<SoundEdge>((cb) => { c.hw.sink.on('onset', cb); return () => c.hw.sink.off('onset', cb); }, (e) => e.trueMs >= after, timeoutMs, `onset on ${c.spec.nodeId}`);
}

/** Start an agent for a cluster (fast sync and reconnects: tests wait on them). */
export function startAgent(c: Omit<SchedCluster, 'agent'>, extra: Partial<AgentOptions> = {}): Agent {
  const agent = createAgent({
    nodeId: c.spec.nodeId, credentials: { username: c.spec.username, password: c.spec.password },
    brokerUrl: c.proxy ? `mqtt://127.0.0.1:${c.proxy.port}` : c.spec.mqttUrl, hardware: c.hw, dataDir: c.dataDir,
    telemetryIntervalMs: 1000, keepaliveS: 2, syncIntervalMs: 300, receiptResendMs: 2000, reconnectMaxMs: 1000, ...extra,
  });
  void agent.start();
  return agent;
}

/**
 * A cluster on simulated hardware (amplifier-gated DAC: what a listener hears) whose clock reads
 * controller time + offsetMs and drifts driftPpm; `controllerOffsetMs` is controller − true time.
 * `proxied`: its MQTT goes through a TCP impairment proxy (to cut it off).
 */
export async function startCluster(spec: ProvisionedNode, co: { offsetMs: number; driftPpm: number; controllerOffsetMs?: number; dataDir: string; proxied?: boolean; agent?: Partial<AgentOptions> }): Promise<SchedCluster> {
  const hw = createSimHardware({ nodeId: spec.nodeId, seed: spec.nodeId, offsetMs: (co.controllerOffsetMs ?? 0) + co.offsetMs, driftPpm: co.driftPpm, warmupMs: 300, volume: 60 });
  const proxy = co.proxied ? await createTcpProxy({ target: { host: '127.0.0.1', port: Number(new URL(spec.mqttUrl).port) } }) : undefined;
  const c: SchedCluster = { spec, hw, dataDir: co.dataDir, offsetMs: co.offsetMs, driftPpm: co.driftPpm, ...(proxy ? { proxy } : {}), agent: undefined as unknown as Agent };
  c.agent = startAgent(c, co.agent);
  return c;
}

/** Teardown that never waits on the network (a cut-off agent could not publish its offline status). */
export async function stopCluster(c: SchedCluster) {
  await c.agent.kill();
  c.agent.dispose();
  await c.hw.close();
  await c.proxy?.close();
}

/** Count receipt rows per (node, airing, state): a lost receipt is a 0, a doubled one (or a replay) a 2. */
export function receiptCounts(rows: readonly ReceiptRow[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of rows) {
    const k = `${r.nodeId}|${r.airingId}|${r.state}`;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}
