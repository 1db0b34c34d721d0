/**
 * Live sessions on the controller (issue 5): voice from the console microphone, a media file played
 * live, a relay of an external stream, and emergency (clip or TTS, repeated, forced volume).
 *
 * - ONE UDP socket (`RADIO_RTP_PORT`, port 0 allowed: the bound port is announced) carries every
 *   session. An agent opens its path with a hello (RTCP RR + APP "RDIO" with its per-node token) from
 *   its receive socket (symmetric RTP, works behind NAT/4G); a hello whose token belongs to an active
 *   session and to the node it was issued to adds that source address as a destination of that
 *   session's sender. Everything else is dropped and counted (`stats().dropped`). The RR blocks the
 *   hellos carry (RFC 3550 §6.4.2) become per-node loss/jitter figures.
 * - Each session has one sender (Opus encoded once, the same payload to every destination, RED).
 *   The announcement is per node (its token), retained on radio/v1/node/{id}/live (a scheduled relay's
 *   feed on …/live/feed, so the two never overwrite each other) and kept in the
 *   retained table so a reconnecting broker gets it again; on stop an `ended` announcement replaces
 *   it, and is cleared after a grace period.
 * - A controller restart cannot continue a session (its encoder and socket are gone): start() turns
 *   every announcement still `active` in the retained table into `ended` (reason controller_restart).
 * - Reach: per targeted node, the state from its LiveStatus reports; `speakNow` once every online
 *   target is ready (or `speakNowFraction` of them; or, `speakNowGraceMs` after `speakNowQuorum` of them
 *   were, without the rest). Paced sources (file, relay, emergency) start
 *   their audio at that moment (bounded by `joinTimeoutMs`) so no cluster misses the first words.
 * - Receipts: one row per targeted node in `live_receipts`; every start and stop is audited.
 */
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import type { Logger } from 'pino';
import { parseTopic, topicFor, TOPICS, type LiveAnnouncement, type LiveStartRequest, type LiveStatus, type Node } from '../../../schemas/src/index.js';
import type { ControllerEnv } from '../../../schemas/src/index.js';
import {
  classifyPacket, createOpusEncoder, createSessionSender, helloToken, ipLiteralLookup, parseRtcp, speechLike,
  type SessionSender, type SessionSenderStats, type UdpDestination,
} from '../../../audio-pipeline/src/live/index.js';
import type { Supervisor } from '../../../audio-pipeline/src/index.js';
import { AppError, badRequest, notFound } from '../errors.js';
import type { EnvelopeFactory } from '../envelope.js';
import type { EventBus } from '../event-bus.js';
import type { FleetLink } from '../fleet-link.js';
import type { MediaService } from '../media/media-service.js';
import type { NodeCacheEntry } from '../services.js';
import type { Store } from '../store/store.js';
import { decodePcm, LIVE_SAMPLE_RATE, soundcardInput, startFfmpegSource, type PacedSource, type MicFormat } from './sources.js';
import { startOpusFileSource } from './opus-file-source.js';
import { warmOpusStreamDecoder } from '../../../audio-pipeline/src/opus-stream.js';

export { decodePcm, type MicFormat } from './sources.js';

export interface LiveDeps {
  config: ControllerEnv;
  store: Store;
  bus: EventBus;
  log: Logger;
  now: () => number;
  envelope: EnvelopeFactory;
  link: () => FleetLink;
  nodes: Map<string, NodeCacheEntry>;
  media: MediaService;
  supervisor: Supervisor;
  /** Tunables (tests shorten them). */
  options?: Partial<LiveOptions>;
}

export interface LiveOptions {
  /** Playout delay D when the request gives none, ms. */
  defaultDelayMs: number;
  /** Voice: the microphone silent this long (stalled, or gone without reconnecting) ends the session. */
  micStallTimeoutMs: number;
  /** Voice: no microphone connection this long after the start ends the session. */
  micConnectTimeoutMs: number;
  /** Microphone input may run ahead of real time by this much before frames are dropped. */
  micBurstMs: number;
  /** Dropped microphone audio beyond this closes the WebSocket (4429, flooding). */
  micFloodCloseMs: number;
  /** File/relay/emergency: no PCM from the source this long ends the session. */
  sourceStallTimeoutMs: number;
  /** Paced sources wait for speakNow at most this long before their audio starts. */
  joinTimeoutMs: number;
  /**
   * A source whose audio must sound at a given instant (`audioAt`, scheduled relays) is started this long
   * before its first frame leaves: ffmpeg's connect and probe time. Kept well under `sourceStallTimeoutMs`
   * (its output is paused by back-pressure until the first frame).
   */
  sourcePrerollMs: number;
  /** speakNow once this fraction of online targets is ready (1 = all). */
  speakNowFraction: number;
  /**
   * Once this fraction of the online targets is ready, the others get `speakNowGraceMs` more; then
   * speak-now comes without them and they join late (they hear from the moment their path opens). One
   * cluster on a broken path must not hold a whole commune's emergency for `joinTimeoutMs`. Below 100
   * targets 0.99 of them is all of them.
   */
  speakNowQuorum: number;
  speakNowGraceMs: number;
  /** `ended` announcements stay retained this long, then are cleared. */
  endedRetainMs: number;
  /** Ended sessions kept in memory for GET (the rest is in the database). */
  recentSessions: number;
  /** The Opus codecs are warmed this long after start (warmCodecs). */
  codecWarmDelayMs: number;
}

const DEFAULTS: LiveOptions = {
  defaultDelayMs: 200,
  micStallTimeoutMs: 3000,
  micConnectTimeoutMs: 60_000,
  micBurstMs: 500,
  micFloodCloseMs: 5000,
  sourceStallTimeoutMs: 8000,
  joinTimeoutMs: 1500,
  sourcePrerollMs: 1500,
  speakNowFraction: 1,
  speakNowQuorum: 0.99,
  speakNowGraceMs: 250,
  endedRetainMs: 30_000,
  recentSessions: 50,
  codecWarmDelayMs: 5000,
};

export type LiveNodeState = 'announced' | LiveStatus['state'];

export interface LiveNodeReach {
  nodeId: string;
  zoneId: string;
  online: boolean;
  state: LiveNodeState;
  reason?: string;
  /** Where its RTP goes (after its hello). */
  path: UdpDestination | null;
  stats?: LiveStatus['stats'];
  /** From the receiver reports in its hellos. */
  rr?: { fractionLost: number; cumulativeLost: number; jitterMs: number; at: number };
  firstPlayingAt?: number;
  updatedAt: number;
  /** Internal (not in the view): `ready` came from its hello, not yet from a report of its own. */
  readyFromHello?: boolean;
}

/** What startSession/stopSession resolve with (the contract CAP alerts and the console code against). */
export interface LiveSessionInfo {
  sessionId: string;
  communeId: string;
  kind: LiveStartRequest['kind'];
  priority: LiveStartRequest['priority'];
  title: string;
  targets: string[];
  startedAt: number;
  endedAt: number | null;
}

/** The full view (GET /live/sessions/:id): reach, speak-now, per-node states, sender figures. */
export interface LiveSessionView extends LiveSessionInfo {
  state: 'active' | 'ended';
  endReason: string | null;
  actor: string;
  delayMs: number;
  forcedVolume: number | null;
  exercise: boolean;
  rtp: { host: string; port: number };
  /** Voice: the microphone WebSocket path (authenticate with ?token=<bearer token>). */
  micPath: string | null;
  speakNow: boolean;
  reach: {
    targets: number;
    online: number;
    joining: number;
    ready: number;
    playing: number;
    ended: number;
    refused: number;
    failed: number;
    summary: string;
    notPlaying: { nodeId: string; zoneId: string; state: LiveNodeState | 'offline'; reason: string }[];
  };
  nodes: LiveNodeReach[];
  sender: SessionSenderStats | null;
  mic: { connected: boolean; frames: number; samples: number; droppedSamples: number } | null;
}

export type LiveStart = LiveStartRequest & {
  exercise?: boolean;
  /** Scheduled relay: the airing item the session carries (announced; agents feed that airing, no claim). */
  airing?: { airingId: string; itemIndex: number };
  /**
   * Paced sources: the first source sample SOUNDS at this controller time (the sender's timeline starts at
   * audioAt − D), instead of when the targets are ready. Must leave the agents time to join.
   */
  audioAt?: number;
};

interface Session {
  id: string;
  communeId: string;
  req: LiveStart;
  actor: string;
  delayMs: number;
  startedAt: number;
  endedAt: number | null;
  endReason: string | null;
  nodes: Map<string, LiveNodeReach>;
  tokens: Map<string, string>;
  announcements: Map<string, LiveAnnouncement>;
  sender: SessionSender | null;
  source: PacedSource | null;
  senderStats: SessionSenderStats | null;
  speakNow: boolean;
  speakNowWaiters: (() => void)[];
  /** A speakNow recount is queued (statuses arriving together are counted once). */
  speakNowQueued?: boolean;
  /** The last full readiness count (refreshSpeakNow) and what changed since. */
  speakNowCount: { at: number; shortfall: number; gains: number; other: boolean; timer: NodeJS.Timeout | undefined };
  /** The quorum's grace (see LiveOptions.speakNowQuorum): armed when the quorum is first reached, then over. */
  speakNowGrace: { timer: NodeJS.Timeout | undefined; over: boolean };
  mic: { connected: boolean; frames: number; samples: number; droppedSamples: number; firstAt: number; close?: (code: number, reason: string) => void } | null;
  micTimer: NodeJS.Timeout | undefined;
  emitTimer: NodeJS.Timeout | undefined;
}

const TERMINAL = new Set<LiveNodeState>(['ended', 'refused', 'failed']);
/** States in the order a node goes through them: a late report never moves a node back. */
const STATE_ORDER: Record<LiveNodeState, number> = { announced: 0, joining: 1, ready: 2, playing: 3, ended: 4, refused: 4, failed: 4 };
/** Reason of a target whose hello arrives but that hears nothing back (the console matches its `one-way` start). */
/** A readiness count skipped as unable to change speak-now is made up this soon (refreshSpeakNow). */
const SPEAK_NOW_RECOUNT_MS = 100;
const ONE_WAY_REASON = 'one-way path: its hello reaches the controller, our packets do not reach it';

/** Live sessions: the contract other services (CAP alerts, the console) code against is this object's methods. */
export function createLive(deps: LiveDeps) {
  const { store, bus, log, now, config } = deps;
  const opt: LiveOptions = { ...DEFAULTS, ...(deps.options ?? {}) };
  const db = store.db;
  const sessions = new Map<string, Session>();
  /** PCM taps (zone streams): see `tapPcm`. */
  const pcmTaps = new Set<LivePcmTap>();
  const recent: Session[] = [];
  /** token → session + node. */
  const tokens = new Map<string, { sessionId: string; nodeId: string }>();
  const clearTimers = new Set<NodeJS.Timeout>();
  let socket: dgram.Socket | null = null;
  let rtpPort = 0;
  const counters = { hellos: 0, dropped: 0, unknownToken: 0, malformed: 0, pathChanges: 0, socketErrors: 0 };

  const q = {
    insertSession: db.prepare(`INSERT INTO live_sessions (id, commune_id, kind, priority, title, actor, request, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    endSession: db.prepare(`UPDATE live_sessions SET ended_at = ?, end_reason = ?, stats = ? WHERE id = ?`),
    upsertReceipt: db.prepare(`INSERT INTO live_receipts (session_id, node_id, commune_id, zone_id, state, reason, played, first_playing_at, updated_at, stats)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id, node_id) DO UPDATE SET state = excluded.state, reason = excluded.reason,
      played = excluded.played, first_playing_at = excluded.first_playing_at, updated_at = excluded.updated_at, stats = excluded.stats`),
    openSessions: db.prepare<[], { id: string; commune_id: string }>(`SELECT id, commune_id FROM live_sessions WHERE ended_at IS NULL`),
    listSessions: db.prepare<[string, number], { id: string; commune_id: string; kind: string; priority: string; title: string; actor: string; started_at: number; ended_at: number | null; end_reason: string | null }>(
      `SELECT id, commune_id, kind, priority, title, actor, started_at, ended_at, end_reason FROM live_sessions WHERE commune_id = ? ORDER BY started_at DESC LIMIT ?`),
    receipts: db.prepare<[string], { node_id: string; zone_id: string; state: string; reason: string | null; played: number; first_playing_at: number | null; updated_at: number; stats: string | null }>(
      `SELECT node_id, zone_id, state, reason, played, first_playing_at, updated_at, stats FROM live_receipts WHERE session_id = ? ORDER BY node_id`),
  };

  // ---------------------------------------------------------------- RTP socket

  function onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo) {
    if (classifyPacket(msg) !== 'rtcp') { counters.dropped++; return; }
    let packets;
    try { packets = parseRtcp(msg); } catch { counters.malformed++; counters.dropped++; return; }
    let hello: { token: string } | null = null;
    for (const p of packets) { const h = helloToken(p); if (h) { hello = h; break; } }
    if (!hello) { counters.dropped++; return; }
    const t = tokens.get(hello.token);
    const s = t ? sessions.get(t.sessionId) : undefined;
    const n = t && s ? s.nodes.get(t.nodeId) : undefined;
    if (!t || !s || !n || s.endedAt !== null || !s.sender) { counters.unknownToken++; counters.dropped++; return; }
    counters.hellos++;
    const from = { address: rinfo.address, port: rinfo.port };
    if (!n.path || n.path.address !== from.address || n.path.port !== from.port) {
      // A NAT rebinding moves the path; the token proves it is still the same agent.
      if (n.path) { s.sender.removeDestination(n.path); counters.pathChanges++; }
      s.sender.addDestination(from);
      n.path = from;
      // The hello is the readiness that matters: the agent has joined (endpoint bound, buffer made) and
      // its path is open (symmetric RTP: our packets take the way back its hello came). Its own `ready`
      // report follows over MQTT; not waiting for that hop takes a round trip off speak-now.
      if (!TERMINAL.has(n.state) && STATE_ORDER[n.state] < STATE_ORDER.ready && n.reason !== ONE_WAY_REASON) {
        n.state = 'ready';
        n.readyFromHello = true;
        n.updatedAt = now();
        delete n.reason;
        queueSpeakNow(s, 'gain');
        emitSoon(s);
      }
    }
    for (const p of packets) {
      if (p.type !== 'rr' && p.type !== 'sr') continue;
      const b = p.reports.find((r) => r.ssrc === s.sender!.description().ssrc);
      if (b) n.rr = { fractionLost: b.fractionLost, cumulativeLost: Math.max(0, b.cumulativeLost), jitterMs: b.jitter / (LIVE_SAMPLE_RATE / 1000), at: now() };
    }
  }

  // ---------------------------------------------------------------- helpers

  /** The targeted nodes by id, in id order (one query per commune or zone: a join loop must not look each up again). */
  function resolveTargets(communeId: string, t: LiveStartRequest['targets']): Map<string, Node> {
    const byId = new Map<string, Node>();
    if (t.commune) for (const n of store.listNodes(communeId)) byId.set(n.id, n);
    for (const z of t.zones) {
      if (!store.getZone(communeId, z)) throw notFound('zone', z);
      for (const n of store.listNodes(communeId, z)) byId.set(n.id, n);
    }
    for (const id of t.nodes) {
      if (byId.has(id)) continue;
      const n = store.getNode(communeId, id);
      if (!n) throw notFound('node', id);
      byId.set(id, n);
    }
    return new Map([...byId].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  function reachOf(s: Session): LiveSessionView['reach'] {
    const r = { targets: s.nodes.size, online: 0, joining: 0, ready: 0, playing: 0, ended: 0, refused: 0, failed: 0 };
    const notPlaying: LiveSessionView['reach']['notPlaying'] = [];
    for (const n of s.nodes.values()) {
      const online = deps.nodes.get(n.nodeId)?.status === 'online';
      n.online = online;
      if (online) r.online++;
      switch (n.state) {
        case 'joining': r.joining++; break;
        case 'ready': r.ready++; break;
        case 'playing': r.playing++; break;
        case 'ended': r.ended++; break;
        case 'refused': r.refused++; break;
        case 'failed': r.failed++; break;
        case 'announced': break;
      }
      if (n.state !== 'playing') {
        const state = n.state === 'announced' && !online ? 'offline' : n.state;
        const reason = n.reason ?? (state === 'offline' ? 'node offline' : n.state === 'announced' ? 'no answer yet' : n.state === 'joining' ? 'joining, no audio yet' : n.state === 'ready' ? 'ready, waiting for audio' : n.state);
        notPlaying.push({ nodeId: n.nodeId, zoneId: n.zoneId, state, reason });
      }
    }
    const why = new Map<string, number>();
    for (const x of notPlaying) why.set(x.reason, (why.get(x.reason) ?? 0) + 1);
    const whyText = [...why].map(([k, v]) => `${v} ${k}`).join(', ');
    const summary = `playing on ${r.playing} of ${r.targets}${notPlaying.length ? `; not playing: ${whyText}` : ''}`;
    return { ...r, summary, notPlaying };
  }

  /** Online, not refused targets; how many are ready (or playing); how many must be for speak-now. */
  function countReady(s: Session): { online: number; ready: number; needed: number; quorum: number } {
    let online = 0;
    let ready = 0;
    for (const n of s.nodes.values()) {
      if (n.state === 'refused' || deps.nodes.get(n.nodeId)?.status !== 'online') continue;
      online++;
      if (n.state === 'ready' || n.state === 'playing') ready++;
    }
    const needed = Math.ceil(online * opt.speakNowFraction - 1e-9);
    return { online, ready, needed, quorum: Math.min(needed, Math.ceil(online * opt.speakNowQuorum - 1e-9)) };
  }

  function info(s: Session): LiveSessionView {
    return {
      sessionId: s.id, communeId: s.communeId, kind: s.req.kind, priority: s.req.priority, title: s.req.title,
      targets: [...s.nodes.keys()], startedAt: s.startedAt, endedAt: s.endedAt, state: s.endedAt === null ? 'active' : 'ended',
      endReason: s.endReason, actor: s.actor, delayMs: s.delayMs, forcedVolume: s.req.forcedVolume ?? null, exercise: s.req.exercise ?? false,
      rtp: { host: config.RADIO_PUBLIC_HOST, port: rtpPort },
      micPath: s.req.kind === 'voice' ? `/api/v1/live/sessions/${s.id}/mic` : null,
      speakNow: s.endedAt === null && s.speakNow,
      reach: reachOf(s),
      nodes: [...s.nodes.values()].map(({ readyFromHello: _internal, ...n }) => ({ ...n, path: n.path ? { ...n.path } : null })),
      sender: s.sender ? s.sender.stats() : s.senderStats,
      mic: s.mic ? { connected: s.mic.connected, frames: s.mic.frames, samples: s.mic.samples, droppedSamples: s.mic.droppedSamples } : null,
    };
  }

  /** Coalesced reach event (a fleet's statuses arrive in bursts). */
  function emitSoon(s: Session) {
    if (s.emitTimer) return;
    s.emitTimer = setTimeout(() => { s.emitTimer = undefined; emitNow(s); }, 100);
    s.emitTimer.unref?.();
  }
  function emitNow(s: Session) {
    const r = reachOf(s);
    bus.emit(s.communeId, {
      type: 'live.session', ts: now(), sessionId: s.id, state: s.endedAt === null ? 'active' : 'ended',
      targets: r.targets, ready: r.ready, playing: r.playing, speakNow: s.endedAt === null && s.speakNow, ...(s.endReason ? { endReason: s.endReason } : {}),
    });
  }

  function writeReceipt(s: Session, n: LiveNodeReach) {
    const state = n.state === 'announced' ? (n.online ? 'no_answer' : 'offline') : n.state;
    q.upsertReceipt.run(s.id, n.nodeId, s.communeId, n.zoneId, state, n.reason ?? null, n.firstPlayingAt !== undefined ? 1 : 0, n.firstPlayingAt ?? null, n.updatedAt,
      n.stats || n.rr ? JSON.stringify({ ...(n.stats ?? {}), ...(n.rr ? { rr: n.rr } : {}) }) : null);
  }

  /**
   * `checked`: an announcement of the same session built from the same template as one already validated
   * (they differ in node, token and envelope): serialised without validating it again. A session's
   * 1,000 announcements go out inside the API call that starts it, so the validator ran 1,000 times on
   * the emergency's critical path (about 30 ms of the controller's CPU measured, more when cold).
   */
  function publishAnnouncement(communeId: string, nodeId: string, a: LiveAnnouncement, checked = false) {
    // A scheduled relay's feed has its own retained topic: it may overlap an API session on the node.
    const name = a.airing ? 'liveFeed' : 'live';
    const topic = topicFor(name, nodeId);
    let body: string;
    if (checked) {
      body = JSON.stringify(a);
      deps.link().publishRaw(topic, body, TOPICS[name].retained);
    } else body = deps.link().publish(name, nodeId, a);
    store.putRetained(topic, communeId, body, now());
    return { topic, body };
  }

  function scheduleClear(topic: string, body: string) {
    const t = setTimeout(() => {
      clearTimers.delete(t);
      // Only if nothing newer was announced on this topic meanwhile.
      const cur = store.getRetained(topic);
      if (cur !== undefined && cur !== body) return;
      deps.link().publishRaw(topic, '', true);
      store.putRetained(topic, '', '', now());
    }, opt.endedRetainMs);
    t.unref?.();
    clearTimers.add(t);
  }

  function waitSpeakNow(s: Session, timeoutMs: number): Promise<void> {
    if (s.speakNow || s.endedAt !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, timeoutMs);
      function done() { clearTimeout(t); resolve(); }
      s.speakNowWaiters.push(done);
    });
  }

  /**
   * Counting readiness walks every target: once per batch of reports, not per report (O(N²) at 1,000
   * clusters, half a second of the controller's event loop in the emergency bench).
   */
  function queueSpeakNow(s: Session, change: 'gain' | 'other') {
    const sn = s.speakNowCount;
    if (change === 'gain') sn.gains++; else sn.other = true;
    if (s.speakNowQueued) return;
    s.speakNowQueued = true;
    setImmediate(() => { s.speakNowQueued = false; if (s.endedAt === null) refreshSpeakNow(s); });
  }

  /**
   * A full count walks every target; it is skipped while it cannot change the answer: only targets
   * became ready since the last count, too few to close its shortfall (the hellos of 1,000 clusters
   * arrive one by one over hundreds of ms). A node going offline lowers the shortfall without an
   * event, so a skipped count is made up within SPEAK_NOW_RECOUNT_MS.
   */
  function refreshSpeakNow(s: Session) {
    const sn = s.speakNowCount;
    if (!s.speakNow && !sn.other && sn.gains < sn.shortfall && now() - sn.at < SPEAK_NOW_RECOUNT_MS) {
      if (!sn.timer) {
        sn.timer = setTimeout(() => { sn.timer = undefined; if (s.endedAt === null) refreshSpeakNow(s); }, SPEAK_NOW_RECOUNT_MS);
        sn.timer.unref?.();
      }
      return;
    }
    const was = s.speakNow;
    const c = countReady(s);
    const g = s.speakNowGrace;
    sn.at = now();
    sn.gains = 0;
    sn.other = false;
    const quorate = c.online > 0 && c.ready >= c.quorum;
    if (quorate && c.ready < c.needed && !g.timer && !g.over) {
      g.timer = setTimeout(() => {
        g.over = true;
        if (s.endedAt !== null) return;
        sn.other = true;
        refreshSpeakNow(s);
        if (s.speakNow) { const n = countReady(s); log.info({ sessionId: s.id, ready: n.ready, online: n.online }, 'speak-now at the quorum: the targets not ready yet join late'); }
      }, opt.speakNowGraceMs);
      g.timer.unref?.();
    }
    // The next count that can change the answer: the quorum (while the grace has not started), then all.
    sn.shortfall = (g.timer || g.over ? c.needed : c.quorum) - c.ready;
    s.speakNow = c.online > 0 && (c.ready >= c.needed || (g.over && quorate));
    if (s.speakNow && !was) {
      const w = s.speakNowWaiters.splice(0);
      for (const f of w) f();
    }
  }

  // ---------------------------------------------------------------- sources

  /** A source of the session's PCM: `gate` holds its PCM until the targets are ready. */
  type OpenSource = (sender: SessionSender, gate: Promise<void> | undefined) => Promise<PacedSource>;
  const ffmpegInput = (input: string[], durationMs: number | undefined, kind: string): OpenSource => (sender, gate) =>
    startFfmpegSource({ supervisor: deps.supervisor, sender, input, durationMs, kind, watchdogMs: opt.sourceStallTimeoutMs, ...(gate ? { gate } : {}) });

  /** `preroll`: may the source start before the targets are ready (not a sound card: a held capture is stale). */
  async function runPacedSource(s: Session, open: OpenSource, preroll = true) {
    if (s.req.audioAt !== undefined) {
      // Timed audio: the timeline is fixed (base = audioAt − D); start the source just early enough.
      const startAt = s.req.audioAt - s.delayMs - opt.sourcePrerollMs;
      while (s.endedAt === null && now() < startAt) await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, startAt - now()))));
    }
    // Untimed audio starts once the targets are ready (bounded by joinTimeoutMs); ffmpeg starts NOW and
    // its first PCM is held until then, so its start-up overlaps the clusters' join.
    const gate = s.req.audioAt === undefined ? waitSpeakNow(s, opt.joinTimeoutMs) : undefined;
    if (gate && !preroll) await gate;
    if (s.endedAt !== null || !s.sender) return;
    let src: PacedSource;
    try {
      src = await open(s.sender, gate && preroll ? gate : undefined);
    } catch (e) {
      await end(s, `source_failed: ${(e as Error).message}`.slice(0, 200), 'system');
      return;
    }
    if (s.endedAt !== null) { src.stop(); return; }
    s.source = src;
    let failure: string | null = null;
    try { await src.done; } catch (e) { failure = (e as Error).message; }
    if (s.endedAt !== null) return;
    if (failure) { await end(s, `source_failed: ${failure}`.slice(0, 200), 'system'); return; }
    // EOF: let the queued audio leave, then end (the BYE follows the last frame).
    const sender = s.sender;
    while (s.endedAt === null && sender.stats().queuedMs > 0) await new Promise((r) => setTimeout(r, 20));
    // The last frame must also have been played out by the clusters before the BYE arrives.
    await new Promise((r) => setTimeout(r, s.delayMs + 100));
    if (s.endedAt === null) await end(s, 'source_ended', 'system');
  }

  /** A library file (its Ogg/Opus rendition), decoded in-process: no process to start (opus-file-source.ts). */
  function mediaSource(communeId: string, mediaId: string, repeat: number, durationMs: number | undefined): OpenSource {
    const f = deps.media.file(mediaId, 'opus', communeId);
    return (sender, gate) => startOpusFileSource({ sender, path: f.path, repeat, ...(durationMs !== undefined ? { durationMs } : {}), ...(gate ? { gate } : {}) });
  }

  // ---------------------------------------------------------------- stop

  async function end(s: Session, reason: string, actor: string) {
    if (s.endedAt !== null) return;
    s.endedAt = now();
    s.endReason = reason;
    clearTimeout(s.micTimer);
    clearTimeout(s.speakNowCount.timer);
    clearTimeout(s.speakNowGrace.timer);
    for (const f of s.speakNowWaiters.splice(0)) f();
    s.source?.stop();
    s.mic?.close?.(1000, `session ended: ${reason}`.slice(0, 120));
    if (s.sender) {
      s.senderStats = s.sender.stats();
      s.sender.stop(reason.slice(0, 200));
      s.sender = null;
    }
    for (const tok of s.tokens.keys()) tokens.delete(tok);
    const ts = now();
    // One transaction for the retained rows of every target (1,000 clusters: one commit, not 1,000).
    db.transaction(() => {
      let first = true;
      for (const [nodeId, a] of s.announcements) {
        const ended: LiveAnnouncement = { ...a, ...deps.envelope(), state: 'ended', endedAt: ts };
        try {
          const { topic, body } = publishAnnouncement(s.communeId, nodeId, ended, !first);
          first = false;
          scheduleClear(topic, body);
        } catch (e) {
          log.warn({ err: (e as Error).message, nodeId }, 'could not publish the end of a live session');
        }
      }
    })();
    db.transaction(() => {
      q.endSession.run(ts, reason, JSON.stringify(s.senderStats ?? {}), s.id);
      for (const n of s.nodes.values()) writeReceipt(s, n);
      store.audit(s.communeId, ts, actor, 'live.stop', s.id, { reason, reach: reachOf(s).summary });
    })();
    sessions.delete(s.id);
    for (const t of pcmTaps) { try { t.ended(s.id); } catch { /* a tap must not break the stop */ } }
    recent.unshift(s);
    if (recent.length > opt.recentSessions) recent.length = opt.recentSessions;
    log.info({ sessionId: s.id, reason }, 'live session ended');
    clearTimeout(s.emitTimer);
    s.emitTimer = undefined;
    emitNow(s);
  }

  function findSession(communeId: string, id: string): Session {
    const s = sessions.get(id) ?? recent.find((x) => x.id === id);
    if (!s || s.communeId !== communeId) throw notFound('live session', id);
    return s;
  }

  // ---------------------------------------------------------------- the service

  /**
   * At start, not in an emergency: the file/emergency source's decoder is instantiated (opus-stream.ts:
   * an instantiation cost a full garbage collection in the critical window), and 2 s of speech-like
   * audio go through the sessions' encoder settings and that decoder, so that V8's optimising tier has
   * compiled the hot wasm functions of both codecs (a first emergency otherwise paid that, on
   * background threads of a controller whose cores the clusters' joins need: about 60 ms of CPU).
   */
  let warmTimer: NodeJS.Timeout | undefined;
  async function warmCodecs(): Promise<void> {
    const enc = createOpusEncoder();
    const pcm = speechLike(2, 7);
    const packets: Uint8Array[] = [];
    try {
      for (let i = 0; i + enc.frameSamples <= pcm.length && socket; i += enc.frameSamples) {
        packets.push(enc.encode(pcm.subarray(i, i + enc.frameSamples)));
        // 10 frames (about 25 ms of CPU) at a time: the event loop keeps serving meanwhile.
        if (packets.length % 10 === 0) await new Promise((r) => setImmediate(r));
      }
    } finally {
      enc.close();
    }
    if (socket) await warmOpusStreamDecoder({ packets });
  }

  const svc = {
    async start() {
      if (socket) return;
      // A large receive buffer: 1,000 agents' hellos arrive in one burst when a session starts (the kernel
      // caps it at net.core.rmem_max; raise that on a big commune's controller).
      // IP literals resolved at once (ipLiteralLookup): the destinations are the addresses hellos came from.
      const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024, lookup: ipLiteralLookup as never });
      sock.on('message', onDatagram);
      // Also the sessions' asynchronous send errors (the senders pass no per-datagram callback).
      sock.on('error', (e) => { counters.socketErrors++; log.warn({ err: e.message }, 'RTP socket error'); });
      try {
        await new Promise<void>((resolve, reject) => {
          sock.once('error', reject);
          sock.bind(config.RADIO_RTP_PORT, () => { sock.off('error', reject); resolve(); });
        });
      } catch (e) {
        // The rest of the controller (schedules, alarms) must run even when the RTP port is taken:
        // live sessions answer 503 LIVE_NOT_READY until a restart with a free RADIO_RTP_PORT.
        log.error({ err: (e as Error).message, port: config.RADIO_RTP_PORT }, 'live: cannot bind the RTP socket; live sessions are unavailable');
        try { sock.close(); } catch { /* never bound */ }
        return;
      }
      socket = sock;
      rtpPort = sock.address().port;
      // Sessions that were live when the controller stopped cannot continue: end them on the agents.
      const open = q.openSessions.all();
      const ts = now();
      for (const r of store.allRetained()) {
        const pt = parseTopic(r.topic);
        if (!pt || (pt.name !== 'live' && pt.name !== 'liveFeed')) continue;
        let a: LiveAnnouncement;
        try { a = JSON.parse(r.payload) as LiveAnnouncement; } catch { continue; }
        if (a.state !== 'active') { scheduleClear(r.topic, r.payload); continue; }
        const communeId = deps.nodes.get(pt.id)?.communeId ?? config.RADIO_COMMUNE_ID;
        const { body } = publishAnnouncement(communeId, pt.id, { ...a, ...deps.envelope(), state: 'ended', endedAt: ts });
        scheduleClear(r.topic, body);
      }
      for (const o of open) {
        q.endSession.run(ts, 'controller_restart', null, o.id);
        store.audit(o.commune_id, ts, 'system', 'live.stop', o.id, { reason: 'controller_restart' });
      }
      log.info({ rtpPort, ended: open.length }, 'live: RTP socket bound');
      // Deferred: a controller's start stays quick, and one that stops within seconds (a test) never pays it.
      warmTimer = setTimeout(() => { warmTimer = undefined; void warmCodecs().catch((e: Error) => log.warn({ err: e.message }, 'live: could not warm the Opus codecs')); }, opt.codecWarmDelayMs);
      warmTimer.unref?.();
    },

    async stop() {
      clearTimeout(warmTimer);
      for (const s of [...sessions.values()]) await end(s, 'controller_stopping', 'system');
      for (const t of clearTimers) clearTimeout(t);
      clearTimers.clear();
      const sock = socket;
      socket = null;
      if (sock) await new Promise<void>((r) => sock.close(() => r()));
    },

    /** The bound RTP port (what agents are told). */
    rtpPort: () => rtpPort,

    /** Start a session for `actor`; resolves once the announcements are out. */
    async startSession(communeId: string, actor: string, req: LiveStart): Promise<LiveSessionInfo> {
      if (!socket) throw new AppError(503, 'LIVE_NOT_READY', `the live RTP socket is not bound (RADIO_RTP_PORT ${config.RADIO_RTP_PORT} unavailable?)`);
      switch (req.kind) {
        case 'relay':
          if (!req.url) throw badRequest('LIVE_URL_REQUIRED', 'a relay needs `url`: the stream to pull (Icecast/HTTP MP3 or AAC, HLS)');
          if (!/^https?:\/\//i.test(req.url)) throw badRequest('LIVE_URL_SCHEME', 'relay `url` must be http:// or https://');
          break;
        case 'file':
          if (!req.mediaId) throw badRequest('LIVE_MEDIA_REQUIRED', 'a file session needs `mediaId`');
          deps.media.get(communeId, req.mediaId);
          break;
        case 'emergency':
          if (!req.mediaId && !req.text?.trim()) throw badRequest('LIVE_CONTENT_REQUIRED', 'an emergency needs `mediaId` (a recorded clip) or `text` (spoken by TTS)');
          if (req.mediaId) deps.media.get(communeId, req.mediaId);
          break;
        case 'soundcard':
          // The card is the controller's (RADIO_LIVE_INPUT), validated at config load; checked again here.
          if (!config.RADIO_LIVE_INPUT) throw new AppError(501, 'LIVE_SOUNDCARD_UNAVAILABLE', 'sound-card input is not configured on this controller: set RADIO_LIVE_INPUT (e.g. alsa:default, alsa:plughw:1,0 or pulse:default)');
          try { soundcardInput(config.RADIO_LIVE_INPUT); } catch (e) { throw new AppError(501, 'LIVE_SOUNDCARD_UNAVAILABLE', (e as Error).message); }
          break;
        case 'voice':
          break;
      }
      const targets = resolveTargets(communeId, req.targets);
      if (targets.size === 0) throw badRequest('LIVE_NO_TARGETS', 'the targets resolve to no node: the chosen commune/zones have no clusters');
      const priority = req.kind === 'emergency' ? 'emergency' : req.priority;
      const r: LiveStart = { ...req, priority };
      const delayMs = req.delayMs ?? opt.defaultDelayMs;
      if (req.audioAt !== undefined && !(req.audioAt - delayMs >= now())) throw badRequest('LIVE_AUDIO_AT_PAST', '`audioAt` − delay is in the past: the timeline cannot start before now');

      // Emergency TTS is rendered first (urgent lane), so an unusable text fails the request.
      let mediaId = req.mediaId;
      if (req.kind === 'emergency' && !mediaId) {
        const t = await deps.media.tts(communeId, actor, { text: req.text!.trim(), ...(req.voice ? { voice: req.voice } : {}), urgent: true });
        mediaId = t.media.id;
      }

      const id = `live-${crypto.randomBytes(8).toString('hex')}`;
      const ts = now();
      const sender = createSessionSender({
        // A microphone or a sound card makes real time by itself and cannot be paused: 'live' mode.
        socket, clock: { now: () => now() }, mode: req.kind === 'voice' || req.kind === 'soundcard' ? 'live' : 'paced', agc: req.kind === 'voice' || req.kind === 'soundcard',
        ...(req.kind === 'voice' || req.kind === 'soundcard' ? { maxQueueMs: 300 } : {}),
        // A card delivers 20 ms blocks whose phase against the timeline is arbitrary, and a browser's
        // microphone chunks cross a WebSocket and a busy event loop: wait up to 40 ms for late input
        // rather than padding a frame with silence (a gap at every cluster); a backlog that a longer
        // stall leaves is won back in the pauses between words (session-sender latency recovery).
        ...(req.kind === 'soundcard' || req.kind === 'voice' ? { slackMs: 40 } : {}),
        stallTimeoutMs: req.kind === 'voice' ? 3_600_000 : opt.sourceStallTimeoutMs,
        log: log.child({ sessionId: id }),
      });
      const s: Session = {
        id, communeId, req: r, actor, delayMs, startedAt: ts, endedAt: null, endReason: null, nodes: new Map(), tokens: new Map(), announcements: new Map(),
        sender, source: null, senderStats: null, speakNow: false, speakNowWaiters: [], speakNowCount: { at: 0, shortfall: 0, gains: 0, other: true, timer: undefined }, speakNowGrace: { timer: undefined, over: false }, mic: null, micTimer: undefined, emitTimer: undefined,
      };
      // audioAt: stream position 0 is captured at audioAt − D, so it sounds at audioAt (jitter-buffer.ts (1)).
      sender.start(r.audioAt !== undefined ? r.audioAt - delayMs : ts);
      const desc = sender.description();
      const exercise = req.exercise ?? false;
      // One draw from the CSPRNG for every target's token (24 bytes each), not one call per target.
      const tokenBytes = crypto.randomBytes(24 * targets.size);
      let ti = 0;
      for (const [nodeId, node] of targets) {
        const reach: LiveNodeReach = { nodeId, zoneId: node.zoneId, online: deps.nodes.get(nodeId)?.status === 'online', state: 'announced', path: null, updatedAt: ts };
        s.nodes.set(nodeId, reach);
        if (exercise && node.actualOnly) {
          // CAP Test/Exercise never sounds on actual-only clusters: not even announced to them.
          reach.state = 'refused';
          reach.reason = 'exercise on an actual-only cluster';
          continue;
        }
        const token = tokenBytes.subarray(24 * ti, 24 * ++ti).toString('base64url');
        s.tokens.set(token, nodeId);
        tokens.set(token, { sessionId: id, nodeId });
        s.announcements.set(nodeId, {
          ...deps.envelope(), sessionId: id, state: 'active', kind: req.kind, priority, title: req.title,
          rtp: { host: config.RADIO_PUBLIC_HOST, port: rtpPort }, token, ssrc: desc.ssrc, payloadType: desc.payloadType, redPayloadType: desc.redPayloadType,
          timing: { baseTimestamp: desc.timing.baseTimestamp, baseControllerMs: Math.floor(desc.timing.baseControllerMs), codecDelaySamples: desc.timing.codecDelaySamples },
          delayMs, ...(req.forcedVolume !== undefined ? { forcedVolume: req.forcedVolume } : {}), chime: !req.airing, startedAt: ts, exercise,
          ...(req.airing ? { airing: { airingId: req.airing.airingId, itemIndex: req.airing.itemIndex } } : {}),
        });
      }
      sessions.set(id, s);
      // PCM tap: what goes into the sender (mic and ffmpeg sources both call sender.write) is also
      // handed to the taps; a failing tap never disturbs the session.
      const tapInfo: LiveTapSession = { sessionId: id, communeId, kind: req.kind, priority, targets: [...s.nodes.keys()].filter((n) => s.nodes.get(n)!.state !== 'refused'), startedAt: ts };
      const senderWrite = sender.write.bind(sender);
      sender.write = (pcm) => {
        for (const t of pcmTaps) { try { t.pcm(tapInfo, pcm); } catch (e) { log.warn({ err: (e as Error).message }, 'live PCM tap failed'); } }
        return senderWrite(pcm);
      };
      db.transaction(() => {
        q.insertSession.run(id, communeId, req.kind, priority, req.title, actor, JSON.stringify({ ...r, ...(mediaId ? { mediaId } : {}) }), ts);
        for (const n of s.nodes.values()) writeReceipt(s, n);
        store.audit(communeId, ts, actor, req.kind === 'emergency' ? 'live.emergency' : 'live.start', id,
          { kind: req.kind, priority, title: req.title, targets: targets.size, ...(req.url ? { url: req.url } : {}), ...(mediaId ? { mediaId } : {}), ...(exercise ? { exercise } : {}),
            ...(req.airing ? { airing: req.airing, audioAt: req.audioAt } : {}) });
      })();
      db.transaction(() => { let first = true; for (const [nodeId, a] of s.announcements) { publishAnnouncement(communeId, nodeId, a, !first); first = false; } })();
      log.info({ sessionId: id, kind: req.kind, priority, targets: targets.size, rtpPort }, 'live session started');
      emitSoon(s);

      switch (req.kind) {
        case 'voice': {
          s.mic = { connected: false, frames: 0, samples: 0, droppedSamples: 0, firstAt: 0 };
          s.micTimer = setTimeout(() => { void end(s, 'mic_not_connected', 'system'); }, opt.micConnectTimeoutMs);
          s.micTimer.unref?.();
          break;
        }
        case 'relay':
          void runPacedSource(s, ffmpegInput(['-rw_timeout', String(opt.sourceStallTimeoutMs * 1000), '-i', req.url!], req.durationMs, 'live-relay'));
          break;
        case 'file':
          void runPacedSource(s, mediaSource(communeId, mediaId!, req.repeat, req.durationMs));
          break;
        case 'emergency':
          void runPacedSource(s, mediaSource(communeId, mediaId!, req.repeat, req.durationMs));
          break;
        case 'soundcard':
          // Until stopped or durationMs; a card that cannot open ends the session with ffmpeg's error.
          void runPacedSource(s, ffmpegInput(soundcardInput(config.RADIO_LIVE_INPUT!), req.durationMs, 'live-soundcard'), false);
          break;
      }
      // A paced source that stops delivering (a relay whose server hangs) ends the session cleanly.
      sender.on('stall', () => { if (req.kind !== 'voice' && s.source) void end(s, 'source_stalled', 'system'); });
      return info(s);
    },

    async stopSession(communeId: string, actor: string, sessionId: string, reason = 'stopped'): Promise<LiveSessionInfo> {
      const s = findSession(communeId, sessionId);
      if (s.endedAt === null) await end(s, reason, actor);
      return info(s);
    },

    get(communeId: string, sessionId: string): LiveSessionView {
      return info(findSession(communeId, sessionId));
    },

    /** Active sessions and recent ones (memory, then the database). */
    list(communeId: string, limit = 50) {
      const active = [...sessions.values()].filter((s) => s.communeId === communeId).map(info);
      const mem = recent.filter((s) => s.communeId === communeId).map(info);
      const seen = new Set([...active, ...mem].map((x) => x.sessionId));
      const older = q.listSessions.all(communeId, limit).filter((r) => !seen.has(r.id)).map((r) => ({
        sessionId: r.id, communeId: r.commune_id, kind: r.kind, priority: r.priority, title: r.title, actor: r.actor,
        startedAt: r.started_at, endedAt: r.ended_at, endReason: r.end_reason, state: r.ended_at === null ? 'active' : 'ended',
      }));
      return { active, recent: [...mem, ...older].slice(0, limit) };
    },

    /** Stored receipts of a session (one per targeted node). */
    receipts(communeId: string, sessionId: string) {
      findSession(communeId, sessionId);
      return q.receipts.all(sessionId).map((r) => ({
        nodeId: r.node_id, zoneId: r.zone_id, state: r.state, reason: r.reason, played: r.played === 1, firstPlayingAt: r.first_playing_at,
        updatedAt: r.updated_at, stats: r.stats ? (JSON.parse(r.stats) as unknown) : null,
      }));
    },

    onLiveStatus(nodeId: string, st: LiveStatus) {
      const s = sessions.get(st.sessionId) ?? recent.find((x) => x.id === st.sessionId);
      const n = s?.nodes.get(nodeId);
      if (!s || !n) return;
      // A late `joining` must not move a node back from playing; terminal states are final.
      if (st.state === 'joining' && n.state === 'ready' && n.readyFromHello && s.endedAt === null) {
        // Its hello reached us, but it still hears nothing back after a while (see edge-agent live.ts).
        n.state = 'joining';
        n.updatedAt = now();
        n.reason = ONE_WAY_REASON;
        queueSpeakNow(s, 'other');
        emitSoon(s);
        return;
      }
      if (TERMINAL.has(n.state) || STATE_ORDER[st.state] < STATE_ORDER[n.state]) {
        if (st.stats) n.stats = st.stats;
        return;
      }
      n.readyFromHello = false;
      const wasReady = n.state === 'ready' || n.state === 'playing';
      // updatedAt: when the state last CHANGED (the agent's own `ready` confirms the one its hello set).
      if (n.state !== st.state) n.updatedAt = now();
      n.state = st.state;
      if (st.reason !== undefined) n.reason = st.reason; else if (st.state === 'ready' || st.state === 'playing') delete n.reason;
      if (st.stats) n.stats = st.stats;
      if (st.state === 'playing' && n.firstPlayingAt === undefined) n.firstPlayingAt = n.updatedAt;
      if (s.endedAt === null) {
        const isReady = n.state === 'ready' || n.state === 'playing';
        if (isReady !== wasReady) queueSpeakNow(s, isReady ? 'gain' : 'other');
        emitSoon(s);
      } else {
        writeReceipt(s, n);
      }
    },

    // ------------------------------------------------------------ microphone (voice sessions)

    /**
     * Attach a console microphone to a voice session. Frames are 48 kHz mono PCM, s16le or f32le.
     * Returns the handlers the WebSocket route calls, or an error code/reason to close with.
     */
    attachMic(communeId: string, sessionId: string, format: MicFormat, close: (code: number, reason: string) => void):
      { ok: true; onFrame(buf: Buffer): void; onEnd(): void; onClose(): void } | { ok: false; code: number; reason: string } {
      const s = sessions.get(sessionId);
      if (!s || s.communeId !== communeId) return { ok: false, code: 4404, reason: 'no such active session' };
      if (s.req.kind !== 'voice' || !s.mic) return { ok: false, code: 4400, reason: 'not a voice session' };
      if (s.mic.connected) return { ok: false, code: 4409, reason: 'a microphone is already connected' };
      const mic = s.mic;
      mic.connected = true;
      mic.close = close;
      mic.firstAt = 0;
      mic.samples = 0;
      const armStall = () => {
        clearTimeout(s.micTimer);
        s.micTimer = setTimeout(() => {
          if (s.endedAt !== null) return;
          log.warn({ sessionId }, 'microphone stalled: ending the session');
          mic.close?.(4408, 'microphone stalled');
          void end(s, 'mic_stalled', 'system');
        }, opt.micStallTimeoutMs);
        s.micTimer.unref?.();
      };
      armStall();
      const budgetBurst = (opt.micBurstMs / 1000) * LIVE_SAMPLE_RATE;
      return {
        ok: true,
        onFrame(buf) {
          if (s.endedAt !== null || !s.sender) return;
          armStall();
          const pcm = decodePcm(buf, format);
          const t = now();
          if (mic.firstAt === 0) mic.firstAt = t;
          mic.frames++;
          // Bounded: a console cannot push audio faster than real time (+ a burst); the excess is dropped.
          const allowed = ((t - mic.firstAt) / 1000) * LIVE_SAMPLE_RATE + budgetBurst;
          if (mic.samples + pcm.length > allowed) {
            mic.droppedSamples += pcm.length;
            if (mic.droppedSamples > (opt.micFloodCloseMs / 1000) * LIVE_SAMPLE_RATE) {
              mic.close?.(4429, 'microphone audio arrives faster than real time');
              mic.connected = false;
            }
            return;
          }
          mic.samples += pcm.length;
          s.sender.write(pcm);
        },
        onEnd() { void end(s, 'mic_ended', 'system'); },
        // A closed microphone may reconnect within the stall timeout; after that the session ends.
        onClose() { mic.connected = false; mic.close = undefined; },
      };
    },

    stats: () => ({ rtpPort, active: sessions.size, ...counters }),

    /** Receive the 48 kHz mono float PCM each session's sender gets, and the sessions' ends. Returns an unsubscribe. */
    tapPcm(tap: LivePcmTap): () => void {
      pcmTaps.add(tap);
      return () => { pcmTaps.delete(tap); };
    },
  };
  return svc;
}
export type Live = ReturnType<typeof createLive>;

/** A live session as a PCM tap sees it. */
export interface LiveTapSession {
  sessionId: string;
  communeId: string;
  kind: LiveStartRequest['kind'];
  priority: LiveStartRequest['priority'];
  /** Targeted node ids (refused ones excluded). */
  targets: readonly string[];
  startedAt: number;
}

/** A listener on the PCM that goes into live senders (zone streams). Called synchronously: keep it cheap. */
export interface LivePcmTap {
  pcm(session: LiveTapSession, pcm: Float32Array): void;
  ended(sessionId: string): void;
}
