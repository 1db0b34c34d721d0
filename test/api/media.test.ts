import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeAudioFixtures, measureIndependently, type AudioFixtures } from '../helpers/audio-fixtures.js';
import { startTestController, type TestController } from '../helpers/controller.js';

async function upload(t: TestController, file: string, name = path.basename(file), title?: string) {
  const form = new FormData();
  if (title) form.append('title', title);
  form.append('file', new Blob([fs.readFileSync(file)]), name);
  const r = await fetch(`${t.base}/api/v1/media`, { method: 'POST', headers: { authorization: `Bearer ${t.token}` }, body: form });
  return { status: r.status, body: (await r.json()) as any, timing: r.headers.get('server-timing') };
}

describe('media API (real ffmpeg, real SQLite)', () => {
  let t: TestController;
  let fx: AudioFixtures;
  beforeAll(async () => {
    [t, fx] = await Promise.all([startTestController(), makeAudioFixtures()]);
  }, 120_000);
  afterAll(async () => { await t?.stop(); await fx?.cleanup(); });

  const mediaFiles = () => fs.readdirSync(path.join(t.dir, 'media'));
  const rows = () => (t.ctl.store.db.prepare('SELECT count(*) AS n FROM media').get() as { n: number }).n;

  let id = '';
  it('ingests a phone recording peaking at 0 dBFS into loudness-matched Opus and MP3 with measurements', async () => {
    const r = await upload(t, fx.speechPeak0, 'ghi-am.wav', 'Thông báo tiêm chủng');
    expect(r.status).toBe(201);
    expect(r.timing).toMatch(/^ingest;dur=\d/);
    id = r.body.id;
    expect(r.body.title).toBe('Thông báo tiêm chủng');
    expect(r.body.duplicate).toBe(false);
    expect(r.body.input.truePeakDb).toBeGreaterThan(-1);
    expect(Math.abs(r.body.output.lufs - -16)).toBeLessThanOrEqual(1);
    expect(r.body.formats.opus.sha256).toMatch(/^[0-9a-f]{64}$/);
    // Independent check on the file the API serves.
    const audio = await fetch(`${t.base}${r.body.formats.opus.url}`, { headers: { authorization: `Bearer ${t.token}` } });
    const buf = Buffer.from(await audio.arrayBuffer());
    expect(crypto.createHash('sha256').update(buf).digest('hex')).toBe(r.body.formats.opus.sha256);
    const tmp = path.join(t.dir, 'check.ogg');
    fs.writeFileSync(tmp, buf);
    const m = await measureIndependently(tmp);
    expect(Math.abs(m.integratedLufs - -16)).toBeLessThanOrEqual(1);
    expect(m.truePeakDbtp).toBeLessThanOrEqual(-1.5);
    expect([m.codec, m.sampleRate, m.channels]).toEqual(['opus', 48000, 1]);
  });

  it('treats an identical upload as the same media, not a second copy', async () => {
    const before = mediaFiles().length;
    const r = await upload(t, fx.speechPeak0, 'again.wav');
    expect(r.status).toBe(200);
    expect(r.body.duplicate).toBe(true);
    expect(r.body.id).toBe(id);
    expect(mediaFiles().length).toBe(before);
  });

  it('serves Range requests with a strong ETag (resumable, verifiable downloads)', async () => {
    const full = await fetch(`${t.base}/api/v1/media/${id}/audio`, { headers: { authorization: `Bearer ${t.token}` } });
    const all = Buffer.from(await full.arrayBuffer());
    const etag = full.headers.get('etag')!;
    expect(etag).toMatch(/^"[0-9a-f]{64}"$/);
    const part = await fetch(`${t.base}/api/v1/media/${id}/audio`, { headers: { authorization: `Bearer ${t.token}`, range: 'bytes=100-', 'if-range': etag } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 100-${all.length - 1}/${all.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(all.subarray(100))).toBe(true);
    const stale = await fetch(`${t.base}/api/v1/media/${id}/audio`, { headers: { authorization: `Bearer ${t.token}`, range: 'bytes=100-', 'if-range': '"other"' } });
    expect(stale.status).toBe(200);
    await stale.arrayBuffer();
    const bad = await fetch(`${t.base}/api/v1/media/${id}/audio`, { headers: { authorization: `Bearer ${t.token}`, range: `bytes=${all.length + 5}-` } });
    expect(bad.status).toBe(416);
    const mp3 = await fetch(`${t.base}/api/v1/media/${id}/audio?format=mp3`, { headers: { authorization: `Bearer ${t.token}` } });
    expect(mp3.headers.get('content-type')).toBe('audio/mpeg');
    await mp3.arrayBuffer();
  });

  it('lets a node download with its own credentials, and nobody anonymously', async () => {
    await t.api('POST', '/api/v1/zones', { id: 'thon-m', name: 'M' });
    const n = await t.api('POST', '/api/v1/nodes', { id: 'cum-m', name: 'M', zoneId: 'thon-m' });
    const basic = `Basic ${Buffer.from(`cum-m:${n.body.credentials.password}`).toString('base64')}`;
    const ok = await fetch(`${t.base}/api/v1/media/${id}/audio`, { headers: { authorization: basic } });
    expect(ok.status).toBe(200);
    await ok.arrayBuffer();
    const wrong = await fetch(`${t.base}/api/v1/media/${id}/audio`, { headers: { authorization: `Basic ${Buffer.from('cum-m:nope').toString('base64')}` } });
    expect(wrong.status).toBe(401);
    expect((await fetch(`${t.base}/api/v1/media/${id}/audio`)).status).toBe(401);
  });

  it('lists, searches, shows peaks and deletes', async () => {
    const list = await t.api('GET', '/api/v1/media?q=tiêm');
    expect(list.body.total).toBe(1);
    expect(list.body.items[0].uploadedBy).toBe('admin');
    const peaks = await t.api('GET', `/api/v1/media/${id}/peaks`);
    expect(peaks.body.peaks.length).toBeGreaterThan(100);
    expect(Math.max(...peaks.body.peaks)).toBeLessThanOrEqual(1);
  });

  describe('bad input: clear 4xx, nothing stored, controller still answers', () => {
    const cases: [string, () => string, number, string][] = [
      ['text renamed .mp3', () => fx.textAsMp3, 415, 'NOT_AUDIO'],
      ['PNG renamed .wav', () => fx.pngAsWav, 415, 'NOT_AUDIO'],
      ['truncated mp3', () => fx.truncatedMp3, 422, 'CORRUPT'],
      ['zero bytes', () => fx.zeroBytes, 422, 'EMPTY'],
      ['digital silence', () => fx.silenceWav, 422, 'SILENT'],
      ['near-silent noise (needs > +30 dB)', () => fx.quietNoise, 422, 'GAIN_TOO_HIGH'],
    ];
    for (const [name, file, status, code] of cases) {
      it(`refuses ${name} with ${code}`, async () => {
        const before = { rows: rows(), files: mediaFiles().length };
        const r = await upload(t, file(), 'x.mp3');
        expect(r.status).toBe(status);
        expect(r.body.code).toBe(code);
        expect(r.body.message.length).toBeGreaterThan(10);
        expect(rows()).toBe(before.rows);
        expect(mediaFiles().length).toBe(before.files);
        expect(fs.readdirSync(path.join(t.dir, 'tmp'))).toEqual([]);
        expect((await fetch(`${t.base}/api/v1/health`)).status).toBe(200);
      });
    }
    it('refuses a multipart body without a file field', async () => {
      const form = new FormData();
      form.append('title', 'no file');
      const r = await fetch(`${t.base}/api/v1/media`, { method: 'POST', headers: { authorization: `Bearer ${t.token}` }, body: form });
      expect(r.status).toBe(400);
      expect(((await r.json()) as any).code).toBe('NO_FILE');
    });
  });

  it('deletes an item and its files when nothing else uses them', async () => {
    const del = await t.api('DELETE', `/api/v1/media/${id}`);
    expect(del.status).toBe(204);
    expect(mediaFiles().filter((f) => f.endsWith('.opus'))).toEqual([]);
    expect((await t.api('GET', `/api/v1/media/${id}`)).body.code).toBe('MEDIA_NOT_FOUND');
  });
});

describe('text to speech API (real espeak-ng)', () => {
  let t: TestController;
  beforeAll(async () => { t = await startTestController(); });
  afterAll(async () => { await t?.stop(); });

  it('normalises Vietnamese text, speaks it, and stores loudness-matched media with the normalised text beside it', async () => {
    const voices = await t.api<any[]>('GET', '/api/v1/media/voices');
    expect(voices.body.map((v) => v.id)).toEqual(expect.arrayContaining(['vi']));
    const text = 'UBND xã thông báo: lúc 17h30 ngày 06/12/2026 tiêm chủng tại trạm y tế.';
    const r = await t.api('POST', '/api/v1/media/tts', { text, voice: 'vi', title: 'Tiêm chủng' });
    expect(r.status).toBe(201);
    expect(r.body.kind).toBe('tts');
    expect(r.body.text).toBe(text);
    expect(r.body.normalizedText).toMatch(/Ủy ban nhân dân/i);
    expect(r.body.normalizedText).toMatch(/mười bảy giờ ba mươi/);
    expect(r.body.normalizedText).not.toMatch(/\d/);
    expect(Math.abs(r.body.output.lufs - -16)).toBeLessThanOrEqual(1);
    expect(r.body.durationMs).toBeGreaterThan(2000);
  });

  it('refuses empty text and an unknown voice with clear codes', async () => {
    const empty = await t.api('POST', '/api/v1/media/tts', { text: '   ' });
    expect(empty.status).toBe(400);
    expect(empty.body.message).toMatch(/text/);
    const voice = await t.api('POST', '/api/v1/media/tts', { text: 'xin chào', voice: 'klingon' });
    expect(voice.status).toBe(400);
    expect(voice.body.code).toBe('VOICE_UNKNOWN');
  });
});
