/**
 * TTS engines: real espeak-ng through the supervisor, and the HTTP adapter against a local
 * node:http server that plays a commercial TTS service.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createEspeakEngine,
  createHttpTtsEngine,
  createSupervisor,
  createTts,
  ESPEAK_VOICES,
  ingestAudio,
  MediaError,
  probeAudio,
  type ProgressEvent,
  type Supervisor,
} from '../../audio-pipeline/src/index.js';
import { sh } from '../helpers/audio-fixtures.js';

let sup: Supervisor;
let dir: string;
let wavBytes: Buffer;

interface Seen {
  method: string;
  headers: IncomingMessage['headers'];
  body: { text?: string; voice?: string };
}
let server: Server;
let baseUrl: string;
const seen: Seen[] = [];
/** Per-path behaviour of the fake TTS service. */
const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
  '/tts': (_req, res) => {
    res.writeHead(200, { 'content-type': 'audio/wav', 'content-length': String(wavBytes.length) });
    res.end(wavBytes);
  },
  '/broken': (_req, res) => {
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end('{"error":"quota exceeded"}');
  },
  '/html': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<html>login</html>');
  },
  '/hang': () => {
    /* never answers: the client's timeout must fire */
  },
};

beforeAll(async () => {
  sup = createSupervisor({});
  sup.start();
  dir = await mkdtemp(join(tmpdir(), 'radio-tts-'));
  const wav = join(dir, 'service.wav');
  await sh('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'sine=frequency=300:duration=2:sample_rate=24000', '-c:a', 'pcm_s16le', wav]);
  wavBytes = await readFile(wav);
  await rm(wav);
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: Seen['body'] = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Seen['body'];
      } catch {
        /* not JSON */
      }
      seen.push({ method: req.method ?? '', headers: req.headers, body });
      (routes[req.url ?? ''] ?? routes['/broken']!)(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await sup?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('espeak-ng engine', () => {
  const engine = () => createEspeakEngine({ supervisor: sup, tmpDir: dir });

  it('offers the three Vietnamese voices', async () => {
    expect((await engine().voices()).map((v) => v.id)).toEqual(['vi', 'vi-vn-x-central', 'vi-vn-x-south']);
  });

  for (const v of ESPEAK_VOICES) {
    it(`speaks Vietnamese with voice ${v.id}`, async () => {
      const r = await engine().synthesize('Xin chào bà con, đây là đài truyền thanh xã.', { voice: v.id });
      const p = await probeAudio(r.wavPath, { supervisor: sup });
      expect(p.codec).toMatch(/^pcm_/);
      expect(p.durationMs).toBeGreaterThan(1500);
      expect(r).toMatchObject({ voice: v.id, engine: 'espeak-ng', mimeType: 'audio/wav' });
      await rm(r.wavPath);
    });
  }

  it('emergency speech runs on the urgent lane', async () => {
    const events: ProgressEvent[] = [];
    const off = sup.onProgress((e) => events.push(e));
    const r = await engine().synthesize('Cảnh báo khẩn cấp.', { lane: 'urgent' });
    off();
    expect(events.some((e) => e.kind === 'tts' && e.lane === 'urgent' && e.state === 'done')).toBe(true);
    await rm(r.wavPath);
  });

  it('refuses an unknown voice and empty text', async () => {
    await expect(engine().synthesize('xin chào', { voice: 'en-us' })).rejects.toMatchObject({ code: 'VOICE_UNKNOWN' });
    await expect(engine().synthesize('   ')).rejects.toMatchObject({ code: 'TEXT_INVALID' });
  });
});

describe('createTts: normalise, then synthesise', () => {
  it('returns the normalised text and audio that ingests cleanly', async () => {
    const tts = createTts({ supervisor: sup, espeak: { tmpDir: dir } });
    const r = await tts.speak('UBND xã thông báo: 17h30 ngày 06/12/2026 họp dân tại nhà văn hóa thôn 3.');
    expect(r.normalizedText).toBe(
      'Ủy ban nhân dân xã thông báo: mười bảy giờ ba mươi phút ngày sáu tháng mười hai năm hai nghìn không trăm hai mươi sáu họp dân tại nhà văn hóa thôn ba.',
    );
    const outDir = await mkdtemp(join(dir, 'out-'));
    const media = await ingestAudio(r.wavPath, { outDir, supervisor: sup });
    expect(media.durationMs).toBeGreaterThan(3000);
    expect(Math.abs(media.output.lufs - -16)).toBeLessThanOrEqual(1);
    await rm(r.wavPath);
    expect((await readdir(outDir)).length).toBe(2);
  });

  it('lists the voices of every engine', async () => {
    const tts = createTts({ supervisor: sup, http: { url: `${baseUrl}/tts`, voice: 'banmai' } });
    const voices = await tts.voices();
    expect(voices.map((v) => `${v.engine}:${v.id}`)).toEqual(['http:banmai', 'espeak-ng:vi', 'espeak-ng:vi-vn-x-central', 'espeak-ng:vi-vn-x-south']);
  });
});

describe('HTTP TTS engine (local fake service)', () => {
  it('POSTs {text, voice} with the API key and stores the returned WAV', async () => {
    seen.length = 0;
    const tts = createTts({ supervisor: sup, http: { url: `${baseUrl}/tts`, apiKey: 'sekret', apiKeyHeader: 'x-api-key', voice: 'banmai', tmpDir: dir } });
    const r = await tts.speak('Gọi 114 khi có cháy');
    expect(r.engine).toBe('http');
    expect(r.mimeType).toBe('audio/wav');
    expect(r.wavPath.endsWith('.wav')).toBe(true);
    expect((await readFile(r.wavPath)).equals(wavBytes)).toBe(true);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.method).toBe('POST');
    expect(seen[0]!.headers['x-api-key']).toBe('sekret');
    expect(seen[0]!.headers['content-type']).toBe('application/json');
    expect(seen[0]!.body).toEqual({ text: 'Gọi một một bốn khi có cháy', voice: 'banmai' });
    const p = await probeAudio(r.wavPath, { supervisor: sup });
    expect(p.durationMs).toBe(2000);
    await rm(r.wavPath);
  });

  it('sends a Bearer token by default', async () => {
    seen.length = 0;
    const r = await createHttpTtsEngine({ url: `${baseUrl}/tts`, apiKey: 'k1', voice: 'v', tmpDir: dir }).synthesize('xin chào');
    expect(seen[0]!.headers.authorization).toBe('Bearer k1');
    await rm(r.wavPath);
  });

  it('an error status → TTS_FAILED (502) with the status, and no file left', async () => {
    const before = await readdir(dir);
    const err = await createHttpTtsEngine({ url: `${baseUrl}/broken`, voice: 'v', tmpDir: dir })
      .synthesize('xin chào')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MediaError);
    expect(err).toMatchObject({ code: 'TTS_FAILED', httpStatus: 502 });
    expect((err as Error).message).toMatch(/500.*quota/);
    expect(await readdir(dir)).toEqual(before);
  });

  it('a non-audio answer → TTS_FAILED', async () => {
    await expect(createHttpTtsEngine({ url: `${baseUrl}/html`, voice: 'v', tmpDir: dir }).synthesize('xin chào')).rejects.toMatchObject({
      code: 'TTS_FAILED',
    });
  });

  it('a service that never answers → TTS_FAILED after timeoutMs', async () => {
    const err = await createHttpTtsEngine({ url: `${baseUrl}/hang`, voice: 'v', timeoutMs: 300, tmpDir: dir })
      .synthesize('xin chào')
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'TTS_FAILED' });
    expect((err as Error).message).toMatch(/300 ms/);
  });

  it('an unreachable service → TTS_FAILED', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await expect(createHttpTtsEngine({ url: `http://127.0.0.1:${port}/tts`, voice: 'v' }).synthesize('xin chào')).rejects.toMatchObject({
      code: 'TTS_FAILED',
    });
  });

  it('refuses a voice it does not offer', async () => {
    await expect(createHttpTtsEngine({ url: `${baseUrl}/tts`, voice: 'v' }).synthesize('xin chào', { voice: 'other' })).rejects.toMatchObject({
      code: 'VOICE_UNKNOWN',
    });
  });
});
