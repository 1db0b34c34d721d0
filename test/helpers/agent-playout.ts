/**
 * Helpers for the edge agent's store-and-forward tests: hand-built plans (the controller's scheduler is
 * not needed to test the agent) and Ogg/Opus media made with the real ffmpeg.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createAgent, type Agent, type AgentOptions } from '../../edge-agent/src/agent.js';
import { provisionFleet, type ProvisionedNode } from '../../firmware-sim/src/fleet.js';
import { createTcpProxy, type TcpProxy } from '../../firmware-sim/src/impairment-proxy.js';
import { createSimHardware, type SimHardware } from '../../firmware-sim/src/sim-hardware.js';
import type { SoundEdge } from '../../firmware-sim/src/virtual-dac.js';
import type { Airing, AiringItem, Plan } from '../../schemas/src/index.js';
import { startTestController, type TestController } from './controller.js';
import { nextEvent, waitFor } from './wait.js';

const run = promisify(execFile);

export interface MediaFile { file: string; bytes: Buffer; sha256: string; sizeBytes: number; durationMs: number }

/** A sine tone encoded to Ogg/Opus 48 kHz mono by ffmpeg (what the controller distributes). */
export async function makeToneOpus(dir: string, name: string, o: { seconds?: number; hz?: number; amplitude?: number } = {}): Promise<MediaFile> {
  const file = path.join(dir, `${name}.opus`);
  const seconds = o.seconds ?? 2;
  const expr = `${o.amplitude ?? 0.5}*sin(2*PI*${o.hz ?? 440}*t)`;
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', `aevalsrc=${expr}:s=48000:d=${seconds}`,
    '-ac', '1', '-ar', '48000', '-c:a', 'libopus', '-b:a', '32k', file]);
  const bytes = fs.readFileSync(file);
  return { file, bytes, sha256: crypto.createHash('sha256').update(bytes).digest('hex'), sizeBytes: bytes.length, durationMs: seconds * 1000 };
}

let seq = 0;
export function envelope(now = Date.now()) {
  seq++;
  return { v: 1 as const, msgId: `test-${now.toString(36)}-${seq}-${crypto.randomBytes(3).toString('hex')}`, issuedAt: Math.floor(now), seq: Math.floor(now) * 1000 + seq };
}

export function mediaItem(m: MediaFile, mediaId: string, p = `/media/${mediaId}.opus`) {
  return { kind: 'media' as const, mediaId, sha256: m.sha256, sizeBytes: m.sizeBytes, durationMs: m.durationMs, path: p };
}

export function airing(o: Partial<Airing> & Pick<Airing, 'id' | 'startAt' | 'items'>): Airing {
  const durationMs = o.durationMs ?? o.items.reduce((a, it) => a + it.durationMs, 0);
  return {
    scheduleId: 'sch-1', programmeId: 'prog-1', title: `Airing ${o.id}`, priority: 'normal', rank: 0,
    onInterrupt: 'drop', quietOverride: false, ...o, durationMs,
  };
}

/** A plan whose quiet hours never cover `now` (unless given), so tests pick when quiet hours apply. */
export function plan(nodeId: string, version: number, airings: Airing[], o: Partial<Plan> = {}): Plan {
  const now = Date.now();
  return {
    ...envelope(now), nodeId, version, from: now - 60_000, to: now + 48 * 3600_000,
    timezone: 'Asia/Ho_Chi_Minh', quietHours: quietHoursAwayFrom(now), airings, ...o,
  };
}

/** A one-hour quiet window twelve hours away from `t` (in Ho Chi Minh time). */
export function quietHoursAwayFrom(t: number) {
  const h = (new Date(t + 7 * 3600_000).getUTCHours() + 12) % 24;
  const hh = String(h).padStart(2, '0');
  const he = String((h + 1) % 24).padStart(2, '0');
  return { start: `${hh}:00`, end: `${he}:00` };
}

/** A quiet window covering `t` ± 2 hours (in Ho Chi Minh time). */
export function quietHoursAround(t: number) {
  const h = new Date(t + 7 * 3600_000).getUTCHours();
  return { start: `${String((h + 22) % 24).padStart(2, '0')}:00`, end: `${String((h + 2) % 24).padStart(2, '0')}:00` };
}

// ---- integration harness: a real controller, media through its API, agents on simulated hardware ----


export interface Cluster { spec: ProvisionedNode; hw: SimHardware; agent: Agent; dataDir: string; proxy?: TcpProxy }
export type MediaItem = Extract<AiringItem, { kind: 'media' }>;

export async function startPlayoutHarness(o: { nodes: number; prefix: string }) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-playout-'));
  const t: TestController = await startTestController();
  const clusters: Cluster[] = [];
  // Above any version the controller's own scheduler gives (it starts at the wall clock in seconds).
  let version = Math.floor(Date.now() / 1000) + 1_000_000;

  // A 2 s tone made with ffmpeg, uploaded through the media API like an operator's file.
  const wav = path.join(tmp, 'tone.wav');
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'aevalsrc=0.3*sin(2*PI*440*t):s=48000:d=2', '-ac', '1', wav]);
  const form = new FormData();
  form.append('file', new Blob([fs.readFileSync(wav)]), 'tone.wav');
  const up = await fetch(`${t.base}/api/v1/media`, { method: 'POST', headers: { authorization: `Bearer ${t.token}` }, body: form });
  if (up.status !== 201) throw new Error(`media upload failed: ${up.status} ${await up.text()}`);
  const m = (await up.json()) as { id: string; durationMs: number; formats: { opus: { sha256: string; sizeBytes: number } } };
  const tone: MediaItem = { kind: 'media', mediaId: m.id, sha256: m.formats.opus.sha256, sizeBytes: m.formats.opus.sizeBytes, durationMs: m.durationMs, path: `/api/v1/media/${m.id}/audio?format=opus` };
  const specs = await provisionFleet({ base: t.base, token: t.token, count: o.nodes, villages: 2, prefix: o.prefix });

  const h = {
    t, tmp, tone, specs, clusters,
    startAgent(c: Omit<Cluster, 'agent'>, extra: Partial<AgentOptions> = {}): Agent {
      const agent = createAgent({
        nodeId: c.spec.nodeId, credentials: { username: c.spec.username, password: c.spec.password },
        brokerUrl: c.proxy ? `mqtt://127.0.0.1:${c.proxy.port}` : c.spec.mqttUrl, hardware: c.hw, dataDir: c.dataDir,
        telemetryIntervalMs: 500, keepaliveS: 2, syncIntervalMs: 300, receiptResendMs: 2000, ...extra,
      });
      void agent.start();
      return agent;
    },
    /** Node i on simulated hardware (amplifier-gated DAC output: what a listener hears). */
    async cluster(i: number, co: { offsetMs: number; driftPpm: number; proxied?: boolean }): Promise<Cluster> {
      const spec = specs[i]!;
      const hw = createSimHardware({ nodeId: spec.nodeId, seed: spec.nodeId, offsetMs: co.offsetMs, driftPpm: co.driftPpm, warmupMs: 300, volume: 60 });
      const dataDir = path.join(tmp, spec.nodeId);
      const brokerPort = Number(new URL(spec.mqttUrl).port);
      const proxy = co.proxied ? await createTcpProxy({ target: { host: '127.0.0.1', port: brokerPort } }) : undefined;
      const c: Cluster = { spec, hw, dataDir, ...(proxy ? { proxy } : {}), agent: undefined as unknown as Agent };
      c.agent = h.startAgent(c);
      clusters.push(c);
      return c;
    },
    nextVersion: () => ++version,
    /** Publish a hand-built plan through the controller's fleet link; resolves with the agent's verdict. */
    publishPlan(c: Cluster, airings: Airing[], po: Partial<Plan> = {}) {
      const now = t.ctl.now();
      const p: Plan = {
        ...envelope(now), nodeId: c.spec.nodeId, version: ++version, from: now - 60_000, to: now + 48 * 3600_000,
        timezone: 'Asia/Ho_Chi_Minh', quietHours: quietHoursAwayFrom(now), airings, ...po,
      };
      const verdict = nextEvent<{ version: number; status: string; error?: string }>((cb) => c.agent.on('plan', cb), (e) => e.version === p.version, 10_000, `plan ${p.version} on ${c.spec.nodeId}`);
      t.ctl.link.publish('plan', c.spec.nodeId, p);
      return verdict;
    },
    /** The first onset the DAC emits at or after true time `after`. */
    onsetAfter(c: Cluster, after: number, timeoutMs = 15_000): Promise<SoundEdge> {
      const seen = c.hw.sink.onsets().find((e) => e.trueMs >= after);
      if (seen) return Promise.resolve(seen);
      return nextEvent<SoundEdge>((cb) => { c.hw.sink.on('onset', cb); return () => c.hw.sink.off('onset', cb); }, (e) => e.trueMs >= after, timeoutMs, `onset on ${c.spec.nodeId}`);
    },
    /** Receipts the controller committed (its receipts API). */
    async stored(nodeId: string, airingId: string): Promise<any[]> {
      const r = await t.api<any[]>('GET', `/api/v1/receipts?nodeId=${nodeId}&airingId=${encodeURIComponent(airingId)}`);
      return r.status === 200 ? r.body : [];
    },
    async storedUntil(nodeId: string, airingId: string, state: string, timeoutMs = 20_000): Promise<any[]> {
      return waitFor(async () => {
        const r = await h.stored(nodeId, airingId);
        return r.some((x) => x.state === state) ? r : undefined;
      }, { what: `${state} receipt of ${airingId} on ${nodeId}`, timeoutMs });
    },
    synced: (c: Cluster) => waitFor(() => c.agent.clockSource.estimate().samples >= 6, { what: `clock sync of ${c.spec.nodeId}` }),
    /** The receipt journal on disk ('' once everything is acked and compacted). */
    journal(c: Cluster): string {
      try { return fs.readFileSync(path.join(c.dataDir, 'receipts.jsonl'), 'utf8'); } catch { return ''; }
    },
    async stop() {
      for (const c of clusters) {
        await c.agent.stop();
        c.agent.dispose();
        await c.hw.close();
        await c.proxy?.close();
      }
      await t.stop();
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
  return h;
}
export type PlayoutHarness = Awaited<ReturnType<typeof startPlayoutHarness>>;
