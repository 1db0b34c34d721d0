/**
 * RTP and RTCP wire formats for the live path, with nothing that knows about nodes or sessions:
 *
 * - RTP fixed header, CSRC list, header extension and padding (RFC 3550 §5.1, §5.3.1).
 * - Sequence-number and timestamp arithmetic modulo 2^16 / 2^32 (RFC 3550 §5.1, Appendix A.1).
 * - Receiver-side reception statistics: extended highest sequence, cumulative and fractional loss,
 *   interarrival jitter (RFC 3550 A.1, A.3, A.8), and the report block they fill (§6.4.1, §6.4.2).
 * - RTCP SR, RR, BYE and APP packets and compound packets (§6.1, §6.4, §6.6, §6.7); RTP/RTCP
 *   demultiplexing on one port (RFC 5761 §4).
 * - The Opus RTP payload (RFC 7587): 48 kHz RTP clock whatever the audio bandwidth, exactly one Opus
 *   packet per RTP payload; the TOC byte gives the packet's duration (RFC 6716 §3.1).
 * - RED, the redundant audio payload (RFC 2198), for one or more redundant generations.
 *
 * Every parser validates and throws `RtpError` with a stable `code`; nothing here trusts its input.
 */

export type RtpErrorCode =
  | 'TOO_SHORT'
  | 'BAD_VERSION'
  | 'TRUNCATED'
  | 'BAD_PADDING'
  | 'BAD_EXTENSION'
  | 'BAD_FIELD'
  | 'NOT_RTP'
  | 'NOT_RTCP'
  | 'BAD_RTCP'
  | 'BAD_RED'
  | 'BAD_OPUS';

export class RtpError extends Error {
  readonly code: RtpErrorCode;
  constructor(code: RtpErrorCode, message: string) {
    super(message);
    this.name = 'RtpError';
    this.code = code;
  }
}

export function isRtpError(e: unknown): e is RtpError {
  return e instanceof RtpError;
}

// ------------------------------------------------------------------------------------------ constants

export const RTP_VERSION = 2;
export const RTP_HEADER_BYTES = 12;
/** RFC 7587 §4.1: the RTP clock of Opus is always 48 kHz. */
export const OPUS_RTP_CLOCK_RATE = 48_000;
/** 20 ms at 48 kHz: the frame size this project sends (RFC 7587 §4.2 allows 2.5–120 ms). */
export const OPUS_FRAME_SAMPLES_20MS = 960;
/** Dynamic payload types (RFC 3551 §6) this project uses unless a session says otherwise. */
export const DEFAULT_OPUS_PAYLOAD_TYPE = 111;
export const DEFAULT_RED_PAYLOAD_TYPE = 112;

export const RTCP_SR = 200;
export const RTCP_RR = 201;
export const RTCP_SDES = 202;
export const RTCP_BYE = 203;
export const RTCP_APP = 204;

const U32 = 0x1_0000_0000;

// ------------------------------------------------------------------------------------------ arithmetic

/** a − b as a signed 16-bit difference (RFC 3550 sequence numbers wrap at 2^16). */
export function seqDiff(a: number, b: number): number {
  const d = (a - b) & 0xffff;
  return d >= 0x8000 ? d - 0x10000 : d;
}

/** Is sequence a "newer" than b (within half the space)? */
export function seqNewer(a: number, b: number): boolean {
  return seqDiff(a, b) > 0;
}

/** a − b as a signed 32-bit difference (RTP timestamps wrap at 2^32). */
export function tsDiff(a: number, b: number): number {
  const d = (a - b) >>> 0;
  return d >= 0x8000_0000 ? d - U32 : d;
}

/**
 * Unwrap a 16-bit sequence number into the extended sequence closest to `refExtended` (an extended
 * sequence already seen). Valid while packets are within ±32768 of each other, which A.1's
 * MAX_DROPOUT/MAX_MISORDER bounds already demand.
 */
export function unwrapSeq(seq: number, refExtended: number): number {
  return refExtended + seqDiff(seq & 0xffff, refExtended & 0xffff);
}

/** Unwrap a 32-bit RTP timestamp into the extended timestamp closest to `refExtended`. */
export function unwrapTimestamp(ts: number, refExtended: number): number {
  const refLow = ((refExtended % U32) + U32) % U32;
  return refExtended + tsDiff(ts >>> 0, refLow);
}

// ----------------------------------------------------------------------------------------------- RTP

export interface RtpHeaderExtension {
  /** "defined by profile" 16 bits (RFC 3550 §5.3.1); 0xBEDE for RFC 8285 one-byte headers. */
  profile: number;
  /** Extension body; its length must be a multiple of 4 bytes. */
  data: Uint8Array;
}

export interface RtpPacket {
  version: 2;
  /** Set when the packet carried padding (it has been removed from `payload`). */
  padding: boolean;
  marker: boolean;
  payloadType: number;
  sequenceNumber: number;
  timestamp: number;
  ssrc: number;
  csrcs: number[];
  extension: RtpHeaderExtension | null;
  payload: Uint8Array;
}

export interface RtpPacketInit {
  marker?: boolean;
  payloadType: number;
  sequenceNumber: number;
  timestamp: number;
  ssrc: number;
  csrcs?: number[];
  extension?: RtpHeaderExtension | null;
  payload: Uint8Array;
  /** Pad the packet to a multiple of this many bytes (RFC 3550 §5.1 P bit); default none. */
  padTo?: number;
}

function checkUint(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RtpError('BAD_FIELD', `RTP ${name} must be an integer in 0..${max}, got ${v}`);
}

/** Serialise an RTP packet (RFC 3550 §5.1). */
export function encodeRtp(p: RtpPacketInit): Uint8Array {
  checkUint('payload type', p.payloadType, 127);
  checkUint('sequence number', p.sequenceNumber, 0xffff);
  checkUint('timestamp', p.timestamp, 0xffff_ffff);
  checkUint('SSRC', p.ssrc, 0xffff_ffff);
  const csrcs = p.csrcs ?? [];
  if (csrcs.length > 15) throw new RtpError('BAD_FIELD', `RTP carries at most 15 CSRCs, got ${csrcs.length}`);
  for (const c of csrcs) checkUint('CSRC', c, 0xffff_ffff);
  const ext = p.extension ?? null;
  if (ext) {
    checkUint('extension profile', ext.profile, 0xffff);
    if (ext.data.length % 4 !== 0 || ext.data.length / 4 > 0xffff) throw new RtpError('BAD_EXTENSION', 'RTP header extension length must be a multiple of 4 bytes and below 256 KiB');
  }
  const headerLen = RTP_HEADER_BYTES + 4 * csrcs.length + (ext ? 4 + ext.data.length : 0);
  let len = headerLen + p.payload.length;
  let pad = 0;
  if (p.padTo && p.padTo > 1) {
    pad = (p.padTo - (len % p.padTo)) % p.padTo;
    if (pad > 255) throw new RtpError('BAD_FIELD', 'RTP padding above 255 bytes');
    len += pad;
  }
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer);
  out[0] = (RTP_VERSION << 6) | (pad ? 0x20 : 0) | (ext ? 0x10 : 0) | csrcs.length;
  out[1] = (p.marker ? 0x80 : 0) | p.payloadType;
  dv.setUint16(2, p.sequenceNumber);
  dv.setUint32(4, p.timestamp);
  dv.setUint32(8, p.ssrc);
  let o = RTP_HEADER_BYTES;
  for (const c of csrcs) {
    dv.setUint32(o, c);
    o += 4;
  }
  if (ext) {
    dv.setUint16(o, ext.profile);
    dv.setUint16(o + 2, ext.data.length / 4);
    out.set(ext.data, o + 4);
    o += 4 + ext.data.length;
  }
  out.set(p.payload, o);
  if (pad) out[len - 1] = pad;
  return out;
}

/**
 * Parse and validate an RTP packet (RFC 3550 §5.1; the checks of Appendix A.1 that do not need
 * state). The payload is a view into `buf`, not a copy. Throws `RtpError` on anything malformed.
 */
export function parseRtp(buf: Uint8Array): RtpPacket {
  if (buf.length < RTP_HEADER_BYTES) throw new RtpError('TOO_SHORT', `RTP packet of ${buf.length} bytes is shorter than the 12-byte fixed header`);
  const b0 = buf[0]!;
  const version = b0 >> 6;
  if (version !== RTP_VERSION) throw new RtpError('BAD_VERSION', `RTP version ${version}, expected 2`);
  const b1 = buf[1]!;
  // RFC 5761 §4: with RTP and RTCP on one port, a second byte of 192..223 is an RTCP packet type.
  if (b1 >= 192 && b1 <= 223) throw new RtpError('NOT_RTP', `packet type ${b1} is RTCP, not RTP`);
  const cc = b0 & 0x0f;
  let o = RTP_HEADER_BYTES + 4 * cc;
  if (o > buf.length) throw new RtpError('TRUNCATED', `RTP header announces ${cc} CSRCs but the packet ends at ${buf.length} bytes`);
  // Per datagram of every agent: no DataView, no Buffer view (a Buffer's subarray builds a FastBuffer),
  // no array when there are no CSRCs (there never are from our sender).
  const csrcs: number[] = cc === 0 ? NO_CSRCS : [];
  for (let i = 0; i < cc; i++) csrcs.push(u32(buf, RTP_HEADER_BYTES + 4 * i));
  let extension: RtpHeaderExtension | null = null;
  if (b0 & 0x10) {
    if (o + 4 > buf.length) throw new RtpError('BAD_EXTENSION', 'RTP X bit set but the extension header is missing');
    const words = (buf[o + 2]! << 8) | buf[o + 3]!;
    const end = o + 4 + 4 * words;
    if (end > buf.length) throw new RtpError('BAD_EXTENSION', `RTP header extension of ${words} words runs past the packet end`);
    extension = { profile: (buf[o]! << 8) | buf[o + 1]!, data: view(buf, o + 4, end) };
    o = end;
  }
  let end = buf.length;
  const padding = (b0 & 0x20) !== 0;
  if (padding) {
    const count = buf[buf.length - 1]!;
    if (count === 0 || o + count > buf.length) throw new RtpError('BAD_PADDING', `RTP padding count ${count} is invalid for a ${buf.length}-byte packet`);
    end -= count;
  }
  return {
    version: 2,
    padding,
    marker: (b1 & 0x80) !== 0,
    payloadType: b1 & 0x7f,
    sequenceNumber: (buf[2]! << 8) | buf[3]!,
    timestamp: u32(buf, 4),
    ssrc: u32(buf, 8),
    csrcs,
    extension,
    payload: view(buf, o, end),
  };
}

/** Shared by every packet without CSRCs (frozen: a caller cannot add to another packet's list). */
const NO_CSRCS = Object.freeze([]) as unknown as number[];

/** Big-endian unsigned 32-bit at `o`. */
function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** A plain Uint8Array view of [from, to) of `b` (cheaper than a Buffer's subarray). */
function view(b: Uint8Array, from: number, to: number): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset + from, to - from);
}

/**
 * What a datagram on a muxed RTP/RTCP port is (RFC 5761 §4): RTCP when the second byte is a packet
 * type in 192..223, RTP otherwise; 'invalid' when it cannot be either (too short, not version 2).
 */
export function classifyPacket(buf: Uint8Array): 'rtp' | 'rtcp' | 'invalid' {
  if (buf.length < 4 || buf[0]! >> 6 !== RTP_VERSION) return 'invalid';
  const pt = buf[1]!;
  if (pt >= 192 && pt <= 223) return buf.length >= 8 ? 'rtcp' : 'invalid';
  return buf.length >= RTP_HEADER_BYTES ? 'rtp' : 'invalid';
}

// -------------------------------------------------------------------------------------- RFC 7587 Opus

/**
 * Samples (at 48 kHz) that one Opus packet decodes to, from its TOC byte and frame-count code
 * (RFC 6716 §3.1, §3.2). Throws on a packet that cannot be valid (empty, bad code 3 count, > 120 ms).
 */
export function opusPacketSamples(p: Uint8Array): number {
  if (p.length < 1) throw new RtpError('BAD_OPUS', 'empty Opus packet (RFC 6716 §3.4 R1: at least one byte)');
  const toc = p[0]!;
  const config = toc >> 3;
  let frame: number;
  if (config < 12) frame = [480, 960, 1920, 2880][config & 3]!; // SILK-only: 10, 20, 40, 60 ms
  else if (config < 16) frame = [480, 960][config & 1]!; // Hybrid: 10, 20 ms
  else frame = [120, 240, 480, 960][config & 3]!; // CELT-only: 2.5, 5, 10, 20 ms
  const code = toc & 3;
  let count: number;
  if (code === 0) count = 1;
  else if (code === 1 || code === 2) count = 2;
  else {
    if (p.length < 2) throw new RtpError('BAD_OPUS', 'Opus code-3 packet without its frame-count byte');
    count = p[1]! & 0x3f;
    if (count === 0) throw new RtpError('BAD_OPUS', 'Opus code-3 packet with zero frames');
  }
  const samples = frame * count;
  // RFC 6716 §3.2.5 R5: at most 120 ms of audio per packet.
  if (samples > 5760) throw new RtpError('BAD_OPUS', `Opus packet of ${samples} samples exceeds 120 ms`);
  return samples;
}

// -------------------------------------------------------------------------------------- RFC 2198 RED

export interface RedBlock {
  /** Payload type of the block's own encoding (e.g. the Opus PT). */
  payloadType: number;
  /** RTP timestamp of the block (header timestamp − offset for redundant blocks). */
  timestamp: number;
  data: Uint8Array;
}

export interface RedRedundantInit {
  payloadType: number;
  /** Offset back from the packet's RTP timestamp, 0..16383 (14 bits). */
  timestampOffset: number;
  data: Uint8Array;
}

/**
 * RED payload (RFC 2198 §3): one 4-byte header per redundant block (F=1, block PT, 14-bit timestamp
 * offset, 10-bit length), a 1-byte header for the primary (F=0, PT), then the redundant data blocks
 * in header order and the primary data last. Redundant blocks, oldest first.
 */
export function encodeRed(primary: { payloadType: number; data: Uint8Array }, redundant: RedRedundantInit[] = []): Uint8Array {
  checkUint('RED primary payload type', primary.payloadType, 127);
  let len = 1 + primary.data.length;
  for (const r of redundant) {
    checkUint('RED block payload type', r.payloadType, 127);
    checkUint('RED timestamp offset', r.timestampOffset, 0x3fff);
    if (r.data.length > 1023) throw new RtpError('BAD_RED', `RED block of ${r.data.length} bytes exceeds the 10-bit length field`);
    len += 4 + r.data.length;
  }
  const out = new Uint8Array(len);
  let o = 0;
  for (const r of redundant) {
    out[o] = 0x80 | r.payloadType;
    out[o + 1] = (r.timestampOffset >> 6) & 0xff;
    out[o + 2] = ((r.timestampOffset & 0x3f) << 2) | (r.data.length >> 8);
    out[o + 3] = r.data.length & 0xff;
    o += 4;
  }
  out[o++] = primary.payloadType;
  for (const r of redundant) {
    out.set(r.data, o);
    o += r.data.length;
  }
  out.set(primary.data, o);
  return out;
}

/**
 * Parse a RED payload carried in an RTP packet with timestamp `rtpTimestamp`. Returns the blocks in
 * wire order: redundant ones (oldest first, with their absolute timestamps), then the primary.
 * Data are views into `payload`.
 */
export function parseRed(payload: Uint8Array, rtpTimestamp: number): { redundant: RedBlock[]; primary: RedBlock } {
  const redundant: RedBlock[] = [];
  let primary!: RedBlock;
  scanRed(payload, rtpTimestamp, (payloadType, timestamp, from, to, isPrimary) => {
    const b = { payloadType, timestamp, data: payload.subarray(from, to) };
    if (isPrimary) primary = b;
    else redundant.push(b);
  });
  return { redundant, primary };
}

/**
 * The blocks of a RED payload without building them (the receive path runs this for every packet of
 * every agent): the whole payload is checked first (RtpError on anything malformed, before any call),
 * then `block` is called for the PRIMARY first, then each redundant block oldest first, with its
 * payload type, absolute timestamp and byte range [from, to) in `payload`.
 */
export function scanRed(
  payload: Uint8Array, rtpTimestamp: number,
  block: (payloadType: number, timestamp: number, from: number, to: number, primary: boolean) => void,
): void {
  // Pass 1: headers (4 bytes each with the F bit, 1 byte for the last) and the data they announce.
  let o = 0;
  let data = 0;
  for (;;) {
    if (o >= payload.length) throw new RtpError('BAD_RED', 'RED payload ends inside its block headers');
    const b = payload[o]!;
    if (!(b & 0x80)) { o += 1; break; }
    if (o + 4 > payload.length) throw new RtpError('BAD_RED', 'RED payload ends inside a 4-byte block header');
    o += 4;
  }
  const headerEnd = o;
  for (let h = 0; h + 1 < headerEnd; h += 4) {
    const len = ((payload[h + 2]! & 0x03) << 8) | payload[h + 3]!;
    if (headerEnd + data + len > payload.length) throw new RtpError('BAD_RED', `RED block of ${len} bytes runs past the payload end`);
    data += len;
  }
  // Pass 2: the primary (after all redundant data), then the redundant blocks in wire order.
  block(payload[headerEnd - 1]! & 0x7f, rtpTimestamp >>> 0, headerEnd + data, payload.length, true);
  let at = headerEnd;
  for (let h = 0; h + 1 < headerEnd; h += 4) {
    const offset = (payload[h + 1]! << 6) | (payload[h + 2]! >> 2);
    const len = ((payload[h + 2]! & 0x03) << 8) | payload[h + 3]!;
    block(payload[h]! & 0x7f, (rtpTimestamp - offset) >>> 0, at, at + len, false);
    at += len;
  }
}

// ----------------------------------------------------------------------------------------------- RTCP

/** Report block of SR/RR (RFC 3550 §6.4.1). */
export interface ReportBlock {
  /** SSRC of the source this block reports on. */
  ssrc: number;
  /** Fraction of packets lost since the previous report, 0..1 (8-bit fixed point on the wire). */
  fractionLost: number;
  /** Cumulative packets lost (24-bit signed; duplicates can make it negative). */
  cumulativeLost: number;
  /** Cycles × 65536 + highest sequence received. */
  extendedHighestSeq: number;
  /** Interarrival jitter in RTP timestamp units (RFC 3550 A.8). */
  jitter: number;
  /** Middle 32 bits of the NTP timestamp of the last SR received from this source, 0 if none. */
  lastSr: number;
  /** Delay since that SR, in 1/65536 s, 0 if none. */
  delaySinceLastSr: number;
}

export interface SenderInfo {
  /** Wallclock (here: controller time, ms since the Unix epoch) of this report. */
  ntpMs: number;
  /** Middle 32 bits of the 64-bit NTP timestamp (what LSR echoes). */
  ntpMiddle: number;
  rtpTimestamp: number;
  packetCount: number;
  octetCount: number;
}

export type RtcpPacket =
  | { type: 'sr'; ssrc: number; sender: SenderInfo; reports: ReportBlock[] }
  | { type: 'rr'; ssrc: number; reports: ReportBlock[] }
  | { type: 'bye'; ssrcs: number[]; reason?: string }
  | { type: 'app'; ssrc: number; subtype: number; name: string; data: Uint8Array }
  | { type: 'other'; packetType: number; count: number; body: Uint8Array };

/** Seconds between 1900-01-01 (NTP era 0) and 1970-01-01. */
const NTP_UNIX_OFFSET_S = 2_208_988_800;

/** 64-bit NTP timestamp (RFC 3550 §4) of a Unix-epoch millisecond time, as [seconds, fraction]. */
export function msToNtp(ms: number): [number, number] {
  const s = Math.floor(ms / 1000);
  const frac = Math.floor(((ms - s * 1000) / 1000) * U32);
  return [(s + NTP_UNIX_OFFSET_S) >>> 0, Math.min(frac, 0xffff_ffff) >>> 0];
}

export function ntpToMs(sec: number, frac: number): number {
  return (sec - NTP_UNIX_OFFSET_S) * 1000 + (frac / U32) * 1000;
}

/** The "middle 32 bits" of an NTP timestamp, as echoed in LSR (RFC 3550 §6.4.1). */
export function ntpMiddle32(ms: number): number {
  const [s, f] = msToNtp(ms);
  return (((s & 0xffff) << 16) | (f >>> 16)) >>> 0;
}

function writeReportBlock(dv: DataView, o: number, r: ReportBlock): void {
  checkUint('report SSRC', r.ssrc, 0xffff_ffff);
  dv.setUint32(o, r.ssrc);
  const fraction = Math.max(0, Math.min(255, Math.floor(r.fractionLost * 256)));
  // Cumulative lost is a 24-bit signed integer: clamp, as A.3 says, rather than wrap.
  const cum = Math.max(-0x80_0000, Math.min(0x7f_ffff, Math.round(r.cumulativeLost)));
  dv.setUint32(o + 4, ((fraction << 24) | (cum & 0xff_ffff)) >>> 0);
  dv.setUint32(o + 8, r.extendedHighestSeq >>> 0);
  dv.setUint32(o + 12, Math.max(0, Math.min(0xffff_ffff, Math.round(r.jitter))) >>> 0);
  dv.setUint32(o + 16, r.lastSr >>> 0);
  dv.setUint32(o + 20, r.delaySinceLastSr >>> 0);
}

function readReportBlock(dv: DataView, o: number): ReportBlock {
  const w = dv.getUint32(o + 4);
  let cum = w & 0xff_ffff;
  if (cum & 0x80_0000) cum -= 0x100_0000;
  return {
    ssrc: dv.getUint32(o),
    fractionLost: (w >>> 24) / 256,
    cumulativeLost: cum,
    extendedHighestSeq: dv.getUint32(o + 8),
    jitter: dv.getUint32(o + 12),
    lastSr: dv.getUint32(o + 16),
    delaySinceLastSr: dv.getUint32(o + 20),
  };
}

function rtcpHeader(out: Uint8Array, count: number, pt: number): void {
  const words = out.length / 4 - 1;
  out[0] = (RTP_VERSION << 6) | (count & 0x1f);
  out[1] = pt;
  out[2] = words >> 8;
  out[3] = words & 0xff;
}

/** Receiver Report (RFC 3550 §6.4.2); at most 31 report blocks. */
export function buildReceiverReport(ssrc: number, reports: ReportBlock[] = []): Uint8Array {
  checkUint('RR SSRC', ssrc, 0xffff_ffff);
  if (reports.length > 31) throw new RtpError('BAD_FIELD', 'an RR carries at most 31 report blocks');
  const out = new Uint8Array(8 + 24 * reports.length);
  const dv = new DataView(out.buffer);
  rtcpHeader(out, reports.length, RTCP_RR);
  dv.setUint32(4, ssrc);
  reports.forEach((r, i) => writeReportBlock(dv, 8 + 24 * i, r));
  return out;
}

/** Sender Report (RFC 3550 §6.4.1). `ntpMs` is the sender's wallclock (here: controller time). */
export function buildSenderReport(ssrc: number, s: { ntpMs: number; rtpTimestamp: number; packetCount: number; octetCount: number }, reports: ReportBlock[] = []): Uint8Array {
  checkUint('SR SSRC', ssrc, 0xffff_ffff);
  if (reports.length > 31) throw new RtpError('BAD_FIELD', 'an SR carries at most 31 report blocks');
  const out = new Uint8Array(28 + 24 * reports.length);
  const dv = new DataView(out.buffer);
  rtcpHeader(out, reports.length, RTCP_SR);
  dv.setUint32(4, ssrc);
  const [sec, frac] = msToNtp(s.ntpMs);
  dv.setUint32(8, sec);
  dv.setUint32(12, frac);
  dv.setUint32(16, s.rtpTimestamp >>> 0);
  dv.setUint32(20, s.packetCount >>> 0);
  dv.setUint32(24, s.octetCount >>> 0);
  reports.forEach((r, i) => writeReportBlock(dv, 28 + 24 * i, r));
  return out;
}

/** BYE (RFC 3550 §6.6). */
export function buildBye(ssrcs: number[], reason?: string): Uint8Array {
  if (ssrcs.length > 31) throw new RtpError('BAD_FIELD', 'a BYE carries at most 31 SSRCs');
  const r = reason ? new TextEncoder().encode(reason).subarray(0, 255) : null;
  const body = 4 * ssrcs.length + (r ? 1 + r.length : 0);
  const out = new Uint8Array(4 + Math.ceil(body / 4) * 4);
  const dv = new DataView(out.buffer);
  rtcpHeader(out, ssrcs.length, RTCP_BYE);
  ssrcs.forEach((s, i) => dv.setUint32(4 + 4 * i, s >>> 0));
  if (r) {
    out[4 + 4 * ssrcs.length] = r.length;
    out.set(r, 5 + 4 * ssrcs.length);
  }
  return out;
}

/** APP (RFC 3550 §6.7): 4-character ASCII name, 5-bit subtype, data padded to 32 bits by the caller. */
export function buildApp(ssrc: number, name: string, subtype: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (!/^[\x20-\x7e]{4}$/.test(name)) throw new RtpError('BAD_FIELD', `APP name must be 4 ASCII characters, got ${JSON.stringify(name)}`);
  checkUint('APP subtype', subtype, 31);
  if (data.length % 4 !== 0) throw new RtpError('BAD_FIELD', 'APP data must be a multiple of 4 bytes');
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  rtcpHeader(out, subtype, RTCP_APP);
  dv.setUint32(4, ssrc >>> 0);
  for (let i = 0; i < 4; i++) out[8 + i] = name.charCodeAt(i);
  out.set(data, 12);
  return out;
}

/** Concatenate RTCP packets into one compound datagram (RFC 3550 §6.1: the first should be SR or RR). */
export function compoundRtcp(...packets: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(packets.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of packets) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Parse a (compound) RTCP datagram (RFC 3550 §6.1, with the structural checks of A.2: version 2,
 * lengths that add up to the datagram, padding only in the last packet).
 */
export function parseRtcp(buf: Uint8Array): RtcpPacket[] {
  const out: RtcpPacket[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length < 4) throw new RtpError('TOO_SHORT', `RTCP datagram of ${buf.length} bytes is shorter than one header`);
  let o = 0;
  while (o < buf.length) {
    if (o + 4 > buf.length) throw new RtpError('TRUNCATED', 'RTCP datagram ends inside a packet header');
    const b0 = buf[o]!;
    if (b0 >> 6 !== RTP_VERSION) throw new RtpError('BAD_VERSION', `RTCP version ${b0 >> 6}, expected 2`);
    const pt = buf[o + 1]!;
    if (pt < 192 || pt > 223) throw new RtpError('NOT_RTCP', `packet type ${pt} is not RTCP`);
    const len = 4 * (dv.getUint16(o + 2) + 1);
    if (o + len > buf.length) throw new RtpError('TRUNCATED', `RTCP packet of ${len} bytes runs past the datagram end`);
    const count = b0 & 0x1f;
    let end = o + len;
    if (b0 & 0x20) {
      if (end !== buf.length) throw new RtpError('BAD_PADDING', 'RTCP padding is only allowed in the last packet of a compound');
      const pad = buf[end - 1]!;
      if (pad === 0 || pad > len - 4) throw new RtpError('BAD_PADDING', `RTCP padding count ${pad} is invalid`);
      end -= pad;
    }
    const body = o + 4;
    const need = (n: number): void => {
      if (body + n > end) throw new RtpError('BAD_RTCP', `RTCP packet type ${pt} too short for its ${count} items`);
    };
    switch (pt) {
      case RTCP_SR: {
        need(24 + 24 * count);
        const sec = dv.getUint32(body + 4);
        const frac = dv.getUint32(body + 8);
        const reports: ReportBlock[] = [];
        for (let i = 0; i < count; i++) reports.push(readReportBlock(dv, body + 24 + 24 * i));
        out.push({
          type: 'sr',
          ssrc: dv.getUint32(body),
          sender: {
            ntpMs: ntpToMs(sec, frac),
            ntpMiddle: (((sec & 0xffff) << 16) | (frac >>> 16)) >>> 0,
            rtpTimestamp: dv.getUint32(body + 12),
            packetCount: dv.getUint32(body + 16),
            octetCount: dv.getUint32(body + 20),
          },
          reports,
        });
        break;
      }
      case RTCP_RR: {
        need(4 + 24 * count);
        const reports: ReportBlock[] = [];
        for (let i = 0; i < count; i++) reports.push(readReportBlock(dv, body + 4 + 24 * i));
        out.push({ type: 'rr', ssrc: dv.getUint32(body), reports });
        break;
      }
      case RTCP_BYE: {
        need(4 * count);
        const ssrcs: number[] = [];
        for (let i = 0; i < count; i++) ssrcs.push(dv.getUint32(body + 4 * i));
        let reason: string | undefined;
        const r = body + 4 * count;
        if (r < end) {
          const n = buf[r]!;
          if (r + 1 + n > end) throw new RtpError('BAD_RTCP', 'BYE reason runs past the packet end');
          reason = new TextDecoder().decode(buf.subarray(r + 1, r + 1 + n));
        }
        out.push(reason === undefined ? { type: 'bye', ssrcs } : { type: 'bye', ssrcs, reason });
        break;
      }
      case RTCP_APP: {
        need(8);
        out.push({
          type: 'app',
          ssrc: dv.getUint32(body),
          subtype: count,
          name: String.fromCharCode(...buf.subarray(body + 4, body + 8)),
          data: buf.subarray(body + 8, end),
        });
        break;
      }
      default:
        out.push({ type: 'other', packetType: pt, count, body: buf.subarray(body, end) });
    }
    o += len;
  }
  return out;
}

// --------------------------------------------------------------------- hello / keepalive (symmetric RTP)

/** APP name of this project's receiver hello/keepalive. */
export const HELLO_APP_NAME = 'RDIO';
export const HELLO_APP_SUBTYPE = 1;

/**
 * The receiver's hello/keepalive: a compound RTCP packet [RR, APP "RDIO" subtype 1 carrying a token]
 * sent from the socket the receiver listens on. The sender learns the receiver's public address from
 * it (symmetric RTP, RFC 4961) and checks the token before sending there; repeated, it holds the NAT
 * mapping open. APP data: u16 token length, UTF-8 token, zero padding to 32 bits.
 */
export function buildHello(o: { ssrc: number; token: string; reports?: ReportBlock[] }): Uint8Array {
  const t = new TextEncoder().encode(o.token);
  if (t.length > 1024) throw new RtpError('BAD_FIELD', 'hello token longer than 1024 bytes');
  const data = new Uint8Array(Math.ceil((2 + t.length) / 4) * 4);
  data[0] = t.length >> 8;
  data[1] = t.length & 0xff;
  data.set(t, 2);
  return compoundRtcp(buildReceiverReport(o.ssrc, o.reports ?? []), buildApp(o.ssrc, HELLO_APP_NAME, HELLO_APP_SUBTYPE, data));
}

/** The token of a hello APP packet, or null if `p` is not one (or is malformed). */
export function helloToken(p: RtcpPacket): { ssrc: number; token: string } | null {
  if (p.type !== 'app' || p.name !== HELLO_APP_NAME || p.subtype !== HELLO_APP_SUBTYPE || p.data.length < 2) return null;
  const n = (p.data[0]! << 8) | p.data[1]!;
  if (2 + n > p.data.length) return null;
  return { ssrc: p.ssrc, token: new TextDecoder().decode(p.data.subarray(2, 2 + n)) };
}

/**
 * Clock-offset exchange on the RTP socket (the issue allows moving time sync there when MQTT is too
 * noisy): APP "RDIO" subtype 2 = ping {t0}, subtype 3 = pong {t0 echoed, t1 receive, t2 send}, times as
 * IEEE-754 float64 ms. The pinger stamps t3 on arrival and feeds {t0, t1, t2, t3} to an NTP-style
 * estimator (edge-agent/src/time-sync.ts createOffsetEstimator).
 */
export const TIME_PING_SUBTYPE = 2;
export const TIME_PONG_SUBTYPE = 3;

export function buildTimePing(ssrc: number, t0: number): Uint8Array {
  const d = new Uint8Array(8);
  new DataView(d.buffer).setFloat64(0, t0);
  return buildApp(ssrc, HELLO_APP_NAME, TIME_PING_SUBTYPE, d);
}

export function buildTimePong(ssrc: number, t: { t0: number; t1: number; t2: number }): Uint8Array {
  const d = new Uint8Array(24);
  const dv = new DataView(d.buffer);
  dv.setFloat64(0, t.t0);
  dv.setFloat64(8, t.t1);
  dv.setFloat64(16, t.t2);
  return buildApp(ssrc, HELLO_APP_NAME, TIME_PONG_SUBTYPE, d);
}

/** A time-sync ping/pong from a parsed RTCP packet, or null. */
export function parseTimeSync(p: RtcpPacket): { kind: 'ping'; ssrc: number; t0: number } | { kind: 'pong'; ssrc: number; t0: number; t1: number; t2: number } | null {
  if (p.type !== 'app' || p.name !== HELLO_APP_NAME) return null;
  const dv = new DataView(p.data.buffer, p.data.byteOffset, p.data.byteLength);
  if (p.subtype === TIME_PING_SUBTYPE && p.data.length >= 8) return { kind: 'ping', ssrc: p.ssrc, t0: dv.getFloat64(0) };
  if (p.subtype === TIME_PONG_SUBTYPE && p.data.length >= 24) return { kind: 'pong', ssrc: p.ssrc, t0: dv.getFloat64(0), t1: dv.getFloat64(8), t2: dv.getFloat64(16) };
  return null;
}

// ------------------------------------------------------------------------ reception statistics (A.1)

export interface ReceptionStatsOptions {
  /** RTP clock rate (Hz); 48000 for Opus (RFC 7587 §4.1). */
  clockRate?: number;
  /**
   * Sequential packets needed before a source is valid (A.1 MIN_SEQUENTIAL). 0 accepts the first
   * packet at once, which fits a session whose SSRC was announced out of band.
   */
  probation?: number;
}

export interface ReceptionSnapshot {
  /** Packets counted by A.1 (duplicates included, as the RFC does). */
  received: number;
  expected: number;
  cumulativeLost: number;
  extendedHighestSeq: number;
  /** Interarrival jitter in RTP timestamp units (A.8). */
  jitter: number;
  jitterMs: number;
  /** A.1 resets after a large sequence jump (the sender restarted). */
  restarts: number;
}

const RTP_SEQ_MOD = 0x1_0000;
const MAX_DROPOUT = 3000;
const MAX_MISORDER = 100;

/**
 * Per-source reception state of RFC 3550 Appendix A.1 (sequence validation and extended highest
 * sequence), A.3 (expected, lost, fraction lost per interval) and A.8 (interarrival jitter). The
 * jitter is kept in floating point (A.8's integer form scaled by 16 rounds the same way to within a
 * timestamp unit).
 */
export function createReceptionStats(opts: ReceptionStatsOptions = {}) {
  const clockRate = opts.clockRate ?? OPUS_RTP_CLOCK_RATE;
  const minSequential = opts.probation ?? 0;
  let started = false;
  let maxSeq = 0;
  let cycles = 0;
  let baseSeq = 0;
  let badSeq = RTP_SEQ_MOD + 1;
  let probation = minSequential;
  let received = 0;
  let expectedPrior = 0;
  let receivedPrior = 0;
  let transit: number | null = null;
  let jitter = 0;
  let restarts = 0;
  let lastSr: { middle: number; atMs: number } | null = null;

  function initSeq(seq: number): void {
    baseSeq = seq;
    maxSeq = seq;
    badSeq = RTP_SEQ_MOD + 1;
    cycles = 0;
    received = 0;
    receivedPrior = 0;
    expectedPrior = 0;
  }

  /** A.1 update_seq: returns false for a packet that is not (yet) valid. */
  function updateSeq(seq: number): boolean {
    if (!started) {
      started = true;
      initSeq(seq);
      maxSeq = seq - 1; // as A.1's caller does: the first packet then counts as in order
      if (probation > 0) return probationStep(seq);
      maxSeq = seq;
      received++;
      return true;
    }
    if (probation > 0) return probationStep(seq);
    const udelta = (seq - maxSeq) & 0xffff;
    if (udelta < MAX_DROPOUT) {
      if (seq < maxSeq) cycles += RTP_SEQ_MOD; // wrapped
      maxSeq = seq;
    } else if (udelta <= RTP_SEQ_MOD - MAX_MISORDER) {
      // A very large jump: two in a row means the sender restarted; resync.
      if (seq === badSeq) {
        initSeq(seq);
        restarts++;
      } else {
        badSeq = (seq + 1) & (RTP_SEQ_MOD - 1);
        return false;
      }
    } else {
      // duplicate or reordered packet: counted, max unchanged
    }
    received++;
    return true;
  }

  function probationStep(seq: number): boolean {
    if (seq === ((maxSeq + 1) & 0xffff)) {
      probation--;
      maxSeq = seq;
      if (probation === 0) {
        initSeq(seq);
        received++;
        return true;
      }
    } else {
      probation = minSequential - 1;
      maxSeq = seq;
    }
    return false;
  }

  return {
    /**
     * Account one arriving packet. `arrivalMs` is on the receiver's own clock: jitter only uses
     * differences, so any clock works (A.8). Returns false while the source is on probation or for a
     * packet A.1 rejects as a wild jump.
     */
    update(seq: number, rtpTimestamp: number, arrivalMs: number): boolean {
      const ok = updateSeq(seq & 0xffff);
      if (!ok) return false;
      // A.8: D(i-1,i) = (Rj − Ri) − (Sj − Si); J += (|D| − J)/16
      const t = (arrivalMs * clockRate) / 1000 - rtpTimestamp;
      if (transit !== null) {
        let d = t - transit;
        // Both terms are modulo 2^32 in A.8's integer arithmetic; unwrap the timestamp part.
        if (d > U32 / 2) d -= U32;
        else if (d < -U32 / 2) d += U32;
        jitter += (Math.abs(d) - jitter) / 16;
      }
      transit = t;
      return true;
    },
    /** Remember an SR from this source for LSR/DLSR (RFC 3550 §6.4.1). */
    senderReport(ntpMiddle: number, arrivalMs: number): void {
      lastSr = { middle: ntpMiddle, atMs: arrivalMs };
    },
    snapshot(): ReceptionSnapshot {
      const ext = cycles + maxSeq;
      const expected = started && probation === 0 ? ext - baseSeq + 1 : 0;
      return { received, expected, cumulativeLost: expected - received, extendedHighestSeq: ext, jitter, jitterMs: (jitter * 1000) / clockRate, restarts };
    },
    /** Fill a report block (A.3) and start a new reporting interval. */
    report(sourceSsrc: number, nowMs: number): ReportBlock {
      const ext = cycles + maxSeq;
      const expected = started && probation === 0 ? ext - baseSeq + 1 : 0;
      const expectedInterval = expected - expectedPrior;
      expectedPrior = expected;
      const receivedInterval = received - receivedPrior;
      receivedPrior = received;
      const lostInterval = expectedInterval - receivedInterval;
      const fraction = expectedInterval === 0 || lostInterval <= 0 ? 0 : Math.floor((lostInterval * 256) / expectedInterval) / 256;
      return {
        ssrc: sourceSsrc,
        fractionLost: fraction,
        cumulativeLost: expected - received,
        extendedHighestSeq: ext >>> 0,
        jitter: Math.round(jitter),
        lastSr: lastSr ? lastSr.middle : 0,
        delaySinceLastSr: lastSr ? Math.max(0, Math.round(((nowMs - lastSr.atMs) / 1000) * 65536)) >>> 0 : 0,
      };
    },
  };
}
export type ReceptionStats = ReturnType<typeof createReceptionStats>;

/**
 * Round-trip time from a report block received at `arrivalMs` (sender's wallclock): A − LSR − DLSR
 * (RFC 3550 §6.4.1), in ms; null when the block has no LSR.
 */
export function roundTripMs(block: ReportBlock, arrivalMs: number): number | null {
  if (!block.lastSr) return null;
  const a = ntpMiddle32(arrivalMs);
  const rtt = (a - block.lastSr - block.delaySinceLastSr) >>> 0;
  return (rtt / 65536) * 1000;
}
