/**
 * The controller is SIGKILLed mid-day and restarted on the same data: the controller runs as a child
 * process (`npm start`'s entry point, embedded broker, SQLite), three clusters on simulated hardware
 * (±2 s clock offsets, drifting) play three airings scheduled through the API a few seconds apart, in
 * real time — the second starts as the controller dies, the third plays while it is dead. After the
 * restart every receipt arrives, and each (node, airing, state) is stored exactly once.
 *
 * Real time rather than a stepped clock: the controller's clock is not injectable in a child process
 * (it would need a test-only env such as RADIO_TEST_CLOCK_OFFSET_MS). Cron with seconds gives one-off
 * slots a few seconds apart.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, spawnController, type ControllerProc } from '../../bench/lib.js';
import { login, provisionFleet } from '../../firmware-sim/src/fleet.js';
import { trueClock } from '../../firmware-sim/src/sim-clock.js';
import { quietHoursAwayFrom } from '../helpers/agent-playout.js';
import { onsetAfter, receiptCounts, startCluster, uploadTone, type ReceiptRow, type SchedCluster } from '../helpers/schedule-fleet.js';
import { waitFor } from '../helpers/wait.js';

const START_TOLERANCE_MS = 30;
const PASSWORD = 'restart-password';

/** A cron expression (with seconds) that fires once, at instant `t`, in the commune's time (UTC+7). */
function cronAt(t: number): string {
  const d = new Date(t + 7 * 3600_000);
  return `${d.getUTCSeconds()} ${d.getUTCMinutes()} ${d.getUTCHours()} ${d.getUTCDate()} ${d.getUTCMonth() + 1} *`;
}

let dir: string;
let ctl: ControllerProc;
let ports: { http: number; mqtt: number };
let token: string;
const C: SchedCluster[] = [];

async function api<T = any>(method: string, p: string, body?: unknown): Promise<{ status: number; body: T }> {
  for (let attempt = 0; ; attempt++) {
    const r = await fetch(`${ctl.base}${p}`, {
      method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    if (r.status === 401 && attempt === 0) { token = await login(ctl.base, 'admin', PASSWORD); continue; }
    const text = await r.text();
    return { status: r.status, body: (text ? JSON.parse(text) : undefined) as T };
  }
}
async function receipts(): Promise<ReceiptRow[]> {
  const r = await api<ReceiptRow[]>('GET', '/api/v1/receipts?limit=5000');
  if (r.status !== 200) throw new Error(`receipts: ${r.status}`);
  return r.body;
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sched-restart-'));
  ports = { http: await freePort(), mqtt: await freePort() };
  ctl = await spawnController({ dir, ...ports, password: PASSWORD });
  token = await login(ctl.base, 'admin', PASSWORD);
  // Whatever the hour the suite runs at, the quiet hours are elsewhere (the agent enforces them too).
  expect((await api('PUT', '/api/v1/settings/quiet-hours', quietHoursAwayFrom(Date.now()))).status).toBe(200);
  const specs = await provisionFleet({ base: ctl.base, token, count: 3, villages: 2, prefix: 'rst' });
  const clocks = [{ offsetMs: 2000, driftPpm: 100 }, { offsetMs: -2000, driftPpm: -100 }, { offsetMs: 900, driftPpm: -50 }];
  for (const [i, co] of clocks.entries()) C.push(await startCluster(specs[i]!, { ...co, dataDir: path.join(dir, 'agents', specs[i]!.nodeId) }));
}, 90_000);

afterAll(async () => {
  // Teardown must not wait on the network: the controller goes first (SIGKILL, it is a test child),
  // then the agents die as a crash would (no offline status to publish).
  if (ctl && ctl.proc.exitCode === null && ctl.proc.signalCode === null) {
    const gone = new Promise((r) => ctl.proc.once('exit', r));
    ctl.proc.kill('SIGKILL');
    await gone;
  }
  for (const c of C) {
    await c.agent.kill();
    c.agent.dispose();
    await c.hw.close();
  }
  fs.rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('controller SIGKILLed mid-day', () => {
  it('agents play every airing while it is dead; after the restart no receipt is lost or doubled', async () => {
    const tone = await uploadTone(ctl.base, token, dir, { name: 'tone', seconds: 2, hz: 523 });
    expect((await api('POST', '/api/v1/programmes', { id: 'p-rst', title: 'Bản tin', items: [{ kind: 'media', mediaId: tone.id }] })).status).toBe(201);
    await waitFor(() => C.every((c) => c.agent.clockSource.estimate().synced && c.agent.connected()), { what: 'agents connected and synced' });

    const t1 = Math.ceil((trueClock.now() + 12_000) / 1000) * 1000;
    const starts = [t1, t1 + 10_000, t1 + 18_000];
    const airingIds: string[] = [];
    for (const [i, t] of starts.entries()) {
      const r = await api<{ nextAirings: { airingId: string; startAt: number; nodeCount: number }[] }>('POST', '/api/v1/schedules', {
        id: `s-rst-${i + 1}`, programmeId: 'p-rst', recurrence: { kind: 'cron', expression: cronAt(t) }, validUntil: new Date(t + 7 * 3600_000).toISOString().slice(0, 10), targets: [{ kind: 'commune' }],
      });
      expect(r.status).toBe(201);
      expect(r.body.nextAirings[0]).toMatchObject({ startAt: t, nodeCount: 3 });
      airingIds.push(r.body.nextAirings[0]!.airingId);
    }
    const pairs = C.flatMap((c) => airingIds.map((airingId) => ({ nodeId: c.spec.nodeId, airingId })));
    await waitFor(() => C.every((c) => c.agent.cache.has(tone.sha256) && airingIds.every((id) => c.agent.playout.phaseOf(id) === 'waiting')), { what: 'plans applied and media cached' });

    // Airing 1 with the controller alive.
    for (const e of await Promise.all(C.map((c) => onsetAfter(c, starts[0]! - 1000)))) expect(Math.abs(e.trueMs - starts[0]!)).toBeLessThan(START_TOLERANCE_MS);
    await waitFor(async () => (await receipts()).filter((r) => r.airingId === airingIds[0] && r.state === 'finished').length === 3, { what: 'airing 1 finished receipts', intervalMs: 100 });

    // Airing 2 starts; as soon as the controller has stored one of its receipts (others may be in flight,
    // stored but not acked yet), it is killed.
    await waitFor(async () => (await receipts()).some((r) => r.airingId === airingIds[1]), { what: 'a receipt of airing 2 stored', timeoutMs: 20_000, intervalMs: 20 });
    const exited = new Promise((r) => ctl.proc.once('exit', r));
    ctl.proc.kill('SIGKILL');
    await exited;
    const deadAt = trueClock.now();

    // Airing 2 goes on and airing 3 plays with no controller, on time, from each cluster's cache.
    for (const e of await Promise.all(C.map((c) => onsetAfter(c, starts[1]! - 1000)))) expect(Math.abs(e.trueMs - starts[1]!)).toBeLessThan(START_TOLERANCE_MS);
    for (const e of await Promise.all(C.map((c) => onsetAfter(c, starts[2]! - 1000)))) expect(Math.abs(e.trueMs - starts[2]!)).toBeLessThan(START_TOLERANCE_MS);
    await waitFor(() => C.every((c) => c.agent.receipts.pending().some((r) => r.id === `${airingIds[2]}:finished`)), { what: 'airing 3 finished, receipts queued on the agents' });
    expect(deadAt).toBeLessThan(starts[1]! + 2000);
    expect(C.every((c) => !c.agent.connected())).toBe(true);

    // Same data dir, same ports: agents reconnect and drain their disk queues.
    const restartedAt = Date.now();
    ctl = await spawnController({ dir, ...ports, password: PASSWORD });
    await waitFor(() => C.every((c) => c.agent.connected() && c.agent.receipts.pending().length === 0), { what: 'receipt queues drained after the restart', timeoutMs: 30_000 });

    const rows = await receipts();
    const counts = receiptCounts(rows);
    for (const { nodeId, airingId } of pairs) {
      expect(counts.get(`${nodeId}|${airingId}|started`), `${nodeId} ${airingId} started`).toBe(1);
      expect(counts.get(`${nodeId}|${airingId}|finished`), `${nodeId} ${airingId} finished`).toBe(1);
    }
    expect(rows).toHaveLength(pairs.length * 2);
    for (const r of rows) {
      expect(r.airingMatch).toBe('planned');
      if (r.state === 'started') expect(Math.abs(r.startErrorMs!)).toBeLessThan(START_TOLERANCE_MS);
    }
    // Airing 3's receipts could only reach the database after the restart: store-and-forward, not luck.
    for (const r of rows.filter((x) => x.airingId === airingIds[2])) expect(r.receivedAt).toBeGreaterThanOrEqual(restartedAt);
    const st = await api<{ summary: { total: number; finished: number } }>('GET', `/api/v1/airings?from=${starts[0]! - 60_000}&to=${starts[2]! + 60_000}`);
    expect(st.body.summary).toMatchObject({ total: 9, finished: 9 });
  }, 90_000);
});
