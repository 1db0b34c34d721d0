/**
 * Unit boundaries in an encoder's byte stream, so a listener can join at a point its decoder accepts:
 * whole Ogg pages (RFC 3533 §6) with the Opus header pages kept apart (RFC 7845 §3: a decoder needs
 * OpusHead and OpusTags before any audio page), and whole MPEG audio frames (ISO/IEC 11172-3 §2.4.2.3,
 * 13818-3 for the 22.05/24 kHz rates) for MP3, which a decoder can pick up at any frame.
 */

export interface OggUnit {
  bytes: Buffer;
  /** Part of the Opus header (OpusHead / OpusTags pages) every listener must receive first. */
  header: boolean;
  /** The page starts with the continuation of a packet from the previous page (header_type bit 0). */
  continued: boolean;
}

/** Incremental Ogg page splitter: push encoder output, get whole pages (raw bytes). */
export function createOggPageSplitter() {
  let buf: Buffer = Buffer.alloc(0);
  /** Packets completed so far in the header (OpusHead, OpusTags): the first two of the stream. */
  let headerPackets = 0;
  return {
    push(chunk: Buffer): OggUnit[] {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const out: OggUnit[] = [];
      let pos = 0;
      for (;;) {
        if (buf.length - pos < 27) break;
        if (buf.readUInt32BE(pos) !== 0x4f676753) {
          // Resynchronise on the next capture pattern "OggS" (should not happen with our own encoder).
          const next = buf.indexOf('OggS', pos + 1, 'latin1');
          pos = next < 0 ? buf.length - 3 : next;
          continue;
        }
        const nseg = buf[pos + 26]!;
        if (buf.length - pos < 27 + nseg) break;
        let body = 0;
        let completed = 0;
        for (let i = 0; i < nseg; i++) {
          const lace = buf[pos + 27 + i]!;
          body += lace;
          if (lace < 255) completed++; // RFC 3533 §5: a lacing value < 255 ends a packet
        }
        const len = 27 + nseg + body;
        if (buf.length - pos < len) break;
        const header = headerPackets < 2;
        if (header) headerPackets += completed;
        out.push({ bytes: Buffer.from(buf.subarray(pos, pos + len)), header, continued: (buf[pos + 5]! & 0x01) !== 0 });
        pos += len;
      }
      buf = pos > 0 ? Buffer.from(buf.subarray(pos)) : buf;
      return out;
    },
  };
}

// Bitrates (kb/s) of Layer III by index; MPEG-1 and MPEG-2/2.5 (LSF) tables.
const MP3_BITRATES_V1 = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0];
const MP3_BITRATES_V2 = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0];
const MP3_RATES: Record<number, number[]> = { 3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000] };

/** Length in bytes of the Layer III frame whose header is at `b[p..p+4)`, or 0 if it is not one. */
export function mp3FrameLength(b: Buffer, p: number): number {
  if (b[p] !== 0xff || (b[p + 1]! & 0xe0) !== 0xe0) return 0;
  const version = (b[p + 1]! >> 3) & 3; // 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5, 1 reserved
  const layer = (b[p + 1]! >> 1) & 3; // 1 = Layer III
  if (version === 1 || layer !== 1) return 0;
  const bi = b[p + 2]! >> 4;
  const si = (b[p + 2]! >> 2) & 3;
  const pad = (b[p + 2]! >> 1) & 1;
  const kbps = (version === 3 ? MP3_BITRATES_V1 : MP3_BITRATES_V2)[bi]!;
  const rate = MP3_RATES[version]?.[si];
  if (!kbps || !rate) return 0;
  return Math.floor(((version === 3 ? 144 : 72) * kbps * 1000) / rate) + pad;
}

/** Incremental MP3 frame splitter: push encoder output, get whole frames. Bytes between frames are skipped. */
export function createMp3FrameSplitter() {
  let buf: Buffer = Buffer.alloc(0);
  return {
    push(chunk: Buffer): Buffer[] {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const out: Buffer[] = [];
      let pos = 0;
      while (buf.length - pos >= 4) {
        const len = mp3FrameLength(buf, pos);
        if (len === 0) { pos++; continue; }
        if (buf.length - pos < len) break;
        out.push(Buffer.from(buf.subarray(pos, pos + len)));
        pos += len;
      }
      buf = pos > 0 ? Buffer.from(buf.subarray(pos)) : buf;
      return out;
    },
  };
}
