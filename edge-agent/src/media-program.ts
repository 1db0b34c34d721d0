import fs from 'node:fs/promises';
import type { AiringItem } from '../../schemas/src/index.js';
import { SAMPLE_RATE } from './hardware.js';
import { indexOggOpus, openOpusStream, type OggOpusIndex, type OpusPcmStream } from './opus-decode.js';
import type { Program } from './player.js';

/** A piece of an airing that produces samples in order. */
interface Segment {
  read(out: Float32Array): number;
  ended(): boolean;
  close(): void;
}

const framesOf = (ms: number) => Math.max(0, Math.round((ms / 1000) * SAMPLE_RATE));

function silenceSegment(frames: number): Segment {
  let pos = 0;
  return {
    read(out) {
      const n = Math.min(out.length, frames - pos);
      out.fill(0, 0, n);
      pos += n;
      return n;
    },
    ended: () => pos >= frames,
    close() {},
  };
}

/** Tone sequences (Hz, ms) of the synthesised chimes: a two-note "ding-dong" and rising/falling cues. */
const CHIMES: Record<'attention' | 'start' | 'end', [number, number][]> = {
  attention: [[880, 400], [660, 600]],
  start: [[523, 180], [659, 180], [784, 360]],
  end: [[784, 180], [659, 180], [523, 360]],
};

/** A chime synthesised on the agent (no download): bell-like notes with exponential decay, then silence. */
export function chimeSegment(kind: 'attention' | 'start' | 'end', durationMs: number, startFrame = 0): Segment {
  const total = framesOf(durationMs);
  const notes: { f: number; from: number; to: number }[] = [];
  let at = 0;
  for (const [f, ms] of CHIMES[kind]) {
    const len = framesOf(ms);
    notes.push({ f, from: at, to: Math.min(total, at + len) });
    at += len;
  }
  const attack = framesOf(5);
  let pos = Math.min(total, startFrame);
  return {
    read(out) {
      const n = Math.min(out.length, total - pos);
      for (let i = 0; i < n; i++) {
        const k = pos + i;
        let s = 0;
        for (const note of notes) {
          if (k < note.from || k >= note.to) continue;
          const t = k - note.from;
          const env = Math.min(1, t / attack) * Math.exp(-t / (0.25 * SAMPLE_RATE)) * Math.min(1, (note.to - k) / attack);
          s += 0.4 * env * Math.sin((2 * Math.PI * note.f * t) / SAMPLE_RATE);
        }
        out[i] = s;
      }
      pos += n;
      return n;
    },
    ended: () => pos >= total,
    close() {},
  };
}

function mediaSegment(stream: OpusPcmStream): Segment {
  return { read: (out) => stream.read(out), ended: () => stream.ended(), close: () => stream.close() };
}

export interface MediaResolver {
  /** Local path of a cached, verified media file; undefined if it is not cached. */
  pathOf(sha256: string): string | undefined;
}

export interface AiringProgram extends Program {
  /** Audio emitted so far, ms (including the start offset of a resumed airing). */
  positionMs(): number;
  /** Items that could not be opened (corrupt file) and were played as silence. */
  failedItems(): string[];
  close(): void;
}

/**
 * The samples of one airing, in item order: media decoded in-process from the cache, chimes and silence
 * synthesised, relays held as silence (live relays are the live work). The program knows nothing about
 * time: the player places its first sample at the scheduled instant by sample position.
 *
 * Opening is async (file read, decoder ready): `prepareAiringProgram` opens the first item before it
 * returns and each following one while the previous plays, so read() never waits on I/O.
 */
export async function prepareAiringProgram(o: {
  id: string;
  items: AiringItem[];
  media: MediaResolver;
  /** Resume point, ms into the airing. */
  startOffsetMs?: number;
  onItemError?: (item: AiringItem, err: Error) => void;
}): Promise<AiringProgram> {
  // Skip whole items before the resume point; the remainder is an offset into the first kept item.
  let skip = Math.max(0, o.startOffsetMs ?? 0);
  let first = 0;
  while (first < o.items.length && skip >= o.items[first]!.durationMs) { skip -= o.items[first]!.durationMs; first++; }
  const items = o.items.slice(first);
  const firstOffsetMs = skip;
  const failed: string[] = [];
  const baseMs = o.startOffsetMs ?? 0;
  const opened: (Promise<Segment> | undefined)[] = new Array(items.length);
  const ready: (Segment | undefined)[] = new Array(items.length);

  async function open(i: number): Promise<Segment> {
    const it = items[i]!;
    const offsetFrames = i === 0 ? framesOf(firstOffsetMs) : 0;
    switch (it.kind) {
      case 'silence': return silenceSegment(framesOf(it.durationMs) - offsetFrames);
      case 'relay': return silenceSegment(framesOf(it.durationMs) - offsetFrames);
      case 'chime': return chimeSegment(it.chime, it.durationMs, offsetFrames);
      case 'media': {
        try {
          const p = o.media.pathOf(it.sha256);
          if (!p) throw new Error(`media ${it.mediaId} is not cached`);
          const index: OggOpusIndex = indexOggOpus(await fs.readFile(p));
          return mediaSegment(await openOpusStream(index, { startFrame: offsetFrames }));
        } catch (e) {
          // A file that cannot be decoded plays as silence of its planned length, so the items after
          // it keep their places; the receipt reports the item.
          failed.push(it.mediaId);
          o.onItemError?.(it, e as Error);
          return silenceSegment(framesOf(it.durationMs) - offsetFrames);
        }
      }
    }
  }
  const kick = (i: number) => {
    if (i >= items.length || opened[i]) return;
    opened[i] = open(i).then((s) => { ready[i] = s; return s; });
  };
  if (items.length) {
    kick(0);
    await opened[0];
    kick(1);
  }

  let cur = 0;
  let emitted = 0;
  let done = items.length === 0;
  let closed = false;
  return {
    id: o.id,
    kind: 'airing',
    read(out) {
      let w = 0;
      while (w < out.length && !done) {
        const seg = ready[cur];
        if (!seg) break; // next item still opening: an underrun (the sink pads silence), never a wait
        const n = seg.read(w === 0 ? out : out.subarray(w));
        w += n;
        if (seg.ended()) {
          seg.close();
          cur++;
          if (cur >= items.length) done = true;
          else kick(cur + 1);
        } else if (n === 0) {
          break;
        }
      }
      emitted += w;
      return w;
    },
    ended: () => done || closed,
    positionMs: () => baseMs + (emitted / SAMPLE_RATE) * 1000,
    failedItems: () => failed.slice(),
    close() {
      if (closed) return;
      closed = true;
      for (let i = 0; i < items.length; i++) {
        if (ready[i]) ready[i]!.close();
        else void opened[i]?.then((s) => s.close());
      }
    },
  };
}
