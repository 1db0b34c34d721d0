/**
 * Pull streams per zone for third-party players (IP speakers, VLC): GET …/zones/{id}/stream.ogg
 * (Ogg/Opus) and …/stream.mp3 carry whatever that zone plays.
 *
 * Per zone: one mixer (zone-mixer.ts) from the first listener to the last, and per format ONE ffmpeg
 * encoder (s16le 48 kHz mono on stdin) whose output is cut into pages/frames and fanned out to every
 * listener of that zone and format. A late Ogg listener first gets the stream's OpusHead and OpusTags
 * pages (RFC 7845 §3), then pages from the next page boundary; an MP3 listener starts at the next
 * frame. A listener whose unsent bytes exceed `maxListenerBufferBytes` is dropped, so one slow
 * player never holds back the others (or the encoder).
 *
 * The encoders run under a supervisor of their own: they are long-lived, and the controller's shared
 * supervisor has one normal and one urgent slot (ingest, TTS, live sources) that a listening speaker
 * must not hold for hours.
 */
import type { ServerResponse } from 'node:http';
import { pino, type Logger } from 'pino';
import { createSupervisor, type ProcessHandle, type Supervisor } from '../../../audio-pipeline/src/index.js';
import type { Airing } from '../../../schemas/src/index.js';
import { topicFor } from '../../../schemas/src/index.js';
import type { Live, LiveTapSession } from '../live/index.js';
import type { MediaService } from '../media/media-service.js';
import type { NodeCacheEntry } from '../services.js';
import type { Store } from '../store/store.js';
import { createMp3FrameSplitter, createOggPageSplitter } from './framing.js';
import { createListenKeys, type ListenKeys } from './listen-keys.js';
import { createZoneMixer, STREAM_SAMPLE_RATE, type OnAir, type ZoneMixer, type ZoneMixerOptions } from './zone-mixer.js';

export type StreamFormat = 'ogg' | 'mp3';
export const STREAM_FORMATS: readonly StreamFormat[] = ['ogg', 'mp3'];
export const STREAM_CONTENT_TYPE: Record<StreamFormat, string> = { ogg: 'audio/ogg', mp3: 'audio/mpeg' };

export interface ZoneStreamOptions {
  opusBitrateKbps: number;
  mp3BitrateKbps: number;
  /** A listener with more unsent bytes than this is dropped (64 kb/s: 256 KiB ≈ 30 s). */
  maxListenerBufferBytes: number;
  /** Listeners per zone (all formats); more are refused with 503. */
  maxListenersPerZone: number;
  /** Encoders (all zones, all formats) at once; more are refused with 503. */
  maxEncoders: number;
  /** Ogg page duration, ms: the granularity at which late listeners can join and the muxing latency. */
  oggPageMs: number;
  mixer: Partial<ZoneMixerOptions>;
}

const DEFAULTS: ZoneStreamOptions = {
  opusBitrateKbps: 48, mp3BitrateKbps: 64, maxListenerBufferBytes: 256 * 1024, maxListenersPerZone: 64, maxEncoders: 16, oggPageMs: 200, mixer: {},
};

export interface ZoneStreamsDeps {
  store: Store;
  live: Pick<Live, 'tapPcm'>;
  nodes: Map<string, NodeCacheEntry>;
  media: Pick<MediaService, 'file'>;
  now: () => number;
  log?: Logger;
  /** Runs the encoders; default: a supervisor of the streams' own (see the header). */
  supervisor?: Supervisor;
  /** Per-zone listen keys (`?key=`); default: keys whose seal key lives only in this process (listen-keys.ts). */
  keys?: ListenKeys;
  options?: Partial<ZoneStreamOptions>;
}

/** Why a listener could not be attached (the route maps it to HTTP). */
export class StreamRefused extends Error {
  constructor(readonly statusCode: number, readonly code: string, message: string) {
    super(message);
    this.name = 'StreamRefused';
  }
}

interface Listener {
  id: number;
  res: ServerResponse;
  format: StreamFormat;
  started: boolean;
  since: number;
  bytes: number;
  /** Admitted by the zone's listen key (not a user or node credential): dropped when the key is rotated. */
  viaKey: boolean;
}

interface Encoder {
  format: StreamFormat;
  handle: ProcessHandle | null;
  /** Header pages (Ogg) every listener gets first; complete once `headerDone`. */
  header: Buffer[];
  headerDone: boolean;
  listeners: Set<Listener>;
  stopped: boolean;
  bytesOut: number;
}

interface ZoneState {
  key: string;
  communeId: string;
  zoneId: string;
  mixer: ZoneMixer;
  encoders: Map<StreamFormat, Encoder>;
  listeners: Set<Listener>;
  startedAt: number;
}

export interface ZoneStreamStatus {
  zoneId: string;
  running: boolean;
  listeners: { total: number; ogg: number; mp3: number };
  onAir: OnAir;
  since: number | null;
}

export function createZoneStreams(deps: ZoneStreamsDeps) {
  const o: ZoneStreamOptions = { ...DEFAULTS, ...(deps.options ?? {}), mixer: { ...DEFAULTS.mixer, ...(deps.options?.mixer ?? {}) } };
  const log = (deps.log ?? pino({ level: 'silent' })).child({ component: 'zone-streams' });
  const own = !deps.supervisor;
  const supervisor = deps.supervisor ?? createSupervisor({ concurrency: o.maxEncoders, urgentSlots: 0, log });
  const zones = new Map<string, ZoneState>();
  const keys = deps.keys ?? createListenKeys({ store: deps.store, now: deps.now, log });
  /** Session id → keys of the zones its targets are in (computed once, at its first PCM). */
  const sessionZones = new Map<string, { s: LiveTapSession; zones: Set<string> }>();
  let nextListener = 1;
  let running = false;
  let offTap: (() => void) | undefined;
  const counters = { listenersServed: 0, slowDropped: 0, encoderFailures: 0, keyDropped: 0 };
  const keyOf = (communeId: string, zoneId: string) => `${communeId}|${zoneId}`;

  // ------------------------------------------------------------------ what the zone plays

  /** Airings of the zone = the union of the retained plans of its clusters (what the agents play). */
  const planCache = new Map<string, { payload: string; airings: Airing[] }>();
  const retainedQ = deps.store.db.prepare<[string], { payload: string }>(`SELECT payload FROM retained WHERE topic = ?`);
  function zoneAirings(communeId: string, zoneId: string): Airing[] {
    const byId = new Map<string, Airing>();
    for (const n of deps.store.listNodes(communeId, zoneId)) {
      const row = retainedQ.get(topicFor('plan', n.id));
      if (!row) { planCache.delete(n.id); continue; }
      let c = planCache.get(n.id);
      if (!c || c.payload !== row.payload) {
        try {
          c = { payload: row.payload, airings: (JSON.parse(row.payload) as { airings?: Airing[] }).airings ?? [] };
        } catch {
          c = { payload: row.payload, airings: [] };
        }
        planCache.set(n.id, c);
      }
      for (const a of c.airings) byId.set(a.id, a);
    }
    return [...byId.values()];
  }

  function mediaPath(communeId: string, item: { mediaId: string; sha256: string }): string | undefined {
    try {
      const f = deps.media.file(item.mediaId, 'opus', communeId);
      return f.sha256 === item.sha256 ? f.path : undefined;
    } catch {
      return undefined;
    }
  }

  function onTapPcm(s: LiveTapSession, pcm: Float32Array) {
    let e = sessionZones.get(s.sessionId);
    if (!e) {
      const zs = new Set<string>();
      for (const id of s.targets) { const n = deps.nodes.get(id); if (n) zs.add(keyOf(n.communeId, n.zoneId)); }
      sessionZones.set(s.sessionId, (e = { s, zones: zs }));
    }
    for (const k of e.zones) zones.get(k)?.mixer.pushLive({ sessionId: s.sessionId, priority: s.priority, startedAt: s.startedAt }, pcm);
  }
  function onTapEnded(sessionId: string) {
    const e = sessionZones.get(sessionId);
    sessionZones.delete(sessionId);
    if (e) for (const k of e.zones) zones.get(k)?.mixer.endLive(sessionId);
  }

  // ------------------------------------------------------------------ encoders and fan-out

  function encoderArgs(f: StreamFormat): string[] {
    const input = ['-hide_banner', '-nostdin', '-v', 'error', '-f', 's16le', '-ar', String(STREAM_SAMPLE_RATE), '-ac', '1', '-i', 'pipe:0'];
    switch (f) {
      case 'ogg':
        // One page per `oggPageMs`: the join granularity and the muxing latency (ffmpeg's default is 1 s).
        return [...input, '-c:a', 'libopus', '-b:a', `${o.opusBitrateKbps}k`, '-vbr', 'constrained', '-application', 'audio', '-frame_duration', '20',
          '-page_duration', String(o.oggPageMs * 1000), '-flush_packets', '1', '-f', 'ogg', 'pipe:1'];
      case 'mp3':
        // Bare frames: no ID3 tag, no Xing header (a live stream has no length), so any frame is a join point.
        return [...input, '-c:a', 'libmp3lame', '-b:a', `${o.mp3BitrateKbps}k`, '-ar', String(STREAM_SAMPLE_RATE), '-write_xing', '0', '-id3v2_version', '0',
          '-flush_packets', '1', '-f', 'mp3', 'pipe:1'];
    }
  }

  function encoderCount() {
    let n = 0;
    for (const z of zones.values()) n += z.encoders.size;
    return n;
  }

  async function startEncoder(z: ZoneState, f: StreamFormat): Promise<Encoder> {
    const enc: Encoder = { format: f, handle: null, header: [], headerDone: f !== 'ogg', listeners: new Set(), stopped: false, bytesOut: 0 };
    z.encoders.set(f, enc);
    let handle: ProcessHandle;
    try {
      handle = await supervisor.launch({ kind: `zone-stream-${f}`, command: 'ffmpeg', args: encoderArgs(f), stdin: 'pipe', stdout: 'stream', watchdogMs: 15_000 });
    } catch (e) {
      if (z.encoders.get(f) === enc) z.encoders.delete(f);
      enc.stopped = true;
      // Listeners that joined while it was starting would otherwise wait for ever.
      for (const l of [...enc.listeners]) l.res.destroy();
      throw e;
    }
    enc.handle = handle;
    if (enc.stopped) { handle.kill(200); return enc; }
    const ogg = f === 'ogg' ? createOggPageSplitter() : null;
    const mp3 = f === 'mp3' ? createMp3FrameSplitter() : null;
    handle.stdout!.on('data', (chunk: Buffer) => {
      if (enc.stopped) return;
      if (ogg) {
        const units = ogg.push(chunk);
        for (const u of units) {
          if (u.header) { enc.header.push(u.bytes); continue; }
          enc.headerDone = true;
          fanOut(z, enc, u.bytes, !u.continued);
        }
      } else {
        const frames = mp3!.push(chunk);
        if (frames.length) fanOut(z, enc, frames.length === 1 ? frames[0]! : Buffer.concat(frames), true);
      }
    });
    handle.stdin!.on('error', () => { /* the exit below reports it */ });
    void handle.done.then((r) => {
      if (enc.stopped) return;
      counters.encoderFailures++;
      log.error({ zoneId: z.zoneId, format: f, exitCode: r.exitCode, signal: r.signal, stderr: r.stderr.trim().split('\n').slice(-2).join(' | ') }, 'zone stream encoder exited');
      failEncoder(z, enc);
    }, (e: unknown) => {
      if (enc.stopped) return;
      counters.encoderFailures++;
      log.error({ zoneId: z.zoneId, format: f, err: (e as Error).message }, 'zone stream encoder failed');
      failEncoder(z, enc);
    });
    return enc;
  }

  /** The encoder died: its listeners are closed (players reconnect), the zone stops if nobody is left. */
  function failEncoder(z: ZoneState, enc: Encoder) {
    enc.stopped = true;
    for (const l of [...enc.listeners]) l.res.destroy();
    if (z.encoders.get(enc.format) === enc) z.encoders.delete(enc.format);
  }

  function stopEncoder(enc: Encoder) {
    if (enc.stopped) return;
    enc.stopped = true;
    if (enc.handle) {
      enc.handle.stdin?.end();
      enc.handle.kill(500);
    }
  }

  function fanOut(z: ZoneState, enc: Encoder, bytes: Buffer, boundary: boolean) {
    enc.bytesOut += bytes.length;
    for (const l of enc.listeners) {
      if (!l.started) {
        // Ogg: header pages first, then from a page that does not continue a packet. MP3: any frame.
        if (!boundary || !enc.headerDone) continue;
        l.started = true;
        for (const h of enc.header) { l.res.write(h); l.bytes += h.length; }
      }
      l.res.write(bytes);
      l.bytes += bytes.length;
      if (l.res.writableLength > o.maxListenerBufferBytes) {
        counters.slowDropped++;
        log.warn({ zoneId: z.zoneId, format: l.format, listener: l.id, buffered: l.res.writableLength }, 'zone stream listener too slow: dropped');
        l.res.destroy();
      }
    }
  }

  function onBlock(z: ZoneState, pcm: Float32Array) {
    const buf = Buffer.allocUnsafe(pcm.length * 2);
    for (let i = 0; i < pcm.length; i++) {
      const v = Math.max(-1, Math.min(1, pcm[i]!));
      buf.writeInt16LE(Math.round(v * 32767), i * 2);
    }
    for (const enc of z.encoders.values()) {
      const stdin = enc.handle?.stdin;
      if (!stdin || enc.stopped || stdin.destroyed) continue;
      // ffmpeg encodes far faster than real time; a backlog means it hangs (the watchdog will kill it).
      if (stdin.writableLength > 1024 * 1024) continue;
      stdin.write(buf);
    }
  }

  function zoneState(communeId: string, zoneId: string): ZoneState {
    const key = keyOf(communeId, zoneId);
    let z = zones.get(key);
    if (z) return z;
    const mixer = createZoneMixer({
      now: deps.now, log: log.child({ zoneId }), options: o.mixer,
      airings: () => zoneAirings(communeId, zoneId),
      mediaPath: (it) => mediaPath(communeId, it),
      onBlock: (pcm) => onBlock(z!, pcm),
    });
    z = { key, communeId, zoneId, mixer, encoders: new Map(), listeners: new Set(), startedAt: deps.now() };
    zones.set(key, z);
    mixer.start();
    log.info({ zoneId }, 'zone stream started');
    return z;
  }

  function removeListener(z: ZoneState, l: Listener, keepOpen = false) {
    // The client may only have half-closed (FIN): an unended response would keep the socket open
    // (and app.close() waiting) for ever. (keepOpen: attach failed, the route answers with an error.)
    if (!keepOpen && !l.res.writableEnded && !l.res.destroyed) l.res.destroy();
    if (!z.listeners.delete(l)) return;
    const enc = z.encoders.get(l.format);
    enc?.listeners.delete(l);
    if (enc && enc.listeners.size === 0) {
      stopEncoder(enc);
      z.encoders.delete(l.format);
    }
    if (z.listeners.size === 0 && zones.get(z.key) === z) {
      z.mixer.stop();
      for (const e of z.encoders.values()) stopEncoder(e);
      z.encoders.clear();
      zones.delete(z.key);
      log.info({ zoneId: z.zoneId }, 'zone stream stopped (no listener left)');
    }
    log.debug({ zoneId: z.zoneId, format: l.format, listener: l.id, bytes: l.bytes }, 'zone stream listener left');
  }

  return {
    start() {
      if (running) return;
      running = true;
      if (own) supervisor.start();
      offTap = deps.live.tapPcm({ pcm: onTapPcm, ended: onTapEnded });
    },

    /** Close every listener, stop mixers and encoders. Idempotent. */
    async stop() {
      if (!running) return;
      running = false;
      offTap?.();
      offTap = undefined;
      for (const z of [...zones.values()]) for (const l of [...z.listeners]) { l.res.end(); removeListener(z, l); }
      sessionZones.clear();
      if (own) await supervisor.stop();
    },

    /**
     * Serve `res` the zone's stream until the client leaves. Writes the response head; the caller has
     * checked the principal and that the zone exists in its commune. Throws StreamRefused (503) when
     * the limits are reached or the service is stopped.
     */
    async attach(communeId: string, zoneId: string, format: StreamFormat, res: ServerResponse, meta: { zoneName?: string; viaKey?: boolean } = {}): Promise<void> {
      if (!running) throw new StreamRefused(503, 'STREAM_UNAVAILABLE', 'zone streams are not running');
      const existing = zones.get(keyOf(communeId, zoneId));
      if (existing && existing.listeners.size >= o.maxListenersPerZone) {
        throw new StreamRefused(503, 'STREAM_LISTENER_LIMIT', `zone '${zoneId}' already has ${existing.listeners.size} listeners (limit ${o.maxListenersPerZone})`);
      }
      if (!existing?.encoders.has(format) && encoderCount() >= o.maxEncoders) {
        throw new StreamRefused(503, 'STREAM_ENCODER_LIMIT', `the controller already runs ${o.maxEncoders} stream encoders; try again later`);
      }
      const z = zoneState(communeId, zoneId);
      const l: Listener = { id: nextListener++, res, format, started: false, since: deps.now(), bytes: 0, viaKey: meta.viaKey === true };
      z.listeners.add(l);
      counters.listenersServed++;
      res.on('close', () => removeListener(z, l));
      res.on('error', () => { /* 'close' follows */ });
      let enc = z.encoders.get(format);
      try {
        if (!enc) enc = await startEncoder(z, format);
      } catch (e) {
        removeListener(z, l, true);
        log.error({ zoneId, format, err: (e as Error).message }, 'zone stream encoder could not start');
        throw new StreamRefused(503, 'STREAM_ENCODER_FAILED', `the ${format} encoder could not start: ${(e as Error).message}`);
      }
      if (res.destroyed || !z.listeners.has(l)) { removeListener(z, l); return; }
      if (enc.stopped) {
        removeListener(z, l, true);
        throw new StreamRefused(503, 'STREAM_ENCODER_FAILED', `the ${format} encoder stopped while starting`);
      }
      res.writeHead(200, {
        'content-type': STREAM_CONTENT_TYPE[format],
        'cache-control': 'no-store, no-cache',
        pragma: 'no-cache',
        'x-content-type-options': 'nosniff',
        'icy-name': encodeURIComponent(meta.zoneName ?? zoneId).slice(0, 200),
        ...(format === 'mp3' ? { 'icy-br': String(o.mp3BitrateKbps) } : {}),
      });
      res.flushHeaders();
      enc.listeners.add(l);
    },

    status(communeId: string, zoneId: string): ZoneStreamStatus {
      const z = zones.get(keyOf(communeId, zoneId));
      if (!z) return { zoneId, running: false, listeners: { total: 0, ogg: 0, mp3: 0 }, onAir: { origin: 'silence' }, since: null };
      let ogg = 0; let mp3 = 0;
      for (const l of z.listeners) if (l.format === 'ogg') ogg++; else mp3++;
      return { zoneId, running: true, listeners: { total: z.listeners.size, ogg, mp3 }, onAir: z.mixer.onAir(), since: z.startedAt };
    },

    options: (): Readonly<ZoneStreamOptions> => o,

    /** The zones' listen keys (verify, ensure, reveal); rotate through `rotateKey`. */
    keys,

    /**
     * New listen key for the zone; the old one stops working at once and every listener it admitted is
     * disconnected (the caller has checked the principal and the zone). Returns the new key (shown once).
     */
    rotateKey(communeId: string, zoneId: string) {
      // Synchronous from here to the end: no request on the old key can be admitted in between (the
      // route verifies and attaches in one tick).
      const k = keys.rotate(communeId, zoneId);
      let disconnected = 0;
      const z = zones.get(keyOf(communeId, zoneId));
      if (z) {
        for (const l of [...z.listeners]) {
          if (!l.viaKey) continue;
          disconnected++;
          removeListener(z, l);
        }
      }
      counters.keyDropped += disconnected;
      if (disconnected) log.info({ zoneId, disconnected }, 'listen key rotated: listeners on the old key disconnected');
      return { ...k, disconnected };
    },

    stats() {
      return {
        zones: zones.size, encoders: encoderCount(), listeners: [...zones.values()].reduce((a, z) => a + z.listeners.size, 0),
        supervisor: supervisor.stats(), ...counters,
      };
    },
  };
}
export type ZoneStreams = ReturnType<typeof createZoneStreams>;
