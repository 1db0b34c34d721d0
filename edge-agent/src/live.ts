/**
 * The agent's side of a live session (issue 5): act on the retained LiveAnnouncement for this node.
 *
 * active → (exercise on an actual-only cluster: refused) → receiver endpoint on its own UDP socket,
 * hello with the node's token to the controller's RTP socket (symmetric RTP: the controller sends
 * where our hello came from) → presentation-time jitter buffer on the agent's clock estimate (every
 * frame sounds at capture + D in controller time, audio-pipeline/src/live/jitter-buffer.ts) → a player
 * program claimed with {priority, origin: 'live'}: it preempts lower priorities at once (the playout
 * engine reports the interrupted airing and resumes it per its policy when we release the speakers).
 * The amplifier is switched on at join; when it was cold, an attention chime sounds as it comes up.
 * An emergency's forced volume overrides the technician's mute/volume while the session plays.
 *
 * LiveStatus goes up at each step: joining → ready (the path works both ways: the controller's SR that
 * answers our hello, or a first RTP packet; the sender leaves silent lead-in frames out, so the SR is
 * usually first. Not reported over MQTT: our hello already told the controller, which counts a target
 * ready when its hello opens the path; a `joining` report after 1 s without an answer tells it the way back is broken, and `ready` follows
 * if the answer comes after all)
 * → playing (first frame decoded onto the timeline: sent from the jitter buffer's hook)
 * → ended | failed | refused, with reception figures.
 *
 * Time to join matters most for an emergency. The agent instantiates one Opus decoder when it starts
 * and keeps it between sessions: a session's decoder is reset and kept for the next one when the session
 * closes, instead of a new wasm instance per join (instantiation costs CPU and, through V8's accounting
 * of wasm memory, full garbage collections: audio-pipeline/src/live/opus.ts). The receive socket is
 * bound at start and kept too (session-receiver.ts LiveReceiveSocket): a join only attaches to it and
 * says hello. A second session open at the same time (a relay feed beside a claimed session)
 * instantiates its own decoder and binds its own socket.
 * `ended` (announcement), an RTCP BYE, or silence from the controller beyond `noAudioTimeoutMs` ends
 * the buffer; the program finishes once what is buffered has played, and the speakers are released.
 *
 * Scheduled relays (announcement with `airing`): the same join (endpoint, hello, jitter buffer, statuses)
 * but no player claim, volume or amplifier: the session becomes the FEED of that airing item
 * (`relayFeed(airingId, itemIndex)`), which the airing program reads at the item's slot
 * (audio-pipeline/src/airing-program.ts). Several feeds may be open beside one claimed session. The program closes the
 * feed when the item ends or the airing is cut; the session's end, a BYE or no audio close it too.
 */
import { pino, type Logger } from 'pino';
import {
  createJitterBuffer, createLiveReceiveSocket, createLiveReceiverEndpoint, createOpusDecoder, type LiveReceiveSocket, type FrameDecoder, type JitterBuffer, type LiveReceiverEndpoint,
} from '../../audio-pipeline/src/live/index.js';
import { decodePayload, PROTOCOL_VERSION, type LiveAnnouncement, type LiveStatus } from '../../schemas/src/index.js';
import type { Clock, Timers } from './clock.js';
import type { Hardware } from './hardware.js';
import type { RelayFeed } from '../../audio-pipeline/src/airing-program.js';
import type { Player, Program } from './player.js';
import type { ClockSource } from './time-sync.js';

export interface LiveVolume {
  /** Forced volume (emergency), overrides technician mute/volume. */
  forcedVolume?: number;
  emergency: boolean;
}

export interface AgentLiveOptions {
  nodeId: string;
  hw: Hardware;
  player: Player;
  clock: Clock;
  timers: Timers;
  clockSource: ClockSource;
  /** Publish a LiveStatus (the agent adds the header). */
  publishStatus(s: Omit<LiveStatus, 'v' | 'ts'>): void;
  /** Volume override while a session holds the speakers; undefined when it ends. */
  setLiveVolume(v: LiveVolume | undefined): void;
  /** The speakers are free again: amplifier off if nothing else is due (playout decides). */
  releaseAmp(): void;
  /** Cluster marked actual-only (CAP Test/Exercise must not sound here). */
  actualOnly?: () => boolean;
  /** Hello/keepalive period; default 1000 ms. */
  helloIntervalMs?: number;
  /** No RTP for this long after the first packet ends the session as failed; default 5000 ms. */
  noAudioTimeoutMs?: number;
  bindAddress?: string;
  log?: Logger;
}

export interface AgentLiveStats {
  sessionId: string;
  state: LiveStatus['state'];
  packets: number;
  lost: number;
  late: number;
  concealed: number;
  recoveredByRed: number;
  jitterMs: number;
}

interface Active {
  a: LiveAnnouncement;
  state: LiveStatus['state'];
  endpoint: LiveReceiverEndpoint;
  jb: JitterBuffer;
  program: Program;
  poll: NodeJS.Timeout | undefined;
  lastPacketLocal: number;
  ending: boolean;
  endReason: string | undefined;
  forceTimer: NodeJS.Timeout | undefined;
  joiningTimer?: NodeJS.Timeout;
  joiningReported?: boolean;
  finished: boolean;
}

const CHIME_MS = 700;
/** See join(): how long a join may go unanswered before `joining` is reported. */
const JOINING_REPORT_MS = 1000;

/** A scheduled relay session feeding one airing item. */
interface Feed {
  a: LiveAnnouncement;
  key: string;
  state: LiveStatus['state'];
  endpoint: LiveReceiverEndpoint;
  jb: JitterBuffer;
  poll: NodeJS.Timeout | undefined;
  lastPacketLocal: number;
  finished: boolean;
  endTimer: NodeJS.Timeout | undefined;
  api: RelayFeed;
}

const feedKey = (airingId: string, itemIndex: number) => `${airingId}#${itemIndex}`;

/** Two-tone attention chime (ding-dong, 660/523 Hz), −12 dBFS, 10 ms fades. */
function chimeSample(i: number, rate: number): number {
  const t = i / rate;
  const half = CHIME_MS / 2000;
  const f = t < half ? 660 : 523;
  const k = t < half ? t : t - half;
  const env = Math.min(1, k / 0.01, (half - k) / 0.01) * Math.exp(-3 * k);
  return 0.25 * Math.max(0, env) * Math.sin(2 * Math.PI * f * t);
}

export function createAgentLive(o: AgentLiveOptions) {
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'live' });
  const noAudioMs = o.noAudioTimeoutMs ?? 5000;
  let cur: Active | undefined;
  /** A session whose join is under way (decoder instantiation is async): its retained repeat is ignored. */
  let joining: string | undefined;
  let endedWhileJoining: string | undefined;
  let last: AgentLiveStats | undefined;
  let running = true;
  /** Scheduled relay feeds by airing item, and the sessions whose feed is being set up. */
  const feeds = new Map<string, Feed>();
  const feedJoining = new Set<string>();
  const feedEndedWhileJoining = new Set<string>();
  /** Sessions whose feed closed (item over, airing cut): their retained announcement, seen again, is ignored. */
  const feedsDone = new Set<string>();
  /** The kept decoder (see the header): instantiated at start, or given back by the last session. */
  let spare: Promise<FrameDecoder> | undefined;

  /**
   * The standing receive socket of claimed sessions (relay feeds, which may overlap one, bind their
   * own): bound when the agent starts, kept between sessions, made again if it failed or closed.
   */
  let rxSocket: LiveReceiveSocket | undefined;
  function receiveSocket(): LiveReceiveSocket {
    if (!rxSocket || rxSocket.closed()) {
      const r = createLiveReceiveSocket({ ...(o.bindAddress ? { bindAddress: o.bindAddress } : {}), log });
      rxSocket = r;
      r.bound.catch((e: Error) => { log.warn({ err: e.message }, 'live receive socket did not bind'); if (rxSocket === r) rxSocket = undefined; });
    }
    return rxSocket;
  }

  function makeSpare() {
    if (!running || spare) return;
    const p = createOpusDecoder();
    spare = p;
    p.catch((e: Error) => { if (spare === p) spare = undefined; log.warn({ err: e.message }, 'Opus decoder failed to instantiate'); });
  }
  /**
   * The kept decoder (instantiated already, or its instantiation under way), else a new one; lent so
   * that the jitter buffer's close() gives it back, reset, for the next session.
   */
  async function takeDecoder(): Promise<FrameDecoder> {
    const p = spare ?? createOpusDecoder();
    spare = undefined;
    const d = await p;
    let given = false;
    return {
      samplesOf: (payload) => d.samplesOf(payload),
      decode: (payload) => d.decode(payload),
      conceal: (n) => d.conceal(n),
      reset: () => d.reset(),
      close() {
        if (given) return;
        given = true;
        if (running && !spare) {
          try { d.reset(); spare = Promise.resolve(d); return; } catch (e) { log.warn({ err: (e as Error).message }, 'Opus decoder reset failed: a new one will be made'); }
        }
        d.close();
      },
    };
  }
  /** When a session ends, an active status poll is only needed for the no-audio watchdog: 4 per second. */
  const WATCHDOG_MS = 250;
  const deferred = (f: () => void) => queueMicrotask(() => { try { f(); } catch (e) { log.error({ err: (e as Error).message }, 'live status hook failed'); } });

  /** Reception figures of one session's transport (claimed session or relay feed alike). */
  function statsOf(x: { jb: JitterBuffer; endpoint: LiveReceiverEndpoint }): NonNullable<LiveStatus['stats']> {
    const j = x.jb.stats();
    const r = x.endpoint.stats();
    return {
      packets: j.packets, lost: j.lostFrames, late: j.late, concealed: j.concealedFrames, recoveredByRed: j.recoveredByRed,
      jitterMs: Math.max(0, r.reception.jitterMs || 0),
    };
  }

  function status(x: Active, state: LiveStatus['state'], reason?: string) {
    x.state = state;
    const stats = state === 'joining' ? undefined : statsOf(x);
    o.publishStatus({ sessionId: x.a.sessionId, state, ...(reason ? { reason: reason.slice(0, 200) } : {}), ...(stats ? { stats } : {}) });
    last = { sessionId: x.a.sessionId, state, ...(stats ?? { packets: 0, lost: 0, late: 0, concealed: 0, recoveredByRed: 0, jitterMs: 0 }) };
    log.info({ sessionId: x.a.sessionId, state, reason }, 'live session state');
  }

  /**
   * The controller answered: ready. Reported only if `joining` was (the controller counted us ready from
   * our hello and then heard that we hear nothing back; see the header).
   */
  function heardBack(x: Active) {
    if (x.joiningReported) status(x, 'ready');
    else x.state = 'ready';
  }

  /** Terminal: close the transport, publish, give the speakers and the volume back. */
  function finish(x: Active, state: 'ended' | 'failed', reason?: string) {
    if (x.finished) return;
    x.finished = true;
    o.timers.clearInterval(x.poll);
    o.timers.clearTimeout(x.forceTimer);
    o.timers.clearTimeout(x.joiningTimer);
    status(x, state, reason ?? x.endReason);
    void x.endpoint.stop();
    x.jb.close();
    if (cur === x) cur = undefined;
    if (o.player.playing()?.program.id === x.program.id) o.player.stop(x.program.id);
    o.setLiveVolume(undefined);
    o.releaseAmp();
  }

  /** No more audio will come: play what is buffered, then the program ends (player → finish). */
  function endStream(x: Active, reason: string) {
    if (x.ending || x.finished) return;
    x.ending = true;
    x.endReason = reason;
    x.jb.end();
    // If the program is not on the speakers (or the buffer never drains), do not wait for it.
    const onSpeakers = o.player.playing()?.program.id === x.program.id;
    if (!onSpeakers) { finish(x, 'ended', reason); return; }
    x.forceTimer = o.timers.setTimeout(() => finish(x, 'ended', reason), x.a.delayMs + 2000);
  }

  async function join(a: LiveAnnouncement) {
    let jb: JitterBuffer;
    // Before anything else can fail: the reserve decoder (instantiated ahead, see the header).
    const decoder = await takeDecoder();
    if (!running || endedWhileJoining === a.sessionId) { decoder.close(); return; }
    try {
      jb = createJitterBuffer({
        decoder,
        timing: a.timing, delayMs: a.delayMs, clock: o.clockSource, payloadType: a.payloadType, redPayloadType: a.redPayloadType,
        // The state at once (stats() shows it in the same tick); the report outside the audio path.
        onPlaying: () => {
          if (x.finished || (x.state !== 'joining' && x.state !== 'ready')) return;
          x.state = 'playing';
          deferred(() => { if (!x.finished && x.state === 'playing') status(x, 'playing'); });
        },
        log,
      });
    } catch (e) {
      decoder.close();
      o.publishStatus({ sessionId: a.sessionId, state: 'failed', reason: `bad session timing: ${(e as Error).message}`.slice(0, 200) });
      return;
    }
    const rate = o.hw.sink.sampleRate;
    const cold = o.hw.status().amplifier.state !== 'on';
    let chimeAt: number | undefined; // hardware-clock time at which the chime starts (amp on)
    let chimePos = -1;
    const program: Program = {
      id: `live-${a.sessionId}`,
      kind: 'live',
      read(out, pt) {
        const n = jb.read(out, pt);
        if (n < out.length) out.fill(0, Math.max(0, n));
        if (chimeAt !== undefined && chimePos < Math.round((CHIME_MS / 1000) * rate)) {
          if (chimePos < 0) chimePos = Math.max(0, Math.round(((pt - chimeAt) / 1000) * rate));
          const total = Math.round((CHIME_MS / 1000) * rate);
          for (let i = 0; i < out.length && chimePos < total; i++, chimePos++) out[i] = Math.max(-1, Math.min(1, out[i]! + chimeSample(chimePos, rate)));
        }
        // The player treats a short read as the end; we always fill the block until the buffer ended.
        return out.length;
      },
      ended: () => x.ending && jb.stats().state === 'ended',
    };
    const endpoint = createLiveReceiverEndpoint({
      controller: { host: a.rtp.host, port: a.rtp.port }, token: a.token, ssrc: a.ssrc,
      payloadTypes: [a.payloadType, ...(a.redPayloadType !== null ? [a.redPayloadType] : [])],
      clock: o.clock, helloIntervalMs: o.helloIntervalMs ?? 1000, shared: receiveSocket(),
      onPacket: (p, at) => {
        x.lastPacketLocal = at;
        if (jb.push(p, at) === 'accepted' && x.state === 'joining' && !x.finished) heardBack(x);
      },
      onBye: () => endStream(x, 'bye'),
      onRtcp: (ps) => { if (x.state === 'joining' && !x.finished && ps.some((p) => p.type === 'sr' && p.ssrc === a.ssrc)) heardBack(x); },
      log,
    });
    const x: Active = { a, state: 'joining', endpoint, jb, program, poll: undefined, lastPacketLocal: NaN, ending: false, endReason: undefined, forceTimer: undefined, finished: false };
    cur = x;
    // `joining` is only reported when the path does not answer at once (a blocked UDP path shows as
    // "joining, no audio yet" rather than "no answer yet"): normally `ready` follows within a round
    // trip, and a thousand clusters joining together need not send a thousand extra reports.
    // Timers run before the poll phase of the event loop: after a stall the controller's SR may already
    // be waiting in the socket. setImmediate runs after that poll, so the datagrams are read first and a
    // busy agent does not report a one-way path that is not one.
    x.joiningTimer = o.timers.setTimeout(() => setImmediate(() => {
      if (x.state === 'joining' && !x.finished) { x.joiningReported = true; status(x, 'joining'); }
    }), JOINING_REPORT_MS);
    // The speakers first: preempt lower priorities at once (the player arbitrates by schemas' preempts()).
    const claimed = o.player.play(program, { priority: a.priority, origin: 'live' }, (why, by) => {
      if (why === 'finished') finish(x, 'ended', x.endReason ?? 'source ended');
      else if (why === 'preempted') finish(x, 'ended', `preempted by ${by?.id ?? 'another programme'}`);
      else finish(x, 'ended', x.endReason ?? 'stopped');
    });
    if (!claimed) {
      x.finished = true;
      cur = undefined;
      jb.close();
      const incumbent = o.player.playing();
      status(x, 'refused', `speakers busy: ${incumbent?.claim.priority ?? 'higher'}-priority ${incumbent?.program.kind ?? 'programme'} ${incumbent?.program.id ?? ''}`.trim());
      return;
    }
    o.setLiveVolume({ ...(a.forcedVolume !== undefined ? { forcedVolume: a.forcedVolume } : {}), emergency: a.priority === 'emergency' });
    o.hw.setAmplifier(true).then(() => {
      if (cold && a.chime && !x.finished) chimeAt = o.clock.now();
    }).catch((e: Error) => log.warn({ err: e.message }, 'amplifier did not start for a live session'));
    try {
      await endpoint.start();
    } catch (e) {
      finish(x, 'failed', `receive socket: ${(e as Error).message}`);
      return;
    }
    if (x.finished) { void endpoint.stop(); return; }
    // States move on events (first packet, first decoded frame); the poll is only the no-audio watchdog.
    x.poll = o.timers.setInterval(() => {
      if (x.finished) return;
      if (!x.ending && !Number.isNaN(x.lastPacketLocal) && o.clock.now() - x.lastPacketLocal > noAudioMs) {
        log.warn({ sessionId: a.sessionId }, 'no audio from the controller: leaving the session');
        x.endReason = 'no audio from the controller';
        x.ending = true;
        jb.end();
        finish(x, 'failed', 'no audio from the controller');
      }
    }, WATCHDOG_MS);
  }

  // ---------------------------------------------------------------- scheduled relay feeds

  function feedStatus(f: Feed, state: LiveStatus['state'], reason?: string) {
    f.state = state;
    const stats = state === 'joining' ? undefined : statsOf(f);
    o.publishStatus({ sessionId: f.a.sessionId, state, ...(reason ? { reason: reason.slice(0, 200) } : {}), ...(stats ? { stats } : {}) });
    log.info({ sessionId: f.a.sessionId, airing: f.a.airing, state, reason }, 'relay feed state');
  }

  function finishFeed(f: Feed, state: 'ended' | 'failed', reason: string) {
    if (f.finished) return;
    f.finished = true;
    o.timers.clearInterval(f.poll);
    o.timers.clearTimeout(f.endTimer);
    feedStatus(f, state, reason);
    void f.endpoint.stop();
    f.jb.close();
    if (feeds.get(f.key) === f) feeds.delete(f.key);
    feedsDone.add(f.a.sessionId);
    if (feedsDone.size > 64) feedsDone.delete(feedsDone.values().next().value!);
  }

  async function joinFeed(a: LiveAnnouncement & { airing: { airingId: string; itemIndex: number } }) {
    const decoder = await takeDecoder();
    if (!running || feedEndedWhileJoining.has(a.sessionId)) { decoder.close(); feedEndedWhileJoining.delete(a.sessionId); return; }
    let jb: JitterBuffer;
    try {
      jb = createJitterBuffer({
        decoder, timing: a.timing, delayMs: a.delayMs, clock: o.clockSource, payloadType: a.payloadType, redPayloadType: a.redPayloadType,
        onPlaying: () => deferred(() => { if (!f.finished && (f.state === 'joining' || f.state === 'ready')) feedStatus(f, 'playing'); }),
        log,
      });
    } catch (e) {
      decoder.close();
      o.publishStatus({ sessionId: a.sessionId, state: 'failed', reason: `bad session timing: ${(e as Error).message}`.slice(0, 200) });
      return;
    }
    const endpoint = createLiveReceiverEndpoint({
      controller: { host: a.rtp.host, port: a.rtp.port }, token: a.token, ssrc: a.ssrc,
      payloadTypes: [a.payloadType, ...(a.redPayloadType !== null ? [a.redPayloadType] : [])],
      clock: o.clock, helloIntervalMs: o.helloIntervalMs ?? 1000, ...(o.bindAddress ? { bindAddress: o.bindAddress } : {}),
      onPacket: (p, at) => {
        f.lastPacketLocal = at;
        if (jb.push(p, at) === 'accepted' && f.state === 'joining' && !f.finished) feedStatus(f, 'ready');
      },
      onBye: () => endFeed(f, 'bye'),
      onRtcp: (ps) => { if (f.state === 'joining' && !f.finished && ps.some((p) => p.type === 'sr' && p.ssrc === a.ssrc)) feedStatus(f, 'ready'); },
      log,
    });
    const key = feedKey(a.airing.airingId, a.airing.itemIndex);
    const f: Feed = {
      a, key, state: 'joining', endpoint, jb, poll: undefined, lastPacketLocal: NaN, finished: false, endTimer: undefined,
      api: {
        read: (out, pt) => {
          if (!f.finished) return jb.read(out, pt);
          out.fill(0);
          return 0;
        },
        received: () => { const j = jb.stats(); return j.framesDecoded + j.recoveredByRed > 0; },
        closed: () => f.finished,
        close: (reason) => finishFeed(f, 'ended', reason),
      },
    };
    // A newer session for the same item (the controller restarted and started it again) replaces the old.
    const old = feeds.get(key);
    if (old) finishFeed(old, 'ended', `replaced by ${a.sessionId}`);
    feeds.set(key, f);
    feedStatus(f, 'joining');
    try {
      await endpoint.start();
    } catch (e) {
      finishFeed(f, 'failed', `receive socket: ${(e as Error).message}`);
      return;
    }
    if (f.finished) { void endpoint.stop(); return; }
    f.poll = o.timers.setInterval(() => {
      if (f.finished) return;
      if (f.endTimer === undefined && !Number.isNaN(f.lastPacketLocal) && o.clock.now() - f.lastPacketLocal > noAudioMs) {
        log.warn({ sessionId: a.sessionId }, 'no relay audio from the controller: leaving the session');
        finishFeed(f, 'failed', 'no audio from the controller');
      }
    }, WATCHDOG_MS);
  }

  /** No more packets: what is buffered may still play (the item reads it by time); then the feed closes. */
  function endFeed(f: Feed, reason: string) {
    if (f.finished || f.endTimer !== undefined) return;
    f.jb.end();
    f.endTimer = o.timers.setTimeout(() => finishFeed(f, 'ended', reason), f.a.delayMs + 2000);
  }

  function onFeedAnnouncement(a: LiveAnnouncement & { airing: { airingId: string; itemIndex: number } }) {
    const f = [...feeds.values()].find((x) => x.a.sessionId === a.sessionId);
    if (a.state === 'ended') {
      if (f) endFeed(f, 'session ended');
      else if (feedJoining.has(a.sessionId)) feedEndedWhileJoining.add(a.sessionId);
      return;
    }
    if (f || feedJoining.has(a.sessionId) || feedsDone.has(a.sessionId)) return;
    feedJoining.add(a.sessionId);
    void joinFeed(a).finally(() => feedJoining.delete(a.sessionId)).catch((e: Error) => {
      log.error({ err: e.message, sessionId: a.sessionId }, 'joining a relay feed failed');
      o.publishStatus({ sessionId: a.sessionId, state: 'failed', reason: e.message.slice(0, 200) });
    });
  }

  return {
    /** The live feed of a scheduled relay item, if its session is announced and joined (airing-program RelayFeeds). */
    relayFeed(airingId: string, itemIndex: number): RelayFeed | undefined {
      const f = feeds.get(feedKey(airingId, itemIndex));
      return f && !f.finished ? f.api : undefined;
    },
    /** A validated announcement for this node (retained: arrives again after reconnects). */
    onAnnouncement(a: LiveAnnouncement) {
      if (!running) return;
      if (a.airing) { onFeedAnnouncement({ ...a, airing: a.airing }); return; }
      if (a.state === 'ended') {
        if (cur && cur.a.sessionId === a.sessionId) endStream(cur, 'session ended');
        else if (joining === a.sessionId) endedWhileJoining = a.sessionId;
        return;
      }
      if ((cur && cur.a.sessionId === a.sessionId) || joining === a.sessionId) return;
      if (a.exercise && o.actualOnly?.()) {
        o.publishStatus({ sessionId: a.sessionId, state: 'refused', reason: 'exercise on an actual-only cluster' });
        return;
      }
      // A newer session replaces the one in place (the controller runs one per node at a time).
      if (cur) { const old = cur; old.endReason = `replaced by ${a.sessionId}`; finish(old, 'ended', old.endReason); }
      joining = a.sessionId;
      void join(a).finally(() => { if (joining === a.sessionId) joining = undefined; }).catch((e: Error) => {
        log.error({ err: e.message, sessionId: a.sessionId }, 'joining a live session failed');
        o.publishStatus({ sessionId: a.sessionId, state: 'failed', reason: e.message.slice(0, 200) });
      });
    },
    /** The session on this node now, or the last one. */
    stats(): AgentLiveStats | undefined {
      if (cur && !cur.finished) return { sessionId: cur.a.sessionId, state: cur.state, ...statsOf(cur) };
      return last;
    },
    active: () => (cur && !cur.finished ? cur.a.sessionId : undefined),
    /**
     * Playout diagnostics of the current session (for a technician or a bench): how early packets came
     * before their playout instant (arrivalMargin: negative = late), resyncs of the playout position,
     * lead-in frames (silence before the first audio), what is buffered.
     */
    diagnostics() {
      if (!cur || cur.finished) return undefined;
      const j = cur.jb.stats();
      return { sessionId: cur.a.sessionId, arrivalMargin: j.arrivalMargin, resyncs: j.resyncs, positionErrorMs: j.positionErrorMs, leadInFrames: j.leadInFrames, bufferedMs: j.bufferedMs, late: j.late };
    },
    start() { running = true; makeSpare(); receiveSocket(); },
    stop() {
      running = false;
      void rxSocket?.close();
      rxSocket = undefined;
      const d = spare;
      spare = undefined;
      void d?.then((x) => x.close(), () => {});
      if (cur) finish(cur, 'ended', 'agent stopping');
      for (const f of [...feeds.values()]) finishFeed(f, 'ended', 'agent stopping');
    },
  };
}
export type AgentLive = ReturnType<typeof createAgentLive>;

/** A valid announcement, only to exercise the validator (see warmLiveValidation). */
export const SAMPLE_ANNOUNCEMENT: LiveAnnouncement = {
  v: PROTOCOL_VERSION, msgId: 'warm-up-0000', issuedAt: 0, seq: 0,
  sessionId: 'live-0000000000000000', state: 'active', kind: 'emergency', priority: 'emergency', title: 'warm-up',
  rtp: { host: '127.0.0.1', port: 5004 }, token: 'warm-up-token-0000000000000000', ssrc: 1, payloadType: 111, redPayloadType: 112,
  timing: { baseTimestamp: 0, baseControllerMs: 0, codecDelaySamples: 312 }, delayMs: 200, chime: true, startedAt: 0, exercise: false,
};

let warmed = false;
/**
 * Validate a sample announcement a few hundred times, once per process, when the agent starts: zod
 * compiles a schema at its first parse and V8 optimises the code only after many runs, so otherwise the
 * first emergency after boot pays both on its critical path (measured in the emergency bench: the
 * announcement's validation was the largest part of a cold join).
 */
export function warmLiveValidation(rounds = 300): void {
  if (warmed) return;
  warmed = true;
  const body = JSON.stringify(SAMPLE_ANNOUNCEMENT);
  for (let i = 0; i < rounds; i++) decodePayload('live', body);
}
