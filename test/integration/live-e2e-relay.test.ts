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
 * Relay sessions: ffmpeg (under the supervisor, urgent lane) pulls a stream from a local server — HTTP
 * MP3 (Icecast-style), AAC in ADTS over HTTP, HLS (playlist + MPEG-TS segments) — and the session sends
 * it as RTP to the node that said hello with its token; the session ends by itself when the relay's
 * duration is reached, cleanly when the source hangs, and with a clear reason when the URL answers 404
 * or serves something that is not audio.
 */
const run = promisify(execFile);
let t: TestController;
let specs: ProvisionedNode[];
let server: http.Server;
let tmp: string;
let mp3: Buffer;
let aac: Buffer;
let hlsDir: string;
const hung: http.ServerResponse[] = [];

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'live-relay-'));
  const f = path.join(tmp, 'radio.mp3');
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'aevalsrc=0.3*sin(2*PI*330*t):s=44100:d=6', '-ac', '1', '-c:a', 'libmp3lame', '-b:a', '64k', f]);
  mp3 = fs.readFileSync(f);
  // The same tone as AAC (ffmpeg's native encoder) in ADTS, and as an HLS VOD playlist of 1 s segments.
  const tone = ['-f', 'lavfi', '-i', 'aevalsrc=0.3*sin(2*PI*330*t):s=44100:d=6', '-ac', '1', '-c:a', 'aac', '-b:a', '64k'];
  const aacFile = path.join(tmp, 'radio.aac');
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', ...tone, '-f', 'adts', aacFile]);
  aac = fs.readFileSync(aacFile);
  hlsDir = path.join(tmp, 'hls');
  fs.mkdirSync(hlsDir);
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', ...tone, '-f', 'hls', '-hls_time', '1', '-hls_list_size', '0', '-hls_playlist_type', 'vod',
    '-hls_segment_filename', path.join(hlsDir, 'seg%03d.ts'), path.join(hlsDir, 'radio.m3u8')]);
  expect(fs.readdirSync(hlsDir).filter((x) => x.endsWith('.ts')).length).toBeGreaterThanOrEqual(5);
  server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/radio.aac') { res.writeHead(200, { 'content-type': 'audio/aac' }); res.end(aac); return; }
    const seg = /^\/hls\/([a-z0-9]+\.(m3u8|ts))$/.exec(url);
    if (seg) {
      const file = path.join(hlsDir, seg[1]!);
      if (!fs.existsSync(file)) { res.writeHead(404).end(); return; }
      res.writeHead(200, { 'content-type': seg[2] === 'm3u8' ? 'application/vnd.apple.mpegurl' : 'video/mp2t' });
      res.end(fs.readFileSync(file));
      return;
    }
    if (url === '/missing.mp3') { res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'); return; }
    // A captive portal's page where the stream should be: 200, an audio type, and HTML.
    if (url === '/garbage.mp3') { res.writeHead(200, { 'content-type': 'audio/mpeg' }).end('<html><body>Đăng nhập Wi-Fi để tiếp tục</body></html>\n'.repeat(200)); return; }
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
    // 2 s of tone = 100 frames of 20 ms (+ RED copies and the end); the silent lead-in while the
    // target joined and ffmpeg started is not sent (lead-in DTX), so nearly every packet is loud.
    expect(rx.got.loud).toBeGreaterThanOrEqual(90);
    expect(rx.got.rtp).toBeGreaterThanOrEqual(rx.got.loud);
    expect(rx.got.rtp).toBeLessThan(130);
    rx.sock.close();
  }, 30_000);

  /** Relay `url` for 2 s to the one node; the node's RTP must carry the tone, then the session ends by itself. */
  async function relayTone(url: string, title: string) {
    const r = await t.api('POST', '/api/v1/live/sessions', { kind: 'relay', title, url, durationMs: 2000, targets: { commune: true } });
    expect(r.status).toBe(201);
    const rx = await receiver(r.body.sessionId);
    const s = await waitFor(async () => { const v = (await t.api('GET', `/api/v1/live/sessions/${r.body.sessionId}`)).body; return v.state === 'ended' ? v : undefined; }, { what: `the ${title} relay to end`, timeoutMs: 20_000 });
    rx.sock.close();
    expect(s.endReason).toBe('source_ended');
    // 2 s of tone = 100 frames of 20 ms; no silent lead-in is sent (see the MP3 case).
    expect(rx.got.loud, `tone frames relayed from ${url}`).toBeGreaterThanOrEqual(90);
    expect(rx.got.rtp).toBeGreaterThanOrEqual(rx.got.loud);
    expect(rx.got.rtp).toBeLessThan(130);
  }

  it('relays AAC (ADTS over HTTP) for its duration, then ends by itself', async () => {
    const port = (server.address() as { port: number }).port;
    await relayTone(`http://127.0.0.1:${port}/radio.aac`, 'AAC');
  }, 30_000);

  it('relays an HLS playlist (MPEG-TS segments) for its duration, then ends by itself', async () => {
    const port = (server.address() as { port: number }).port;
    await relayTone(`http://127.0.0.1:${port}/hls/radio.m3u8`, 'HLS');
  }, 30_000);

  it('ends with a clear reason when the URL answers 404 or is not audio', async () => {
    const port = (server.address() as { port: number }).port;
    // ffmpeg's own words; the garbage is served as audio/mpeg, so ffmpeg tries MP3 and fails on the frames.
    for (const [p, why] of [['/missing.mp3', /404 Not Found/], ['/garbage.mp3', /invalid|failed/i]] as const) {
      const r = await t.api('POST', '/api/v1/live/sessions', { kind: 'relay', title: `bad ${p}`, url: `http://127.0.0.1:${port}${p}`, durationMs: 60_000, targets: { commune: true } });
      expect(r.status).toBe(201);
      const s = await waitFor(async () => { const v = (await t.api('GET', `/api/v1/live/sessions/${r.body.sessionId}`)).body; return v.state === 'ended' ? v : undefined; }, { what: `the relay of ${p} to end`, timeoutMs: 20_000 });
      expect(s.endReason).toMatch(/^source_failed: ffmpeg exited 1: /);
      expect(s.endReason, p).toMatch(why);
      expect(s.endReason).toContain(p);
      expect(s.endReason).not.toMatch(/@ 0x[0-9a-f]+/);
    }
  }, 45_000);

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
