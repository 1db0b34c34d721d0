/**
 * `npm run bench -- live`: mouth-to-sink latency, inter-cluster skew, dropouts under loss and emergency
 * reach, for our system and for Snapcast 0.26, measured the same external way (issue 5, Benchmark):
 * a click track fed in real time (10 ms frames; mouth time per sample from the write time of its frame),
 * sinks that write 48 kHz s16le in real time into a SEPARATE reader process that stamps every chunk on
 * arrival in true time; clicks found by cross-correlation; sink time of a click from a least-squares fit
 * of each sink's sample index against arrival times. See bench/live-lib/*.ts for the method.
 *
 * Env: BENCH_LIVE_SECONDS (per run, default 20), BENCH_LIVE_SIZES (default 1,50,200),
 * BENCH_LIVE_MEASURED (pipe sinks read per run, default 10), BENCH_LIVE_DELAY_MS (our D, default 80),
 * BENCH_LIVE_EMERGENCY_N (default 1000), BENCH_LIVE_SNAPCAST=0 to skip Snapcast.
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { login, provisionFleet, type ProvisionedNode } from '../firmware-sim/src/fleet.js';
import { analyseRun, type RunFigures, type SourceClick } from './live-lib/analyze.js';
import type { StreamResult } from './live-lib/reader.js';
import type { BenchAgentSpec, BenchNodeState } from './live-lib/agent-worker.js';
import { RATE, clickStarts, toS16, trackBlock } from './live-lib/signal.js';
import { ROOT, fmt, freePort, printMachine, procStats, spawnController, summary, type ControllerProc } from './lib.js';

const PASSWORD = 'bench-password';
const SECONDS = Number(process.env.BENCH_LIVE_SECONDS ?? 20);
const SIZES = (process.env.BENCH_LIVE_SIZES ?? '1,50,200').split(',').map(Number);
const MEASURED = Number(process.env.BENCH_LIVE_MEASURED ?? 10);
const DELAY = Number(process.env.BENCH_LIVE_DELAY_MS ?? 80);
const EMERGENCY_N = Number(process.env.BENCH_LIVE_EMERGENCY_N ?? 1000);
const FRAME = 480; // 10 ms microphone frames
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LIB = path.join(ROOT, 'bench/live-lib');

// ------------------------------------------------------------------ child processes

interface Ipc { proc: ChildProcess; ask<T>(m: Record<string, unknown>): Promise<T>; send(m: Record<string, unknown>): void }
function ipc(proc: ChildProcess): Ipc {
  let id = 0;
  return {
    proc,
    send: (m) => { proc.send(m); },
    ask: <T>(m: Record<string, unknown>) => new Promise<T>((resolve, reject) => {
      const my = ++id;
      const t = setTimeout(() => { proc.off('message', on); reject(new Error(`child ${proc.pid} did not answer in 20 s (crashed?)`)); }, 20_000);
      const on = (x: { type: string; id?: number; message?: string }) => {
        if (x.type === 'result' && x.id === my) { clearTimeout(t); proc.off('message', on); resolve(x as T); }
        if (x.type === 'error') { clearTimeout(t); proc.off('message', on); reject(new Error(x.message)); }
      };
      proc.on('message', on);
      proc.send({ ...m, id: my });
    }),
  };
}
const forkTs = (file: string, args: string[] = []) => fork(path.join(LIB, file), args, { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const once = (p: ChildProcess, type: string) => new Promise<void>((resolve, reject) => {
  const on = (m: { type: string; message?: string }) => {
    if (m.type === type) { p.off('message', on); resolve(); }
    if (m.type === 'error') { p.off('message', on); reject(new Error(m.message)); }
  };
  p.on('message', on);
  p.once('exit', (c) => reject(new Error(`child exited ${c}`)));
});

async function startReader(dir: string): Promise<{ r: Ipc; sock: string }> {
  const sock = path.join(dir, 'reader.sock');
  const p = forkTs('reader.ts', [sock]);
  await once(p, 'listening');
  return { r: ipc(p), sock };
}

async function startWorkers(agents: BenchAgentSpec[], workers: number): Promise<Ipc[]> {
  const shares: BenchAgentSpec[][] = Array.from({ length: workers }, () => []);
  agents.forEach((a, i) => shares[i % workers]!.push(a));
  return Promise.all(shares.filter((s) => s.length).map(async (share) => {
    const p = forkTs('agent-worker.ts');
    await once(p, 'ready');
    const started = once(p, 'started');
    p.send({ type: 'start', agents: share });
    await started;
    return ipc(p);
  }));
}
async function queryAll(ws: Ipc[], since?: number): Promise<{ nodes: BenchNodeState[]; dropped: number }> {
  const rs = await Promise.all(ws.map((w) => w.ask<{ nodes: BenchNodeState[]; dropped: number }>({ type: 'query', ...(since !== undefined ? { since } : {}) })));
  return { nodes: rs.flatMap((r) => r.nodes), dropped: rs.reduce((a, r) => a + r.dropped, 0) };
}
async function stopWorkers(ws: Ipc[]) {
  await Promise.all(ws.map((w) => new Promise<void>((resolve) => {
    if (w.proc.exitCode !== null || w.proc.signalCode !== null) { resolve(); return; }
    const t = setTimeout(() => w.proc.kill('SIGKILL'), 10_000);
    w.proc.once('exit', () => { clearTimeout(t); resolve(); });
    w.send({ type: 'stop' });
  })));
}
const cpuOf = (pids: number[]) => pids.reduce((a, p) => { try { return a + procStats(p).cpuS; } catch { return a; } }, 0);

// ------------------------------------------------------------------ the feeder (the "mouth")

/** Feed the click track in real time, 10 ms frames, paced by deadlines; returns each click's mouth time. */
async function feed(write: (b: Buffer) => void, seconds: number): Promise<SourceClick[]> {
  const total = Math.round(seconds * RATE);
  const frames = Math.floor(total / FRAME);
  const tw: number[] = new Array<number>(frames);
  const buf = new Float32Array(FRAME);
  const t0 = now();
  let f = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const t = now();
      while (f < frames && t >= t0 + ((f + 1) * FRAME * 1000) / RATE) {
        const b = toS16(trackBlock(f * FRAME, buf));
        write(b);
        tw[f] = now();
        f++;
      }
      if (f >= frames) resolve(); else setTimeout(tick, 2);
    };
    tick();
  });
  return clickStarts(frames * FRAME).map((idx) => {
    const fi = Math.floor(idx / FRAME);
    return { idx, tIn: tw[fi]! - (((fi + 1) * FRAME - idx) * 1000) / RATE };
  });
}

// ------------------------------------------------------------------ our system

async function api<T>(base: string, token: string, method: string, p: string, body?: unknown): Promise<{ status: number; body: T }> {
  const r = await fetch(`${base}${p}`, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await r.text();
  return { status: r.status, body: (text ? JSON.parse(text) : undefined) as T };
}

interface OurRun { fig: RunFigures; concealed: number; late: number; lost: number; receiverDropped: number; sinkUnderruns: number; reach: string; cpuPct: number }

async function ourSession(o: { base: string; token: string; nodes: string[]; reader: Ipc; workers: Ipc[]; pids: number[]; lossPct: number }): Promise<OurRun> {
  for (const w of o.workers) w.send({ type: 'loss', pct: o.lossPct });
  const before = await queryAll(o.workers);
  o.reader.send({ type: 'reset' });
  const r = await api<{ sessionId: string }>(o.base, o.token, 'POST', '/api/v1/live/sessions', { kind: 'voice', title: 'bench', priority: 'priority', targets: { nodes: o.nodes }, delayMs: DELAY });
  if (r.status !== 201) throw new Error(`session start: ${r.status} ${JSON.stringify(r.body)}`);
  const id = r.body.sessionId;
  const deadline = Date.now() + 30_000;
  let view: { speakNow: boolean; reach: { summary: string } };
  for (;;) {
    view = (await api<typeof view>(o.base, o.token, 'GET', `/api/v1/live/sessions/${id}`)).body;
    if (view.speakNow) break;
    if (Date.now() > deadline) throw new Error(`no speakNow in 30 s: ${view.reach.summary}`);
    await sleep(50);
  }
  const ws = new WebSocket(`${o.base.replace('http', 'ws')}/api/v1/live/sessions/${id}/mic?token=${encodeURIComponent(o.token)}&format=s16le`);
  await new Promise<void>((res, rej) => { ws.once('open', () => res()); ws.once('error', rej); });
  const c0 = cpuOf(o.pids); const w0 = now();
  const source = await feed((b) => ws.send(b), SECONDS);
  const cpuPct = ((cpuOf(o.pids) - c0) * 1000 * 100) / (now() - w0);
  await sleep(DELAY + 700);
  const reach = ((await api<typeof view>(o.base, o.token, 'GET', `/api/v1/live/sessions/${id}`)).body).reach.summary;
  const after = await queryAll(o.workers);
  ws.send('end');
  ws.close();
  const streams = (await o.reader.ask<{ streams: StreamResult[] }>({ type: 'collect' })).streams;
  await sleep(1000);
  let concealed = 0; let late = 0; let lost = 0; let sinkUnderruns = 0;
  for (const n of after.nodes) {
    if (!o.nodes.includes(n.nodeId) || n.live?.sessionId !== id) continue;
    concealed += n.live.concealed; late += n.live.late; lost += n.live.lost;
  }
  for (const n of after.nodes) {
    const b = before.nodes.find((x) => x.nodeId === n.nodeId);
    if (n.sink && b?.sink) sinkUnderruns += n.sink.underruns - b.sink.underruns;
  }
  for (const w of o.workers) w.send({ type: 'loss', pct: 0 });
  return { fig: analyseRun(source, streams), concealed, late, lost, receiverDropped: after.dropped - before.dropped, sinkUnderruns, reach, cpuPct };
}

// ------------------------------------------------------------------ Snapcast

async function snapcastRun(o: { dir: string; bufferMs: number; clients: number; reader: Ipc }): Promise<{ fig: RunFigures; cpuPct: number }> {
  const port = await freePort();
  const fifo = path.join(o.dir, `snapfifo-${o.bufferMs}-${o.clients}`);
  const conf = path.join(o.dir, `snapserver-${o.bufferMs}-${o.clients}.conf`);
  fs.writeFileSync(conf, [
    '[server]', `datadir = ${o.dir}`,
    '[http]', 'enabled = false',
    '[tcp]', 'enabled = false',
    '[stream]', 'bind_to_address = 127.0.0.1', `port = ${port}`,
    `source = pipe://${fifo}?name=bench&sampleformat=48000:16:1&mode=create`,
    'codec = pcm', `buffer = ${o.bufferMs}`, 'chunk_ms = 20',
    '[logging]', 'sink = null', '',
  ].join('\n'));
  const server = spawn('snapserver', ['-c', conf], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !fs.existsSync(fifo); i++) await sleep(50);
  await sleep(300);
  o.reader.send({ type: 'reset' });
  const others: ChildProcess[] = [];
  for (let i = 0; i < o.clients; i++) {
    const measured = i < MEASURED;
    const args = ['-h', '127.0.0.1', '-p', String(port), '--hostID', `bench-${i}`, '-i', String(i + 1), '--logsink', 'null',
      '--player', `file:filename=${measured ? 'stdout' : 'null'}`];
    if (measured) o.reader.send({ type: 'spawn', label: `snap-${i}`, cmd: 'snapclient', args });
    else others.push(spawn('snapclient', args, { stdio: 'ignore' }));
  }
  await sleep(3000); // clients connect and sync their clocks (no HTTP API to ask: it is disabled)
  const fd = fs.openSync(fifo, 'w');
  const pids = [server.pid!, ...others.map((c) => c.pid!)];
  const c0 = cpuOf(pids); const w0 = now();
  const source = await feed((b) => { fs.writeSync(fd, b); }, SECONDS);
  const cpuPct = ((cpuOf(pids) - c0) * 1000 * 100) / (now() - w0);
  await sleep(o.bufferMs + 800);
  const streams = (await o.reader.ask<{ streams: StreamResult[] }>({ type: 'collect' })).streams;
  await o.reader.ask({ type: 'killChildren' });
  for (const c of others) c.kill('SIGTERM');
  fs.closeSync(fd);
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  return { fig: analyseRun(source, streams), cpuPct };
}

// ------------------------------------------------------------------ output

const row = (name: string, n: number, f: RunFigures, extra: string) =>
  console.log(`${name.padEnd(26)} clusters=${String(n).padStart(4)} sinks=${f.streams}  latency p50/p95/p99=${fmt(f.latency.median)}/${fmt(f.latency.p95)}/${fmt(f.latency.p99)} ms ` +
    `(clicks ${f.clicksFound}/${f.clicksExpected})  gaps=${f.gaps} (${fmt(f.gapMs, 0)} ms)  skew p95=${fmt(f.skew.p95, 2)} ms  ${extra}`);

export async function run() {
  printMachine();
  let snapVersion = 'absent';
  try { snapVersion = execFileSync('snapserver', ['-v'], { encoding: 'utf8' }).split('\n')[0] ?? ''; } catch { /* not installed */ }
  console.log(`method: click track (200 Hz bed + 10 ms chirp every 500 ms) fed in real time in 10 ms frames; ${SECONDS} s per run (shorter than the issue's 5 min, to fit ~10 min on 2 cores); ` +
    `sinks write 48 kHz s16le in real time to a separate reader process that stamps arrivals; up to ${MEASURED} sinks read per run, the rest play on virtual DACs (ours) or snapclient's file player to /dev/null (Snapcast); ` +
    `skew = spread (max−min) of one click's sink time across the read sinks; gaps = digital-silence runs ≥ 5 ms while the track sounds; our D=${DELAY} ms; snapserver: ${snapVersion}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-live-'));
  const { r: reader, sock } = await startReader(dir);
  const results: Record<string, unknown> = {};
  const out = { ours: new Map<string, OurRun>(), snap: new Map<string, { fig: RunFigures; cpuPct: number }>() };

  // ---- Snapcast
  if (process.env.BENCH_LIVE_SNAPCAST !== '0' && snapVersion !== 'absent') {
    for (const bufferMs of [100, 1000]) {
      for (const n of SIZES) {
        const t0 = now();
        const r = await snapcastRun({ dir, bufferMs, clients: n, reader });
        out.snap.set(`${bufferMs}/${n}`, r);
        row(`snapcast buffer=${bufferMs}`, n, r.fig, `loss 2/5 %: null (TCP; random loss needs netem on lo, not done on this shared machine)  CPU=${fmt(r.cpuPct, 0)} %  (${fmt((now() - t0) / 1000, 0)} s)`);
      }
    }
  } else console.log('snapcast: skipped (BENCH_LIVE_SNAPCAST=0 or snapserver not installed: apt-get install snapserver snapclient)');

  // ---- ours
  const http = await freePort();
  const mqtt = await freePort();
  const rtp = await freePort();
  const ctl: ControllerProc = await spawnController({ dir: path.join(dir, 'ctl'), http, mqtt, password: PASSWORD, env: { RADIO_RTP_PORT: String(rtp), RADIO_PUBLIC_HOST: '127.0.0.1' } });
  const base = ctl.base;
  const token = await login(base, 'admin', PASSWORD);
  const maxN = Math.max(...SIZES, EMERGENCY_N);
  const specs: ProvisionedNode[] = await provisionFleet({ base, token, count: maxN, villages: 10, prefix: 'lv', concurrency: 16 });
  const seeded = (i: number, k: number) => (((i * 2654435761 + k * 40503) >>> 0) % 10000) / 10000;
  const fleetN = Math.max(...SIZES);
  const agents: BenchAgentSpec[] = specs.slice(0, fleetN).map((spec, i) => ({
    spec, offsetMs: (seeded(i, 1) * 2 - 1) * 2000, driftPpm: (seeded(i, 2) * 2 - 1) * 100, syncIntervalMs: 500,
    ...(i < MEASURED ? { pipe: { path: sock, label: spec.nodeId } } : {}),
  }));
  const workers = await startWorkers(agents, 2);
  const pids = [ctl.proc.pid!, ...workers.map((w) => w.proc.pid!)];
  for (const d = Date.now() + 60_000; ;) {
    const q = await queryAll(workers);
    if (q.nodes.every((n) => n.synced)) break;
    if (Date.now() > d) { console.log(`warning: ${q.nodes.filter((n) => !n.synced).length} agents not synced after 60 s`); break; }
    await sleep(200);
  }
  console.log(`ours: controller process + ${fleetN} agents in 2 worker processes (clock offsets ±2 s, drift ±100 ppm, time sync every 500 ms); the first ${MEASURED} agents play into pcm-pipe sinks read by the reader, the rest into virtual DACs`);
  for (const n of SIZES) {
    const t0 = now();
    let r: OurRun;
    try { r = await ourSession({ base, token, nodes: specs.slice(0, n).map((s) => s.nodeId), reader, workers, pids, lossPct: 0 }); } catch (e) { console.log(`ours clusters=${n}: not measured (${(e as Error).message})`); continue; }
    out.ours.set(`0/${n}`, r);
    row('ours', n, r.fig, `loss 0 %: concealed=${r.concealed} late=${r.late} lost=${r.lost} sinkUnderruns=${r.sinkUnderruns}  CPU(ctl+agents)=${fmt(r.cpuPct, 0)} %  reach: ${r.reach}  (${fmt((now() - t0) / 1000, 0)} s)`);
  }
  for (const loss of [2, 5]) {
    const t0 = now();
    let r: OurRun;
    try { r = await ourSession({ base, token, nodes: specs.slice(0, fleetN).map((s) => s.nodeId), reader, workers, pids, lossPct: loss }); } catch (e) { console.log(`ours loss=${loss} %: not measured (${(e as Error).message})`); continue; }
    out.ours.set(`${loss}/${fleetN}`, r);
    row(`ours loss=${loss} %`, fleetN, r.fig, `dropped by the seeded receiver-side loss=${r.receiverDropped}  concealed frames=${r.concealed} late=${r.late} lost=${r.lost}  CPU=${fmt(r.cpuPct, 0)} %  (${fmt((now() - t0) / 1000, 0)} s)`);
  }
  await stopWorkers(workers);

  // ---- emergency: API call → first non-silent sample (virtual DAC onsets, true time) at ≥ 99 % of N clusters
  let emergency: { n: number; p50: number; p95: number; p99: number; reached: number; cpuPct: number; load: number[] } | null = null;
  try {
    const wav = path.join(dir, 'siren.wav');
    execFileSync('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'aevalsrc=0.5*sin(2*PI*880*t):s=48000:d=3', '-ac', '1', wav]);
    const form = new FormData();
    form.append('file', new Blob([fs.readFileSync(wav)]), 'siren.wav');
    const up = await fetch(`${base}/api/v1/media`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form });
    const media = (await up.json()) as { id: string };
    const eAgents: BenchAgentSpec[] = specs.slice(0, EMERGENCY_N).map((spec, i) => ({
      spec, offsetMs: (seeded(i, 1) * 2 - 1) * 2000, driftPpm: (seeded(i, 2) * 2 - 1) * 100, syncIntervalMs: 2000, warm: true,
    }));
    const ew = await startWorkers(eAgents, 3);
    for (const d = Date.now() + 90_000; ;) {
      const q = await queryAll(ew);
      if (q.nodes.filter((x) => x.synced).length >= EMERGENCY_N) break;
      if (Date.now() > d) break;
      await sleep(500);
    }
    await sleep(2000);
    const epids = [ctl.proc.pid!, ...ew.map((w) => w.proc.pid!)];
    const c0 = cpuOf(epids);
    const tCall = now();
    const r = await api<{ sessionId: string }>(base, token, 'POST', '/api/v1/live/emergency', { title: 'bench emergency', mediaId: media.id, targets: { commune: true }, repeat: 1 });
    if (r.status !== 201) throw new Error(`emergency: ${r.status} ${JSON.stringify(r.body)}`);
    let firsts: number[] = [];
    for (const d = now() + 15_000; now() < d;) {
      await sleep(250);
      const q = await queryAll(ew, tCall);
      firsts = q.nodes.filter((x) => x.onsets.length > 0).map((x) => x.onsets[0]! - tCall);
      if (firsts.length >= Math.ceil(EMERGENCY_N * 0.99) && now() - tCall > 4000) break;
    }
    const cpuPct = ((cpuOf(epids) - c0) * 1000 * 100) / (now() - tCall);
    const load = os.loadavg();
    await api(base, token, 'POST', `/api/v1/live/sessions/${r.body.sessionId}/stop`);
    const s = summary(firsts);
    // p99 over ALL targeted clusters: a cluster that never sounded counts as +∞.
    const all = [...firsts, ...Array<number>(Math.max(0, EMERGENCY_N - firsts.length)).fill(Infinity)].sort((a, b) => a - b);
    const p99all = all[Math.ceil(0.99 * all.length) - 1]!;
    emergency = { n: EMERGENCY_N, p50: s.median, p95: s.p95, p99: p99all, reached: firsts.length, cpuPct, load };
    console.log(`ours emergency (clip, commune-wide) clusters=${EMERGENCY_N} in 3 worker processes, amplifiers warm: API call → first non-silent DAC sample p50/p95/p99=${fmt(s.median, 0)}/${fmt(s.p95, 0)}/${fmt(p99all, 0)} ms ` +
      `(reached ${firsts.length}/${EMERGENCY_N}; p99 over all targets)  CPU(ctl+agents)=${fmt(cpuPct, 0)} % of one core  loadavg=${load.map((x) => x.toFixed(2)).join('/')}`);
    await stopWorkers(ew);
  } catch (e) {
    console.log(`ours emergency: not measured (${(e as Error).message})`);
  }

  ctl.proc.kill('SIGTERM');
  await new Promise((r) => ctl.proc.once('exit', r));
  reader.send({ type: 'stop' });
  fs.rmSync(dir, { recursive: true, force: true });

  const big = out.ours.get(`0/${fleetN}`);
  const loss2 = out.ours.get(`2/${fleetN}`);
  const s100 = out.snap.get(`100/${fleetN}`);
  const s1000 = out.snap.get(`1000/${fleetN}`);
  const r1 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10) / 10);
  Object.assign(results, {
    bench: 'live', clusters: fleetN,
    latencyP50Ms: r1(big?.fig.latency.median), latencyP95Ms: r1(big?.fig.latency.p95), latencyP99Ms: r1(big?.fig.latency.p99),
    skewP95Ms: r1(big?.fig.skew.p95), gapsAt2pctLoss: loss2 ? loss2.fig.gaps : null,
    emergency1000P99Ms: emergency && emergency.n >= 1000 ? r1(emergency.p99) : null,
    ...(emergency && emergency.n < 1000 ? { emergencyClusters: emergency.n, emergencyP99Ms: r1(emergency.p99) } : {}),
    snapcastSmallestP95Ms: r1(s100?.fig.latency.p95), snapcastSmallestGaps: s100 ? s100.fig.gaps : null, snapcastDefaultP95Ms: r1(s1000?.fig.latency.p95),
    snapcastSkewP95Ms: r1(s100?.fig.skew.p95), delayMs: DELAY, secondsPerRun: SECONDS,
  });
  console.log(JSON.stringify(results));
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
