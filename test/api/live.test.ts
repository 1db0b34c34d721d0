import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { buildHello } from '../../audio-pipeline/src/live/index.js';
import { topicFor } from '../../schemas/src/index.js';
import { provisionFleet, type ProvisionedNode } from '../../firmware-sim/src/fleet.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Live-session API on a real controller (real RTP socket on a free port, real broker, SQLite): bad
 * inputs answer with a code that names the problem, the microphone WebSocket refuses a wrong token,
 * a stranger's hello opens no path, and every start and stop is audited with a receipt per node.
 */
let t: TestController;
let specs: ProvisionedNode[];
const base = (b: object) => ({ kind: 'voice', title: 'Loa phường', ...b });

beforeAll(async () => {
  t = await startTestController({ env: { RADIO_RTP_PORT: 0 } });
  specs = await provisionFleet({ base: t.base, token: t.token, count: 2, villages: 1, prefix: 'lv' });
}, 30_000);
afterAll(async () => { await t?.stop(); });

describe('live sessions API', () => {
  it('refuses bad inputs with a code naming the problem', async () => {
    const unknownZone = await t.api('POST', '/api/v1/live/sessions', base({ targets: { zones: ['no-such-zone'] } }));
    expect(unknownZone.status).toBe(404);
    expect(unknownZone.body.code).toBe('ZONE_NOT_FOUND');
    const unknownNode = await t.api('POST', '/api/v1/live/sessions', base({ targets: { nodes: ['ghost'] } }));
    expect(unknownNode.status).toBe(404);
    expect(unknownNode.body.code).toBe('NODE_NOT_FOUND');
    const noTargets = await t.api('POST', '/api/v1/live/sessions', base({ targets: {} }));
    expect(noTargets.status).toBe(400);
    expect(noTargets.body.message).toMatch(/targets/);
    const relay = await t.api('POST', '/api/v1/live/sessions', base({ kind: 'relay', targets: { commune: true } }));
    expect(relay.status).toBe(400);
    expect(relay.body.code).toBe('LIVE_URL_REQUIRED');
    const badKind = await t.api('POST', '/api/v1/live/sessions', base({ kind: 'karaoke', targets: { commune: true } }));
    expect(badKind.status).toBe(400);
    const file = await t.api('POST', '/api/v1/live/sessions', base({ kind: 'file', targets: { commune: true } }));
    expect(file.body.code).toBe('LIVE_MEDIA_REQUIRED');
    const missingMedia = await t.api('POST', '/api/v1/live/sessions', base({ kind: 'file', mediaId: 'm-nothere', targets: { commune: true } }));
    expect(missingMedia.status).toBe(404);
    const emergency = await t.api('POST', '/api/v1/live/emergency', { targets: { commune: true } });
    expect(emergency.status).toBe(400);
    expect(emergency.body.message).toMatch(/mediaId|text/);
    const unknown = await t.api('GET', '/api/v1/live/sessions/live-nope');
    expect(unknown.status).toBe(404);
  });

  it('starts a voice session: announced per node, audited, reach reported; stop ends it with receipts', async () => {
    const r = await t.api('POST', '/api/v1/live/sessions', base({ targets: { zones: [specs[0]!.zoneId] } }));
    expect(r.status).toBe(201);
    const s = r.body;
    expect(s.sessionId).toMatch(/^live-/);
    expect(s.targets.sort()).toEqual(specs.map((x) => x.nodeId).sort());
    expect(s.rtp.port).toBe(t.ctl.live.rtpPort());
    expect(s.rtp.port).toBeGreaterThan(0);
    expect(s.micPath).toBe(`/api/v1/live/sessions/${s.sessionId}/mic`);
    // No agent runs: nobody is ready, reach says why.
    expect(s.speakNow).toBe(false);
    expect(s.reach.playing).toBe(0);
    expect(s.reach.summary).toMatch(/playing on 0 of 2; not playing: 2 node offline/);
    // The announcement is retained (per node, with its own token) for republishing after a restart.
    const retained = t.ctl.store.allRetained().filter((x) => x.topic.endsWith('/live'));
    expect(retained).toHaveLength(2);
    const tokens = retained.map((x) => JSON.parse(x.payload).token as string);
    expect(new Set(tokens).size).toBe(2);

    // A stranger's hello (unknown token) opens no path; the right token from its node does.
    const stranger = dgram.createSocket('udp4');
    await new Promise<void>((res) => stranger.bind(0, '127.0.0.1', () => res()));
    const before = t.ctl.live.stats().dropped;
    stranger.send(buildHello({ ssrc: 1, token: 'not-a-token-of-any-session' }), s.rtp.port, '127.0.0.1');
    await waitFor(() => t.ctl.live.stats().dropped > before, { what: 'the stranger hello to be dropped' });
    expect((await t.api('GET', `/api/v1/live/sessions/${s.sessionId}`)).body.sender.destinations).toBe(0);
    stranger.send(buildHello({ ssrc: 2, token: tokens[0]! }), s.rtp.port, '127.0.0.1');
    await waitFor(async () => (await t.api('GET', `/api/v1/live/sessions/${s.sessionId}`)).body.sender.destinations === 1, { what: 'the hello with a token to open a path' });
    // The path gets the sender's SR at once (the agent's sign that it works both ways); no RTP before
    // the microphone speaks (lead-in DTX). The hello itself makes the node ready at the controller.
    const got = await new Promise<Buffer>((res) => stranger.once('message', (m) => res(m)));
    expect(got[0]! >> 6).toBe(2);
    expect(got[1]).toBe(200); // RTCP SR
    const afterHello = (await t.api('GET', `/api/v1/live/sessions/${s.sessionId}`)).body;
    expect(afterHello.reach.ready).toBe(1);
    stranger.close();

    const list = await t.api('GET', '/api/v1/live/sessions');
    expect(list.body.active.map((x: any) => x.sessionId)).toContain(s.sessionId);

    const stop = await t.api('POST', `/api/v1/live/sessions/${s.sessionId}/stop`);
    expect(stop.status).toBe(200);
    expect(stop.body.state).toBe('ended');
    expect(stop.body.endReason).toBe('stopped');
    const ended = t.ctl.store.allRetained().filter((x) => x.topic.endsWith('/live')).map((x) => JSON.parse(x.payload).state);
    expect(ended).toEqual(['ended', 'ended']);
    const audit = t.ctl.store.listAudit(t.ctl.config.RADIO_COMMUNE_ID, 100, 0) as any[];
    expect(audit.find((a) => a.action === 'live.start' && a.target === s.sessionId)).toBeTruthy();
    expect(audit.find((a) => a.action === 'live.stop' && a.target === s.sessionId)).toBeTruthy();
    const receipts = await t.api('GET', `/api/v1/live/sessions/${s.sessionId}/receipts`);
    expect(receipts.body).toHaveLength(2);
    expect(receipts.body.map((x: any) => [x.state, x.played])).toEqual([['ready', false], ['offline', false]]);
    // Stopping again is harmless.
    expect((await t.api('POST', `/api/v1/live/sessions/${s.sessionId}/stop`)).body.state).toBe('ended');
  });

  it('a scheduled relay feed and an API session on the same node keep their own retained announcements', async () => {
    const node = specs[1]!;
    const communeId = t.ctl.config.RADIO_COMMUNE_ID;
    // The relay item is 60 s away: its source does not start within this test.
    const feed = await t.ctl.live.startSession(communeId, 'schedule', {
      kind: 'relay', title: 'Tiếp sóng', priority: 'normal', targets: { commune: false, zones: [], nodes: [node.nodeId] },
      url: 'http://127.0.0.1:9/station.mp3', durationMs: 10_000, repeat: 1, delayMs: 200, airing: { airingId: 'air-overlap-1', itemIndex: 1 }, audioAt: Date.now() + 60_000,
    });
    const api = await t.api('POST', '/api/v1/live/sessions', base({ targets: { nodes: [node.nodeId] } }));
    expect(api.status).toBe(201);
    const liveTopic = topicFor('live', node.nodeId);
    const feedTopic = topicFor('liveFeed', node.nodeId);
    // What an agent that reconnects now gets: both, each on its own topic.
    const retained = async () => {
      const c = await mqtt.connectAsync(node.mqttUrl, { clientId: node.username, username: node.username, password: node.password, reconnectPeriod: 0 });
      const got = new Map<string, { sessionId?: string; state?: string }>();
      const both = new Promise<void>((resolve) => c.on('message', (topic, payload) => {
        if (payload.length) got.set(topic, JSON.parse(payload.toString()) as { sessionId: string; state: string });
        if (got.has(liveTopic) && got.has(feedTopic)) resolve();
      }));
      await c.subscribeAsync([liveTopic, feedTopic], { qos: 1 });
      await both;
      await c.endAsync();
      return got;
    };
    let got = await retained();
    expect(got.get(liveTopic)).toMatchObject({ sessionId: api.body.sessionId, state: 'active' });
    expect(got.get(feedTopic)).toMatchObject({ sessionId: feed.sessionId, state: 'active', airing: { airingId: 'air-overlap-1', itemIndex: 1 } });
    // Ending the API session leaves the feed's announcement as it was.
    await t.api('POST', `/api/v1/live/sessions/${api.body.sessionId}/stop`);
    got = await retained();
    expect(got.get(liveTopic)).toMatchObject({ sessionId: api.body.sessionId, state: 'ended' });
    expect(got.get(feedTopic)).toMatchObject({ sessionId: feed.sessionId, state: 'active' });
    await t.ctl.live.stopSession(communeId, 'schedule', feed.sessionId);
  });

  it('refuses a microphone WebSocket with a wrong token, and one for a non-voice session id', async () => {
    const r = await t.api('POST', '/api/v1/live/sessions', base({ targets: { commune: true } }));
    const port = t.ctl.httpPort();
    const wrong = new WebSocket(`ws://127.0.0.1:${port}/api/v1/live/sessions/${r.body.sessionId}/mic?token=wrong`);
    const status = await new Promise<number>((res, rej) => {
      wrong.on('unexpected-response', (_req, resp) => res(resp.statusCode ?? 0));
      wrong.on('open', () => rej(new Error('opened with a wrong token')));
      wrong.on('error', () => { /* reported through unexpected-response */ });
    });
    expect(status).toBe(401);
    const unknown = new WebSocket(`ws://127.0.0.1:${port}/api/v1/live/sessions/live-nope/mic?token=${t.token}`);
    const code = await new Promise<number>((res) => unknown.on('close', (c) => res(c)));
    expect(code).toBe(4404);
    // The right token connects; a second microphone is refused.
    const ok = new WebSocket(`ws://127.0.0.1:${port}/api/v1/live/sessions/${r.body.sessionId}/mic?token=${t.token}`);
    await new Promise<void>((res, rej) => { ok.on('open', () => res()); ok.on('error', rej); });
    const second = new WebSocket(`ws://127.0.0.1:${port}/api/v1/live/sessions/${r.body.sessionId}/mic?token=${t.token}`);
    expect(await new Promise<number>((res) => second.on('close', (c) => res(c)))).toBe(4409);
    // A flood (far faster than real time) is bounded: the excess is dropped, then the socket is closed.
    const closed = new Promise<number>((res) => ok.on('close', (c) => res(c)));
    const frame = Buffer.alloc(48_000 * 2); // 1 s of s16le silence per frame
    for (let i = 0; i < 12; i++) ok.send(frame);
    expect(await closed).toBe(4429);
    const s = (await t.api('GET', `/api/v1/live/sessions/${r.body.sessionId}`)).body;
    expect(s.mic.droppedSamples).toBeGreaterThan(5 * 48_000);
    expect(s.mic.samples).toBeLessThanOrEqual(48_000);
    await t.api('POST', `/api/v1/live/sessions/${r.body.sessionId}/stop`);
  });
});
