/**
 * In-process Ogg/Opus decoding for cached media: audio-pipeline's Ogg demuxer (RFC 3533, CRC-checked)
 * and OpusHead parser, the Ogg/Opus mapping (RFC 7845: pre-skip, end trimming, output gain) and libopus
 * compiled to wasm (`opus-decoder`, the decoder the live path uses for RTP packets). No ffmpeg is
 * spawned per airing. Unlike audio-pipeline's whole-stream decoder, this one is synchronous per pull
 * and seekable (resume after an interruption), because the sink pulls from its DAC tick.
 *
 * Output is 48 kHz mono float32 (the sinks' format): multichannel streams are averaged to mono.
 */
import { OpusDecoder } from 'opus-decoder';
import { OggDemuxer, parseOpusHead, type OggPage, type OpusHead } from './ogg-opus.js';
import { opusPacketSamples } from './live/rtp.js';

export const OPUS_RATE = 48_000;

/** One Opus packet in an Ogg stream, with the position (in 48 kHz samples, before pre-skip) where it starts. */
export interface OpusPacketRef {
  data: Uint8Array;
  /** Sample index of the first decoded sample, counting from the first audio packet (pre-skip included). */
  start: number;
  /** Samples this packet decodes to (from its TOC byte, RFC 6716 §3.1). */
  samples: number;
}


export interface OggOpusIndex {
  head: OpusHead;
  packets: OpusPacketRef[];
  /** Playable samples after pre-skip and end trimming (RFC 7845 §4.5). */
  totalFrames: number;
}

export class OggOpusError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OggOpusError';
  }
}

/** Samples (48 kHz) one Opus packet decodes to (RFC 6716 §3.1-3.2); the live path's parser, re-exported. */
export { opusPacketSamples };

/**
 * Index an Ogg/Opus file held in memory: the first logical stream's packets with their sample
 * positions. Pages come from audio-pipeline's demuxer (CRC-checked, RFC 3533 §6), so a damaged file is
 * refused rather than played as noise; the packets are decoded later, on demand.
 */
export function indexOggOpus(buf: Uint8Array): OggOpusIndex {
  const demux = new OggDemuxer();
  let pages: OggPage[];
  try {
    pages = demux.push(buf);
  } catch (e) {
    throw new OggOpusError((e as Error).message);
  }
  const serial = pages[0]?.serial;
  const packets: Uint8Array[] = [];
  let lastGranule = -1;
  for (const page of pages) {
    if (page.serial !== serial) continue;
    packets.push(...page.packets);
    // Granule is a signed 64-bit count of samples; Number is exact far beyond any programme length.
    if (page.granule >= 0n && page.packets.length > 0) lastGranule = Number(page.granule);
  }
  if (packets.length < 2) throw new OggOpusError('Ogg/Opus stream has no header packets');
  let head: OpusHead;
  try {
    head = parseOpusHead(packets[0]!);
  } catch (e) {
    throw new OggOpusError((e as Error).message);
  }
  const tags = new TextDecoder().decode(packets[1]!.subarray(0, 8));
  if (tags !== 'OpusTags') throw new OggOpusError('Ogg/Opus stream has no OpusTags packet');
  const refs: OpusPacketRef[] = [];
  let pos = 0;
  for (const data of packets.slice(2)) {
    let samples: number;
    try {
      samples = opusPacketSamples(data);
    } catch (e) {
      throw new OggOpusError(`audio packet ${refs.length}: ${(e as Error).message}`);
    }
    refs.push({ data, start: pos, samples });
    pos += samples;
  }
  // The last page's granule position says how many samples are real (end trimming, RFC 7845 §4.5).
  const end = lastGranule >= 0 ? Math.min(pos, lastGranule) : pos;
  return { head, packets: refs, totalFrames: Math.max(0, end - head.preSkip) };
}

/** Pre-roll decoded and discarded before a seek point so the decoder converges: RFC 7845 §4.6 asks
 * for at least 80 ms; CELT energy prediction still differs by ~10 % then, 240 ms gets under 0.1 %. */
const SEEK_PREROLL = 11_520;

export interface OpusPcmStream {
  readonly totalFrames: number;
  /** Output frames delivered so far (plus the start offset). */
  position(): number;
  /** Fill out[0..] with up to out.length frames; returns frames written (fewer only at the end). */
  read(out: Float32Array): number;
  ended(): boolean;
  /** Decode errors (corrupt packets played as silence). */
  errors(): number;
  close(): void;
}

/**
 * Decode an indexed Ogg/Opus stream on demand, packet by packet, as the sink pulls (a 20 ms packet
 * decodes in well under a millisecond): memory stays at one packet of PCM whatever the programme length.
 * `startFrame` seeks (resume after an interruption) without decoding what came before.
 */
export async function openOpusStream(index: OggOpusIndex, opts: { startFrame?: number } = {}): Promise<OpusPcmStream> {
  const h = index.head;
  const decoder = new OpusDecoder({
    channels: h.channels, streamCount: h.streamCount, coupledStreamCount: h.coupledCount,
    channelMappingTable: h.mapping, preSkip: 0, sampleRate: OPUS_RATE,
  });
  await decoder.ready;
  const gain = 10 ** (h.outputGainDb / 20);
  const total = index.totalFrames;
  const startFrame = Math.max(0, Math.min(total, Math.floor(opts.startFrame ?? 0)));
  // Positions below are in "stream samples" (pre-skip included); output frame f = stream sample f + preSkip.
  let pos = startFrame + h.preSkip;
  const endPos = total + h.preSkip;
  let next = 0;
  const seekFrom = Math.max(0, pos - SEEK_PREROLL);
  while (next < index.packets.length && index.packets[next]!.start + index.packets[next]!.samples <= seekFrom) next++;
  let buf = new Float32Array(0);
  let bufStart = 0;
  let errors = 0;
  let closed = false;

  function decodeNext(): boolean {
    const p = index.packets[next++];
    if (!p) return false;
    const r = decoder.decodeFrame(p.data);
    const n = p.samples;
    const mono = new Float32Array(n);
    if (r.errors.length || r.samplesDecoded === 0) {
      errors++;
    } else {
      const chans = r.channelData;
      const m = Math.min(n, r.samplesDecoded);
      if (chans.length === 1) {
        mono.set(chans[0]!.subarray(0, m));
      } else {
        const k = 1 / chans.length;
        for (let i = 0; i < m; i++) {
          let s = 0;
          for (const c of chans) s += c[i]!;
          mono[i] = s * k;
        }
      }
    }
    if (gain !== 1) for (let i = 0; i < n; i++) mono[i] = mono[i]! * gain;
    buf = mono;
    bufStart = p.start;
    return true;
  }

  return {
    totalFrames: total,
    position: () => pos - h.preSkip,
    read(out) {
      let w = 0;
      while (w < out.length && pos < endPos && !closed) {
        if (pos < bufStart || pos >= bufStart + buf.length) {
          if (!decodeNext()) break;
          continue;
        }
        const from = pos - bufStart;
        const n = Math.min(out.length - w, buf.length - from, endPos - pos);
        out.set(buf.subarray(from, from + n), w);
        w += n;
        pos += n;
      }
      if (pos < endPos && w < out.length && !closed && next >= index.packets.length) pos = endPos; // ran out of packets
      return w;
    },
    ended: () => closed || pos >= endPos,
    errors: () => errors,
    close() {
      if (closed) return;
      closed = true;
      decoder.free();
    },
  };
}
