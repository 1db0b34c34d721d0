import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHello, classifyPacket, parseRtp } from '../../audio-pipeline/src/live/index.js';
import { provisionFleet, type ProvisionedNode } from '../../firmware-sim/src/fleet.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Relay sessions: ffmpeg (under the supervisor, urgent lane) pulls an HTTP MP3 stream from a local
 * server and the session sends it as RTP to the node that said hello with its token; the session ends
 * by itself when the relay's duration is reached, and cleanly when the source hangs.
 */
const run = promisify(execFile);
let t: TestController;
let specs: ProvisionedNode[];
let server: http.Server;
let tmp: string;
let mp3: Buffer;
const hung: http.ServerResponse[] = [];

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'live-relay-'));
  const f = path.join(tmp, 'radio.mp3');
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'aevalsrc=0.3*sin(2*PI*330*t):s=44100:d=6', '-ac', '1', '-c:a', 'libmp3lame', '-b:a', '64k', f]);
  mp3 = fs.readFileSync(f);
  server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'audio/mpeg' });
    if (req.url === '/hang') { res.write(mp3.subarray(0, 4096)); hung.push(res); return; }
    res.end(mp3);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t = await startTestController({ env: { RADIO_RTP_PORT: 0 } });
  specs = await provisionFleet({ base: t.base, token: t.token, count: 1, villages: 1, prefix: 'lr' });
}, 30_000);

afterAll(async () => {
  for (const r of hung) r.destroy();
  await new Promise<void>((r) => server?.close(() => r()));
  await t?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

async function receiver(sessionId: string) {
  const topic = `radio/v1/node/${specs[0]!.nodeId}/live`;
  const a = JSON.parse(t.ctl.store.allRetained().find((x) => x.topic === topic)!.payload) as { token: string; rtp: { port: number }; sessionId: string; ssrc: number };
  expect(a.sessionId).toBe(sessionId);
  const sock = dgram.createSocket('udp4');
  const got = { rtp: 0, loud: 0 };
  sock.on('message', (m) => {
    if (classifyPacket(m) !== 'rtp') return;
    const p = parseRtp(m);
    if (p.ssrc === a.ssrc) got.rtp++;
    // Opus frames of silence are a few bytes; the tone makes larger ones.
    if (p.payload.length > 40) got.loud++;
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  sock.send(buildHello({ ssrc: 9, token: a.token }), a.rtp.port, '127.0.0.1');
  return { sock, got };
}

describe('relay sessions', () => {
  it('relays an HTTP MP3 stream for its duration, then ends by itself', async () => {
    const port = (server.address() as { port: number }).port;
    const r = await t.api('POST', '/api/v1/live/sessions', { kind: 'relay', title: 'Đài tiếng nói', url: `http://127.0.0.1:${port}/radio.mp3`, durationMs: 2000, targets: { commune: true } });
    expect(r.status).toBe(201);
    const rx = await receiver(r.body.sessionId);
    const s = await waitFor(async () => { const v = (await t.api('GET', `/api/v1/live/sessions/${r.body.sessionId}`)).body; return v.state === 'ended' ? v : undefined; }, { what: 'the relay to end', timeoutMs: 20_000 });
    expect(s.endReason).toBe('source_ended');
    // 2 s of tone = 100 frames of 20 ms (plus the silent frames around it).
    expect(rx.got.loud).toBeGreaterThanOrEqual(90);
    expect(rx.got.rtp).toBeGreaterThan(rx.got.loud);
    rx.sock.close();
  }, 30_000);

  it('ends the session cleanly when the stream hangs', async () => {
    const port = (server.address() as { port: number }).port;
    const r = await t.api('POST', '/api/v1/live/sessions', { kind: 'relay', title: 'Stalled', url: `http://127.0.0.1:${port}/hang`, durationMs: 60_000, targets: { commune: true } });
    expect(r.status).toBe(201);
    const rx = await receiver(r.body.sessionId);
    const s = await waitFor(async () => { const v = (await t.api('GET', `/api/v1/live/sessions/${r.body.sessionId}`)).body; return v.state === 'ended' ? v : undefined; }, { what: 'the stalled relay to end', timeoutMs: 25_000 });
    expect(s.endReason).toMatch(/^source_(stalled|failed)/);
    const audit = t.ctl.store.listAudit(t.ctl.config.RADIO_COMMUNE_ID, 50, 0) as any[];
    expect(audit.find((x) => x.action === 'live.stop' && x.target === r.body.sessionId)).toBeTruthy();
    rx.sock.close();
  }, 30_000);
});
