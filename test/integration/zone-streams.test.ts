/**
 * Pull streams per zone, judged where a third-party player would judge them: ffmpeg as the HTTP client
 * (as VLC would), decoding GET /api/v1/zones/{id}/stream.mp3|.ogg from a real controller to PCM.
 *
 * - Before anything plays, the stream is silence; a live `file` session (a 1 kHz tone uploaded through
 *   the media API) targeting the zone is heard on the stream (Goertzel at 1 kHz vs off-frequency).
 * - A second listener joining late (Ogg) gets a stream its decoder accepts (header pages first).
 * - A scheduled airing for the zone (a 660 Hz tone, scheduled through the API a few seconds ahead) is
 *   heard too, and the JSON view says what is on air; a live session preempts it, and it comes back after.
 * - Unknown zone → 404 ZONE_NOT_FOUND; no or a wrong credential → 401; a node's Basic credentials work.
 * - After the last listener leaves, the mixer and the encoders stop.
 * - Listen keys: the JSON view gives admins the zone's key URL (created on first look, audited), which plays
 *   in ffmpeg; a wrong key or another zone's key → 401; a role that may not see keys gets none and cannot
 *   rotate (403). Rotating: the old URL is refused at once, a player on it is disconnected (a token
 *   listener is not), the new key plays, and the rotation is in the audit trail.
 */
import { spawn, type ChildProcess, execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../controller/src/secrets.js';
import { quietHoursAwayFrom } from '../helpers/agent-playout.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { waitFor } from '../helpers/wait.js';

const run = promisify(execFile);
const RATE = 48_000;
const ZONE = 'zs-thon-1';
const OTHER = 'zs-thon-2';
let t: TestController;
let tmp: string;
let nodeCreds: { username: string; password: string };
const media: Record<string, string> = {};
const clients: Client[] = [];

/** ffmpeg as a player: pulls the stream over HTTP and decodes it to 48 kHz mono s16le, kept as floats. */
interface Client {
  proc: ChildProcess;
  samples(): Float32Array;
  exited: Promise<{ code: number | null; stderr: string }>;
}

function listen(url: string, extra: string[] = []): Client {
  const proc = spawn('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-i', url, ...extra, '-f', 's16le', '-ac', '1', '-ar', String(RATE), 'pipe:1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  let stderr = '';
  proc.stdout!.on('data', (c: Buffer) => chunks.push(c));
  proc.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => proc.on('close', (code) => resolve({ code, stderr })));
  const c: Client = {
    proc, exited,
    samples() {
      const b = Buffer.concat(chunks);
      const out = new Float32Array(Math.floor(b.length / 2));
      for (let i = 0; i < out.length; i++) out[i] = b.readInt16LE(i * 2) / 32768;
      return out;
    },
  };
  clients.push(c);
  return c;
}

/** Goertzel magnitude (≈ amplitude of a sine at `hz`) over `x`. */
function toneAmplitude(x: Float32Array, hz: number): number {
  const w = (2 * Math.PI * hz) / RATE;
  const k = 2 * Math.cos(w);
  let s1 = 0; let s2 = 0;
  for (let i = 0; i < x.length; i++) { const s0 = x[i]! + k * s1 - s2; s2 = s1; s1 = s0; }
  const p = s1 * s1 + s2 * s2 - k * s1 * s2;
  return (2 * Math.sqrt(Math.max(0, p))) / x.length;
}
const rms = (x: Float32Array) => Math.sqrt(x.reduce((a, v) => a + v * v, 0) / Math.max(1, x.length));
/** The last `ms` of what a client decoded so far. */
const tail = (c: Client, ms: number) => { const s = c.samples(); return s.subarray(Math.max(0, s.length - Math.round((ms / 1000) * RATE))); };
/** The tone is there: strong at `hz`, ten times (20 dB) above an off-frequency probe. */
const hasTone = (x: Float32Array, hz: number) => x.length > 0 && toneAmplitude(x, hz) > 0.03 && toneAmplitude(x, hz) > 10 * toneAmplitude(x, hz * 1.37);
const streamUrl = (zone: string, f: 'mp3' | 'ogg', token = t.token) => `${t.base}/api/v1/zones/${zone}/stream.${f}?token=${encodeURIComponent(token)}`;

async function upload(name: string, hz: number, seconds: number) {
  const wav = path.join(tmp, `${name}.wav`);
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', `aevalsrc=0.3*sin(2*PI*${hz}*t):s=48000:d=${seconds}`, '-ac', '1', wav]);
  const form = new FormData();
  form.append('file', new Blob([fs.readFileSync(wav)]), `${name}.wav`);
  const up = await fetch(`${t.base}/api/v1/media`, { method: 'POST', headers: { authorization: `Bearer ${t.token}` }, body: form });
  expect(up.status).toBe(201);
  media[name] = ((await up.json()) as { id: string }).id;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'zone-streams-'));
  t = await startTestController();
  for (const [id, name] of [[ZONE, 'Thôn Một'], [OTHER, 'Thôn Hai']]) expect((await t.api('POST', '/api/v1/zones', { id, name })).status).toBe(201);
  const n = await t.api<{ credentials: { username: string; password: string } }>('POST', '/api/v1/nodes', { id: 'zs-node-1', name: 'Cụm loa 1', zoneId: ZONE });
  expect(n.status).toBe(201);
  nodeCreds = n.body.credentials;
  expect((await t.api('POST', '/api/v1/nodes', { id: 'zs-node-2', name: 'Cụm loa 2', zoneId: OTHER })).status).toBe(201);
  // Quiet hours far from now, so the schedule below is accepted whatever the time of day.
  expect((await t.api('PUT', '/api/v1/settings/quiet-hours', quietHoursAwayFrom(Date.now()))).status).toBe(200);
  await Promise.all([upload('tone-1k', 1000, 30), upload('tone-660', 660, 10), upload('tone-1500', 1500, 30)]);
}, 60_000);

afterAll(async () => {
  for (const c of clients) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
  await t?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('zone pull streams', () => {
  it('answers 404 for an unknown zone and 401 without a valid credential; a node may listen with Basic', async () => {
    const unknown = await fetch(streamUrl('no-such-zone', 'mp3'));
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { code: string }).code).toBe('ZONE_NOT_FOUND');
    const none = await fetch(`${t.base}/api/v1/zones/${ZONE}/stream.ogg`);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { code: string }).code).toBe('UNAUTHENTICATED');
    // A Basic challenge: players send credentials from the URL (http://node:secret@host/…) only after one.
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    expect((await fetch(streamUrl(ZONE, 'mp3', 'not-a-token'))).status).toBe(401);
    const wrongNode = await fetch(`${t.base}/api/v1/zones/${ZONE}/stream.mp3`, { headers: { authorization: `Basic ${Buffer.from(`${nodeCreds.username}:wrong`).toString('base64')}` } });
    expect(wrongNode.status).toBe(401);

    // node:http, not fetch: undici opens a spare connection when a body is aborted, which would hold
    // the controller's app.close() until the server's header timeout.
    const basic = `Basic ${Buffer.from(`${nodeCreds.username}:${nodeCreds.password}`).toString('base64')}`;
    const { status, headers, first } = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; first: Buffer }>((resolve, reject) => {
      const req = http.get(`${t.base}/api/v1/zones/${ZONE}/stream.mp3`, { headers: { authorization: basic } }, (res) => {
        res.once('data', (d: Buffer) => { req.destroy(); resolve({ status: res.statusCode!, headers: res.headers, first: d }); });
      });
      req.on('error', reject);
    });
    expect(status).toBe(200);
    expect(headers['content-type']).toBe('audio/mpeg');
    expect(headers['cache-control']).toMatch(/no-store/);
    expect(headers['content-length']).toBeUndefined();
    // The first bytes are an MPEG audio frame header (sync word), i.e. a player can start right there.
    expect(first[0]).toBe(0xff);
    expect(first[1]! & 0xe0).toBe(0xe0);
    await waitFor(() => t.ctl.streams.stats().zones === 0, { what: 'the zone stream to stop after the Basic listener left' });
  });

  it('is silence first, then carries a live file session targeting the zone; a late Ogg listener decodes', async () => {
    const a = listen(streamUrl(ZONE, 'mp3'));
    await waitFor(() => a.samples().length >= RATE, { what: '1 s of decoded stream', timeoutMs: 20_000 });
    const before = tail(a, 800);
    expect(rms(before)).toBeLessThan(0.002);

    const info = await t.api<{ listeners: { total: number; mp3: number }; running: boolean; onAir: { origin: string } }>('GET', `/api/v1/zones/${ZONE}/stream`);
    expect(info.status).toBe(200);
    expect(info.body).toMatchObject({ running: true, listeners: { total: 1, mp3: 1 }, onAir: { origin: 'silence' } });

    // A session in the OTHER zone is not heard in this one.
    const other = await t.api<{ sessionId: string }>('POST', '/api/v1/live/sessions', { kind: 'file', title: 'Thôn Hai', priority: 'normal', mediaId: media['tone-1500'], targets: { zones: [OTHER] } });
    expect(other.status).toBeLessThan(300);
    const s = await t.api<{ sessionId: string }>('POST', '/api/v1/live/sessions', { kind: 'file', title: 'Thông báo thôn Một', priority: 'priority', mediaId: media['tone-1k'], targets: { zones: [ZONE] } });
    expect(s.status).toBeLessThan(300);
    await waitFor(() => hasTone(tail(a, 300), 1000), { what: 'the 1 kHz tone of the live session on the MP3 stream', timeoutMs: 15_000 });
    expect(toneAmplitude(tail(a, 300), 1500)).toBeLessThan(0.01);
    const onAir = await t.api<{ onAir: { origin: string; sessionId?: string } }>('GET', `/api/v1/zones/${ZONE}/stream`);
    expect(onAir.body.onAir).toMatchObject({ origin: 'live', sessionId: s.body.sessionId });

    // A listener joining late, in the other format: it must get OpusHead/OpusTags first to decode at all.
    const b = listen(streamUrl(ZONE, 'ogg'), ['-t', '1.5']);
    const r = await b.exited;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const got = b.samples();
    expect(got.length).toBeGreaterThan(RATE / 2);
    expect(hasTone(got.subarray(got.length - RATE / 2), 1000)).toBe(true);

    expect((await t.api('POST', `/api/v1/live/sessions/${s.body.sessionId}/stop`)).status).toBe(200);
    expect((await t.api('POST', `/api/v1/live/sessions/${other.body.sessionId}/stop`)).status).toBe(200);
    await waitFor(() => rms(tail(a, 300)) < 0.002, { what: 'silence again after the session', timeoutMs: 10_000 });
    a.proc.kill('SIGTERM');
    await a.exited;
    await waitFor(() => t.ctl.streams.stats().zones === 0 && t.ctl.streams.stats().supervisor.running === 0, { what: 'mixer and encoders to stop after the last listener' });
  }, 40_000);

  it('carries the scheduled airing on air for the zone', async () => {
    await t.api('POST', '/api/v1/programmes', { id: 'zs-prog', title: 'Bản tin sáng', onInterrupt: 'resume', items: [{ kind: 'media', mediaId: media['tone-660'] }] });
    const a = listen(streamUrl(ZONE, 'ogg'));
    await waitFor(() => a.samples().length >= RATE / 2, { what: 'the Ogg stream to start', timeoutMs: 20_000 });
    // A few seconds ahead, to the second (cron with seconds, commune time = UTC+7, no DST).
    const startAt = Math.ceil((Date.now() + 4000) / 1000) * 1000;
    const local = new Date(startAt + 7 * 3600_000);
    const cron = `${local.getUTCSeconds()} ${local.getUTCMinutes()} ${local.getUTCHours()} * * *`;
    const sch = await t.api('POST', '/api/v1/schedules', { id: 'zs-sched', programmeId: 'zs-prog', recurrence: { kind: 'cron', expression: cron }, targets: [{ kind: 'zone', id: ZONE }] });
    expect(sch.status).toBe(201);
    expect(hasTone(tail(a, 300), 660)).toBe(false);
    await waitFor(() => hasTone(tail(a, 300), 660), { what: 'the scheduled 660 Hz airing on the Ogg stream', timeoutMs: 15_000 });
    // It did not start before its time (decoded audio lags the clock, never leads it).
    expect(Date.now()).toBeGreaterThanOrEqual(startAt);
    const info = await t.api<{ onAir: { origin: string; title?: string } }>('GET', `/api/v1/zones/${ZONE}/stream`);
    expect(info.body.onAir).toMatchObject({ origin: 'scheduled', title: 'Bản tin sáng' });

    // A live session takes the zone from the scheduled airing (live preempts scheduled at equal or higher
    // priority); when it stops, the airing (policy resume) is back for the rest of its time.
    const s = await t.api<{ sessionId: string }>('POST', '/api/v1/live/sessions', { kind: 'file', title: 'Chen ngang', priority: 'priority', mediaId: media['tone-1k'], targets: { zones: [ZONE] } });
    expect(s.status).toBeLessThan(300);
    // Only the session is heard then (the airing is not mixed under it).
    await waitFor(() => { const x = tail(a, 300); return hasTone(x, 1000) && toneAmplitude(x, 660) < 0.01; }, { what: 'the live session alone on the stream, preempting the airing', timeoutMs: 10_000 });
    expect((await t.api('POST', `/api/v1/live/sessions/${s.body.sessionId}/stop`)).status).toBe(200);
    await waitFor(() => hasTone(tail(a, 300), 660), { what: 'the scheduled airing back after the live session', timeoutMs: 10_000 });
    expect(Date.now()).toBeLessThan(startAt + 10_000 + 2000);
    a.proc.kill('SIGTERM');
    await a.exited;
    await waitFor(() => t.ctl.streams.stats().zones === 0 && t.ctl.streams.stats().supervisor.running === 0, { what: 'mixer and encoders to stop' });
  }, 30_000);

  describe('listen keys', () => {
    interface Info { formats: { format: string; path: string; url: string; listenUrl: string | null }[]; listenKey: { key: string | null; createdAt: number; rotatedAt: number } | null }
    const keyUrl = (zone: string, f: 'mp3' | 'ogg', key: string) => `${t.base}/api/v1/zones/${zone}/stream.${f}?key=${encodeURIComponent(key)}`;
    const keyOf = async (zone: string) => {
      const r = await t.api<Info>('GET', `/api/v1/zones/${zone}/stream`);
      expect(r.status).toBe(200);
      return r.body;
    };
    const audit = () => t.ctl.store.listAudit(t.ctl.config.RADIO_COMMUNE_ID, 500, 0);

    it('the JSON view gives an admin the zone\'s key URL, which plays; a wrong key or another zone\'s key is refused', async () => {
      const info = await keyOf(ZONE);
      const key = info.listenKey?.key;
      expect(key).toMatch(/^[A-Za-z0-9_-]{22,}$/); // base64url, ≥ 128 bits
      expect(Buffer.from(key!, 'base64url').length).toBeGreaterThanOrEqual(16);
      for (const f of info.formats) expect(f.listenUrl).toBe(`${f.url}?key=${encodeURIComponent(key!)}`);
      // Created on that first look (audited), stable afterwards, stored only as a hash and a sealed copy.
      expect(audit().filter((a) => a.action === 'zone.stream_key.create' && a.target === ZONE)).toHaveLength(1);
      expect((await keyOf(ZONE)).listenKey?.key).toBe(key);
      const row = t.ctl.store.db.prepare<[string], { key_hash: string; key_sealed: string; commune_id: string }>('SELECT * FROM zone_stream_keys WHERE zone_id = ?').get(ZONE)!;
      expect(row.commune_id).toBe(t.ctl.config.RADIO_COMMUNE_ID);
      expect(row.key_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(JSON.stringify(row)).not.toContain(key!);

      // The key URL plays in a player: MP3 frames that ffmpeg decodes to audio.
      const a = listen(keyUrl(ZONE, 'mp3', key!), ['-t', '1']);
      const r = await a.exited;
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(a.samples().length).toBeGreaterThan(RATE / 2);

      const otherKey = (await keyOf(OTHER)).listenKey!.key!;
      expect(otherKey).not.toBe(key);
      for (const bad of [keyUrl(ZONE, 'mp3', 'not-the-key'), keyUrl(ZONE, 'ogg', otherKey), keyUrl(OTHER, 'mp3', key!), keyUrl('no-such-zone', 'mp3', key!),
        // A key is judged alone: a valid token beside a wrong key does not let it through.
        `${keyUrl(ZONE, 'mp3', otherKey)}&token=${encodeURIComponent(t.token)}`]) {
        const res = await fetch(bad);
        expect(res.status, bad).toBe(401);
        expect(((await res.json()) as { code: string }).code).toBe('UNAUTHENTICATED');
      }
      // The key grants listening, nothing else.
      expect((await fetch(`${t.base}/api/v1/zones/${ZONE}/stream`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(401);
      expect((await fetch(`${t.base}/api/v1/zones?key=${encodeURIComponent(key!)}`)).status).toBe(401);

      // A role that may not hand out keys (a technician) sees no key and cannot rotate.
      t.ctl.store.db.prepare(`INSERT INTO users (commune_id, username, password_hash, role, created_at) VALUES (?, 'zs-tech', ?, 'technician', ?)`)
        .run(t.ctl.config.RADIO_COMMUNE_ID, hashPassword('tech-password'), Date.now());
      const login = await t.ctl.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'zs-tech', password: 'tech-password' } });
      const techToken = (login.json() as { token: string }).token;
      const asTech = await t.ctl.app.inject({ method: 'GET', url: `/api/v1/zones/${ZONE}/stream`, headers: { authorization: `Bearer ${techToken}` } });
      expect(asTech.statusCode).toBe(200);
      expect(asTech.json()).toMatchObject({ listenKey: null, formats: [{ listenUrl: null }, { listenUrl: null }] });
      expect(asTech.body).not.toContain(key!);
      const rotTech = await t.ctl.app.inject({ method: 'POST', url: `/api/v1/zones/${ZONE}/stream/key`, headers: { authorization: `Bearer ${techToken}` } });
      expect(rotTech.statusCode).toBe(403);
      expect((await keyOf(ZONE)).listenKey?.key).toBe(key);
      await waitFor(() => t.ctl.streams.stats().zones === 0, { what: 'the zone stream to stop' });
    }, 30_000);

    it('rotating: the old URL is refused at once, its player disconnected (not a token listener), the new key plays, audited', async () => {
      const old = (await keyOf(ZONE)).listenKey!.key!;
      const onKey = listen(keyUrl(ZONE, 'mp3', old));
      const onToken = listen(streamUrl(ZONE, 'ogg'));
      await waitFor(() => onKey.samples().length >= RATE / 2 && onToken.samples().length >= RATE / 2, { what: 'both players decoding', timeoutMs: 20_000 });
      expect(t.ctl.streams.status(t.ctl.config.RADIO_COMMUNE_ID, ZONE).listeners.total).toBe(2);

      const rot = await t.api<{ zoneId: string; key: string; rotatedAt: number; disconnected: number; formats: { format: string; listenUrl: string }[] }>('POST', `/api/v1/zones/${ZONE}/stream/key`);
      expect(rot.status).toBe(200);
      expect(rot.body.key).not.toBe(old);
      expect(rot.body.disconnected).toBe(1);
      expect(rot.body.formats.map((f) => f.listenUrl.endsWith(`/api/v1/zones/${ZONE}/stream.${f.format}?key=${encodeURIComponent(rot.body.key)}`))).toEqual([true, true]);
      // The player on the old key is cut off (its ffmpeg sees the stream end and exits).
      await onKey.exited;
      expect(t.ctl.streams.status(t.ctl.config.RADIO_COMMUNE_ID, ZONE).listeners).toMatchObject({ total: 1, ogg: 1, mp3: 0 });
      // The old URL no longer opens; the JSON view shows the new key.
      expect((await fetch(keyUrl(ZONE, 'mp3', old))).status).toBe(401);
      expect((await keyOf(ZONE)).listenKey).toMatchObject({ key: rot.body.key, rotatedAt: rot.body.rotatedAt });
      // The token listener was not touched: it keeps decoding.
      const had = onToken.samples().length;
      await waitFor(() => onToken.samples().length > had + RATE / 4, { what: 'the token listener still receiving after the rotation', timeoutMs: 10_000 });
      expect(onToken.proc.exitCode).toBeNull();

      const fresh = listen(keyUrl(ZONE, 'ogg', rot.body.key), ['-t', '1']);
      const r = await fresh.exited;
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(fresh.samples().length).toBeGreaterThan(RATE / 2);

      const row = audit().find((a) => a.action === 'zone.stream_key.rotate' && a.target === ZONE);
      expect(row).toMatchObject({ actor: 'admin', detail: { disconnected: 1 } });
      expect(JSON.stringify(audit())).not.toContain(rot.body.key);

      onToken.proc.kill('SIGTERM');
      await onToken.exited;
      await waitFor(() => t.ctl.streams.stats().zones === 0 && t.ctl.streams.stats().supervisor.running === 0, { what: 'mixer and encoders to stop' });
    }, 40_000);
  });
});
