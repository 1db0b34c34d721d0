import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMediaCache, type MediaCache, type MediaRef } from '../../edge-agent/src/cache.js';
import { nextEvent, waitFor } from '../helpers/wait.js';

const dirs: string[] = [];
const tmp = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-cache-')); dirs.push(d); return d; };
const CREDS = { username: 'node-a', password: 's3cret-token' };

interface Served { body: Buffer; etag: string; cutAfter?: number; failFirst?: number }
interface Seen { path: string; range?: string; ifRange?: string; status: number }

/** A media server like the controller's: Basic auth, strong ETag, Range + If-Range (RFC 9110). */
function mediaServer() {
  const files = new Map<string, Served>();
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const f = files.get(req.url ?? '');
    const auth = req.headers.authorization ?? '';
    const ok = auth === `Basic ${Buffer.from(`${CREDS.username}:${CREDS.password}`).toString('base64')}`;
    const log = (status: number) => seen.push({ path: req.url ?? '', range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined, status });
    if (!ok) { log(401); res.writeHead(401).end(); return; }
    if (!f) { log(404); res.writeHead(404).end(); return; }
    if (f.failFirst && f.failFirst > 0) { f.failFirst--; log(503); res.writeHead(503).end(); return; }
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const rangeOk = m && (!req.headers['if-range'] || req.headers['if-range'] === f.etag);
    if (m && rangeOk) start = Number(m[1]);
    const status = m && rangeOk ? 206 : 200;
    log(status);
    const body = f.body.subarray(start);
    res.writeHead(status, {
      'content-length': body.length, etag: f.etag, 'accept-ranges': 'bytes',
      ...(status === 206 ? { 'content-range': `bytes ${start}-${f.body.length - 1}/${f.body.length}` } : {}),
    });
    if (f.cutAfter !== undefined) {
      // Cut the connection mid-file, once, as a dropped 4G link would.
      const n = f.cutAfter;
      f.cutAfter = undefined;
      res.write(body.subarray(0, n), () => res.destroy());
      return;
    }
    res.end(body);
  });
  return { server, files, seen };
}

function media(id: string, size: number, seed: number): { ref: MediaRef; body: Buffer } {
  const body = crypto.createHash('sha512').update(String(seed)).digest();
  const big = Buffer.alloc(size);
  for (let i = 0; i < size; i += body.length) body.copy(big, i);
  const sha256 = crypto.createHash('sha256').update(big).digest('hex');
  return { ref: { mediaId: id, sha256, sizeBytes: size, path: `/api/v1/media/${id}/audio?format=opus` }, body: big };
}

let srv: ReturnType<typeof mediaServer>;
let base: string;
beforeAll(async () => {
  srv = mediaServer();
  await new Promise<void>((r) => srv.server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(srv.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => srv.server.close(r));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function serve(m: { ref: MediaRef; body: Buffer }, extra: Partial<Served> = {}) {
  srv.files.set(m.ref.path, { body: m.body, etag: `"${m.ref.sha256}"`, ...extra });
}
function cache(dir: string, o: { capacityBytes?: number; creds?: typeof CREDS; clock?: { now(): number } } = {}): MediaCache {
  const c = createMediaCache({ dir, credentials: o.creds ?? CREDS, httpBase: base, capacityBytes: o.capacityBytes, retryBaseMs: 20, retryMaxMs: 100, ...(o.clock ? { clock: o.clock } : {}) });
  c.start();
  return c;
}

describe('agent media cache', () => {
  it('downloads with Basic auth, verifies sha256 and stores the file content-addressed', async () => {
    const dir = tmp();
    const m = media('m-basic', 100_000, 1);
    serve(m);
    const c = cache(dir);
    await c.fetchNow(m.ref);
    expect(c.pathOf(m.ref.sha256)).toBe(path.join(dir, `${m.ref.sha256}.opus`));
    expect(crypto.createHash('sha256').update(fs.readFileSync(c.pathOf(m.ref.sha256)!)).digest('hex')).toBe(m.ref.sha256);
    expect(c.state()).toMatchObject({ usedBytes: 100_000, items: 1 });
    c.stop();
    // Survives a restart without an index file.
    const again = cache(dir);
    expect(again.has(m.ref.sha256)).toBe(true);
    expect(again.missing([m.ref])).toEqual([]);
    again.stop();
  });

  it('refuses wrong credentials (401) and unknown media (404) with clear errors', async () => {
    const m = media('m-auth', 1000, 2);
    serve(m);
    const bad = cache(tmp(), { creds: { username: 'node-a', password: 'wrong' } });
    await expect(bad.fetchNow(m.ref)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    bad.stop();
    const c = cache(tmp());
    await expect(c.fetchNow({ ...m.ref, path: '/api/v1/media/nope/audio' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    c.stop();
  });

  it('resumes a download cut mid-file with Range + If-Range instead of starting over', async () => {
    const dir = tmp();
    const m = media('m-resume', 300_000, 3);
    serve(m, { cutAfter: 120_000 });
    const c = cache(dir);
    const first = c.fetchNow(m.ref);
    await expect(first).rejects.toMatchObject({ code: expect.stringMatching(/NETWORK|SIZE/) });
    const partBytes = fs.statSync(path.join(dir, `${m.ref.sha256}.part`)).size;
    expect(partBytes).toBeGreaterThan(0);
    expect(partBytes).toBeLessThan(300_000);
    await c.fetchNow(m.ref);
    const reqs = srv.seen.filter((s) => s.path === m.ref.path);
    expect(reqs.map((r) => r.status)).toEqual([200, 206]);
    expect(reqs[1]!.range).toBe(`bytes=${partBytes}-`);
    expect(reqs[1]!.ifRange).toBe(`"${m.ref.sha256}"`);
    expect(crypto.createHash('sha256').update(fs.readFileSync(c.pathOf(m.ref.sha256)!)).digest('hex')).toBe(m.ref.sha256);
    expect(fs.existsSync(path.join(dir, `${m.ref.sha256}.part`))).toBe(false);
    c.stop();
  });

  it('rejects a file whose sha256 does not match, keeps nothing, and retries', async () => {
    const dir = tmp();
    const m = media('m-sha', 50_000, 4);
    const wrong = Buffer.from(m.body);
    wrong[100] = wrong[100]! ^ 0xff;
    srv.files.set(m.ref.path, { body: wrong, etag: `"${m.ref.sha256}"` });
    const c = cache(dir);
    await expect(c.fetchNow(m.ref)).rejects.toMatchObject({ code: 'SHA_MISMATCH' });
    expect(c.has(m.ref.sha256)).toBe(false);
    expect(fs.readdirSync(dir)).toEqual([]);
    // The controller fixes its file: the planned download retries (backoff) and succeeds.
    serve(m);
    const cached = nextEvent<string>((cb) => c.onCached(cb), (sha) => sha === m.ref.sha256);
    c.want([{ ...m.ref, neededAt: 0 }]);
    await cached;
    expect(c.has(m.ref.sha256)).toBe(true);
    c.stop();
  });

  it('retries transient failures with backoff for planned media', async () => {
    const m = media('m-retry', 2000, 5);
    serve(m, { failFirst: 2 });
    const c = cache(tmp());
    const cached = nextEvent<string>((cb) => c.onCached(cb), (sha) => sha === m.ref.sha256);
    c.want([{ ...m.ref, neededAt: 0 }]);
    await cached;
    expect(srv.seen.filter((s) => s.path === m.ref.path).map((s) => s.status)).toEqual([503, 503, 200]);
    c.stop();
  });

  it('evicts least-recently-used media that no upcoming airing needs, never needed media', async () => {
    const dir = tmp();
    const ms = [1, 2, 3, 4].map((i) => media(`m-lru-${i}`, 10_000, 100 + i));
    for (const m of ms) serve(m);
    // A clock that moves only when told: "last used" stamps are then distinct and ordered.
    let t = 1_700_000_000_000;
    const clock = { now: () => t };
    const c = cache(dir, { capacityBytes: 30_000, clock });
    for (const m of ms.slice(0, 3)) { t += 1000; await c.fetchNow(m.ref); }
    t += 1000; c.touch(ms[1]!.ref.sha256);
    t += 1000; c.touch(ms[0]!.ref.sha256);
    expect(c.lruOrder()).toEqual([ms[2]!.ref.sha256, ms[1]!.ref.sha256, ms[0]!.ref.sha256]);
    // Upcoming airings need #2 (the least recently used) and #3 (new): #1 must go, not #2.
    const cached = nextEvent<string>((cb) => c.onCached(cb), (sha) => sha === ms[3]!.ref.sha256);
    t += 1000;
    c.want([{ ...ms[2]!.ref, neededAt: 1 }, { ...ms[3]!.ref, neededAt: 2 }]);
    await cached;
    expect(c.has(ms[2]!.ref.sha256)).toBe(true);
    expect(c.has(ms[3]!.ref.sha256)).toBe(true);
    expect(c.has(ms[1]!.ref.sha256)).toBe(false);
    expect(c.has(ms[0]!.ref.sha256)).toBe(true);
    expect(c.state().usedBytes).toBeLessThanOrEqual(30_000);
    c.stop();
    // The order survives a restart (file mtimes; touch() writes them asynchronously).
    await waitFor(() => fs.statSync(path.join(dir, `${ms[0]!.ref.sha256}.opus`)).mtimeMs === t - 1000 || undefined, { what: 'mtime written' });
    const again = cache(dir, { capacityBytes: 30_000 });
    expect(again.lruOrder()).toEqual([ms[2]!.ref.sha256, ms[0]!.ref.sha256, ms[3]!.ref.sha256]);
    again.stop();
  });
});
