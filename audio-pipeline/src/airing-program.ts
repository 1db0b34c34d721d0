import fs from 'node:fs/promises';
import type { AiringItem } from '../../schemas/src/index.js';
import { indexOggOpus, openOpusStream, type OggOpusIndex, type OpusPcmStream } from './opus-stream.js';

/** Output rate of an airing program (the agents' DAC rate and Opus' native rate). */
const SAMPLE_RATE = 48_000;

/**
 * What a player pulls PCM from (structurally the agent's Program, edge-agent/src/player.ts): `read` fills
 * `out` with the samples that sound from local time `presentationTime` on.
 */
export interface PcmProgram {
  readonly id: string;
  readonly kind: 'airing' | 'live' | 'test_tone';
  read(out: Float32Array, presentationTime: number): number;
  ended(): boolean;
}

/** A piece of an airing that produces samples in order. */
interface Segment {
  /** `pt`: hardware-clock time at which out[0] sounds, when known (a relay plays by it). */
  read(out: Float32Array, pt?: number): number;
  ended(): boolean;
  close(): void;
}

/**
 * The audio of a scheduled relay item, received live (edge-agent/src/live.ts: a session announced with
 * `airing`). Timed by the session, not by the programme: read() fills `out` with what sounds from
 * hardware-clock time `pt` on (silence before its first sample and after its last).
 */
export interface RelayFeed {
  read(out: Float32Array, pt: number): number;
  /** Some relay audio has been decoded onto the timeline. */
  received(): boolean;
  closed(): boolean;
  /** The item is over (or the airing was cut): leave the session. Idempotent. */
  close(reason: string): void;
}

/** Where a relay item finds its feed: looked up at every block, so a feed that joins late still plays. */
export interface RelayFeeds {
  feed(airingId: string, itemIndex: number): RelayFeed | undefined;
}

const framesOf = (ms: number) => Math.max(0, Math.round((ms / 1000) * SAMPLE_RATE));
/**
 * A forward jump in presentation time below this is left to the slew: it may be a sink's timing jitter
 * (which the next block takes back) rather than lost audio. Underruns that matter lose more than this.
 */
const MIN_XRUN_MS = 50;

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

/**
 * A relay item: reads the feed registered for (airing, item) by presentation time; silence while there is
 * none (not announced, not joined yet, controller unreachable). `onDone(received)` once, when it ends or
 * is closed after it started to play.
 */
function relaySegment(frames: number, lookup: () => RelayFeed | undefined, onDone: (received: boolean) => void): Segment {
  let pos = 0;
  let nextPt: number | undefined;
  let feed: RelayFeed | undefined;
  let received = false;
  let reported = false;
  const msPerFrame = 1000 / SAMPLE_RATE;
  const finish = (why: string) => {
    if (feed) { received ||= feed.received(); feed.close(why); }
    if (!reported && pos > 0) { reported = true; onDone(received); }
  };
  return {
    read(out, pt) {
      const n = Math.min(out.length, frames - pos);
      const view = n === out.length ? out : out.subarray(0, n);
      const at = pt ?? nextPt;
      if (!feed || feed.closed()) { if (feed) received ||= feed.received(); feed = lookup(); }
      if (feed && at !== undefined && n > 0) {
        const w = feed.read(view, at);
        if (w < n) view.fill(0, Math.max(0, w));
        received ||= feed.received();
      } else {
        view.fill(0);
      }
      pos += n;
      nextPt = at !== undefined ? at + n * msPerFrame : undefined;
      if (pos >= frames) finish('item ended');
      return n;
    },
    ended: () => pos >= frames,
    close() { finish('airing stopped'); },
  };
}

function mediaSegment(stream: OpusPcmStream): Segment {
  return { read: (out) => stream.read(out), ended: () => stream.ended(), close: () => stream.close() };
}

export interface MediaResolver {
  /** Local path of a cached, verified media file; undefined if it is not cached. */
  pathOf(sha256: string): string | undefined;
}

/**
 * Controller time for a hardware-clock reading: the agent's ClockSource.toController (offset and drift
 * estimate). With it, an airing tracks CONTROLLER time sample by sample instead of the hardware crystal.
 */
export interface ProgramTimebase {
  toController(hwMs: number): number;
}

export interface DriftCorrectionStats {
  /** Source samples dropped (the hardware clock runs slow against the controller). */
  droppedFrames: number;
  /** Source samples repeated (the hardware clock runs fast). */
  repeatedFrames: number;
  /** Source position minus where controller time says it should be, frames, after the last block. */
  errorFrames: number;
  /** Times the program re-anchored instead of slewing (the estimate jumped by more than maxSlewMs). */
  reanchors: number;
  /** Source frames skipped to stay on time after the sink did not ask for a stretch of frames (an xrun). */
  skippedFrames: number;
}

export interface AiringProgram extends PcmProgram {
  /** Programme position reached, ms (including the start offset of a resumed airing). */
  positionMs(): number;
  /** What the drift correction did so far (all zero without a timebase). */
  drift(): DriftCorrectionStats;
  /** Items that could not be opened (corrupt file) and were played as silence. */
  failedItems(): string[];
  /** Relay items (index in the airing's items) that played without receiving any audio (silence). */
  relayMisses(): number[];
  close(): void;
}

/**
 * The samples of one airing, in item order: media decoded in-process from the cache, chimes and silence
 * synthesised, relays read from their live feed (`relays`) by presentation time, or silence of their
 * length when no feed came. The player places its first sample at the scheduled instant by sample position.
 *
 * Drift: the DAC emits 48,000 samples per second of the HARDWARE clock, which may run ±100 ppm off the
 * controller (±60 ms over 10 minutes, so two clusters that started together are up to 120 ms apart at
 * the end: an echo between neighbouring villages). Given a `timebase`, the program anchors its first
 * sample to controller time (`dueAt`, the scheduled instant, when given) and, block by block, compares
 * the source position with where controller time says it should be (the block's presentation time
 * through the agent's offset-and-drift estimate); it corrects by dropping or repeating single samples
 * spread across the block, at most `maxSlewPpm` (default 500 ppm = 24 samples/s; 100 ppm of drift needs
 * ~5/s). One sample is 21 µs: at these rates a slip is inaudible on speech and far below what
 * resampling filters would cost per block on 200 agents.
 * An estimate that jumps by more than `maxSlewMs` (an NTP-style step) is followed by re-anchoring, not
 * by seconds of slewing (a jump in the middle of speech would be worse than staying that far off). A
 * stretch the sink never asked for (an xrun: its presentation time jumps ahead) is skipped in the
 * programme too: that audio is lost anyway, and skipping keeps the cluster on time.
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
  /** Track controller time (drift correction); without it the program plays at the hardware clock's rate. */
  timebase?: ProgramTimebase;
  /**
   * Controller time at which the first sample is due (a scheduled start). The program holds itself to
   * that instant, not to where the current estimate puts its first sample: the player placed it by the
   * estimate when the airing was ARMED, seconds earlier, and a sync sample since may have moved it.
   * A start further off than `maxSlewMs` (a deliberate late start) is kept as it is.
   */
  dueAt?: number;
  /** Fastest correction, ppm of the sample rate; default 500. */
  maxSlewPpm?: number;
  /** A position error beyond this re-anchors instead of slewing; default 250 ms. */
  maxSlewMs?: number;
  /** Gaps in presentation time up to this are xruns (programme skipped to stay on time); default 5 s. */
  maxXrunMs?: number;
  /** Live feeds of relay items; without it a relay item plays as silence (and counts as a miss). */
  relays?: RelayFeeds;
}): Promise<AiringProgram> {
  // Skip whole items before the resume point; the remainder is an offset into the first kept item.
  let skip = Math.max(0, o.startOffsetMs ?? 0);
  let first = 0;
  while (first < o.items.length && skip >= o.items[first]!.durationMs) { skip -= o.items[first]!.durationMs; first++; }
  const items = o.items.slice(first);
  const firstOffsetMs = skip;
  const failed: string[] = [];
  const relayMisses: number[] = [];
  const baseMs = o.startOffsetMs ?? 0;
  const opened: (Promise<Segment> | undefined)[] = new Array(items.length);
  const ready: (Segment | undefined)[] = new Array(items.length);

  async function open(i: number): Promise<Segment> {
    const it = items[i]!;
    const offsetFrames = i === 0 ? framesOf(firstOffsetMs) : 0;
    switch (it.kind) {
      case 'silence': return silenceSegment(framesOf(it.durationMs) - offsetFrames);
      case 'relay': {
        const index = first + i;
        return relaySegment(framesOf(it.durationMs) - offsetFrames, () => o.relays?.feed(o.id, index), (received) => { if (!received) relayMisses.push(index); });
      }
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
  /** Source frames consumed (programme position, before any resume offset). */
  let consumed = 0;
  let done = items.length === 0;
  let closed = false;

  /** Fill `out` from the items in order; returns frames written (fewer: an underrun or the end). `pt`: when out[0] sounds. */
  function pull(out: Float32Array, pt?: number): number {
    let w = 0;
    while (w < out.length && !done) {
      const seg = ready[cur];
      if (!seg) break; // next item still opening: an underrun (the sink pads silence), never a wait
      const n = seg.read(w === 0 ? out : out.subarray(w), pt === undefined ? undefined : pt + (w * 1000) / SAMPLE_RATE);
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
    consumed += w;
    return w;
  }

  // ---- drift correction (see the header comment) ----
  const tb = o.timebase;
  const framesPerMs = SAMPLE_RATE / 1000;
  const msPerFrame = 1000 / SAMPLE_RATE;
  const slewPerFrame = (o.maxSlewPpm ?? 500) * 1e-6;
  const maxSlewFrames = (o.maxSlewMs ?? 250) * framesPerMs;
  const maxXrunMs = o.maxXrunMs ?? 5000;
  let anchor: { ctl: number; src: number } | undefined;
  /** Corrections earned by the slew-rate limit and not spent yet (frames), capped so none bunch up. */
  let budget = 0;
  const stats: DriftCorrectionStats = { droppedFrames: 0, repeatedFrames: 0, errorFrames: 0, reanchors: 0, skippedFrames: 0 };
  /** Hardware time right after the last block read: the next block normally starts there. */
  let lastEnd: number | undefined;
  let scratch = new Float32Array(0);
  const scratchOf = (n: number) => (scratch.length >= n ? scratch.subarray(0, n) : (scratch = new Float32Array(n)));

  function readTracked(out: Float32Array, pt: number): number {
    const n = out.length;
    if (!anchor) {
      const at = tb!.toController(pt);
      anchor = { ctl: o.dueAt !== undefined && Math.abs(at - o.dueAt) * framesPerMs <= maxSlewFrames ? o.dueAt : at, src: consumed };
    }
    const gap = lastEnd === undefined ? 0 : pt - lastEnd;
    lastEnd = pt + n * msPerFrame;
    // Source frames that should have been consumed once this block has sounded, by controller time.
    const endCtl = tb!.toController(pt + n * msPerFrame);
    let target = anchor.src + (endCtl - anchor.ctl) * framesPerMs;
    let behind = target - (consumed + n);
    if (gap > MIN_XRUN_MS && gap <= maxXrunMs && behind >= 1) {
      // The sink skipped a stretch (an xrun: those frames sounded as silence). That audio is lost: skip
      // the same stretch of programme now, so this cluster stays on time with its neighbours. (A longer
      // jump is the hardware clock being stepped, not lost audio: re-anchored below.)
      const skip = Math.min(Math.floor(behind), Math.ceil(gap * framesPerMs * 1.01));
      let left = skip;
      while (left > 0 && !done) {
        const got = pull(scratchOf(Math.min(left, 4800)));
        if (got === 0) break;
        left -= got;
      }
      stats.skippedFrames += skip - left;
      behind = target - (consumed + n);
    }
    if (!Number.isFinite(behind) || Math.abs(behind) > maxSlewFrames) {
      // The estimate stepped: follow it from here rather than slewing for seconds.
      stats.reanchors++;
      anchor = { ctl: tb!.toController(pt), src: consumed };
      target = anchor.src + (endCtl - anchor.ctl) * framesPerMs;
      behind = target - (consumed + n);
    }
    budget = Math.min(budget + n * slewPerFrame, 2);
    let d = 0;
    if (Math.abs(behind) >= 1 && budget >= 1) {
      d = Math.sign(behind) * Math.min(Math.floor(Math.abs(behind)), Math.floor(budget));
      budget -= Math.abs(d);
    }
    if (d === 0) {
      const w = pull(out, pt);
      stats.errorFrames = consumed - target;
      return w;
    }
    if (d > 0) {
      // Behind controller time: read d extra samples and drop d of them, evenly spread.
      const src = scratchOf(n + d);
      const got = pull(src, pt);
      const drops = Math.max(0, Math.min(d, got - n));
      const w = copySpread(src, got, out, -drops);
      stats.droppedFrames += got - w;
      stats.errorFrames = consumed - target;
      return w;
    }
    // Ahead of controller time: read |d| fewer samples and repeat |d| of them, evenly spread.
    const r = -d;
    const src = scratchOf(n - r);
    const got = pull(src, pt);
    if (got === 0) return 0;
    const w = copySpread(src, got, out, r);
    stats.repeatedFrames += w - got;
    stats.errorFrames = consumed - target;
    return w;
  }

  return {
    id: o.id,
    kind: 'airing',
    read(out, presentationTime) {
      if (!tb || presentationTime === undefined || out.length === 0) return pull(out, presentationTime);
      return readTracked(out, presentationTime);
    },
    ended: () => done || closed,
    positionMs: () => baseMs + consumed * msPerFrame,
    drift: () => ({ ...stats }),
    failedItems: () => failed.slice(),
    relayMisses: () => relayMisses.slice(),
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

/**
 * Copy `got` samples of `src` to `out`, dropping (k < 0) or repeating (k > 0) |k| single samples at
 * evenly spaced positions. Returns the samples written to `out` (got + k unless |k| > got).
 */
function copySpread(src: Float32Array, got: number, out: Float32Array, k: number): number {
  if (k === 0) { out.set(src.subarray(0, got)); return got; }
  const m = Math.abs(k);
  let w = 0;
  let from = 0;
  for (let i = 0; i < m; i++) {
    const at = Math.min(got - 1, Math.floor(((i + 0.5) * got) / m));
    if (at < from) continue;
    out.set(src.subarray(from, at), w);
    w += at - from;
    if (k > 0) { out[w++] = src[at]!; from = at; } // the sample at `at` goes out twice
    else from = at + 1; // the sample at `at` is skipped
  }
  out.set(src.subarray(from, got), w);
  return w + got - from;
}
