/**
 * `npm run bench -- schedule` (or `node --import ./deploy/ts-register.mjs bench/schedule.ts`): scheduling and store-and-forward playout.
 *
 * Part 1 — distribution: a controller (child process, embedded broker, SQLite) with 1,000 nodes in 20
 * villages running in fleet worker processes, and a week of schedules (daily bulletins, a weekly item per
 * village, weekday priority bulletins, weekend and monthly items). Times: expanding the week for 1,000
 * nodes (GET /api/v1/preview?hours=168), and from the API call that changes the schedule (PATCH of the
 * daily bulletin: every node's plan changes) to the last PlanAck with the new version, read from the
 * controller's database (node_plans.acked_at; the controller's clock is this machine's).
 *
 * Part 2 — playout: 200 clusters (two worker processes) whose hardware clocks are offset by up to ±2 s
 * and drift up to ±100 ppm, their MQTT (time sync included) through the TCP impairment proxy with
 * ASYMMETRIC delay — no two-way method can see half of that asymmetry, so it is a floor under every
 * offset estimate and start error. The controller runs in this process with an injectable clock.
 * Measured at firmware-sim's virtual DAC in TRUE time: |first audible sample − scheduled instant| of a
 * 10-minute item 75 s after the agents booted (few sync samples yet: printed apart) and of three short
 * airings after it (a running fleet: the headline start error), the inter-cluster skew at the END of
 * the 10-minute item (the last audible sample: drift shows there, not at the start), and the start
 * error after 6 hours cut off from the controller (proxy black-holed; the controller's clock +6 h, every
 * hardware clock +6 h plus what its crystal drifts in 6 h; agents play from cache on their frozen
 * estimate), then whether every receipt of that airing arrives once the link is back.
 * About 14 minutes on 2 cores (the 10-minute item runs once, in real time).
 *
 * Last line: one JSON object. BENCH_SCHEDULE_PARTS=distribution,playout chooses the parts.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { createController } from '../controller/src/controller.js';
import { login, provisionFleet } from '../firmware-sim/src/fleet.js';
import { startFleetProcesses } from '../firmware-sim/src/fleet-procs.js';
import type { NodeSnapshot, WorkerHardware } from '../firmware-sim/src/fleet-worker.js';
import { createTcpProxy } from '../firmware-sim/src/impairment-proxy.js';
import { createSeededRandom, trueClock } from '../firmware-sim/src/sim-clock.js';
import { fmt, freePort, printMachine, spawnController, summary, type ControllerProc } from './lib.js';

const run_ = promisify(execFile);
const PASSWORD = 'bench-password';
const VN = 7 * 3600_000;
const HOUR = 3600_000;

const CLUSTERS = Number(process.env.BENCH_SCHEDULE_CLUSTERS ?? 200);
const NODES_DISTRIBUTION = Number(process.env.BENCH_SCHEDULE_NODES ?? 1000);
const LONG_S = Number(process.env.BENCH_SCHEDULE_LONG_S ?? 600);
/** Agents sync this long after boot before the first airing. */
const WARMUP_MS = Number(process.env.BENCH_SCHEDULE_WARMUP_S ?? 75) * 1000;
const OFFLINE_MS = 6 * HOUR;
/** One-way delays of the impairment proxy, agent → controller (up) and back (down). */
const UP = { delayMs: 12, jitterMs: 2 };
const DOWN = { delayMs: 4, jitterMs: 2 };

type Api = <T = any>(method: string, p: string, body?: unknown) => Promise<{ status: number; body: T }>;

function apiFor(base: () => string, creds: { token: string }): Api {
  return async (method, p, body) => {
    for (let attempt = 0; ; attempt++) {
      const r = await fetch(`${base()}${p}`, {
        method, headers: { authorization: `Bearer ${creds.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      // The playout part moves the controller's clock 6 h: the admin token (12 h) may need renewing.
      if (r.status === 401 && attempt === 0) { creds.token = await login(base(), 'admin', PASSWORD); continue; }
      const text = await r.text();
      return { status: r.status, body: (text ? JSON.parse(text) : undefined) as never };
    }
  };
}

async function must<T = any>(api: Api, method: string, p: string, body?: unknown): Promise<T> {
  const r = await api<T>(method, p, body);
  if (r.status >= 300) throw new Error(`${method} ${p} → ${r.status}: ${JSON.stringify(r.body).slice(0, 500)}`);
  return r.body;
}

/** Local wall clock of the commune (UTC+7) for an instant: "HH:MM". */
const hhmm = (t: number) => new Date(t + VN).toISOString().slice(11, 16);
/** A cron expression with seconds that fires once (on that date) at instant t in the commune's time. */
function cronAt(t: number): string {
  const d = new Date(t + VN);
  return `${d.getUTCSeconds()} ${d.getUTCMinutes()} ${d.getUTCHours()} ${d.getUTCDate()} ${d.getUTCMonth() + 1} *`;
}
/** A one-hour quiet window twelve hours away from t (the bench runs at any hour). */
function quietAwayFrom(t: number) {
  const h = (new Date(t + VN).getUTCHours() + 12) % 24;
  return { start: `${String(h).padStart(2, '0')}:00`, end: `${String((h + 1) % 24).padStart(2, '0')}:00` };
}

async function until<T>(what: string, timeoutMs: number, cond: () => Promise<T | undefined | false> | T | undefined | false, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
const sleepUntilTrue = (t: number) => new Promise((r) => setTimeout(r, Math.max(0, t - trueClock.now())));

/** A sine tone made by ffmpeg and uploaded through POST /api/v1/media (ingest: loudness + Opus). */
async function uploadTone(base: string, token: string, dir: string, name: string, seconds: number, hz: number) {
  const file = path.join(dir, `${name}.ogg`);
  await run_('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', `aevalsrc=0.3*sin(2*PI*${hz}*t):s=48000:d=${seconds}`,
    '-ac', '1', '-c:a', 'libopus', '-b:a', '64k', file]);
  const form = new FormData();
  form.append('file', new Blob([fs.readFileSync(file)]), `${name}.ogg`);
  const t0 = performance.now();
  const up = await fetch(`${base}/api/v1/media`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form });
  if (up.status !== 201) throw new Error(`media upload failed: ${up.status} ${await up.text()}`);
  const m = (await up.json()) as { id: string; durationMs: number; formats: { opus: { sizeBytes: number } } };
  return { id: m.id, durationMs: m.durationMs, sizeBytes: m.formats.opus.sizeBytes, ingestMs: performance.now() - t0 };
}

const stat = (label: string, v: number[], unit = 'ms', d = 1) => {
  const s = summary(v);
  return `${label}: median ${fmt(s.median, d)} / p95 ${fmt(s.p95, d)} / p99 ${fmt(s.p99, d)} / max ${fmt(s.max, d)} ${unit} (n=${s.n})`;
};

// ---------------------------------------------------------------- part 1: distribution to 1,000 nodes

async function distribution() {
  console.log(`\n-- distribution: a week of schedules, ${NODES_DISTRIBUTION} nodes in 2 worker processes, controller in its own process`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-schedule-dist-'));
  const ports = { http: await freePort(), mqtt: await freePort() };
  let ctl: ControllerProc | undefined;
  let fleet: Awaited<ReturnType<typeof startFleetProcesses>> | undefined;
  let db: Database.Database | undefined;
  try {
    ctl = await spawnController({ dir, ...ports, password: PASSWORD });
    const base = ctl.base;
    const creds = { token: await login(base, 'admin', PASSWORD) };
    const api = apiFor(() => base, creds);
    const now = Date.now();
    await must(api, 'PUT', '/api/v1/settings/quiet-hours', quietAwayFrom(now));
    const villages = 20;
    const specs = await provisionFleet({ base, token: creds.token, count: NODES_DISTRIBUTION, villages, prefix: 'wk', concurrency: 16 });
    const tone = await uploadTone(base, creds.token, dir, 'bulletin', 3, 440);
    await must(api, 'POST', '/api/v1/programmes', { id: 'p-news', title: 'Bản tin thời sự', items: [{ kind: 'chime', chime: 'start' }, { kind: 'media', mediaId: tone.id }] });
    await must(api, 'POST', '/api/v1/programmes', { id: 'p-farm', title: 'Chuyên mục nông nghiệp', items: [{ kind: 'media', mediaId: tone.id }, { kind: 'silence', durationMs: 60_000 }] });
    await must(api, 'POST', '/api/v1/programmes', { id: 'p-prov', title: 'Bản tin tỉnh', priority: 'priority', items: [{ kind: 'chime', chime: 'attention' }, { kind: 'media', mediaId: tone.id }] });
    // Slots at least two hours from now (nothing plays during the bench), in the commune's time.
    const t = (min: number) => hhmm(now + 2 * HOUR + min * 60_000);
    const week: { id: string; body: Record<string, unknown> }[] = [
      { id: 's-daily', body: { programmeId: 'p-news', recurrence: { kind: 'daily', times: [t(0), t(240)] }, targets: [{ kind: 'commune' }] } },
      { id: 's-prov', body: { programmeId: 'p-prov', recurrence: { kind: 'weekly', weekdays: ['mon', 'tue', 'wed', 'thu', 'fri'], times: [t(30)] }, targets: [{ kind: 'commune' }] } },
      { id: 's-weekend', body: { programmeId: 'p-farm', recurrence: { kind: 'weekly', weekdays: ['sat', 'sun'], times: [t(60), t(180)] }, targets: [{ kind: 'commune' }] } },
      { id: 's-monthly', body: { programmeId: 'p-farm', recurrence: { kind: 'monthly', days: [1, 15, 'last'], times: [t(90)] }, targets: [{ kind: 'commune' }] } },
      ...Array.from({ length: villages }, (_, i) => ({
        id: `s-village-${i + 1}`,
        body: { programmeId: 'p-farm', recurrence: { kind: 'weekly', weekdays: [['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'][i % 7]], times: [t(120 + (i % 3) * 5)] }, targets: [{ kind: 'zone', id: `wk-thon-${i + 1}` }] },
      })),
    ];
    for (const s of week) await must(api, 'POST', '/api/v1/schedules', { id: s.id, ...s.body });

    // Expansion of the week for every node (the preview API: the same expansion that feeds the plans).
    const expandMs: number[] = [];
    let weekAirings = 0;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const pv = await must<{ nodes: { airings: unknown[] }[] }>(api, 'GET', `/api/v1/preview?hours=168&from=${Date.now()}`);
      expandMs.push(performance.now() - t0);
      weekAirings = pv.nodes.reduce((a, n) => a + n.airings.length, 0);
    }
    console.log(`schedules: ${week.length} (daily, weekday priority, weekend, monthly, one weekly per village); a week = ${weekAirings} airings over ${NODES_DISTRIBUTION} nodes`);
    console.log(stat('expand a week for all nodes (GET /preview?hours=168, incl. JSON)', expandMs));

    fleet = await startFleetProcesses(specs, { workers: 2, keepaliveS: 8, batch: 200, telemetryIntervalMs: 15_000 });
    db = new Database(path.join(dir, 'radio.db'), { readonly: true, fileMustExist: true });
    const acked = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM node_plans WHERE acked_version = version');
    await until('every node acknowledging its first plan', 60_000, () => acked.get()!.n >= NODES_DISTRIBUTION, 50);

    const q = db.prepare<[number], { n: number; acked: number; last: number | null }>(
      'SELECT count(*) AS n, sum(acked_version = version) AS acked, max(acked_at) AS last FROM node_plans WHERE published_at >= ?');
    const lat = db.prepare<[number, number], { ms: number }>('SELECT acked_at - ? AS ms FROM node_plans WHERE published_at >= ? AND acked_version = version');
    const distributeMs: number[] = [];
    const apiMs: number[] = [];
    const perNode: number[] = [];
    for (let round = 1; round <= 3; round++) {
      const times = [t(round * 5), t(240 + round * 5)];
      const t0 = Date.now();
      const p0 = performance.now();
      await must(api, 'PATCH', '/api/v1/schedules/s-daily', { recurrence: { kind: 'daily', times } });
      apiMs.push(performance.now() - p0);
      const r = await until('every node acknowledging the new plan version', 60_000, () => {
        const x = q.get(t0)!;
        return x.n >= NODES_DISTRIBUTION && x.acked >= x.n ? x : undefined;
      }, 20);
      distributeMs.push(r.last! - t0);
      perNode.push(...lat.all(t0, t0).map((x) => x.ms));
      console.log(`round ${round}: daily bulletin moved to ${times.join(' & ')}: API ${fmt(apiMs.at(-1)!, 0)} ms, last ack of ${r.n} nodes after ${fmt(distributeMs.at(-1)!, 0)} ms`);
    }
    console.log(stat('schedule change API call (re-plan + conflicts)', apiMs));
    console.log(stat(`schedule change → last PlanAck of ${NODES_DISTRIBUTION} nodes`, distributeMs));
    console.log(stat('schedule change → PlanAck, per node', perNode));
    return { distributeMs: summary(distributeMs), expandMs: summary(expandMs), apiMs: summary(apiMs), weekAirings };
  } finally {
    db?.close();
    await fleet?.stop();
    if (ctl && ctl.proc.exitCode === null) {
      const gone = new Promise((r) => ctl!.proc.once('exit', r));
      ctl.proc.kill('SIGTERM');
      await gone;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- part 2: playout of 200 clusters

async function playout() {
  console.log(`\n-- playout: ${CLUSTERS} clusters in 2 worker processes, controller (injectable clock) + impairment proxy in this process`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-schedule-play-'));
  let d = 0; // controller time − true time
  const ctl = await createController({
    now: () => trueClock.now() + d, log: pino({ level: 'error' }),
    env: { RADIO_DATA_DIR: dir, RADIO_HTTP_PORT: 0, RADIO_MQTT_PORT: 0, RADIO_HTTP_HOST: '127.0.0.1', RADIO_ADMIN_PASSWORD: PASSWORD },
  });
  let fleet: Awaited<ReturnType<typeof startFleetProcesses>> | undefined;
  let proxy: Awaited<ReturnType<typeof createTcpProxy>> | undefined;
  try {
    await ctl.start();
    const base = `http://127.0.0.1:${ctl.httpPort()}`;
    const creds = { token: await login(base, 'admin', PASSWORD) };
    const api = apiFor(() => base, creds);
    await must(api, 'PUT', '/api/v1/settings/quiet-hours', quietAwayFrom(Date.now()));
    const specs = await provisionFleet({ base, token: creds.token, count: CLUSTERS, villages: 8, prefix: 'sc', concurrency: 16 });
    proxy = await createTcpProxy({ target: { host: '127.0.0.1', port: ctl.broker!.port }, up: UP, down: DOWN, seed: 'schedule-bench' });
    const asymmetryMs = UP.delayMs - DOWN.delayMs;
    console.log(`MQTT path: up ${UP.delayMs}±${UP.jitterMs} ms, down ${DOWN.delayMs}±${DOWN.jitterMs} ms → asymmetry ${asymmetryMs} ms: offset estimates are biased by ~${asymmetryMs / 2} ms (agents believe the controller is ahead, so they play that much early)`);
    const rnd = createSeededRandom('schedule-bench-clocks');
    const hardware: Record<string, WorkerHardware> = {};
    for (const s of specs) hardware[s.nodeId] = { offsetMs: (rnd() * 2 - 1) * 2000, driftPpm: (rnd() * 2 - 1) * 100, warmupMs: 500 };
    const drifts = Object.values(hardware).map((h) => h.driftPpm!);
    // Media first: ingest loads this process (the controller and the proxy), and the agents' first sync
    // samples should not carry that load.
    const inputs = path.join(dir, 'bench-inputs');
    fs.mkdirSync(inputs);
    const short = await uploadTone(base, creds.token, inputs, 'short', 2, 523);
    const long = await uploadTone(base, creds.token, inputs, 'long', LONG_S, 440);
    console.log(`${LONG_S / 60}-minute tone ingested through the media API in ${fmt(long.ingestMs / 1000)} s (${fmt(long.sizeBytes / 1e6, 2)} MB Opus)`);
    await must(api, 'POST', '/api/v1/programmes', { id: 'p-short', title: 'Thông báo ngắn', items: [{ kind: 'media', mediaId: short.id }] });
    await must(api, 'POST', '/api/v1/programmes', { id: 'p-long', title: 'Chương trình 10 phút', items: [{ kind: 'media', mediaId: long.id }] });

    const fleetStart = trueClock.now();
    // Preparing an airing indexes its whole Ogg file (~0.1 s for 10 minutes): on a cluster that is one
    // agent per CPU, here a hundred per worker process. Staggered leads keep those from stalling the
    // workers' DACs into xruns at one instant (a bench artifact, not a field problem).
    const agent = Object.fromEntries(specs.map((sp, i) => [sp.nodeId, { prepareLeadMs: 8000 + (i % 100) * 150 }]));
    fleet = await startFleetProcesses(specs, { workers: 2, keepaliveS: 8, batch: 50, telemetryIntervalMs: 15_000, mqttUrl: `mqtt://127.0.0.1:${proxy.port}`, hardware, agent });
    console.log(`clocks: offsets uniform ±2 s, drift uniform ±100 ppm (seeded); agents sync every 16 s (the default); ${CLUSTERS} agents connected in ${fmt((trueClock.now() - fleetStart) / 1000)} s`);

    // The long item first, after a warm-up (agents fresh from boot have few sync samples); the short
    // ones right after it (their start also restarts each DAC, which then reports the long item's last
    // audible sample: the player stops the sink when a programme ends, before the DAC's 50 ms hold).
    const tl = Math.ceil(Math.max(fleetStart + WARMUP_MS, trueClock.now() + 20_000) / 1000) * 1000;
    const after = tl + long.durationMs;
    const starts = { long: tl, short1: after + 10_000, short2: after + 18_000, short3: after + 26_000 };
    const ids: Record<string, string> = {};
    for (const [k, at] of Object.entries(starts)) {
      const r = await must<{ nextAirings: { airingId: string; startAt: number }[] }>(api, 'POST', '/api/v1/schedules', {
        id: `s-${k}`, programmeId: k === 'long' ? 'p-long' : 'p-short', recurrence: { kind: 'cron', expression: cronAt(at) }, targets: [{ kind: 'commune' }],
      });
      if (r.nextAirings[0]?.startAt !== at) throw new Error(`schedule ${k} does not start at ${at}`);
      ids[k] = r.nextAirings[0].airingId;
    }
    const ready = await until('media cached on every cluster', Math.max(5000, tl - 5000 - trueClock.now()), async () => {
      const q = await fleet!.query();
      return q.filter((x) => x.cacheItems >= 2).length >= CLUSTERS ? q : undefined;
    }, 1000).catch(async () => fleet!.query());
    console.log(`media cached on ${ready.filter((x) => x.cacheItems >= 2).length}/${CLUSTERS} clusters ${fmt((trueClock.now() - fleetStart) / 1000, 0)} s after the fleet started`);
    await sleepUntilTrue(tl - 3000);
    const pre = await fleet.query({ ctlOffsetMs: d });
    console.log(stat(`agents' controller-time error ${fmt((tl - fleetStart) / 1000, 0)} s after boot (estimate − truth; the asymmetry's bias included)`, pre.map((x) => x.ctlErrMs!)));
    console.log(stat('agents\' drift-estimate error then (|estimated + injected|)', pre.map((x) => Math.abs(x.driftPpm + x.trueDriftPpm)), 'ppm'));

    /** Per cluster, the sound edge (TRUE time) nearest `at` within ±windowMs, once every cluster has one or the deadline passes. */
    async function edgesNear(kind: 'onsets' | 'offsets', at: number, windowMs: number, deadline: number) {
      let snap: NodeSnapshot[] = [];
      const near = (x: NodeSnapshot) => (x[kind] ?? []).filter((t) => t <= at + windowMs).sort((a, b) => Math.abs(a - at) - Math.abs(b - at))[0];
      await until(`${kind} on every cluster`, Math.max(1000, deadline - trueClock.now()), async () => {
        snap = await fleet!.query({ edgesSince: at - windowMs });
        return snap.every((x) => near(x) !== undefined);
      }, 250).catch(() => undefined);
      return snap.map((x) => ({ nodeId: x.nodeId, t: near(x) }));
    }

    const startErr: Record<string, number[]> = {};
    let missing = 0;
    const measureStart = async (k: keyof typeof starts) => {
      const at = starts[k] - d;
      await sleepUntilTrue(at + 500);
      const e = await edgesNear('onsets', at, 2000, at + 5000);
      startErr[k] = e.filter((x) => x.t !== undefined).map((x) => x.t! - at);
      missing += e.filter((x) => x.t === undefined).length;
      console.log(stat(`start error ${k} (signed: DAC onset − scheduled, true time)`, startErr[k]));
    };
    await measureStart('long');
    const longEnd = starts.long + long.durationMs - d;
    await sleepUntilTrue(longEnd - 30_000);
    const late = await fleet.query({ ctlOffsetMs: d });
    console.log(stat('agents\' controller-time error 30 s before the end of the long item', late.map((x) => x.ctlErrMs!)));
    console.log(stat('agents\' drift-estimate error then', late.map((x) => Math.abs(x.driftPpm + x.trueDriftPpm)), 'ppm'));
    const dr = late.map((x) => x.playing?.drift).filter((x): x is Record<string, number> => !!x);
    console.log(stat('drift correction so far: samples dropped + repeated per cluster', dr.map((x) => x.droppedFrames! + x.repeatedFrames!), 'samples', 0)
      + `; programme vs its own controller-time target ${stat('', dr.map((x) => x.errorFrames! / 48), 'ms').slice(2)}; re-anchors ${dr.reduce((a, x) => a + x.reanchors!, 0)}, xrun skips ${fmt(dr.reduce((a, x) => a + x.skippedFrames!, 0) / 48_000)} s in all`);
    await measureStart('short1');
    const ends = (await edgesNear('offsets', longEnd, 5000, trueClock.now() + 5000)).filter((x) => x.t !== undefined).map((x) => x.t!);
    await measureStart('short2');
    await measureStart('short3');
    const fresh = startErr.long!.map(Math.abs);
    const allStart = [...startErr.short1!, ...startErr.short2!, ...startErr.short3!].map(Math.abs);
    console.log(stat(`|start error| ${fmt((tl - fleetStart) / 1000, 0)} s after boot (the long item; few sync samples yet)`, fresh));
    console.log(stat('|start error| of a running fleet (three airings after the long item, agents up > 10 min)', allStart) + (missing ? `; ${missing} expected onsets missing in all` : ''));

    const sorted = [...ends].sort((a, b) => a - b);
    const median = sorted[sorted.length >> 1]!;
    const endSkew = ends.map((t) => Math.abs(t - median));
    const endErr = ends.map((t) => t - longEnd);
    const spreadMs = sorted[sorted.length - 1]! - sorted[0]!;
    const uncorrected = (Math.max(...drifts) - Math.min(...drifts)) * 1e-6 * long.durationMs;
    console.log(stat(`end of the ${LONG_S / 60}-minute item: |last audible sample − median across clusters|`, endSkew));
    console.log(stat('end error (last audible sample − scheduled end, signed)', endErr));
    console.log(`inter-cluster skew at the end (max − min): ${fmt(spreadMs)} ms over ${ends.length} clusters; at their crystals' rates (no drift correction) the drifts alone would spread it ~${fmt(uncorrected, 0)} ms`);
    const dac = await fleet.query();
    console.log(`DAC: late reads ${dac.reduce((a, x) => a + x.dac.lateReads, 0)} (max ${fmt(Math.max(...dac.map((x) => x.dac.maxLateMs)))} ms), skipped frames ${dac.reduce((a, x) => a + x.dac.skippedFrames, 0)}, underruns ${dac.reduce((a, x) => a + x.dac.underruns, 0)} (all clusters)`);

    const rdb = ctl.store.db;
    const countState = rdb.prepare<[string, string], { n: number; rows: number }>(
      'SELECT count(DISTINCT node_id) AS n, count(*) AS rows FROM receipts WHERE airing_id = ? AND state = ?');
    await until('finished receipts of the long item', 30_000, () => countState.get(ids.long!, 'finished')!.n >= CLUSTERS, 200).catch(() => undefined);
    console.log(`receipts of the long item: ${countState.get(ids.long!, 'finished')!.n}/${CLUSTERS} finished`);

    // ---- 6 hours cut off: a slot 6 h ahead, planned while connected; then the link goes and time passes.
    const sOff = Math.ceil((trueClock.now() + d + OFFLINE_MS + 25_000) / 1000) * 1000;
    const rOff = await must<{ nextAirings: { airingId: string }[] }>(api, 'POST', '/api/v1/schedules', {
      id: 's-offline', programmeId: 'p-short', recurrence: { kind: 'cron', expression: cronAt(sOff) }, targets: [{ kind: 'commune' }],
    });
    ids.offline = rOff.nextAirings[0]!.airingId;
    const planned = rdb.prepare<[string], { n: number }>(
      'SELECT count(*) AS n FROM node_plans p WHERE p.acked_version = p.version AND EXISTS (SELECT 1 FROM plan_airings a WHERE a.node_id = p.node_id AND a.airing_id = ?)');
    await until('every cluster acknowledging the plan with the 6-hour slot', 30_000, () => planned.get(ids.offline!)!.n >= CLUSTERS, 200);
    const before = await fleet.query({ ctlOffsetMs: d });
    proxy.set({ up: { blackhole: true }, down: { blackhole: true } });
    d += OFFLINE_MS;
    await fleet.stepClocks(OFFLINE_MS, { drift: true });
    const belief = await fleet.query({ ctlOffsetMs: d });
    const driftErr = new Map(before.map((x) => [x.nodeId, Math.abs(x.driftPpm + x.trueDriftPpm)]));
    console.log(stat('drift-estimate error when the link went', [...driftErr.values()], 'ppm'));
    console.log(stat('agents\' controller-time error after 6 h cut off (frozen estimate − truth)', belief.map((x) => x.ctlErrMs!)));
    const offAt = sOff - d;
    await sleepUntilTrue(offAt + 500);
    const offEdges = await edgesNear('onsets', offAt, 15_000, offAt + 16_000);
    const offErr = offEdges.filter((x) => x.t !== undefined).map((x) => x.t! - offAt);
    console.log(stat('start error after 6 h cut off (signed)', offErr) + `; ${offEdges.filter((x) => x.t === undefined).length} missing`);

    // The link returns: every queued receipt arrives, each stored once.
    proxy.set({ up: { blackhole: false }, down: { blackhole: false } });
    const t1 = performance.now();
    await until('receipts of the offline airing', 90_000, () => countState.get(ids.offline!, 'finished')!.n >= CLUSTERS, 200).catch(() => undefined);
    const fin = countState.get(ids.offline!, 'finished')!;
    const st = countState.get(ids.offline!, 'started')!;
    console.log(`after the link returned: ${fin.n}/${CLUSTERS} finished receipts of the offline airing in ${fmt((performance.now() - t1) / 1000)} s (rows: started ${st.rows}, finished ${fin.rows} — one per cluster)`);

    return {
      asymmetryMs, startAbs: summary(allStart), freshAbs: summary(fresh), endSkew: summary(endSkew), spreadMs, uncorrected,
      offlineAbs: summary(offErr.map(Math.abs)), missing,
    };
  } finally {
    await fleet?.stop();
    await proxy?.close();
    await ctl.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function run() {
  // Worker processes log at this level (their warnings — media still downloading — are expected here).
  process.env.RADIO_LOG_LEVEL ??= 'error';
  printMachine();
  const parts = (process.env.BENCH_SCHEDULE_PARTS ?? 'distribution,playout').split(',');
  const dist = parts.includes('distribution') ? await distribution() : undefined;
  const play = parts.includes('playout') ? await playout() : undefined;
  const r1 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10) / 10);
  console.log(JSON.stringify({
    bench: 'schedule', clusters: CLUSTERS,
    startErrorP50Ms: r1(play?.startAbs.median), startErrorP99Ms: r1(play?.startAbs.p99),
    distributeWeek1000NodesMs: r1(dist?.distributeMs.median),
    distributeWeek1000NodesP99Ms: r1(dist?.distributeMs.p99),
    expandWeek1000NodesMs: r1(dist?.expandMs.median),
    startErrorFreshBootP99Ms: r1(play?.freshAbs.p99),
    endSkewP95Ms: r1(play?.endSkew.p95), endSkewMaxMinusMinMs: r1(play?.spreadMs),
    offlineStartErrorP50Ms: r1(play?.offlineAbs.median), offlineStartErrorP99Ms: r1(play?.offlineAbs.p99),
    asymmetryMs: play?.asymmetryMs ?? null,
  }));
}

if (import.meta.url === `file://${process.argv[1]}`) await run();
