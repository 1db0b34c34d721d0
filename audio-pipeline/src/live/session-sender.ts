/**
 * Controller side of a live session: PCM in (microphone, sound card, file or relay, 48 kHz mono float),
 * optional AGC + limiter, Opus encoded ONCE, RTP (optionally RED) paced on the controller clock, the
 * same bytes sent to every destination from one shared UDP socket (`RADIO_RTP_PORT`), RTCP SR
 * periodically and BYE at the end (RFC 3550 §6.4.1, §6.6).
 *
 * ## Timeline
 *
 * start() fixes `baseControllerMs` = controller time of stream position 0 (now, or a planned instant). Frame k covers positions
 * [k·960, (k+1)·960) and is labelled as captured at base + k·20 ms. It may leave as soon as its 960
 * samples are queued and its capture window has begun (now ≥ base + k·20), and must leave by
 * base + (k+1)·20 + slackMs; if the source has not delivered by then, the frame is completed
 * (`paddedFrames`) — the timeline never stops, because every receiver derives its playout instants from
 * it (jitter-buffer.ts (1)). What completes it is not digital silence but an expansion (time-scale.ts):
 * the last pitch period repeated with a fading gain (a held vowel or a steady tone goes on, noise fades
 * within 20 ms, a stall longer than 60 ms ends in silence), and real input is cross-faded back in when it
 * arrives. A 10–30 ms hiccup of the source (a browser tab, a loaded machine) is then not a hole. A source running ahead of real time is held back:
 * 'live' mode drops the oldest queued samples beyond `maxQueueMs` (bounded latency), 'paced' mode
 * (files, relays that can be paused) returns false from write() and emits 'drain' later.
 *
 * Latency recovery ('live' mode): a microphone that stalls and then delivers its backlog leaves that
 * backlog queued, so every later word would sound that much later for the rest of the session. While
 * more than one frame + slack is queued, the sender drops 5 ms blocks at the head of the queue whose
 * peak is below `quietDropLevel` or `quietDropRelative` × the recent loudness (pauses between words, over
 * silence or a steady background), never speech at its level; `catchUpSamples` counts them.
 *
 * Headroom ('live' mode): when a frame takes its samples, the newest queued sample carries a label
 * (its capture instant on the timeline) and came in at `lastInputAt`; the label minus that arrival is
 * the headroom h. Listeners hear the input D + h after it came in, and the input may come up to
 * h + slack late before a frame must be padded. The sender holds h near `accelerateKeepMs` (5 ms):
 * - input that resumes after the timeline ran dry (the microphone connecting, or back from a stall)
 *   is placed so that its newest sample is labelled now + keep, in the frame whose window holds that
 *   instant; the samples before it are the fading expansion or silence, and the frames before that leave
 *   at once (otherwise the input would be labelled EARLIER than it was spoken, and frames would leave at
 *   their slack limit, late at the agents);
 * - when h has stayed above keep + 2.5 ms for the last 500 ms even at its lowest, one pitch period of
 *   the frame about to leave is removed where the signal repeats itself (accelerate, time-scale.ts: at
 *   most every other frame, only where two neighbouring periods correlate ≥ 0.9), so a backlog is won
 *   back within a second or two in held sounds and steady backgrounds too, without cutting a syllable;
 *   `acceleratedSamples` counts them. Without this, h would sit anywhere its history left it (a few
 *   padded frames each add their length), and with it the latency.
 *
 * Lead-in DTX: until the source delivers its first samples (a file's ffmpeg still starting, the
 * targets still joining, a microphone not yet connected) every frame would be silence padding, sent to
 * every destination 50 times a second (at 1,000 clusters the largest cost of the controller while an
 * emergency waits for its targets). Those frames are left out (packetizer skip(): the timestamp moves
 * on, the sequence does not, so receivers count no loss). A receiver learns that its path works from the
 * SR that addDestination sends at once, and plays silence before the first frame it gets (jitter-buffer.ts
 * lead-in: not concealment, not loss). Sending them instead, as `sendLeadIn` does, would end that
 * lead-in at the first silent frame: every frame left out after it would then count as concealed.
 * After the first input every frame is sent, silent or not. NAT mappings are held by the receivers'
 * hellos (outbound from their side), not by our frames.
 *
 * The sender does not own the socket and knows nothing about nodes or tokens: the caller adds a
 * destination when it has checked a receiver's hello (symmetric RTP, see rtp.ts buildHello).
 */
import type dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { pino, type Logger } from 'pino';
import { agcProcess, createAgcState, type AgcOptions, type AgcState } from './agc.js';
import type { SessionTiming } from './jitter-buffer.js';
import type { OpusEncoderOptions } from './opus.js';
import { createPacketizer, type Packetizer } from './packetizer.js';
import { MAX_PERIOD, MIN_PERIOD, RESUME_CROSSFADE, expandInto, findPeriod, removePeriod, resumeFrom, startExpansion, type Expansion } from './time-scale.js';
import { DEFAULT_OPUS_PAYLOAD_TYPE, DEFAULT_RED_PAYLOAD_TYPE, OPUS_RTP_CLOCK_RATE, buildBye, buildSenderReport, compoundRtcp } from './rtp.js';

/**
 * A dgram `lookup` that answers IP literals at once (Node's default defers even those to the next tick,
 * and a fan-out of 1,000 sends then runs as 1,000 queued callbacks); host names go to dns.lookup. For
 * dgram.createSocket({ lookup }) on a socket that sends to addresses it received from.
 */
export function ipLiteralLookup(address: string, family: unknown, callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const f = net.isIP(address);
  if (f) { callback(null, address, f); return; }
  dns.lookup(address, { family: family === 6 ? 6 : family === 4 ? 4 : 0 }, (err, a, fam) => callback(err, a, fam));
}

export interface UdpDestination {
  address: string;
  port: number;
}

/** What receivers need to play the session (announced out of band, e.g. in the session announcement). */
export interface SessionDescription {
  ssrc: number;
  payloadType: number;
  redPayloadType: number | null;
  clockRate: number;
  frameSamples: number;
  timing: SessionTiming;
}

export interface SenderTimers {
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout;
  clearTimeout(t: NodeJS.Timeout | undefined): void;
}

export interface SessionSenderOptions {
  /** A bound UDP socket, shared by sessions; never closed by the sender. */
  socket: dgram.Socket;
  /** Controller clock (ms since epoch). */
  clock: { now(): number };
  timers?: SenderTimers;
  ssrc?: number;
  payloadType?: number;
  /** RED payload type; null sends plain Opus. Default 112. */
  redPayloadType?: number | null;
  encoder?: OpusEncoderOptions;
  /** AGC + limiter before encoding (microphone input); default off. */
  agc?: AgcOptions | boolean;
  /** 'live' (default): drop the oldest input beyond maxQueueMs. 'paced': back-pressure through write(). */
  mode?: 'live' | 'paced';
  /** How long past a frame's end its samples may still arrive before it is padded; default 10 ms. */
  slackMs?: number;
  /** Input queue bound: live default 100 ms (drop beyond), paced default 200 ms (write() → false). */
  maxQueueMs?: number;
  /** Live mode: a queued 5 ms block with a peak under this (linear, after AGC) may be dropped to win back latency; default 0.02 (−34 dBFS); 0 disables. */
  quietDropLevel?: number;
  /**
   * Live mode: a block this far under the recent loudness (the input's peak, decaying over ~2 s) is a
   * pause too, in a room whose background sits above `quietDropLevel` (a fan, a generator, a hum);
   * default 0.2 (−14 dB); 0 keeps only the absolute level.
   */
  quietDropRelative?: number;
  /** Complete a late frame with an expansion of the last pitch period rather than silence; default true. */
  expand?: boolean;
  /** Live mode: hold the headroom (align resumed input, remove pitch periods from a backlog that persists; see the header); default true. */
  accelerate?: boolean;
  /** Live mode: the headroom the sender holds (see the header); default 5 ms. */
  accelerateKeepMs?: number;
  /** RTCP SR period; 0 disables; default 5000 ms. */
  senderReportIntervalMs?: number;
  /** Send the silent frames before the first input (see Lead-in DTX); default false. */
  sendLeadIn?: boolean;
  /** No input for this long emits 'stall' once (until input resumes); default 3000 ms. */
  stallTimeoutMs?: number;
  initialSequence?: number;
  initialTimestamp?: number;
  log?: Logger;
}

export interface SessionSenderStats {
  running: boolean;
  framesSent: number;
  /** Datagrams handed to the socket (frames × destinations, plus RTCP). */
  datagramsSent: number;
  bytesSent: number;
  sendErrors: number;
  /** Frames completed with silence because the input was late or missing. */
  paddedFrames: number;
  paddedSamples: number;
  /** Input samples dropped because the queue exceeded maxQueueMs (live mode). */
  droppedSamples: number;
  /** Queued input dropped in quiet 5 ms blocks to win back latency after a stall (live mode). */
  catchUpSamples: number;
  /** Queued input removed a pitch period at a time to win back latency (live mode, accelerate). */
  acceleratedSamples: number;
  /** Samples of padded frames filled by an audible expansion of the last pitch period (not silence). */
  expandedSamples: number;
  /** Live mode: the lowest headroom (see the header) of the last 25 frames, ms; NaN before them. */
  headroomMs: number;
  /** Silent lead-in frames left out before the first input (Lead-in DTX). */
  leadInSkippedFrames: number;
  queuedMs: number;
  destinations: number;
  stalls: number;
  /**
   * The largest delay between a frame's capture instant (base + k·20 ms) and the moment it left, ms,
   * after the lead-in. A frame leaves at its capture instant when its input is there, by its slack limit
   * when not; more means the sender's event loop was late (every cluster then plays it that much closer
   * to its deadline, or too late).
   */
  sendDelayMaxMs: number;
  /** Frames that left more than LATE_SEND_MS after their capture instant. */
  lateFrames: number;
}

/** A frame leaving this long after its capture instant is counted in `lateFrames` (D is 80–200 ms). */
export const LATE_SEND_MS = 100;

export interface SessionSender {
  /**
   * Fix the timeline and start pacing. Idempotent. `baseControllerMs` (default now) may lie in the
   * future: announce the description, let receivers get ready, and the first frame leaves at that time.
   */
  start(baseControllerMs?: number): void;
  /** Queue input PCM (48 kHz mono float). Returns false when a paced sender wants the source paused. */
  write(pcm: Float32Array): boolean;
  description(): SessionDescription;
  addDestination(d: UdpDestination): boolean;
  removeDestination(d: UdpDestination): boolean;
  destinations(): UdpDestination[];
  /** Send an RTCP datagram (or any bytes) to one or all destinations. */
  sendControl(bytes: Uint8Array, to?: UdpDestination): void;
  /** Send the frame in progress (at most one, padded), then SR + BYE (and again a frame later); stop pacing. Idempotent. */
  stop(reason?: string): void;
  stats(): SessionSenderStats;
  on(event: 'drain' | 'stall', fn: () => void): this;
  off(event: 'drain' | 'stall', fn: () => void): this;
  once(event: 'drain' | 'stall', fn: () => void): this;
}

const keyOf = (d: UdpDestination): string => `${d.address}|${d.port}`;

const defaultTimers: SenderTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t),
};

export function createSessionSender(o: SessionSenderOptions): SessionSender {
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'live-sender' });
  const timers = o.timers ?? defaultTimers;
  const mode = o.mode ?? 'live';
  const pz: Packetizer = createPacketizer({
    payloadType: o.payloadType ?? DEFAULT_OPUS_PAYLOAD_TYPE,
    redPayloadType: o.redPayloadType === undefined ? DEFAULT_RED_PAYLOAD_TYPE : o.redPayloadType,
    ...(o.ssrc !== undefined ? { ssrc: o.ssrc } : {}),
    ...(o.encoder ? { encoder: o.encoder } : {}),
    ...(o.initialSequence !== undefined ? { initialSequence: o.initialSequence } : {}),
    ...(o.initialTimestamp !== undefined ? { initialTimestamp: o.initialTimestamp } : {}),
  });
  const N = pz.frameSamples;
  const rate = OPUS_RTP_CLOCK_RATE;
  const frameMs = (N * 1000) / rate;
  const slackMs = o.slackMs ?? 10;
  const maxQueue = Math.round(((o.maxQueueMs ?? (mode === 'live' ? 100 : 200)) * rate) / 1000);
  const srInterval = o.senderReportIntervalMs ?? 5000;
  const quietLevel = mode === 'live' ? (o.quietDropLevel ?? 0.02) : 0;
  const quietRelative = mode === 'live' ? (o.quietDropRelative ?? 0.2) : 0;
  /** The input's recent loudness: its peak, decaying with a 2 s time constant. */
  let recentPeak = 0;
  // Keep a frame + slack of input queued: frames then leave at their capture instant with their samples
  // there; a smaller queue would starve the sender into sending every frame at its slack limit, late
  // for the agents' playout margin.
  const catchUpAbove = N + Math.round((slackMs * rate) / 1000);
  const quietBlock = Math.round(0.005 * rate);
  const stallMs = o.stallTimeoutMs ?? 3000;
  /** No input yet: silent frames are left out (Lead-in DTX). */
  let leadIn = o.sendLeadIn !== true;
  const agc: AgcState | null = o.agc ? createAgcState(o.agc === true ? {} : o.agc) : null;
  const expandOn = o.expand !== false;
  const accelOn = mode === 'live' && o.accelerate !== false;
  const accelKeep = Math.round(((o.accelerateKeepMs ?? 5) * rate) / 1000);
  /** The samples that went out last (end = latest): where an expansion finds its period. */
  const hist = new Float32Array(2 * MAX_PERIOD);
  const ctx = new Float32Array(hist.length);
  let expansion: Expansion | null = null;
  /** The headroom (see the header), in samples, of each of the last ACCEL_WINDOW frames (0 for a padded frame). */
  const ACCEL_WINDOW = 25;
  const headroom = new Float64Array(ACCEL_WINDOW);
  let headroomN = 0;
  let headroomI = 0;
  let framesSinceAccel = 0;

  const ee = new EventEmitter();
  const dests = new Map<string, UdpDestination>();
  let fifo = new Float32Array(Math.max(4 * N, maxQueue + 2 * N));
  let fifoLen = 0;
  let base = NaN;
  let k = 0;
  let running = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let nextSrAt = Infinity;
  let lastInputAt = NaN;
  let stalled = false;
  let wantDrain = false;
  /** Live mode: the last frame left with no input at all (the source is not delivering). */
  let starved = false;
  let octets = 0;
  const frame = new Float32Array(N);
  const st = { framesSent: 0, datagramsSent: 0, bytesSent: 0, sendErrors: 0, paddedFrames: 0, paddedSamples: 0, droppedSamples: 0, catchUpSamples: 0, acceleratedSamples: 0, expandedSamples: 0, leadInSkippedFrames: 0, stalls: 0, sendDelayMaxMs: 0, lateFrames: 0 };
  /** How late a frame captured at `capture` leaves at `now` (not for lead-in frames, which are not sent). */
  function noteDelay(capture: number, now: number): void {
    if (leadIn) return;
    const d = now - capture;
    if (d > st.sendDelayMaxMs) st.sendDelayMaxMs = d;
    if (d > LATE_SEND_MS) st.lateFrames++;
  }

  // No completion callback: with one, every datagram (1,000 destinations × 50 frames a second) comes
  // back into JavaScript once more when the kernel has taken it. An asynchronous send error is emitted
  // as 'error' on the socket, whose owner listens; sendErrors counts what throws here.
  function send(bytes: Uint8Array, d: UdpDestination): void {
    st.datagramsSent++;
    st.bytesSent += bytes.length;
    try {
      o.socket.send(bytes, d.port, d.address);
    } catch (err) {
      // A closed socket throws synchronously.
      st.sendErrors++;
      log.debug({ err }, 'live send threw');
    }
  }

  function sendFrame(): void {
    if (leadIn) {
      pz.skip();
      st.leadInSkippedFrames++;
      k++;
      return;
    }
    // Remember what goes out, for an expansion.
    hist.copyWithin(0, N, hist.length);
    hist.set(frame, hist.length - N);
    const p = pz.packetize(frame);
    st.framesSent++;
    octets += p.bytes.length - 12;
    for (const d of dests.values()) send(p.bytes, d);
    k++;
  }

  function take(n: number): void {
    frame.set(fifo.subarray(0, n), 0);
    if (n < N) frame.fill(0, n);
    fifo.copyWithin(0, n, fifoLen);
    fifoLen -= n;
  }

  /** Real input is in frame[0..n): end an expansion in progress by cross-fading it into that input. */
  function resume(n: number): void {
    if (!expansion || n === 0) return;
    if (expansion.gain > 0) resumeFrom(expansion, frame, 0, Math.min(RESUME_CROSSFADE, n));
    expansion = null;
  }

  /** frame[n..N) has no input: continue the expansion in progress, or start one from what went out + frame[0..n). */
  function fillMissing(n: number): void {
    if (!expandOn) return;
    if (!expansion) {
      ctx.set(hist.subarray(n), 0);
      ctx.set(frame.subarray(0, n), hist.length - n);
      expansion = startExpansion(ctx, rate);
      if (!expansion) return;
    }
    st.expandedSamples += expandInto(expansion, frame, n, N - n);
  }

  function lowestHeadroomMs(): number {
    if (headroomN < ACCEL_WINDOW) return NaN;
    let low = Infinity;
    for (let i = 0; i < ACCEL_WINDOW; i++) low = Math.min(low, headroom[i]!);
    return (low * 1000) / rate;
  }

  /** Frame k has just taken its samples (padded: h = 0, no headroom to spare). */
  function noteHeadroom(padded: boolean): void {
    const h = padded || Number.isNaN(lastInputAt) ? 0 : ((base + (k + 1) * frameMs - lastInputAt) * rate) / 1000 + fifoLen;
    headroom[headroomI] = h;
    headroomI = (headroomI + 1) % ACCEL_WINDOW;
    if (headroomN < ACCEL_WINDOW) headroomN++;
    framesSinceAccel++;
  }

  /** Frame k's samples are queued: remove a period of them if the headroom persisted (see the header). */
  function accelerate(): void {
    if (headroomN < ACCEL_WINDOW || framesSinceAccel < 2) return;
    const allowed = Math.floor((lowestHeadroomMs() * rate) / 1000) - accelKeep;
    if (allowed < MIN_PERIOD) return;
    const p = findPeriod(fifo.subarray(0, fifoLen), 0, 1, MIN_PERIOD, Math.min(MAX_PERIOD, allowed));
    if (!p || p.corr < 0.9) return;
    fifoLen = removePeriod(fifo, fifoLen, 0, p.lag);
    st.acceleratedSamples += p.lag;
    for (let i = 0; i < ACCEL_WINDOW; i++) headroom[i] = headroom[i]! - p.lag;
    framesSinceAccel = 0;
  }

  /** Input resumes after the timeline ran dry: its newest sample is labelled now + keep (see the header). */
  function alignResumed(now: number): void {
    const into = Math.max(0, Math.round(((now - (base + k * frameMs)) * rate) / 1000));
    // The newest queued sample came in now: label it now + keep (the rest of what came in, before it).
    const z = Math.max(0, Math.min(into + accelKeep - fifoLen, N + accelKeep));
    if (fifoLen + z > fifo.length) {
      const next = new Float32Array(2 * (fifoLen + z));
      next.set(fifo.subarray(0, fifoLen));
      fifo = next;
    }
    fifo.copyWithin(z, 0, fifoLen);
    fifo.fill(0, 0, z);
    if (expansion) {
      if (expansion.gain > 0) {
        st.expandedSamples += expandInto(expansion, fifo, 0, z);
        resumeFrom(expansion, fifo, z, Math.min(RESUME_CROSSFADE, fifoLen));
      }
      expansion = null;
    }
    fifoLen += z;
    st.paddedSamples += z;
  }

  function senderReport(now: number): Uint8Array {
    const rtpTs = (pz.initialTimestamp + Math.round((now - base) * (rate / 1000))) >>> 0;
    return buildSenderReport(pz.ssrc, { ntpMs: now, rtpTimestamp: rtpTs, packetCount: st.framesSent, octetCount: octets });
  }

  function pump(): void {
    if (!running) return;
    const now = o.clock.now();
    if (mode === 'live' && starved && fifoLen > 0) {
      // Resuming input: the frames whose capture window has passed leave as silence now (see header).
      while (base + (k + 1) * frameMs <= now) {
        st.paddedFrames++;
        st.paddedSamples += N;
        frame.fill(0);
        fillMissing(0);
        noteHeadroom(true);
        sendFrame();
      }
      starved = false;
      if (accelOn) alignResumed(now);
    }
    for (;;) {
      const capture = base + k * frameMs;
      if (fifoLen >= N && now >= capture) {
        // Not for a frame already past its window (the loop was late): waiting for more input would pad it.
        if (accelOn && now < capture + frameMs) {
          accelerate();
          if (fifoLen < N) continue; // it waits for input that comes in a period's time
        }
        take(N);
        resume(N);
        noteHeadroom(false);
        noteDelay(capture, now);
        sendFrame();
      } else if (now >= capture + frameMs + slackMs) {
        const n = Math.min(fifoLen, N);
        if (n === 0) starved = true;
        st.paddedFrames++;
        st.paddedSamples += N - n;
        take(n);
        resume(n);
        fillMissing(n);
        noteHeadroom(true);
        noteDelay(capture, now);
        sendFrame();
      } else break;
    }
    // Win back latency a stall left queued, in quiet blocks only (see the header).
    while (quietLevel > 0 && fifoLen - quietBlock >= catchUpAbove) {
      let peak = 0;
      for (let i = 0; i < quietBlock; i++) { const v = Math.abs(fifo[i]!); if (v > peak) peak = v; }
      if (peak >= Math.max(quietLevel, quietRelative * recentPeak)) break;
      fifo.copyWithin(0, quietBlock, fifoLen);
      fifoLen -= quietBlock;
      st.catchUpSamples += quietBlock;
    }
    if (mode === 'live' && fifoLen > maxQueue) {
      const drop = fifoLen - maxQueue;
      fifo.copyWithin(0, drop, fifoLen);
      fifoLen -= drop;
      st.droppedSamples += drop;
    }
    if (wantDrain && fifoLen < maxQueue) {
      wantDrain = false;
      ee.emit('drain');
    }
    if (!stalled && now - (Number.isNaN(lastInputAt) ? base : lastInputAt) > stallMs) {
      stalled = true;
      st.stalls++;
      log.warn({ ssrc: pz.ssrc, stallMs }, 'live source stalled');
      ee.emit('stall');
    }
    if (now >= nextSrAt) {
      nextSrAt = now + srInterval;
      const sr = senderReport(now);
      for (const d of dests.values()) send(sr, d);
    }
    if (!running) return; // a 'stall' listener may have stopped us
    const capture = base + k * frameMs;
    const wake = fifoLen >= N ? capture : capture + frameMs + slackMs;
    timers.clearTimeout(timer);
    timer = timers.setTimeout(pump, Math.max(0, Math.ceil(Math.min(wake, nextSrAt) - now)));
  }

  const self: SessionSender = {
    start(at) {
      if (running || stopped) return;
      if (at !== undefined && !Number.isFinite(at)) throw new RangeError('baseControllerMs must be finite');
      running = true;
      base = at ?? o.clock.now();
      if (srInterval > 0) nextSrAt = base + Math.min(srInterval, 200); // an early SR helps late joiners
      log.info({ ssrc: pz.ssrc, base, mode }, 'live session started');
      pump();
    },
    write(pcm) {
      if (stopped) return false;
      lastInputAt = o.clock.now();
      stalled = false;
      if (pcm.length) leadIn = false;
      let input = pcm;
      if (agc) input = agcProcess(agc, pcm);
      if (quietRelative > 0) {
        let peak = 0;
        for (let i = 0; i < input.length; i++) { const v = Math.abs(input[i]!); if (v > peak) peak = v; }
        recentPeak = Math.max(peak, recentPeak * Math.exp(-input.length / (2 * rate)));
      }
      if (fifoLen + input.length > fifo.length) {
        let size = fifo.length;
        while (size < fifoLen + input.length) size *= 2;
        const next = new Float32Array(size);
        next.set(fifo.subarray(0, fifoLen));
        fifo = next;
      }
      fifo.set(input, fifoLen);
      fifoLen += input.length;
      pump();
      const ok = mode === 'live' || fifoLen < maxQueue;
      if (!ok) wantDrain = true;
      return ok;
    },
    description() {
      if (Number.isNaN(base)) throw new Error('live session not started: call start() before description()');
      return { ssrc: pz.ssrc, payloadType: pz.payloadType, redPayloadType: pz.redPayloadType, clockRate: rate, frameSamples: N, timing: pz.timing(base) };
    },
    addDestination(d) {
      const key = keyOf(d);
      if (dests.has(key)) return false;
      dests.set(key, { address: d.address, port: d.port });
      // A receiver that joins mid-session gets the timeline mapping at once.
      if (running) send(senderReport(o.clock.now()), d);
      return true;
    },
    removeDestination: (d) => dests.delete(keyOf(d)),
    destinations: () => [...dests.values()],
    sendControl(bytes, to) {
      if (to) send(bytes, to);
      else for (const d of dests.values()) send(bytes, d);
    },
    stop(reason) {
      if (stopped) return;
      stopped = true;
      if (running) {
        if (fifoLen > 0) {
          const n = Math.min(fifoLen, N);
          take(n);
          resume(n);
          sendFrame();
        }
        const bye = compoundRtcp(senderReport(o.clock.now()), buildBye([pz.ssrc], reason));
        for (const d of dests.values()) send(bye, d);
        // Once more a frame later: a receiver whose one BYE was lost would wait for its no-audio timeout.
        const last = [...dests.values()];
        timers.setTimeout(() => { for (const d of last) send(bye, d); }, frameMs);
      }
      running = false;
      timers.clearTimeout(timer);
      timer = undefined;
      pz.close();
      log.info({ ssrc: pz.ssrc, frames: st.framesSent }, 'live session stopped');
    },
    stats: () => ({ running, ...st, queuedMs: (fifoLen * 1000) / rate, destinations: dests.size, headroomMs: lowestHeadroomMs() }),
    on(event, fn) {
      ee.on(event, fn);
      return self;
    },
    off(event, fn) {
      ee.off(event, fn);
      return self;
    },
    once(event, fn) {
      ee.once(event, fn);
      return self;
    },
  };
  return self;
}
