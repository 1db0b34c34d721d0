/**
 * Presentation-time playout buffer for live RTP audio: the agent side of "every frame plays at its
 * capture time + D in controller time, so all clusters sound together".
 *
 * ## Timing model
 *
 * Three clocks are involved:
 * - CONTROLLER time: the session's reference. The sender stamps audio on it.
 * - LOCAL (hardware) time: the cluster's clock, offset and drifting against the controller. The DAC
 *   runs on its crystal and tells us, in local ms, when the block it asks for will sound.
 * - RTP time: 48 kHz sample positions of the session stream (RFC 7587 §4.1).
 *
 * The session announcement (out of band) gives `baseTimestamp` (the RTP timestamp of stream position
 * 0), `baseControllerMs` (the controller time at which the input sample at position 0 was captured)
 * and `codecDelaySamples` (decoded sample s is input sample s − codecDelay: Opus' lookahead). A
 * decoded sample at stream position s must therefore sound at controller time
 *
 *     P(s) = baseControllerMs + (s − codecDelaySamples) / 48 + D                              (1)
 *
 * with s = extended RTP timestamp − baseTimestamp (+ the offset inside the frame). That is the issue's
 * "capture time + D": a cluster never decides its own timing, every cluster derives it from (1).
 *
 * The DAC pulls: read(out, presentationTimeLocal) asks for the samples that will sound from local
 * time `presentationTimeLocal` on. We convert that instant to controller time through the injected
 * clock (the agent's offset estimate, ClockSource.toController) and invert (1):
 *
 *     target = (toController(presentationTimeLocal) − baseControllerMs − D) · 48 + codecDelaySamples
 *
 * `target` is where out[0] SHOULD come from. We keep our own fractional read cursor `pos`, which
 * advances by `ratio` stream samples per output sample, and steer it towards `target`:
 *
 * - Drift: a local clock that runs fast by ε makes the DAC consume 48000 samples per (1 − ε) controller
 *   seconds, so `target` advances by (1 − ε) stream samples per output sample. A proportional
 *   controller sets ratio = 1 + (target − pos) / horizon (bounded by ±maxSlewPpm) and resamples with a
 *   4-point cubic (Catmull-Rom) interpolator. In steady state the residual error is ε · horizon
 *   (100 ppm × 0.5 s = 2.4 samples = 0.05 ms); it never accumulates. Sample slip would also keep
 *   alignment but clicks ~5 times a second at 100 ppm; resampling by 1e-4 is inaudible (0.17 cent).
 * - Steps: an error beyond `resyncThresholdMs` (the offset estimate stepped, the DAC skipped after a
 *   stall) is not slewed away over seconds: the cursor jumps to the target (counted in `resyncs`).
 *   A jump back drops the decoded audio ahead of the new cursor, so frames for those positions are
 *   taken again instead of being judged late.
 *
 * ## Frames, loss and lateness
 *
 * Packets are stored by stream position, not arrival order, and decoded lazily, in stream order, at
 * the last possible moment: when the cursor needs a frame's first samples (i.e. when the DAC asks,
 * its own lead ahead of P). At that moment the frame is decoded from its primary packet, or from a RED
 * copy (RFC 2198) carried by the next packet, or concealed by Opus PLC (up to `maxConcealMs` in a
 * row, then silence). A packet that arrives after that decision is counted `late` and dropped; one
 * that arrives twice is a `duplicate`; one older than the highest seen is `outOfOrder` (and still
 * used if in time). So the effective deadline of frame k is P(k) − (DAC lead), and D must cover:
 * sender framing (20 ms) + sender slack + network delay and jitter + one frame for RED to help +
 * the DAC lead (see stats().arrivalMargin to size it from measurements).
 */
import { pino, type Logger } from 'pino';
import type { FrameDecoder } from './opus.js';
import { OPUS_RTP_CLOCK_RATE, scanRed, unwrapTimestamp, type RtpPacket } from './rtp.js';

export interface SessionTiming {
  /** RTP timestamp of stream position 0. */
  baseTimestamp: number;
  /** Controller time (ms since epoch) at which the input sample at stream position 0 was captured. */
  baseControllerMs: number;
  /** Decoded output lags input by this many samples (Opus lookahead; 0 for raw PCM). */
  codecDelaySamples: number;
  /** RTP clock rate = output sample rate; 48000 for Opus. */
  clockRate?: number;
}

/** Local (hardware) time → controller time. ClockSource from edge-agent/src/time-sync.ts fits. */
export interface ControllerClock {
  toController(localMs: number): number;
}

export interface JitterBufferOptions {
  timing: SessionTiming;
  /** Per-session playout delay D, ms (see the header for what it must cover). */
  delayMs: number;
  clock: ControllerClock;
  /** RTP payload type of plain Opus packets. */
  payloadType: number;
  /** RTP payload type of RED packets (RFC 2198), if the session uses RED. */
  redPayloadType?: number | null;
  /** The decoder (await createOpusDecoder() for Opus); the buffer owns it and close() closes it. */
  decoder: FrameDecoder;
  /** Bound on resampling correction; default 2000 ppm (3.5 cents, inaudible on speech). */
  maxSlewPpm?: number;
  /** Proportional controller horizon, ms; default 500. */
  correctionHorizonMs?: number;
  /** Errors beyond this are corrected by a jump, not by resampling; default 30 ms. */
  resyncThresholdMs?: number;
  /** Packets further ahead of the cursor than this are refused (bad timestamp, wrong session); default 5000 ms. */
  maxAheadMs?: number;
  /** Consecutive concealment beyond this plays silence instead of PLC; default 120 ms. */
  maxConcealMs?: number;
  /**
   * Called once, on the first frame decoded onto the timeline (state waiting → playing). It runs inside
   * read(), on the audio path: do no more than hand the news on.
   */
  onPlaying?: () => void;
  log?: Logger;
}

export type PushResult =
  | 'accepted'
  | 'duplicate'
  | 'late'
  | 'out-of-window'
  | 'bad-payload'
  | 'ignored-payload-type'
  | 'closed';

export interface MarginStats {
  count: number;
  minMs: number;
  p05Ms: number;
  p50Ms: number;
}

export interface JitterBufferStats {
  state: 'waiting' | 'playing' | 'ended';
  /** RTP packets accepted (plain or RED). */
  packets: number;
  /** Primary frames stored. */
  framesReceived: number;
  duplicates: number;
  outOfOrder: number;
  /** Primary frames that arrived after their playout decision (concealed, or already recovered by RED). */
  late: number;
  outOfWindow: number;
  badPayload: number;
  ignoredPayloadType: number;
  /** Frames decoded from their primary packet. */
  framesDecoded: number;
  /** Frames whose primary was missing and that played from a RED copy. */
  recoveredByRed: number;
  /** Frames concealed by Opus PLC. */
  concealedFrames: number;
  /** Frames played as silence because concealment ran longer than maxConcealMs (an outage). */
  silentFrames: number;
  /** concealedFrames + silentFrames: frames the listener did not get. */
  lostFrames: number;
  /**
   * Frames due before the first frame could be decoded (the receiver joined late, or the first packets
   * were lost or late): played as silence and not counted as lost — nothing had started yet.
   */
  leadInFrames: number;
  decodeErrors: number;
  resyncs: number;
  /** Last (target − cursor), ms; positive = playing behind. */
  positionErrorMs: number;
  /** Last resampling correction, ppm. */
  rateAdjustPpm: number;
  /** Audio received ahead of the cursor, ms. */
  bufferedMs: number;
  /**
   * P(frame start) − arrival, both in controller time, over the last 1024 primary packets: how much
   * of D the network left unused. The DAC lead must also fit in it.
   */
  arrivalMargin: MarginStats | null;
}

export interface JitterBuffer {
  /**
   * Offer one parsed RTP packet (already SSRC/source-checked). `arrivalLocalMs` feeds arrivalMargin.
   * The payload is kept as given until decoded (a view into its datagram, no copy): do not reuse its buffer.
   */
  push(packet: RtpPacket, arrivalLocalMs?: number): PushResult;
  /** PcmSource contract (edge-agent/src/hardware.ts): fill `out` with what sounds from `presentationTimeLocalMs` on. */
  read(out: Float32Array, presentationTimeLocalMs: number): number;
  /** No more packets will come (RTCP BYE, session end): play what is buffered, then read() returns short. */
  end(): void;
  /** Controller time at which stream position `s` sounds, by (1). */
  presentationOf(position: number): number;
  stats(): JitterBufferStats;
  close(): void;
}

interface Entry {
  start: number;
  samples: number;
  payload: Uint8Array;
  fromRed: boolean;
}

type Played = 'primary' | 'red' | 'concealed';

const HISTORY = 512;
const MARGINS = 1024;
const RING_MIN = 16_384;

export function createJitterBuffer(o: JitterBufferOptions): JitterBuffer {
  const log = o.log ?? pino({ level: 'silent' });
  const rate = o.timing.clockRate ?? OPUS_RTP_CLOCK_RATE;
  const perMs = rate / 1000;
  const baseTs = o.timing.baseTimestamp >>> 0;
  const baseMs = o.timing.baseControllerMs;
  const codecDelay = o.timing.codecDelaySamples;
  const D = o.delayMs;
  if (!Number.isFinite(D) || D < 0) throw new RangeError(`delayMs must be ≥ 0, got ${D}`);
  if (!Number.isFinite(baseMs)) throw new RangeError('timing.baseControllerMs must be finite');
  const decoder = o.decoder;
  const maxSlew = (o.maxSlewPpm ?? 2000) * 1e-6;
  const horizon = (o.correctionHorizonMs ?? 500) * perMs;
  const resyncSamples = (o.resyncThresholdMs ?? 30) * perMs;
  const maxAhead = (o.maxAheadMs ?? 5000) * perMs;
  const maxConceal = (o.maxConcealMs ?? 120) * perMs;
  const redPt = o.redPayloadType ?? null;

  // Received, not yet decoded frames by stream position, and their starts sorted ascending.
  const entries = new Map<number, Entry>();
  const starts: number[] = [];
  // How each recent position was played, to tell late from duplicate.
  const history = new Map<number, Played>();
  // Extended timestamp of the newest primary packet (unwrap reference).
  let refExt = baseTs;
  let highestStart = -Infinity;
  let highestEnd = -Infinity;
  let nominal = 960;

  // Decoded audio: a ring holding stream positions [ringStart, ringEnd).
  // Allocated at the first decode: a session that is joined but not (yet) on the speakers, or preempted
  // before its first frame, costs no 64 KB per join (a thousand clusters join an emergency at once).
  let ring = new Float32Array(1);
  let mask = 0;
  let origin = 0;
  let ringStart = 0;
  let ringEnd: number | null = null;

  let pos: number | null = null; // fractional stream position of the next output sample
  let decodedAny = false;
  // Highest stream position holding a non-zero sample (digital silence after it: read() skips the resampler).
  let lastSound = -Infinity;
  let concealRun = 0;
  let ended = false;
  let endPos = Infinity;
  let closed = false;

  let margins: Float64Array | null = null; // allocated with the first packet
  let marginCount = 0;

  const st = {
    packets: 0, framesReceived: 0, duplicates: 0, outOfOrder: 0, late: 0, outOfWindow: 0, badPayload: 0,
    ignoredPayloadType: 0, framesDecoded: 0, recoveredByRed: 0, concealedFrames: 0, silentFrames: 0, leadInFrames: 0,
    decodeErrors: 0, resyncs: 0, positionErrorMs: 0, rateAdjustPpm: 0,
  };

  const presentationOf = (s: number): number => baseMs + (s - codecDelay) / perMs + D;

  function insertStart(s: number): void {
    const n = starts.length;
    if (n === 0 || starts[n - 1]! < s) { starts.push(s); return; } // in order: the common case
    let lo = 0;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid]! < s) lo = mid + 1;
      else hi = mid;
    }
    starts.splice(lo, 0, s);
  }

  /**
   * Frames more than twice maxAhead behind the newest are dropped (with those up to 1.5 × maxAhead behind): a sink that pulls takes frames out
   * as it plays (and a frame that far behind the newest is behind the cursor too, since none may be
   * stored more than maxAhead ahead of it); this bounds the buffer when nothing pulls (a sink that
   * stopped, or a session joined but not on the speakers), which otherwise grew by 50 frames a second
   * for as long as the session lasted. Twice: before the first read the cursor is not known, and a burst
   * that arrived ahead of real time must still find its first frames.
   */
  function pruneStale(): void {
    if (starts.length === 0 || starts[0]! >= highestStart - 2 * maxAhead) return;
    // In batches (down to 1.5 × maxAhead behind): one splice per maxAhead / 2 of audio, not one per frame.
    const cut = highestStart - 1.5 * maxAhead;
    let k = 0;
    while (k < starts.length && starts[k]! < cut) entries.delete(starts[k++]!);
    starts.splice(0, k);
  }

  function removeEntry(s: number): void {
    entries.delete(s);
    const i = starts.indexOf(s);
    if (i >= 0) starts.splice(i, 1);
  }

  function remember(s: number, how: Played): void {
    history.set(s, how);
    if (history.size > HISTORY) {
      const first = history.keys().next().value;
      if (first !== undefined) history.delete(first);
    }
  }

  function storeFrame(ts: number, payload: Uint8Array, fromRed: boolean, arrivalLocalMs: number | undefined): PushResult {
    const ext = unwrapTimestamp(ts, refExt);
    const start = ext - baseTs;
    let samples: number;
    try {
      samples = decoder.samplesOf(payload);
    } catch {
      st.badPayload++;
      return 'bad-payload';
    }
    // Before the first read, judge against the newest frame: a wild timestamp must not pin memory.
    const cursor = pos ?? ringEnd ?? (Number.isFinite(highestStart) ? highestStart : start);
    if (start > cursor + maxAhead || start + samples < cursor - maxAhead) {
      if (!fromRed) st.outOfWindow++;
      return 'out-of-window';
    }
    if (!fromRed && ext > refExt) refExt = ext;
    if (ringEnd !== null && start < ringEnd) {
      // Its playout decision has been taken.
      if (fromRed) return 'late';
      const how = history.get(start);
      if (how === 'primary') {
        st.duplicates++;
        return 'duplicate';
      }
      st.late++;
      log.trace({ position: start, playedAs: how ?? 'unknown', ringEnd }, 'late live frame dropped');
      return 'late';
    }
    const existing = entries.get(start);
    if (existing) {
      if (fromRed) return 'duplicate';
      if (!existing.fromRed) {
        st.duplicates++;
        return 'duplicate';
      }
      // The RED copy came first (this primary was reordered): keep the primary.
      existing.fromRed = false;
      existing.payload = payload;
    } else {
      entries.set(start, { start, samples, payload, fromRed });
      insertStart(start);
      pruneStale();
    }
    if (!fromRed) {
      st.framesReceived++;
      nominal = samples;
      if (start < highestStart) st.outOfOrder++;
      highestStart = Math.max(highestStart, start);
      if (arrivalLocalMs !== undefined) {
        margins ??= new Float64Array(MARGINS);
        margins[marginCount % MARGINS] = presentationOf(start) - o.clock.toController(arrivalLocalMs);
        marginCount++;
      }
    }
    highestEnd = Math.max(highestEnd, start + samples);
    return 'accepted';
  }

  /** The RED packet being pushed (scanRed's callback below: one closure per buffer, not per packet). */
  const red: { payload: Uint8Array; arrival: number | undefined; result: PushResult } = { payload: new Uint8Array(0), arrival: undefined, result: 'ignored-payload-type' };
  function onRedBlock(payloadType: number, ts: number, from: number, to: number, primary: boolean): void {
    if (payloadType !== o.payloadType) return;
    const p = red.payload;
    if (primary) {
      st.packets++;
      red.result = storeFrame(ts, p.subarray(from, to), false, red.arrival);
      return;
    }
    // Usually the copy of a frame already here (its own packet came 20 ms ago) or already played:
    // storeFrame would drop it without counting it; drop it before making a view of it.
    const start = unwrapTimestamp(ts, refExt) - baseTs;
    if (entries.has(start) || (ringEnd !== null && start < ringEnd)) return;
    storeFrame(ts, p.subarray(from, to), true, undefined);
  }

  function ensureCapacity(span: number): void {
    if (span <= ring.length) return;
    let size = Math.max(ring.length, RING_MIN);
    while (size < span) size *= 2;
    const next = new Float32Array(size);
    if (ringEnd !== null) for (let x = ringStart; x < ringEnd; x++) next[(x - origin) & (size - 1)] = ring[(x - origin) & mask]!;
    ring = next;
    mask = size - 1;
  }

  /**
   * Copy n samples (data, zero beyond its end) into the ring at stream position `at`: one or two block
   * copies around the wrap, not a masked store per sample (until V8 had optimised it, that loop took
   * 175 ms of a 100-agent bench worker's CPU in a first emergency: BENCH_LIVE_PROFILE).
   */
  function writeRing(at: number, data: Float32Array, n: number): void {
    const start = (at - origin) & mask;
    const first = Math.min(n, ring.length - start);
    const have = Math.min(n, data.length);
    ring.set(data.subarray(0, Math.min(first, have)), start);
    if (have < first) ring.fill(0, start + have, start + first);
    if (first < n) {
      if (have > first) ring.set(data.subarray(first, have), 0);
      ring.fill(0, Math.max(0, have - first), n - first);
    }
    // From the end: speech exits at once, a silent frame (session lead-in, pauses) costs one pass.
    for (let i = Math.min(n, data.length) - 1; i >= 0; i--) {
      if (data[i] !== 0) {
        if (at + i > lastSound) lastSound = at + i;
        break;
      }
    }
  }

  /** Silence n samples of the ring from stream position p (one or two fills around the wrap). */
  function zeroRing(p: number, n: number): void {
    const start = (p - origin) & mask;
    const first = Math.min(n, ring.length - start);
    ring.fill(0, start, start + first);
    if (first < n) ring.fill(0, 0, n - first);
  }

  /** Produce the chunk of audio that starts at ringEnd, by decoding, RED, PLC or silence. */
  function produceChunk(): void {
    const p = ringEnd!;
    // Drop entries whose start has passed (they can only be partial now).
    while (starts.length && starts[0]! < p) {
      const s = starts[0]!;
      const e = entries.get(s)!;
      removeEntry(s);
      if (!e.fromRed) {
        st.late++;
        log.trace({ position: s, ringEnd: p }, 'overlapping live frame dropped');
      }
    }
    const e = entries.get(p);
    if (e) {
      removeEntry(p);
      let pcm: Float32Array | null = null;
      try {
        pcm = decoder.decode(e.payload);
      } catch (err) {
        st.decodeErrors++;
        log.debug({ err, position: p }, 'live frame failed to decode; concealing');
      }
      if (pcm) {
        ensureCapacity(p + e.samples - ringStart);
        writeRing(p, pcm, e.samples);
        ringEnd = p + e.samples;
        if (e.fromRed) st.recoveredByRed++;
        else st.framesDecoded++;
        remember(p, e.fromRed ? 'red' : 'primary');
        if (!decodedAny) { decodedAny = true; o.onPlaying?.(); }
        concealRun = 0;
        return;
      }
      conceal(p, e.samples);
      return;
    }
    const next = starts.length ? starts[0]! : Infinity;
    conceal(p, Math.min(next - p, nominal));
  }

  function conceal(p: number, n: number): void {
    ensureCapacity(p + n - ringStart);
    if (!decodedAny) {
      // Lead-in: nothing has played yet, so nothing is lost; a fresh decoder would conceal silence.
      zeroRing(p, n);
      st.leadInFrames++;
    } else if (concealRun < maxConceal) {
      writeRing(p, decoder.conceal(n), n);
      st.concealedFrames++;
      log.trace({ position: p, samples: n }, 'live frame concealed');
      concealRun += n;
      remember(p, 'concealed');
    } else {
      zeroRing(p, n);
      st.silentFrames++;
      remember(p, 'concealed');
    }
    ringEnd = p + n;
  }

  /** (Re)start the decoded ring at stream position x ≥ 0, aligned to a frame that contains x. */
  function initRing(x: number): void {
    let at = x;
    for (const s of starts) {
      const e = entries.get(s)!;
      if (s <= x && x < s + e.samples) {
        at = s;
        break;
      }
    }
    // Frames wholly before the new start can never play.
    while (starts.length && starts[0]! + entries.get(starts[0]!)!.samples <= at) removeEntry(starts[0]!);
    ringStart = at;
    ringEnd = at;
    origin = at; // ring index = (x − origin) & mask: keeps the operand small so 32-bit masking is exact
  }

  /** Make positions [.., limit) available (limit exclusive), never beyond the stream end. */
  function fillTo(limit: number, first: number): void {
    if (limit <= 0) return;
    const from = Math.max(0, first);
    if (ringEnd === null || from >= ringEnd) initRing(from);
    if (from > ringStart) ringStart = from;
    const stop = Math.min(limit, endPos);
    while (ringEnd! < stop) produceChunk();
    // Long sessions: move the origin by whole ring lengths (indices unchanged) before x − origin nears 2^31.
    const d = ringStart - origin;
    if (d > 0x4000_0000) origin += d - (d % ring.length);
  }

  function sample(x: number): number {
    if (x < 0 || ringEnd === null || x < ringStart || x >= ringEnd || x >= endPos) return 0;
    return ring[(x - origin) & mask]!;
  }

  return {
    push(packet, arrivalLocalMs) {
      if (closed) return 'closed';
      const pt = packet.payloadType;
      if (pt === o.payloadType) {
        st.packets++;
        return storeFrame(packet.timestamp, packet.payload, false, arrivalLocalMs);
      }
      if (redPt !== null && pt === redPt) {
        red.payload = packet.payload;
        red.arrival = arrivalLocalMs;
        red.result = 'ignored-payload-type';
        try {
          scanRed(packet.payload, packet.timestamp, onRedBlock);
        } catch {
          // scanRed checks the whole payload before the first block: nothing was stored.
          st.badPayload++;
          return 'bad-payload';
        }
        return red.result;
      }
      st.ignoredPayloadType++;
      return 'ignored-payload-type';
    },

    read(out, presentationTimeLocalMs) {
      const n = out.length;
      if (closed) {
        out.fill(0);
        return 0;
      }
      if (n === 0) return 0;
      const target = (o.clock.toController(presentationTimeLocalMs) - baseMs - D) * perMs + codecDelay;
      let ratio = 1;
      if (pos === null) {
        pos = target;
      } else {
        const e = target - pos;
        if (e > resyncSamples || e < -resyncSamples) {
          log.debug({ errorMs: e / perMs }, 'live playout cursor jumped to target');
          st.resyncs++;
          pos = target;
          // Back: what was produced ahead of the new cursor never sounded (a clock estimate that ran
          // ahead made it, as lead-in silence or concealment). Keeping it would judge every frame that
          // arrives for those positions late, for as long as the estimate had run ahead (seconds: the
          // whole of a short announcement). Produce them again from what arrives.
          if (e < 0 && ringEnd !== null && ringEnd > target - 2) ringEnd = target - 2 > ringStart ? Math.floor(target) - 2 : null;
        } else {
          const c = e / horizon;
          ratio = 1 + (c > maxSlew ? maxSlew : c < -maxSlew ? -maxSlew : c);
        }
      }
      st.positionErrorMs = (target - pos) / perMs;
      st.rateAdjustPpm = (ratio - 1) * 1e6;
      const p0 = pos;
      const last = p0 + (n - 1) * ratio;
      const firstIdx = Math.floor(p0) - 1;
      fillTo(Math.floor(last) + 3, firstIdx);
      if (lastSound < firstIdx && last < endPos) {
        // Every sample the interpolation would touch ([firstIdx, last + 2]) is digital silence: skip it. A
        // fleet of small agents waiting for a session's first words otherwise spends its CPU resampling zeros.
        out.fill(0);
        pos = p0 + n * ratio;
        return n;
      }
      // Hot loop: cubic (Catmull-Rom) interpolation at fractional positions.
      const lo = ringEnd === null ? Infinity : Math.max(ringStart, 0);
      const hi = ringEnd === null ? -Infinity : Math.min(ringEnd, endPos);
      const r = ring;
      const m = mask;
      const og = origin;
      let p = p0;
      let written = n;
      for (let i = 0; i < n; i++, p = p0 + i * ratio) {
        if (p >= endPos) {
          written = i;
          for (let k = i; k < n; k++) out[k] = 0;
          break;
        }
        const x = Math.floor(p);
        const t = p - x;
        let y0: number, y1: number, y2: number, y3: number;
        if (x - 1 >= lo && x + 2 < hi) {
          y0 = r[(x - 1 - og) & m]!;
          y1 = r[(x - og) & m]!;
          y2 = r[(x + 1 - og) & m]!;
          y3 = r[(x + 2 - og) & m]!;
        } else {
          y0 = sample(x - 1);
          y1 = sample(x);
          y2 = sample(x + 1);
          y3 = sample(x + 2);
        }
        if (t === 0) {
          out[i] = y1;
          continue;
        }
        const a = -0.5 * y0 + 1.5 * y1 - 1.5 * y2 + 0.5 * y3;
        const b = y0 - 2.5 * y1 + 2 * y2 - 0.5 * y3;
        const c = 0.5 * (y2 - y0);
        out[i] = ((a * t + b) * t + c) * t + y1;
      }
      pos = p0 + n * ratio;
      return written;
    },

    end() {
      if (ended) return;
      ended = true;
      endPos = Math.max(highestEnd, ringEnd ?? -Infinity);
      if (!Number.isFinite(endPos)) endPos = pos === null ? 0 : Math.max(0, Math.floor(pos));
    },

    presentationOf,

    stats() {
      const buffered = pos === null || !Number.isFinite(highestEnd) ? 0 : Math.max(0, (highestEnd - pos) / perMs);
      return {
        state: ended && pos !== null && pos >= endPos ? 'ended' : decodedAny ? 'playing' : 'waiting',
        ...st,
        lostFrames: st.concealedFrames + st.silentFrames,
        bufferedMs: buffered,
        // Sorting the margins only when read: stats() is polled (status reports, the player's end check).
        get arrivalMargin(): MarginStats | null {
          const k = Math.min(marginCount, MARGINS);
          if (k === 0 || !margins) return null;
          const s = Array.from(margins.subarray(0, k)).sort((a, b) => a - b);
          const q = (f: number): number => s[Math.min(k - 1, Math.floor(f * k))]!;
          return { count: marginCount, minMs: s[0]!, p05Ms: q(0.05), p50Ms: q(0.5) };
        },
      };
    },

    close() {
      if (closed) return;
      closed = true;
      entries.clear();
      starts.length = 0;
      decoder.close();
    },
  };
}
