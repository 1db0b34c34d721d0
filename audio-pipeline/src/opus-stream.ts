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
import { resetOpusDecoderState } from './opus-decoder-state.js';

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
  const decoder = await takeDecoder(h);
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
      giveBackDecoder(h, decoder);
    },
  };
}

// ------------------------------------------------------------------------------ decoder reuse

type StreamDecoder = OpusDecoder<48000>;
type DecoderLayout = Pick<OpusHead, 'channels' | 'streamCount' | 'coupledCount' | 'mapping'>;

/**
 * Closed streams' decoders, reset, by channel layout (opus-decoder-state.ts: a new wasm instance per
 * stream costs CPU and full garbage collections; an emergency opens a stream on the controller in the
 * same moment it must announce to every cluster, and an agent opens one per airing). At most
 * POOL_PER_LAYOUT kept per layout: two streams open at once (a relay feed beside an airing) is the
 * most that happens in practice.
 */
const POOL_PER_LAYOUT = 2;
const pool = new Map<string, StreamDecoder[]>();
const layoutKey = (l: DecoderLayout) => `${l.channels}/${l.streamCount}/${l.coupledCount}/${l.mapping.join(',')}`;

const counts = { instantiated: 0 };

/** Wasm decoder instances made by this process for streams, and those kept for reuse now. */
export function opusStreamDecoderStats(): { instantiated: number; pooled: number } {
  let pooled = 0;
  for (const l of pool.values()) pooled += l.length;
  return { instantiated: counts.instantiated, pooled };
}

async function takeDecoder(l: DecoderLayout): Promise<StreamDecoder> {
  const kept = pool.get(layoutKey(l))?.pop();
  if (kept) return kept;
  counts.instantiated++;
  const d = new OpusDecoder({
    channels: l.channels, streamCount: l.streamCount, coupledStreamCount: l.coupledCount,
    channelMappingTable: l.mapping, preSkip: 0, sampleRate: OPUS_RATE,
  });
  await d.ready;
  return d;
}

function giveBackDecoder(l: DecoderLayout, d: StreamDecoder): void {
  const k = layoutKey(l);
  const list = pool.get(k) ?? [];
  if (list.length >= POOL_PER_LAYOUT) { d.free(); return; }
  try {
    resetOpusDecoderState(d);
  } catch {
    // A decoder whose state cannot be recreated is not kept.
    try { d.free(); } catch { /* already unusable */ }
    return;
  }
  list.push(d);
  pool.set(k, list);
}

/** Our renditions' layout (mono, audio-pipeline/src/normalize.ts). */
const MONO: DecoderLayout = { channels: 1, streamCount: 1, coupledCount: 0, mapping: [0] };

/**
 * Instantiate a decoder for `layout` (default mono, what the library's renditions are) ahead of need,
 * so the first stream opened does not pay for it. A process that opens streams at critical moments
 * (the controller's emergency file source) calls this at start. `packets` (Opus packets of that
 * layout) are decoded once first: V8 compiles a wasm function with its optimising tier only once it
 * has run enough, on background threads, and that work otherwise lands in the first real stream's
 * first seconds (measured: about 60 ms of CPU in an emergency's first 400 ms on the controller).
 */
export async function warmOpusStreamDecoder(o: { layout?: DecoderLayout; packets?: Uint8Array[] } = {}): Promise<void> {
  const layout = o.layout ?? MONO;
  const list = pool.get(layoutKey(layout)) ?? [];
  const d = list.pop() ?? (await takeDecoder(layout));
  try {
    for (const p of o.packets ?? []) d.decodeFrame(p);
  } finally {
    giveBackDecoder(layout, d);
  }
}
