import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** `--import` this to run the project's TypeScript in a child process (see deploy/ts-register.mjs). */
export const TS_REGISTER = path.join(ROOT, 'deploy/ts-register.mjs');

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summary(values: number[]) {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, median: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN };
}

export function machine() {
  let ffmpeg = 'absent';
  try { ffmpeg = execFileSync('ffmpeg', ['-version'], { encoding: 'utf8' }).split('\n')[0] ?? ''; } catch { /* not installed */ }
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version, platform: `${os.platform()} ${os.release()}`, ffmpeg,
  };
}

export function printMachine() {
  const m = machine();
  console.log(`machine: ${m.cpu} × ${m.cores} cores, ${m.memGiB} GiB, node ${m.node}, ${m.platform}`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
}

/** RSS (KiB) and cumulative CPU seconds (user+system) of a process, from /proc. */
/** Busy fraction of all CPUs since the last sample, from /proc/stat (null where there is none). */
function cpuTimes(): { busy: number; total: number } | null {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch { return null; }
}

/**
 * Wait until the whole machine is quiet: busy ≤ `maxBusyPct` of all CPUs for `windows` consecutive
 * 1 s windows, at most `timeoutS`. A system's run must not start in the load the previous one left
 * (200 snapclients tearing down kept this machine at load 14–25 for a minute). Returns what it saw.
 */
export async function waitForQuietMachine(o: { maxBusyPct?: number; windows?: number; timeoutS?: number } = {}): Promise<{ waitedS: number; busyPct: number; quiet: boolean }> {
  const max = o.maxBusyPct ?? 15;
  const need = o.windows ?? 3;
  const t0 = Date.now();
  let streak = 0;
  let last = cpuTimes();
  let busyPct = NaN;
  if (!last) return { waitedS: 0, busyPct, quiet: true };
  while (Date.now() - t0 < (o.timeoutS ?? 120) * 1000) {
    await new Promise((r) => setTimeout(r, 1000));
    const c = cpuTimes()!;
    busyPct = ((c.busy - last.busy) / Math.max(1, c.total - last.total)) * 100;
    last = c;
    streak = busyPct <= max ? streak + 1 : 0;
    if (streak >= need) return { waitedS: (Date.now() - t0) / 1000, busyPct, quiet: true };
  }
  return { waitedS: (Date.now() - t0) / 1000, busyPct, quiet: false };
}

export function procStats(pid: number): { rssKb: number; cpuS: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = 100; // CLK_TCK on Linux
  const cpuS = (Number(fields[11]) + Number(fields[12])) / tick;
  return { rssKb, cpuS };
}

export interface ControllerProc { proc: ChildProcess; http: number; mqtt: number; base: string; dir: string }

/** Start `npm start`'s entry point as a child process (so a bench can SIGKILL it). */
export async function spawnController(o: { dir: string; http: number; mqtt: number; password: string; env?: Record<string, string> }): Promise<ControllerProc> {
  const extra = (process.env.BENCH_CONTROLLER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(process.execPath, [...extra, '--import', TS_REGISTER, path.join(ROOT, 'controller/src/server.ts')], {
    cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, RADIO_DATA_DIR: o.dir, RADIO_HTTP_PORT: String(o.http), RADIO_MQTT_PORT: String(o.mqtt), RADIO_ADMIN_PASSWORD: o.password, RADIO_LOG_LEVEL: 'error', RADIO_HTTP_HOST: '127.0.0.1', ...(o.env ?? {}) },
  });
  const base = `http://127.0.0.1:${o.http}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`controller exited with ${proc.exitCode}`);
    try { if ((await fetch(`${base}/api/v1/health`)).status === 200) break; } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error('controller did not become healthy in 30 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, http: o.http, mqtt: o.mqtt, base, dir: o.dir };
}

export const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
