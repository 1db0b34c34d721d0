/**
 * In-process Ogg/Opus decoding for the edge agent (no ffmpeg on the cluster computer): our own
 * Ogg page demuxer (RFC 3533) and Opus-in-Ogg mapping (RFC 7845), with the packets decoded by
 * libopus compiled to WebAssembly (the `opus-decoder` package).
 *
 * - Page CRCs are checked (RFC 3533 §6: CRC-32, polynomial 0x04c11db7, not reflected), so a
 *   damaged cache file is detected rather than played as noise.
 * - OpusHead (RFC 7845 §5.1): channel count, pre-skip, output gain (applied, as the RFC requires),
 *   channel mapping family 0/1. OpusTags is skipped.
 * - Pre-skip: the first `preSkip` decoded samples are the encoder's priming and are dropped.
 * - End trimming (RFC 7845 §4.5): the granule position of the last page gives the exact length;
 *   the padding of the last packet is dropped.
 * Output: 48 kHz, mono (channels averaged), Float32.
 */
import { OpusDecoder } from 'opus-decoder';
import { MediaError } from './errors.js';

export interface OggPage {
  headerType: number;
  granule: bigint;
  serial: number;
  sequence: number;
  /** Packets that end on this page (the first may have started on earlier pages). */
  packets: Uint8Array[];
  /** Bytes of a packet that continues on the next page. */
  partial: Uint8Array | null;
}

export interface OpusHead {
  version: number;
  channels: number;
  preSkip: number;
  inputSampleRate: number;
  /** Output gain, dB (RFC 7845 §5.1: Q7.8). */
  outputGainDb: number;
  mappingFamily: number;
  streamCount: number;
  coupledCount: number;
  mapping: number[];
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let k = 0; k < 8; k++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    t[i] = r >>> 0;
  }
  return t;
})();

/** Ogg's CRC-32 of a page with its CRC field zeroed (RFC 3533 §6). */
export function oggCrc(page: Uint8Array): number {
  let crc = 0;
  for (let i = 0; i < page.length; i++) {
    const b = i >= 22 && i < 26 ? 0 : page[i]!;
    crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ b) & 0xff]!) >>> 0;
  }
  return crc >>> 0;
}

/** Incremental Ogg demuxer: push bytes, get complete pages with their packets. */
export class OggDemuxer {
  private buf: Uint8Array = new Uint8Array(0);
  private carry: Uint8Array[] = [];
  private offset = 0;

  push(chunk: Uint8Array): OggPage[] {
    this.buf = this.buf.length === 0 ? chunk : concat([this.buf, chunk]);
    const pages: OggPage[] = [];
    let pos = 0;
    for (;;) {
      if (this.buf.length - pos < 27) break;
      if (!(this.buf[pos] === 0x4f && this.buf[pos + 1] === 0x67 && this.buf[pos + 2] === 0x67 && this.buf[pos + 3] === 0x53)) {
        throw new MediaError('CORRUPT', `Ogg: no page capture pattern at byte ${this.offset + pos}`);
      }
      const view = new DataView(this.buf.buffer, this.buf.byteOffset + pos);
      if (view.getUint8(4) !== 0) throw new MediaError('CORRUPT', 'Ogg: unsupported stream structure version');
      const nseg = view.getUint8(26);
      if (this.buf.length - pos < 27 + nseg) break;
      let bodyLen = 0;
      for (let i = 0; i < nseg; i++) bodyLen += this.buf[pos + 27 + i]!;
      const pageLen = 27 + nseg + bodyLen;
      if (this.buf.length - pos < pageLen) break;
      const page = this.buf.subarray(pos, pos + pageLen);
      const crc = view.getUint32(22, true);
      if (oggCrc(page) !== crc) throw new MediaError('CORRUPT', `Ogg: page CRC mismatch at byte ${this.offset + pos}`);
      const headerType = view.getUint8(5);
      const granule = view.getBigInt64(6, true);
      const serial = view.getUint32(14, true);
      const sequence = view.getUint32(18, true);
      // Lacing (RFC 3533 §5): a segment < 255 ends a packet.
      const packets: Uint8Array[] = [];
      let body = 27 + nseg;
      let start = body;
      // Continuation flag without a carried packet (joined mid-stream): drop that fragment.
      // No continuation flag but a carried packet: the continuation was lost; drop the carry.
      let dropFirst = (headerType & 0x01) !== 0 && this.carry.length === 0;
      if (!(headerType & 0x01) && this.carry.length > 0) this.carry = [];
      for (let i = 0; i < nseg; i++) {
        const lace = page[27 + i]!;
        body += lace;
        if (lace < 255) {
          const piece = page.subarray(start, body);
          if (dropFirst) dropFirst = false;
          else packets.push(this.carry.length > 0 ? concat([...this.carry, piece]) : piece.slice());
          this.carry = [];
          start = body;
        }
      }
      let partial: Uint8Array | null = null;
      if (start < body && !dropFirst) {
        partial = page.subarray(start, body).slice();
        this.carry.push(partial);
      }
      pages.push({ headerType, granule, serial, sequence, packets, partial });
      pos += pageLen;
    }
    this.offset += pos;
    this.buf = this.buf.subarray(pos).slice();
    return pages;
  }

  /** Bytes left that do not form a complete page. */
  get pending(): number {
    return this.buf.length;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function parseOpusHead(p: Uint8Array): OpusHead {
  if (p.length < 19 || new TextDecoder().decode(p.subarray(0, 8)) !== 'OpusHead') {
    throw new MediaError('NOT_AUDIO', 'Ogg stream is not Opus (no OpusHead)');
  }
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const version = v.getUint8(8);
  if (version >> 4 !== 0) throw new MediaError('CORRUPT', `unsupported OpusHead version ${version}`);
  const channels = v.getUint8(9);
  const mappingFamily = v.getUint8(18);
  let streamCount = 1;
  let coupledCount = channels > 1 ? 1 : 0;
  let mapping = channels > 1 ? [0, 1] : [0];
  if (mappingFamily !== 0) {
    if (p.length < 21 + channels) throw new MediaError('CORRUPT', 'OpusHead channel mapping table truncated');
    streamCount = v.getUint8(19);
    coupledCount = v.getUint8(20);
    mapping = [...p.subarray(21, 21 + channels)];
  }
  return {
    version,
    channels,
    preSkip: v.getUint16(10, true),
    inputSampleRate: v.getUint32(12, true),
    outputGainDb: v.getInt16(16, true) / 256,
    mappingFamily,
    streamCount,
    coupledCount,
    mapping,
  };
}

export interface DecodedOpus {
  sampleRate: 48000;
  /** Mono (channels averaged). */
  samples: Float32Array;
  head: OpusHead;
  /** Final granule position (48 kHz samples including pre-skip). */
  granule: bigint;
  packets: number;
}

/**
 * Streaming Ogg/Opus → 48 kHz mono float decoder. `push()` bytes as they arrive; each call
 * returns the PCM it could produce. `finish()` checks the stream ended cleanly.
 */
export class OggOpusStreamDecoder {
  private readonly demux = new OggDemuxer();
  private head: OpusHead | null = null;
  private tagsSeen = false;
  private decoder: OpusDecoder<48000> | null = null;
  private serial: number | null = null;
  private produced = 0;
  private decodedRaw = 0;
  private gain = 1;
  private eos = false;
  private lastGranule = -1n;
  packets = 0;

  /** Feed bytes in order; resolves with the PCM they complete (the wasm decoder is created on OpusHead). */
  async push(bytes: Uint8Array): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (const page of this.demux.push(bytes)) {
      if (this.serial === null) this.serial = page.serial;
      else if (page.serial !== this.serial) {
        throw new MediaError('CORRUPT', 'Ogg: more than one logical stream (chained/multiplexed Ogg is not supported)');
      }
      if (this.eos) throw new MediaError('CORRUPT', 'Ogg: data after the end-of-stream page');
      for (const pkt of page.packets) {
        if (!this.head) {
          this.head = parseOpusHead(pkt);
          this.gain = 10 ** (this.head.outputGainDb / 20);
          // Pre-skip is applied here, not by the wasm wrapper, so we know exactly what was dropped.
          this.decoder = new OpusDecoder({
            sampleRate: 48000,
            channels: this.head.channels,
            streamCount: this.head.streamCount,
            coupledStreamCount: this.head.coupledCount,
            channelMappingTable: this.head.mapping,
            preSkip: 0,
          });
          await this.decoder.ready;
          continue;
        }
        if (!this.tagsSeen) {
          if (new TextDecoder().decode(pkt.subarray(0, 8)) !== 'OpusTags') throw new MediaError('CORRUPT', 'Ogg/Opus: OpusTags missing');
          this.tagsSeen = true;
          continue;
        }
        out.push(...this.decodePacket(pkt, page));
      }
      if (page.granule >= 0n && page.packets.length > 0) this.lastGranule = page.granule;
      if (page.headerType & 0x04) this.eos = true;
    }
    return out;
  }

  private decodePacket(pkt: Uint8Array, page: OggPage): Float32Array[] {
    const head = this.head!;
    this.packets++;
    const res = this.decoder!.decodeFrame(pkt);
    if (res.errors.length > 0) {
      throw new MediaError('CORRUPT', `Opus packet ${this.packets} cannot be decoded: ${res.errors[0]?.message ?? 'error'}`);
    }
    const n = res.samplesDecoded;
    const chans = res.channelData;
    let mono: Float32Array;
    if (chans.length === 1) mono = chans[0]!.subarray(0, n);
    else {
      mono = new Float32Array(n);
      for (const c of chans) for (let i = 0; i < n; i++) mono[i] = mono[i]! + c[i]! / chans.length;
    }
    const rawStart = this.decodedRaw;
    this.decodedRaw += n;
    // Drop pre-skip.
    let from = Math.max(0, head.preSkip - rawStart);
    let to = n;
    // End trimming: on the last page, its granule position bounds the output (RFC 7845 §4.5).
    if (page.headerType & 0x04 && page.granule >= 0n) {
      const endRaw = Number(page.granule);
      to = Math.max(from, Math.min(n, endRaw - rawStart));
    }
    if (from >= to) return [];
    let chunk = mono.subarray(from, to);
    if (this.gain !== 1 || chunk.buffer === chans[0]?.buffer) {
      const copy = new Float32Array(chunk.length);
      for (let i = 0; i < chunk.length; i++) copy[i] = chunk[i]! * this.gain;
      chunk = copy;
    }
    from = 0;
    this.produced += chunk.length;
    return [chunk];
  }

  /** Check the stream was complete; returns totals. Frees the wasm decoder. */
  finish(): { head: OpusHead; granule: bigint; samples: number; packets: number } {
    this.decoder?.free();
    this.decoder = null;
    if (!this.head) throw new MediaError('EMPTY', 'Ogg/Opus: no OpusHead (empty or not Opus)');
    if (this.demux.pending > 0) throw new MediaError('CORRUPT', `Ogg/Opus: ${this.demux.pending} trailing bytes do not form a page (truncated?)`);
    if (!this.eos) throw new MediaError('CORRUPT', 'Ogg/Opus: the end-of-stream page is missing (truncated?)');
    return { head: this.head, granule: this.lastGranule, samples: this.produced, packets: this.packets };
  }
}

/** Decode a whole Ogg/Opus file held in memory to 48 kHz mono float. */
export async function decodeOggOpus(bytes: Uint8Array): Promise<DecodedOpus> {
  const dec = new OggOpusStreamDecoder();
  const parts = await dec.push(bytes);
  const info = dec.finish();
  const samples = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    samples.set(p, o);
    o += p.length;
  }
  return { sampleRate: 48000, samples, head: info.head, granule: info.granule, packets: info.packets };
}

/**
 * Set the OpusHead output gain of an Ogg/Opus file in place (RFC 7845 §5.1: Q7.8 dB, applied by
 * decoders to their output), fixing the first page's CRC. The first page carries OpusHead alone
 * (RFC 7845 §3), so its length does not change. Returns the gain actually stored (Q7.8-rounded).
 */
export async function setOpusOutputGain(path: string, gainDb: number): Promise<number> {
  const { open } = await import('node:fs/promises');
  const fh = await open(path, 'r+');
  try {
    const head = Buffer.alloc(27 + 255);
    await fh.read(head, 0, head.length, 0);
    if (head.subarray(0, 4).toString('latin1') !== 'OggS') throw new MediaError('CORRUPT', 'not an Ogg file');
    const nseg = head[26]!;
    let bodyLen = 0;
    for (let i = 0; i < nseg; i++) bodyLen += head[27 + i]!;
    const page = Buffer.alloc(27 + nseg + bodyLen);
    await fh.read(page, 0, page.length, 0);
    const at = 27 + nseg;
    if (page.subarray(at, at + 8).toString('latin1') !== 'OpusHead') throw new MediaError('NOT_AUDIO', 'first Ogg page is not OpusHead');
    const q = Math.max(-32768, Math.min(32767, Math.round(gainDb * 256)));
    page.writeInt16LE(q, at + 16);
    page.writeUInt32LE(oggCrc(page), 22);
    await fh.write(page, 0, page.length, 0);
    return q / 256;
  } finally {
    await fh.close();
  }
}
