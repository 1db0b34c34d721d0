/**
 * A media file played live (a file session, an emergency clip or its TTS), decoded in-process: the
 * library's Ogg/Opus rendition goes through audio-pipeline's CRC-checked demuxer and the libopus wasm
 * decoder (opus-stream.ts, the decoder the agents use for cached media), not through an ffmpeg child.
 *
 * Why not ffmpeg: an emergency's clock runs from the operator's press, and the clusters are joining at
 * that moment on a controller whose cores are busy with a thousand hellos. Starting a process there
 * (exec, dynamic linking, probing the file) took up to ~900 ms in the emergency bench before its first PCM
 * reached the sender; the targets were ready and the session sent silence until then. Here the file is
 * read and indexed and the decoder instantiated while the clusters join, and the first blocks are decoded
 * before the gate opens. It also keeps files and emergencies off the supervisor's live ffmpeg slots
 * (relays and sound cards still need ffmpeg).
 *
 * Pacing is the session sender's back-pressure, as for the ffmpeg sources: blocks of 20 ms are handed on
 * while write() accepts them and the rest waits for 'drain', so the PCM taps behind the sender see real
 * time. `repeat` plays the file that many times; `durationMs` bounds the whole output.
 */
import fs from 'node:fs/promises';
import { indexOggOpus, openOpusStream, type OggOpusIndex, type OpusPcmStream } from '../../../audio-pipeline/src/opus-stream.js';
import type { SessionSender } from '../../../audio-pipeline/src/live/index.js';
import { LIVE_SAMPLE_RATE, type PacedSource } from './sources.js';

const BLOCK = LIVE_SAMPLE_RATE / 50; // 20 ms

/**
 * The last files' indexes, by path, checked against size and mtime: an emergency clip is usually played
 * again (every drill, every repeat of an alert), and indexing reads and CRC-checks the whole file on the
 * controller's event loop while it delivers a thousand announcements. Bounded by INDEX_CACHE_BYTES of
 * file data (an index holds views into its file).
 */
const INDEX_CACHE_BYTES = 64 * 1024 * 1024;
const indexCache = new Map<string, { size: number; mtimeMs: number; index: OggOpusIndex }>();

async function indexOf(path: string): Promise<OggOpusIndex> {
  const st = await fs.stat(path);
  const hit = indexCache.get(path);
  if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) {
    indexCache.delete(path);
    indexCache.set(path, hit); // most recently used last
    return hit.index;
  }
  const index = indexOggOpus(await fs.readFile(path));
  indexCache.delete(path);
  if (st.size <= INDEX_CACHE_BYTES) {
    indexCache.set(path, { size: st.size, mtimeMs: st.mtimeMs, index });
    let total = 0;
    for (const e of indexCache.values()) total += e.size;
    for (const [k, e] of indexCache) {
      if (total <= INDEX_CACHE_BYTES) break;
      indexCache.delete(k);
      total -= e.size;
    }
  }
  return index;
}

export interface OpusFileSourceOptions {
  sender: SessionSender;
  /** An Ogg/Opus file (the media library's `opus` rendition). */
  path: string;
  /** Plays of the file, one after another (default 1). */
  repeat?: number;
  /** Bound of the whole output. */
  durationMs?: number;
  /** Hold the PCM until this resolves (the targets are ready); the file is opened and decoded meanwhile. */
  gate?: Promise<void>;
  /** Decoded ahead of the gate (default 200 ms, the paced sender's queue). */
  prerollMs?: number;
}

/**
 * Open the file and start decoding it into `sender`. Rejects (nothing sent) if the file cannot be read
 * or is not a valid Ogg/Opus stream, with the demuxer's reason.
 */
export async function startOpusFileSource(o: OpusFileSourceOptions): Promise<PacedSource> {
  const index = await indexOf(o.path);
  const repeat = Math.max(1, Math.floor(o.repeat ?? 1));
  const limit = o.durationMs !== undefined ? Math.max(0, Math.round((o.durationMs / 1000) * LIVE_SAMPLE_RATE)) : Infinity;
  let stream: OpusPcmStream | null = await openOpusStream(index);
  let plays = 1;
  let delivered = 0;
  let stopped = false;
  let wake: (() => void) | null = null;
  const onDrain = () => { const w = wake; wake = null; w?.(); };
  let stoppedNow!: () => void;
  const stoppedP = new Promise<void>((resolve) => { stoppedNow = resolve; });
  o.sender.on('drain', onDrain);

  /** The next block of PCM, or null at the end (of the last play, or of durationMs). */
  async function nextBlock(): Promise<Float32Array | null> {
    while (stream && !stopped && delivered < limit) {
      const out = new Float32Array(Math.min(BLOCK, limit - delivered));
      const n = stream.read(out);
      if (n > 0) {
        delivered += n;
        return n < out.length ? out.subarray(0, n) : out;
      }
      stream.close();
      stream = null;
      if (plays >= repeat || index.totalFrames === 0) break;
      plays++;
      stream = await openOpusStream(index);
    }
    return null;
  }

  // Decoded before the gate: the decoder's first packets (and its code's first runs) are off the critical path.
  const held: Float32Array[] = [];
  const prerollBlocks = Math.max(1, Math.ceil((o.prerollMs ?? 200) / 20));
  for (let i = 0; i < prerollBlocks; i++) {
    const b = await nextBlock();
    if (!b) break;
    held.push(b);
  }

  const done = (async () => {
    try {
      // A stop while the gate is still closed ends it at once, whatever becomes of the gate.
      if (o.gate) await Promise.race([o.gate, stoppedP]);
      for (;;) {
        if (stopped) return;
        const b = held.length ? held.shift()! : await nextBlock();
        if (!b) return;
        if (!o.sender.write(b)) {
          if (stopped) return;
          await new Promise<void>((resolve) => { wake = resolve; });
        }
      }
    } finally {
      o.sender.off('drain', onDrain);
      stream?.close();
      stream = null;
    }
  })();
  return {
    done,
    stop() {
      if (stopped) return;
      stopped = true;
      held.length = 0;
      stoppedNow();
      onDrain();
    },
  };
}
