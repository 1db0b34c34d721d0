/**
 * `npm run bench -- fleet`: a simulated fleet of 100 / 1,000 / 2,000 agents against the controller
 * (embedded aedes, SQLite) on this machine. Prints, per size: time from the first CONNECT until the API
 * shows all online, again after the controller is SIGKILLed and restarted (reconnect storm), command
 * round trip to all (p50/p95/p99, controller send → reply stored), controller RSS per node and CPU use,
 * telemetry ingest rate, and silent-death detection (one agent's process SIGSTOPped).
 * Last line: one JSON object for the 2,000-node run. Sizes: BENCH_FLEET_SIZES=100,1000,2000.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { login, provisionFleet, type ProvisionedNode } from '../firmware-sim/src/fleet.js';
import { startFleetProcesses } from '../firmware-sim/src/fleet-procs.js';
import { fmt, freePort, printMachine, procStats, spawnController, summary, type ControllerProc } from './lib.js';

const PASSWORD = 'bench-password';
const TELEMETRY_MS = 2000;

async function health(base: string): Promise<{ online: number; nodes: number } | undefined> {
  try {
    const r = await fetch(`${base}/api/v1/health`);
    return r.ok ? ((await r.json()) as { online: number; nodes: number }) : undefined;
  } catch { return undefined; }
}

async function untilOnline(base: string, n: number, t0: number, timeoutMs = 120_000): Promise<number> {
  for (;;) {
    const h = await health(base);
    if (h && h.online >= n) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`only ${h?.online ?? 0}/${n} online after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function nodeStatus(base: string, token: string, id: string): Promise<string> {
  const r = await fetch(`${base}/api/v1/nodes/${id}`, { headers: { authorization: `Bearer ${token}` } });
  return ((await r.json()) as { status: string }).status;
}

async function runSize(n: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-fleet-'));
  const http = await freePort();
  const mqtt = await freePort();
  let ctl: ControllerProc = await spawnController({ dir, http, mqtt, password: PASSWORD });
  const base = ctl.base;
  let token = await login(base, 'admin', PASSWORD);
  const specs = await provisionFleet({ base, token, count: n, villages: Math.max(3, Math.ceil(n / 25)), prefix: 'b', concurrency: 16 });
  // One canary agent lives in its own process so it can be SIGSTOPped without touching the rest.
  const canary = specs[specs.length - 1]!;
  const rest = specs.slice(0, -1);
  const idle = procStats(ctl.proc.pid!);
  let t0 = 0;
  const fleet = await startFleetProcesses(rest, { workers: n >= 1000 ? 2 : 1, telemetryIntervalMs: TELEMETRY_MS, keepaliveS: 8, batch: 200, onReady: () => { t0 = performance.now(); } });
  const canaryProc = await startFleetProcesses([canary as ProvisionedNode], { workers: 1, telemetryIntervalMs: TELEMETRY_MS, keepaliveS: 8 });
  const allOnlineMs = await untilOnline(base, n, t0);

  // Steady state: telemetry ingest and controller CPU over a window.
  const count = async () => ((await fetch(`${base}/api/v1/health`)).json() as Promise<{ counters: { telemetryStored: number } }>).then((h) => h.counters.telemetryStored);
  const s0 = procStats(ctl.proc.pid!); const c0 = await count(); const w0 = performance.now();
  await new Promise((r) => setTimeout(r, 6000));
  const s1 = procStats(ctl.proc.pid!); const c1 = await count(); const w1 = performance.now();
  const ingestPerS = ((c1 - c0) * 1000) / (w1 - w0);
  const cpuPct = ((s1.cpuS - s0.cpuS) * 1000 * 100) / (w1 - w0);
  const rssPerNodeKb = (s1.rssKb - idle.rssKb) / n;

  // Command round trip to every node, three rounds pooled.
  const rtts: number[] = [];
  let failed = 0;
  for (let round = 0; round < 3; round++) {
    const r = await fetch(`${base}/api/v1/commands`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'set_volume', params: { volume: 40 + round }, waitMs: 15_000 }),
    });
    const body = (await r.json()) as { results: { status: string; rttMs: number | null }[] };
    for (const x of body.results) { if (x.status === 'ok' && x.rttMs !== null) rtts.push(x.rttMs); else failed++; }
  }
  const cmd = summary(rtts);

  // Silent death: the canary's process stops answering (no FIN, no will until the keepalive expires).
  const stopAt = performance.now();
  canaryProc.handles[0]!.proc.kill('SIGSTOP');
  let silentDeathDetectMs = NaN;
  for (;;) {
    if ((await nodeStatus(base, token, canary.nodeId)) === 'offline') { silentDeathDetectMs = performance.now() - stopAt; break; }
    if (performance.now() - stopAt > 60_000) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  canaryProc.handles[0]!.proc.kill('SIGCONT');

  // Reconnect storm: SIGKILL the controller (broker with it), start it again on the same data.
  const killAt = performance.now();
  ctl.proc.kill('SIGKILL');
  await new Promise((r) => ctl.proc.once('exit', r));
  ctl = await spawnController({ dir, http, mqtt, password: PASSWORD });
  const allOnlineAfterKillMs = await untilOnline(base, n, killAt);
  token = await login(base, 'admin', PASSWORD);

  await fleet.stop();
  await canaryProc.stop();
  ctl.proc.kill('SIGTERM');
  await new Promise((r) => ctl.proc.once('exit', r));
  fs.rmSync(dir, { recursive: true, force: true });
  return { n, allOnlineMs, allOnlineAfterKillMs, cmd, failed, rssPerNodeKb, cpuPct, ingestPerS, silentDeathDetectMs, expectedIngest: (n * 1000) / TELEMETRY_MS };
}

export async function run() {
  printMachine();
  const sizes = (process.env.BENCH_FLEET_SIZES ?? '100,1000,2000').split(',').map(Number);
  console.log(`telemetry every ${TELEMETRY_MS} ms per agent; keepalive 8 s; agents in 1–2 worker processes + 1 canary process; controller in its own process`);
  const rows = [];
  for (const n of sizes) {
    const r = await runSize(n);
    rows.push(r);
    console.log(`nodes=${r.n}  allOnline=${fmt(r.allOnlineMs, 0)} ms  afterSIGKILL=${fmt(r.allOnlineAfterKillMs, 0)} ms  ` +
      `cmd p50/p95/p99=${fmt(r.cmd.median)}/${fmt(r.cmd.p95)}/${fmt(r.cmd.p99)} ms (n=${r.cmd.n}, failed=${r.failed})  ` +
      `rss/node=${fmt(r.rssPerNodeKb)} KiB  ctlCPU=${fmt(r.cpuPct, 0)} %  ingest=${fmt(r.ingestPerS, 0)}/s of ${fmt(r.expectedIngest, 0)}/s  silentDeath=${fmt(r.silentDeathDetectMs, 0)} ms`);
  }
  const last = rows.find((r) => r.n === 2000) ?? rows[rows.length - 1]!;
  console.log(JSON.stringify({
    bench: 'fleet', nodes: last.n, allOnlineMs: Math.round(last.allOnlineMs), allOnlineAfterKillMs: Math.round(last.allOnlineAfterKillMs),
    commandP50Ms: last.cmd.median, commandP95Ms: last.cmd.p95, commandP99Ms: last.cmd.p99,
    rssPerNodeKb: Math.round(last.rssPerNodeKb * 10) / 10, silentDeathDetectMs: Math.round(last.silentDeathDetectMs),
  }));
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
