import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionFleet, runFleet, type ProvisionedNode, type RunningFleet } from '../../firmware-sim/src/fleet.js';
import type { ImpairmentProxy } from '../../firmware-sim/src/impairment-proxy.js';
import type { LiveStatus } from '../../schemas/src/index.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { oneWayPathFor } from '../helpers/one-way.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Readiness comes from the media path: a target is ready when its token-bearing hello opens the path at
 * the controller (no wait for an MQTT report), and nothing is sent before the source speaks (lead-in DTX).
 * A cluster whose hello gets through but that hears nothing back (a one-way path: the controller → agent
 * direction is cut, 100 % loss in a UDP proxy named as the controller's RTP address in its announcement)
 * reports `joining` after a moment, and the controller shows it as not ready, saying why; speak-now waits.
 */
let t: TestController;
let fleet: RunningFleet;
let specs: ProvisionedNode[];
let proxy: ImpairmentProxy;

beforeAll(async () => {
  t = await startTestController({ env: { RADIO_RTP_PORT: 0 } });
  specs = await provisionFleet({ base: t.base, token: t.token, count: 2, villages: 1, prefix: 'lrd' });
  proxy = await oneWayPathFor(t, specs[0]!.nodeId, 'one-way');
  fleet = await runFleet(specs, { telemetryIntervalMs: 5000, keepaliveS: 4, agent: () => ({ liveBindAddress: '127.0.0.1' }) });
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  await proxy?.close();
  await t?.stop();
});

describe('live readiness', () => {
  it('a hello makes a target ready; a one-way path is shown as joining with its reason, and speak-now waits', async () => {
    type View = { speakNow: boolean; reach: { ready: number; joining: number; summary: string }; nodes: { nodeId: string; state: string; reason?: string }[]; sender: { framesSent: number; destinations: number } };
    const r = await t.api<{ sessionId: string }>('POST', '/api/v1/live/sessions', { kind: 'voice', title: 'Kiểm tra', targets: { commune: true } });
    expect(r.status).toBe(201);
    const get = async () => (await t.api<View>('GET', `/api/v1/live/sessions/${r.body.sessionId}`)).body;
    const oneWay = specs[0]!.nodeId;
    const clean = specs[1]!.nodeId;
    const v = await waitFor(async () => {
      const x = await get();
      const n = x.nodes.find((y) => y.nodeId === oneWay)!;
      return x.nodes.find((y) => y.nodeId === clean)!.state === 'ready' && n.state === 'joining' && n.reason ? x : undefined;
    }, { what: 'the clean cluster ready and the one-way one joining', timeoutMs: 10_000 });
    expect(v.nodes.find((y) => y.nodeId === oneWay)!.reason).toMatch(/^one-way path/);
    expect(v.reach.summary).toMatch(/one-way path/);
    // Both hellos opened a path (the one-way cluster's through the proxy), but one target is not ready.
    expect(v.sender.destinations).toBe(2);
    expect(v.speakNow).toBe(false);
    // The microphone has not spoken: nothing was sent yet (lead-in DTX).
    expect(v.sender.framesSent).toBe(0);
    // The way back opens (the proxy stops losing): the cluster hears the controller's next SR, says it
    // is ready after all, and speak-now follows.
    proxy.set({ down: { lossPct: 0 } });
    await waitFor(async () => { const x = await get(); return x.speakNow && x.reach.ready === 2 ? x : undefined; }, { what: 'the repaired cluster ready and speak-now', timeoutMs: 15_000 });
    expect((await t.api('POST', `/api/v1/live/sessions/${r.body.sessionId}/stop`)).status).toBe(200);
    const receipts = (await t.api<{ nodeId: string; state: string; reason: string | null }[]>('GET', `/api/v1/live/sessions/${r.body.sessionId}/receipts`)).body;
    expect(receipts.map((x) => x.state)).toEqual(['ready', 'ready']);
  }, 30_000);

  it('a busy agent whose SR waits in its socket when its joining timer fires does not report a one-way path', async () => {
    // Controller, agents and test share one event loop here: right after the controller sends its first
    // SR of the session (the answer to the first hello), the loop is blocked for 1.3 s, as a busy agent's
    // would be. That agent's 1 s joining timer then fires in the loop turn in which its socket holds the SR.
    const reports: { nodeId: string; state: string }[] = [];
    const live = t.ctl.live as { onLiveStatus(nodeId: string, st: LiveStatus): void };
    const onLiveStatus = live.onLiveStatus.bind(live);
    live.onLiveStatus = (nodeId, st) => { reports.push({ nodeId, state: st.state }); onLiveStatus(nodeId, st); };
    const rtpPort = t.ctl.live.rtpPort();
    let block = true;
    let blockedFor = 0;
    let srTo = 0; // the port of the agent whose SR was sent just before the block
    const send = dgram.Socket.prototype.send;
    (dgram.Socket.prototype as unknown as { send: (...a: unknown[]) => void }).send = function (this: dgram.Socket, ...a: unknown[]) {
      (send as (...x: unknown[]) => void).apply(this, a);
      const b = a[0] as Uint8Array;
      if (block && b[1] === 200 && this.address().port === rtpPort) {
        block = false;
        srTo = a[1] as number;
        const t0 = Date.now();
        while (Date.now() - t0 < 1300) { /* the event loop is blocked */ }
        blockedFor = Date.now() - t0;
      }
    };
    try {
      const r = await t.api<{ sessionId: string }>('POST', '/api/v1/live/sessions', { kind: 'voice', title: 'Bận', targets: { commune: true } });
      expect(r.status).toBe(201);
      type View = { speakNow: boolean; nodes: { nodeId: string; state: string; reason?: string; path: { port: number } | null }[] };
      const v = await waitFor(async () => { const x = (await t.api<View>('GET', `/api/v1/live/sessions/${r.body.sessionId}`)).body; return x.speakNow && !block ? x : undefined; },
        { what: 'speak-now after the blocked loop', timeoutMs: 10_000 });
      expect(blockedFor).toBeGreaterThanOrEqual(1300);
      // Both agents heard the controller (their joining timers have fired by now); then a command round
      // trip per agent: its reply follows, on the same MQTT connection, any report sent before it.
      await waitFor(() => (fleet.agents.every((f) => f.agent.live.stats()?.state === 'ready') ? true : undefined), { what: 'both agents ready', timeoutMs: 5000 });
      for (const f of fleet.agents) {
        const c = await t.api('POST', `/api/v1/nodes/${f.spec.nodeId}/commands`, { name: 'set_mute', params: { mute: false }, waitMs: 5000 });
        expect(c.body.results[0].status).toBe('ok');
      }
      // The agent whose SR was waiting in its socket did not report `joining` (the other one's hello may
      // have waited in the blocked controller's socket: its `joining` would be true).
      const busy = v.nodes.find((n) => n.path?.port === srTo);
      expect(busy, 'the agent the SR went to').toBeDefined();
      expect(reports.filter((x) => x.nodeId === busy!.nodeId && x.state === 'joining')).toEqual([]);
      expect((await t.api('POST', `/api/v1/live/sessions/${r.body.sessionId}/stop`)).status).toBe(200);
    } finally {
      dgram.Socket.prototype.send = send;
      live.onLiveStatus = onLiveStatus;
    }
  }, 30_000);
});
