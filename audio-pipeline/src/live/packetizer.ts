/**
 * PCM → Opus frames → RTP packets, once per session (RFC 7587 over RFC 3550). Pure: no sockets, no
 * timers; session-sender.ts paces it and sends the same bytes to every receiver.
 *
 * - One SSRC per session; sequence numbers and timestamps start at random values (RFC 3550 §5.1) unless
 *   given; the timestamp advances by the frame's samples at 48 kHz (RFC 7587 §4.1).
 * - One Opus packet per RTP payload (RFC 7587 §4.2); the marker bit is set on the first packet of the
 *   session (the start of a talkspurt, RFC 3551 §4.1).
 * - With `redPayloadType`, every packet is RED (RFC 2198) carrying the previous frame's Opus packet as
 *   one redundant generation (timestamp offset = one frame), so any single loss is repaired exactly at
 *   the receiver at the cost of one frame of added deadline (the copy arrives 20 ms later) and about
 *   twice the payload. A previous packet above RED's 1023-byte block limit is sent without its copy.
 * - skip(): a frame that is not sent at all (discontinuous transmission, RFC 7587 §3.1.3 "DTX"): the
 *   timestamp moves on by a frame, the sequence number does not (receivers see no loss), the next packet
 *   carries no RED copy (its predecessor was never sent) and has the marker bit (a new talkspurt).
 */
import { randomInt } from 'node:crypto';
import { createOpusEncoder, type OpusEncoder, type OpusEncoderOptions } from './opus.js';
import { encodeRed, encodeRtp } from './rtp.js';
import type { SessionTiming } from './jitter-buffer.js';

export interface PacketizerOptions {
  /** Default: random 32 bits. */
  ssrc?: number;
  payloadType: number;
  /** RED payload type; null/undefined sends plain Opus. */
  redPayloadType?: number | null;
  /** An encoder (owned by the caller) or options for one owned by the packetizer. */
  encoder?: OpusEncoder | OpusEncoderOptions;
  initialSequence?: number;
  initialTimestamp?: number;
}

export interface Packet {
  /** RTP bytes, identical for every receiver. */
  bytes: Uint8Array;
  sequenceNumber: number;
  timestamp: number;
  /** Stream position of the frame's first sample (timestamp − initialTimestamp, unwrapped). */
  position: number;
  /** Opus payload size (without RED overhead). */
  opusBytes: number;
}

export interface Packetizer {
  readonly ssrc: number;
  readonly payloadType: number;
  readonly redPayloadType: number | null;
  readonly frameSamples: number;
  /** Decoded output lags input by this many samples. */
  readonly codecDelaySamples: number;
  readonly initialTimestamp: number;
  /** Timing of this stream for receivers, given the controller time of stream position 0. */
  timing(baseControllerMs: number): SessionTiming;
  /** Encode one frame (frameSamples samples) into the next RTP packet. */
  packetize(frame: Float32Array): Packet;
  /** Leave this frame out (DTX, see the header): nothing is encoded or sent. */
  skip(): void;
  /** Frames packetized so far. */
  readonly frames: number;
  close(): void;
}

function isEncoder(e: OpusEncoder | OpusEncoderOptions | undefined): e is OpusEncoder {
  return !!e && typeof (e as OpusEncoder).encode === 'function';
}

export function createPacketizer(o: PacketizerOptions): Packetizer {
  const ownEncoder = !isEncoder(o.encoder);
  const enc: OpusEncoder = isEncoder(o.encoder) ? o.encoder : createOpusEncoder(o.encoder);
  const ssrc = (o.ssrc ?? randomInt(0, 0xffff_ffff)) >>> 0;
  const redPt = o.redPayloadType ?? null;
  if (redPt !== null && redPt === o.payloadType) throw new RangeError('RED and Opus payload types must differ');
  const ts0 = (o.initialTimestamp ?? randomInt(0, 0xffff_ffff)) >>> 0;
  let seq = (o.initialSequence ?? randomInt(0, 0x1_0000)) & 0xffff;
  let frames = 0;
  let prev: Uint8Array | null = null;
  let skipped = false;
  const n = enc.frameSamples;
  return {
    ssrc,
    payloadType: o.payloadType,
    redPayloadType: redPt,
    frameSamples: n,
    codecDelaySamples: enc.lookahead,
    initialTimestamp: ts0,
    get frames() {
      return frames;
    },
    timing: (baseControllerMs) => ({ baseTimestamp: ts0, baseControllerMs, codecDelaySamples: enc.lookahead, clockRate: enc.sampleRate }),
    packetize(frame) {
      const opus = enc.encode(frame);
      const position = frames * n;
      const timestamp = (ts0 + position) >>> 0;
      let payload = opus;
      if (redPt !== null) {
        const red = prev && prev.length <= 1023 ? [{ payloadType: o.payloadType, timestampOffset: n, data: prev }] : [];
        payload = encodeRed({ payloadType: o.payloadType, data: opus }, red);
      }
      const bytes = encodeRtp({ marker: frames === 0 || skipped, payloadType: redPt ?? o.payloadType, sequenceNumber: seq, timestamp, ssrc, payload });
      const p: Packet = { bytes, sequenceNumber: seq, timestamp, position, opusBytes: opus.length };
      prev = opus;
      skipped = false;
      seq = (seq + 1) & 0xffff;
      frames++;
      return p;
    },
    skip() {
      // The encoder is not run: a later frame then starts from the state after the last SENT frame,
      // which for a silent lead-in is silence either way.
      prev = null;
      skipped = true;
      frames++;
    },
    close() {
      if (ownEncoder) enc.close();
    },
  };
}
