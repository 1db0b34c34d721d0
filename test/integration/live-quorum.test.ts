import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionFleet, runFleet, type ProvisionedNode, type RunningFleet } from '../../firmware-sim/src/fleet.js';
import type { ImpairmentProxy } from '../../firmware-sim/src/impairment-proxy.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { oneWayPathFor } from '../helpers/one-way.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Speak-now at the quorum (LiveOptions.speakNowQuorum / speakNowGraceMs): one cluster on a broken path
 * must not hold everybody's audio. Real controller, broker, agents and UDP; one of the two clusters is
 * told to reach the controller through a UDP proxy that loses everything toward the agent (a one-way
 * path: its hello arrives, our packets never do), so it never becomes ready. The default quorum (0.99)
 * is "all" below 100 targets (live-readiness: speak-now waits); here the quorum is one of two.
 */
let t: TestController;
let fleet: RunningFleet;
let specs: ProvisionedNode[];
let proxy: ImpairmentProxy;

beforeAll(async () => {
  t = await startTestController({ env: { RADIO_RTP_PORT: 0 }, live: { speakNowQuorum: 0.5, speakNowGraceMs: 300 } });
  specs = await provisionFleet({ base: t.base, token: t.token, count: 2, villages: 1, prefix: 'lq' });
  proxy = await oneWayPathFor(t, specs[0]!.nodeId, 'quorum');
  fleet = await runFleet(specs, { telemetryIntervalMs: 5000, keepaliveS: 4, agent: () => ({ liveBindAddress: '127.0.0.1' }) });
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  await proxy?.close();
  await t?.stop();
});

describe('speak-now at the quorum', () => {
  it('comes after the grace without the cluster that cannot hear, which stays listed with its reason', async () => {
    type View = { speakNow: boolean; reach: { ready: number; targets: number; summary: string }; nodes: { nodeId: string; state: string; reason?: string }[] };
    const r = await t.api<{ sessionId: string }>('POST', '/api/v1/live/sessions', { kind: 'voice', title: 'Kiểm tra đủ số', targets: { commune: true } });
    expect(r.status).toBe(201);
    const get = async () => (await t.api<View>('GET', `/api/v1/live/sessions/${r.body.sessionId}`)).body;
    const broken = specs[0]!.nodeId;
    const v = await waitFor(async () => {
      const x = await get();
      const b = x.nodes.find((y) => y.nodeId === broken)!;
      return x.speakNow && b.state === 'joining' && b.reason ? x : undefined;
    }, { what: 'speak-now with one cluster still joining', timeoutMs: 10_000 });
    // One of two is ready: the quorum, and the grace is over.
    expect(v.reach.ready).toBe(1);
    expect(v.reach.targets).toBe(2);
    expect(v.nodes.find((y) => y.nodeId === specs[1]!.nodeId)!.state).toBe('ready');
    // The operator still sees who is missing, and why.
    expect(v.nodes.find((y) => y.nodeId === broken)!.reason).toMatch(/^one-way path/);
    expect(v.reach.summary).toMatch(/one-way path/);
    expect((await t.api('POST', `/api/v1/live/sessions/${r.body.sessionId}/stop`)).status).toBe(200);
  }, 30_000);
});
