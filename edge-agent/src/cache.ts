import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pino, type Logger } from 'pino';
import { systemClock, systemTimers, type Clock, type Timers } from './clock.js';

/**
 * The agent's media cache: every media item of upcoming airings is downloaded ahead of air over HTTP
 * and kept on disk, content-addressed by its sha256 (`<sha256>.opus`), so playout never depends on
 * the link at the minute of broadcast.
 *
 * - Resumable: bytes land in `<sha256>.part` (+ `.part.json` with the server's strong ETag); a retry
 *   asks `Range: bytes=N-` with `If-Range: <etag>` (RFC 9110 §14.2, §13.1.5): 206 appends, 200 means
 *   the resource changed and the download starts over.
 * - Verified: the whole file's sha256 must equal the plan's before it is renamed into place; a
 *   mismatch deletes it and retries.
 * - Retries with exponential backoff and full jitter; 1-2 downloads at a time (a 4G uplink and a
 *   small board: more parallelism only slows the first airing's file).
 * - LRU eviction over a byte capacity, never of media an upcoming airing needs. File mtime is the
 *   "last used" stamp, so the order survives restarts without an index file.
 */
export interface MediaRef {
  mediaId: string;
  sha256: string;
  sizeBytes: number;
  /** Path on the controller's HTTP base, e.g. /api/v1/media/{id}/audio?format=opus. */
  path: string;
}

export interface WantedMedia extends MediaRef {
  /** Controller time of the earliest airing that needs it: the download order. */
  neededAt: number;
}

export interface CacheState {
  usedBytes: number;
  capacityBytes: number;
  items: number;
}

export class CacheError extends Error {
  constructor(
    readonly code: 'NO_BASE' | 'UNAUTHORIZED' | 'NOT_FOUND' | 'HTTP' | 'SHA_MISMATCH' | 'SIZE' | 'NETWORK' | 'STALLED' | 'STOPPED' | 'RANGE',
    message: string,
  ) {
    super(message);
    this.name = 'CacheError';
  }
}

export interface MediaCacheOptions {
  /** Directory for media; undefined → a private temp dir created on first use and removed on stop(). */
  dir?: string;
  /** HTTP Basic credentials (the node's MQTT credentials). */
  credentials: { username: string; password: string };
  httpBase?: string;
  capacityBytes?: number;
  /** Parallel downloads, 1 or 2; default 2. */
  concurrency?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Abort a download that receives nothing for this long; default 30 s. */
  stallTimeoutMs?: number;
  log?: Logger;
  timers?: Timers;
  clock?: Clock;
  random?: () => number;
}

interface Entry { size: number; lastUsed: number }
interface Task {
  ref: MediaRef;
  neededAt: number;
  urgent: boolean;
  attempts: number;
  nextTryAt: number;
  running: boolean;
  lastError?: string;
  abort?: AbortController;
  waiters: { resolve: () => void; reject: (e: Error) => void }[];
}

const SHA_RE = /^[0-9a-f]{64}$/;

export function createMediaCache(o: MediaCacheOptions) {
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'cache' });
  const timers = o.timers ?? systemTimers;
  const clock = o.clock ?? systemClock;
  const random = o.random ?? Math.random;
  const capacity = o.capacityBytes ?? 2 * 1024 ** 3;
  const concurrency = Math.max(1, Math.min(2, o.concurrency ?? 2));
  const retryBase = o.retryBaseMs ?? 1000;
  const retryMax = o.retryMaxMs ?? 300_000;
  const stallMs = o.stallTimeoutMs ?? 30_000;
  let base = o.httpBase;
  let dir = o.dir;
  let ownDir = false;
  const entries = new Map<string, Entry>();
  const tasks = new Map<string, Task>();
  /** sha256s that upcoming airings need: never evicted. */
  let wanted = new Set<string>();
  let active = 0;
  let running = false;
  let scanned = false;
  let retryTimer: NodeJS.Timeout | undefined;
  const cachedListeners = new Set<(sha: string) => void>();

  const filePath = (sha: string) => path.join(ensureDir(), `${sha}.opus`);
  const partPath = (sha: string) => path.join(ensureDir(), `${sha}.part`);
  const metaPath = (sha: string) => `${partPath(sha)}.json`;

  function ensureDir(): string {
    if (!dir) {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'radio-agent-cache-'));
      ownDir = true;
    }
    return dir;
  }

  function scan() {
    if (scanned) return;
    scanned = true;
    if (!dir) return;
    fs.mkdirSync(dir, { recursive: true });
    for (const name of fs.readdirSync(dir)) {
      const full = path.join(dir, name);
      if (name.endsWith('.tmp')) { fs.rmSync(full, { force: true }); continue; }
      const m = /^([0-9a-f]{64})\.opus$/.exec(name);
      if (!m) continue;
      const st = fs.statSync(full);
      entries.set(m[1]!, { size: st.size, lastUsed: st.mtimeMs });
    }
    log.debug({ items: entries.size }, 'cache scanned');
  }

  function usedBytes() {
    let n = 0;
    for (const e of entries.values()) n += e.size;
    return n;
  }

  /** Evict least-recently-used media that nothing upcoming needs until `reserve` more bytes fit. */
  function evict(reserve = 0) {
    let used = usedBytes();
    if (used + reserve <= capacity) return;
    const victims = [...entries.entries()].filter(([sha]) => !wanted.has(sha)).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [sha, e] of victims) {
      if (used + reserve <= capacity) break;
      fs.rmSync(filePath(sha), { force: true });
      entries.delete(sha);
      used -= e.size;
      log.info({ sha256: sha, size: e.size }, 'evicted from cache');
    }
    if (used + reserve > capacity) log.warn({ used, reserve, capacity }, 'cache over capacity with media that upcoming airings need');
  }

  function backoff(attempts: number): number {
    const ceiling = Math.min(retryMax, retryBase * 2 ** Math.min(attempts - 1, 20));
    // Full jitter in [ceiling/2, ceiling]: a fleet that failed together does not retry together.
    return ceiling * (0.5 + random() * 0.5);
  }

  function settle(t: Task, err?: Error) {
    const w = t.waiters;
    t.waiters = [];
    for (const x of w) { if (err) x.reject(err); else x.resolve(); }
  }

  function pump() {
    if (!running || !base) return;
    timers.clearTimeout(retryTimer);
    retryTimer = undefined;
    const now = clock.now();
    const ready = [...tasks.values()]
      .filter((t) => !t.running && !entries.has(t.ref.sha256))
      .sort((a, b) => Number(b.urgent) - Number(a.urgent) || a.neededAt - b.neededAt);
    for (const t of ready) {
      if (active >= concurrency) break;
      if (t.nextTryAt > now && !t.urgent) continue;
      void run(t);
    }
    const waiting = [...tasks.values()].filter((t) => !t.running && !entries.has(t.ref.sha256));
    if (waiting.length && active < concurrency) {
      const next = Math.min(...waiting.map((t) => t.nextTryAt));
      retryTimer = timers.setTimeout(pump, Math.max(10, next - clock.now()));
      retryTimer.unref?.();
    }
  }

  async function run(t: Task) {
    t.running = true;
    active++;
    t.abort = new AbortController();
    const sha = t.ref.sha256;
    try {
      evict(t.ref.sizeBytes);
      await download(t.ref, t.abort.signal);
      log.info({ mediaId: t.ref.mediaId, sha256: sha, attempts: t.attempts + 1 }, 'media cached');
      tasks.delete(sha);
      settle(t);
      for (const l of cachedListeners) l(sha);
    } catch (e) {
      const err = e as Error;
      t.attempts++;
      t.lastError = err.message;
      t.nextTryAt = clock.now() + backoff(t.attempts);
      t.urgent = false;
      log.warn({ mediaId: t.ref.mediaId, attempts: t.attempts, err: err.message, retryInMs: Math.round(t.nextTryAt - clock.now()) }, 'media download failed');
      settle(t, err);
      if (!wanted.has(sha)) tasks.delete(sha);
    } finally {
      t.running = false;
      t.abort = undefined;
      active--;
      pump();
    }
  }

  function download(ref: MediaRef, signal: AbortSignal): Promise<void> {
    if (!base) return Promise.reject(new CacheError('NO_BASE', 'controller HTTP base unknown'));
    const sha = ref.sha256;
    const part = partPath(sha);
    const meta = metaPath(sha);
    let have = 0;
    let etag: string | undefined;
    try {
      have = fs.statSync(part).size;
      try { etag = (JSON.parse(fs.readFileSync(meta, 'utf8')) as { etag?: string }).etag; } catch { /* resume without If-Range */ }
    } catch { have = 0; }
    if (have > ref.sizeBytes) { fs.rmSync(part, { force: true }); have = 0; }
    // Complete but not verified (a crash between the last byte and the rename): verify, no request.
    if (have === ref.sizeBytes) return finish();
    const url = new URL(`${base.replace(/\/+$/, '')}${ref.path}`);
    const headers: Record<string, string> = {
      authorization: `Basic ${Buffer.from(`${o.credentials.username}:${o.credentials.password}`).toString('base64')}`,
      'accept-encoding': 'identity',
    };
    if (have > 0) {
      headers.range = `bytes=${have}-`;
      if (etag) headers['if-range'] = etag;
    }
    const get = url.protocol === 'https:' ? https.get : http.get;
    return new Promise<void>((resolve, reject) => {
      let stall: NodeJS.Timeout | undefined;
      const fail = (err: Error) => { timers.clearTimeout(stall); reject(err); };
      const req = get(url, { headers, signal }, (res) => {
        const status = res.statusCode ?? 0;
        const done = () => { res.resume(); };
        if (status === 401 || status === 403) { done(); fail(new CacheError('UNAUTHORIZED', `controller refused credentials (${status})`)); return; }
        if (status === 404) { done(); fail(new CacheError('NOT_FOUND', `media ${ref.mediaId} not found on the controller`)); return; }
        if (status === 416) {
          done();
          fs.rmSync(part, { force: true });
          fail(new CacheError('RANGE', 'range not satisfiable; restarting the download'));
          return;
        }
        let flags: 'w' | 'a' = 'w';
        if (status === 206) {
          const m = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''));
          if (!m || Number(m[1]) !== have) { done(); fs.rmSync(part, { force: true }); fail(new CacheError('RANGE', `unexpected Content-Range ${String(res.headers['content-range'])}`)); return; }
          flags = 'a';
        } else if (status !== 200) {
          done();
          fail(new CacheError('HTTP', `HTTP ${status} for media ${ref.mediaId}`));
          return;
        }
        const tag = res.headers.etag;
        // Only a strong validator may be used with If-Range (RFC 9110 §13.1.5).
        if (flags === 'w') {
          if (tag && !tag.startsWith('W/')) fs.writeFileSync(meta, JSON.stringify({ etag: tag }));
          else fs.rmSync(meta, { force: true });
        }
        const resetStall = () => {
          timers.clearTimeout(stall);
          stall = timers.setTimeout(() => req.destroy(new CacheError('STALLED', `no data for ${stallMs} ms`)), stallMs);
          stall.unref?.();
        };
        resetStall();
        // Bytes received before a cut are kept (that is what the next Range request resumes from), so
        // the body is written by hand rather than through pipeline(), which would discard its buffer.
        const ws = fs.createWriteStream(part, { flags });
        let failed: Error | undefined;
        let ending = false;
        const endFile = () => { if (!ending) { ending = true; ws.end(); } };
        res.on('data', (chunk: Buffer) => {
          resetStall();
          if (!ws.write(chunk)) { res.pause(); ws.once('drain', () => res.resume()); }
        });
        res.on('end', endFile);
        res.on('error', (e) => { failed ??= e; endFile(); });
        res.on('close', () => {
          if (!res.complete) failed ??= new CacheError('NETWORK', 'connection closed before the end of the body');
          endFile();
        });
        ws.on('error', (e) => { failed ??= e; res.destroy(); });
        ws.on('close', () => {
          timers.clearTimeout(stall);
          if (failed) { fail(failed instanceof CacheError ? failed : new CacheError('NETWORK', failed.message)); return; }
          finish().then(resolve, fail);
        });
      });
      req.on('error', (e) => fail(e instanceof CacheError ? e : new CacheError(signal.aborted ? 'STOPPED' : 'NETWORK', e.message)));
      // A controller that does not answer at all (SYN or request black-holed) must not hold a slot forever.
      req.setTimeout(stallMs, () => req.destroy(new CacheError('STALLED', `no answer for ${stallMs} ms`)));
    });

    async function finish() {
      const size = fs.statSync(part).size;
      if (size !== ref.sizeBytes) {
        if (size > ref.sizeBytes) { fs.rmSync(part, { force: true }); fs.rmSync(meta, { force: true }); }
        throw new CacheError('SIZE', `got ${size} bytes, expected ${ref.sizeBytes}`);
      }
      const h = crypto.createHash('sha256');
      await pipeline(fs.createReadStream(part), h);
      const got = h.digest('hex');
      if (got !== sha) {
        fs.rmSync(part, { force: true });
        fs.rmSync(meta, { force: true });
        throw new CacheError('SHA_MISMATCH', `sha256 mismatch for media ${ref.mediaId}: got ${got}`);
      }
      fs.renameSync(part, filePath(sha));
      fs.rmSync(meta, { force: true });
      const lastUsed = clock.now();
      // mtime is the LRU stamp on disk: set it from our clock, like touch() does.
      fs.utimesSync(filePath(sha), new Date(lastUsed), new Date(lastUsed));
      entries.set(sha, { size, lastUsed });
      evict();
    }
  }

  function task(ref: MediaRef, neededAt: number): Task {
    let t = tasks.get(ref.sha256);
    if (!t) {
      t = { ref, neededAt, urgent: false, attempts: 0, nextTryAt: 0, running: false, waiters: [] };
      tasks.set(ref.sha256, t);
    } else {
      t.ref = ref;
      t.neededAt = Math.min(t.neededAt, neededAt);
    }
    return t;
  }

  return {
    start() {
      if (running) return;
      running = true;
      scan();
      pump();
    },
    stop() {
      running = false;
      timers.clearTimeout(retryTimer);
      retryTimer = undefined;
      for (const t of tasks.values()) {
        t.abort?.abort();
        settle(t, new CacheError('STOPPED', 'cache stopped'));
      }
      if (ownDir && dir && active === 0) {
        fs.rmSync(dir, { recursive: true, force: true });
        dir = undefined;
        ownDir = false;
        entries.clear();
        scanned = false;
      }
    },
    setBase(url: string | undefined) {
      if (url === base) return;
      base = url;
      pump();
    },
    base: () => base,
    /** The media that upcoming airings need (replaces the previous set); downloads what is missing. */
    want(refs: WantedMedia[]) {
      scan();
      const next = new Set<string>();
      for (const r of refs) {
        if (!SHA_RE.test(r.sha256)) continue;
        next.add(r.sha256);
        if (!entries.has(r.sha256)) task(r, r.neededAt);
      }
      for (const [sha, t] of tasks) {
        if (next.has(sha) || t.running || t.urgent || t.waiters.length) continue;
        tasks.delete(sha);
        // A half-downloaded file nobody needs any more only takes space.
        if (dir) { fs.rmSync(partPath(sha), { force: true }); fs.rmSync(metaPath(sha), { force: true }); }
      }
      wanted = next;
      evict();
      pump();
    },
    has: (sha: string) => { scan(); return entries.has(sha); },
    pathOf(sha: string): string | undefined {
      scan();
      return entries.has(sha) ? filePath(sha) : undefined;
    },
    /** Mark as used now (LRU); the file's mtime keeps the order across restarts. */
    touch(sha: string) {
      const e = entries.get(sha);
      if (!e) return;
      e.lastUsed = clock.now();
      const d = new Date(e.lastUsed);
      fs.utimes(filePath(sha), d, d, () => {});
    },
    /**
     * Download now, ahead of everything else and ignoring backoff (air time is here). Resolves once
     * cached; rejects with the first failure.
     */
    fetchNow(ref: MediaRef): Promise<void> {
      scan();
      if (entries.has(ref.sha256)) return Promise.resolve();
      if (!base) return Promise.reject(new CacheError('NO_BASE', 'controller HTTP base unknown'));
      if (!running) return Promise.reject(new CacheError('STOPPED', 'cache stopped'));
      const t = task(ref, 0);
      t.urgent = true;
      const p = new Promise<void>((resolve, reject) => t.waiters.push({ resolve, reject }));
      pump();
      return p;
    },
    /** Media ids of `refs` that are not cached. */
    missing(refs: MediaRef[]): string[] {
      scan();
      return [...new Set(refs.filter((r) => !entries.has(r.sha256)).map((r) => r.mediaId))];
    },
    lastError: (sha: string) => tasks.get(sha)?.lastError,
    state(): CacheState {
      return { usedBytes: usedBytes(), capacityBytes: capacity, items: entries.size };
    },
    /** Called with the sha256 of each newly cached file. */
    onCached(l: (sha: string) => void) { cachedListeners.add(l); return () => cachedListeners.delete(l); },
    /** Cached sha256s, least recently used first (tests, diagnostics). */
    lruOrder: () => [...entries.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed).map(([s]) => s),
  };
}
export type MediaCache = ReturnType<typeof createMediaCache>;
