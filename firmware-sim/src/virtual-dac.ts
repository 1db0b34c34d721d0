import { EventEmitter } from 'node:events';
import { pino, type Logger } from 'pino';
import type { Clock } from '../../edge-agent/src/clock.js';
import type { AudioSink, PcmSource, SinkStats } from '../../edge-agent/src/hardware.js';
import { SAMPLE_RATE } from '../../edge-agent/src/hardware.js';
import { isRatedClock, isSimClock, trueClock as defaultTrueClock } from './sim-clock.js';
import { writeWav } from './wav.js';

/*
 * How the virtual DAC maps frame index → TRUE time (the one fact every timing figure rests on).
 *
 * A real DAC is driven by its own crystal: it emits exactly `sampleRate` frames per second of HARDWARE
 * time, whatever the CPU does. Here the hardware clock runs at `rate = d(hw)/d(true)` (1 + drift·1e-6),
 * so the DAC emits `sampleRate · rate` frames per TRUE second. The pacer keeps a short list of anchors
 * (frame F_a, true time T_a, rate r_a); a new anchor is added at the first tick after the hardware
 * clock's rate changes (so a change is applied up to one tick late: tick × Δrate, e.g. 10 ms × 100 ppm
 * = 1 µs) or when the DAC restarts. Frame k leaves the DAC at
 *
 *     trueTimeOfFrame(k) = T_a + (k − F_a) · 1000 / (sampleRate · r_a)      (anchor a: last with F_a ≤ k)
 *
 * Steps of the hardware clock (an NTP step) do not move the DAC: the crystal does not jump, only the
 * clock's reading does. That is why the `presentationTime` handed to the source is computed from the
 * hardware clock's CURRENT reading plus the remaining interval scaled by its rate:
 *
 *     presentationTime(k) = hw.now() + (trueTimeOfFrame(k) − trueNow) · rate
 *
 * which equals hw.fromTrue(trueTimeOfFrame(k)) for a SimClock: "the hardware clock will show this when
 * out[0] sounds". The stamps therefore never come from when a timer happened to fire; timers only decide
 * WHEN the source is asked, and a late timer only shortens the lead (or, beyond `maxCatchUpMs`, skips).
 *
 * Frame 0 after start() sounds at startTrue + latencyMs (the buffer is prefilled, as ALSA does before
 * snd_pcm_start). After every tick at least `latencyMs` of audio is queued ahead of the playhead, so a
 * block is requested roughly latencyMs − periodMs … latencyMs before it sounds when timers are on time.
 */

export interface Ticker {
  /** Call fn on every tick until the returned function is called. */
  add(fn: () => void): () => void;
  /** Stop the timer and drop every subscriber (idempotent). */
  stop(): void;
}

/**
 * One interval timer shared by many sinks: a bench with 200 DACs in one process pays 100 wakeups/s
 * instead of 20,000. The timer runs only while someone subscribes and never keeps the process alive.
 * The subscribers take turns at running first (see run).
 *
 * A tick that comes more than two intervals after the last one runs from setImmediate, i.e. after the
 * event loop's poll phase rather than in its timers phase: after a stall of the loop (a GC pause, a busy
 * CPU) the datagrams that came in meanwhile are waiting in the sockets, and a sink pulling in the timers
 * phase would find their frames missing and conceal audio that is in fact there. From the check phase
 * they have been read first. An on-time tick runs at once (deferring every tick moved each sink's
 * writes by the poll phase's work and widened the bench's inter-cluster skew from 0.8 to 1.1 ms).
 */
/**
 * Wrap an interval callback: it runs at once when the interval fired on time, from setImmediate when the
 * last run was more than two intervals ago (the event loop stalled: let its poll phase read first).
 */
export function lateAware(fn: () => void, intervalMs: number): () => void {
  let last = performance.now(); // made with its setInterval: the first run is due an interval from now
  return () => {
    const now = performance.now();
    const late = now - last > 2 * intervalMs;
    last = now;
    if (late) setImmediate(fn);
    else fn();
  };
}

export function createTicker(intervalMs = 10): Ticker {
  const subs = new Set<() => void>();
  let timer: NodeJS.Timeout | undefined;
  let round = 0;
  // Each tick starts one subscriber further on: the sinks of one process take turns at being first.
  // In a fixed order the last sink would always write after all the others' pulls and decodes, a
  // lateness that real clusters, each on its own CPU, do not have (it showed as inter-cluster skew).
  const run = (): void => {
    const list = [...subs];
    const n = list.length;
    if (n === 0) return;
    const start = round++ % n;
    for (let i = 0; i < n; i++) {
      const fn = list[(start + i) % n]!;
      if (subs.has(fn)) fn(); // one that left during this tick is not called
    }
  };
  return {
    add(fn) {
      subs.add(fn);
      if (!timer) {
        timer = setInterval(lateAware(run, intervalMs), intervalMs);
        timer.unref();
      }
      return () => {
        subs.delete(fn);
        if (subs.size === 0 && timer) {
          clearInterval(timer);
          timer = undefined;
        }
      };
    },
    stop() {
      subs.clear();
      if (timer) clearInterval(timer);
      timer = undefined;
    },
  };
}

interface Anchor {
  frame: number;
  trueMs: number;
  rate: number;
}

/** Frame clock of a device paced by a (possibly drifting) hardware clock. Shared with the pipe sink. */
export interface FramePacer {
  /** Make frame `frame` sound at true time `trueMs` with the clock's current rate. */
  anchor(frame: number, trueMs: number): void;
  /** Re-anchor if the hardware clock's rate changed since the last anchor. Call once per tick. */
  update(trueNow: number): void;
  /** Fractional number of frames that have left the device by `trueNow` (negative before frame 0). */
  playhead(trueNow: number): number;
  trueTimeOfFrame(frame: number): number;
  /** Hardware-clock time at which `frame` sounds, given the hardware clock read at `trueNow`. */
  hwTimeOfFrame(frame: number, trueNow: number, hwNow: number): number;
  rate(): number;
}

const MAX_ANCHORS = 4096;

export function createFramePacer(clock: Clock, sampleRate: number): FramePacer {
  const rateNow = (): number => (isRatedClock(clock) ? clock.rate() : 1);
  const anchors: Anchor[] = [];
  const last = (): Anchor => {
    const a = anchors[anchors.length - 1];
    if (!a) throw new Error('frame pacer used before anchor()');
    return a;
  };
  const framesPerMs = (r: number): number => (sampleRate * r) / 1000;
  const playhead = (t: number): number => {
    const a = last();
    return a.frame + (t - a.trueMs) * framesPerMs(a.rate);
  };
  const push = (a: Anchor): void => {
    anchors.push(a);
    if (anchors.length > MAX_ANCHORS) anchors.splice(0, anchors.length - MAX_ANCHORS);
  };
  const trueTimeOfFrame = (k: number): number => {
    let a = anchors[0];
    if (!a) throw new Error('frame pacer used before anchor()');
    for (let i = anchors.length - 1; i >= 0; i--) {
      if (anchors[i]!.frame <= k) {
        a = anchors[i]!;
        break;
      }
    }
    return a.trueMs + (k - a.frame) / framesPerMs(a.rate);
  };
  return {
    anchor(frame, trueMs) {
      push({ frame, trueMs, rate: rateNow() });
    },
    update(t) {
      const r = rateNow();
      const a = last();
      if (r !== a.rate) push({ frame: playhead(t), trueMs: t, rate: r });
    },
    playhead,
    trueTimeOfFrame,
    hwTimeOfFrame(k, t, hwNow) {
      return hwNow + (trueTimeOfFrame(k) - t) * last().rate;
    },
    rate: () => (anchors.length ? last().rate : rateNow()),
  };
}

/** A non-silence edge: onset = first sample above threshold after silence; offset = first sample after the last one above it. */
export interface SoundEdge {
  kind: 'onset' | 'offset';
  /** Frame index (0 = first frame this DAC ever emitted). */
  frame: number;
  /** TRUE time at which that frame left the DAC. */
  trueMs: number;
  /** Hardware-clock time at which that frame left the DAC. */
  hwMs: number;
}

export interface UnderrunEvent {
  frame: number;
  /** Frames of silence padded into this block. */
  missing: number;
  trueMs: number;
}

export interface BlockEvent {
  frame: number;
  frames: number;
  trueMs: number;
  presentationTime: number;
}

export interface VirtualDacStats extends SinkStats {
  /** Frames pulled from the source (or silence, when none is attached); ≥ framesPlayed by the buffer. */
  framesRead: number;
  /** Blocks requested after their first frame should already have sounded (timer lateness, event-loop stalls). */
  lateReads: number;
  maxLateMs: number;
  /** Frames skipped (silence) because the DAC fell more than maxCatchUpMs behind: an xrun. */
  skippedFrames: number;
  /** read() calls that threw (counted as underruns too). */
  sourceErrors: number;
}

export interface DacRecording {
  /** Frame index of samples[0]. */
  startFrame: number;
  /** TRUE time at which samples[0] left the DAC. */
  startTrueMs: number;
  /** Nominal rate (samples per HARDWARE second). */
  sampleRate: number;
  /**
   * Samples per TRUE second at the time of the snapshot (sampleRate · clock rate). If the rate changed
   * during the recording, use trueTimeOfFrame(startFrame + i) for exact stamps.
   */
  trueSampleRate: number;
  samples: Float32Array;
}

export interface RecordOptions {
  /** Bound on the recording; default 60 s. */
  maxSeconds?: number;
  /** Keep the first or the last maxSeconds; default 'last' (a ring). */
  keep?: 'first' | 'last';
}

export interface VirtualDacOptions {
  /** The HARDWARE clock: its rate paces the DAC and presentation times are on it. */
  clock: Clock;
  /** Source of TRUE time; default the SimClock's base, else the machine's true clock. */
  trueClock?: Clock;
  sampleRate?: number;
  /** Frames per read(); default 480 (10 ms). */
  periodFrames?: number;
  /** Output buffer depth (see the header comment); default 20 ms. */
  latencyMs?: number;
  record?: boolean | RecordOptions;
  /** |sample| at or above this is "sound"; default 0.01 (−40 dBFS). */
  onsetThreshold?: number;
  /** Silence this long ends a sound (an offset); default 50 ms. */
  onsetHoldMs?: number;
  /** Bound on the stored onset/offset list (oldest dropped); default 10,000. */
  maxEdges?: number;
  /** Behind more than this → skip to the playhead (xrun) instead of catching up; default 1000 ms. */
  maxCatchUpMs?: number;
  /**
   * Gain applied to what leaves the DAC as a function of the TRUE time the sample sounds (sim-hardware
   * passes amplifier state × mute × volume, so recordings are what a listener would hear). Default 1.
   */
  gainAt?: (trueMs: number) => number;
  /** Shared ticker (fleets); default a private timer every periodMs. */
  ticker?: Ticker;
  log?: Logger;
}

export interface VirtualDac extends AudioSink {
  stats(): VirtualDacStats;
  /** Onsets seen so far (bounded by maxEdges). */
  onsets(): SoundEdge[];
  offsets(): SoundEdge[];
  /** Is the output above threshold now (within the hold time)? Used by the thermal model. */
  isSounding(): boolean;
  /** The recording (a copy), or null when recording is off. */
  recording(): DacRecording | null;
  /** Write the recording as WAV (s16 mono at the nominal rate). Throws if recording is off. */
  writeWav(path: string): Promise<void>;
  trueTimeOfFrame(frame: number): number;
  /** Forget onsets, offsets and the recording (counters stay). */
  clearCapture(): void;
  on(event: 'onset' | 'offset', listener: (e: SoundEdge) => void): this;
  on(event: 'underrun', listener: (e: UnderrunEvent) => void): this;
  on(event: 'block', listener: (e: BlockEvent) => void): this;
  once(event: 'onset' | 'offset', listener: (e: SoundEdge) => void): this;
  once(event: 'underrun', listener: (e: UnderrunEvent) => void): this;
  once(event: 'block', listener: (e: BlockEvent) => void): this;
  off(event: 'onset' | 'offset', listener: (e: SoundEdge) => void): this;
  off(event: 'underrun', listener: (e: UnderrunEvent) => void): this;
  off(event: 'block', listener: (e: BlockEvent) => void): this;
}

/** Bounded recorder: a ring ('last') or a fill-once buffer ('first'). */
class Recorder {
  private readonly buf: Float32Array;
  /** Total frames offered since the start (or clear). */
  private written = 0;
  constructor(
    capacity: number,
    private readonly keep: 'first' | 'last',
    /** Frame index of the first frame offered. */
    public startFrame: number,
  ) {
    this.buf = new Float32Array(Math.max(1, capacity));
  }
  reset(startFrame: number): void {
    this.written = 0;
    this.startFrame = startFrame;
  }
  write(src: Float32Array | null, n: number): void {
    const cap = this.buf.length;
    if (this.keep === 'first') {
      const room = cap - this.written;
      if (room > 0) {
        const m = Math.min(room, n);
        if (src) this.buf.set(src.subarray(0, m), this.written);
        else this.buf.fill(0, this.written, this.written + m);
      }
      this.written += n;
      return;
    }
    // Ring: only the last `cap` of these n frames can survive.
    let off = Math.max(0, n - cap);
    let pos = (this.written + off) % cap;
    while (off < n) {
      const m = Math.min(n - off, cap - pos);
      if (src) this.buf.set(src.subarray(off, off + m), pos);
      else this.buf.fill(0, pos, pos + m);
      off += m;
      pos = (pos + m) % cap;
    }
    this.written += n;
  }
  snapshot(): { startFrame: number; samples: Float32Array } {
    const cap = this.buf.length;
    if (this.keep === 'first' || this.written <= cap) {
      return { startFrame: this.startFrame, samples: this.buf.slice(0, Math.min(this.written, cap)) };
    }
    const out = new Float32Array(cap);
    const head = this.written % cap;
    out.set(this.buf.subarray(head), 0);
    out.set(this.buf.subarray(0, head), cap - head);
    return { startFrame: this.startFrame + this.written - cap, samples: out };
  }
}

class VirtualDacImpl extends EventEmitter implements VirtualDac {
  readonly sampleRate: number;
  private readonly clock: Clock;
  private readonly trueClock: Clock;
  private readonly periodFrames: number;
  private readonly latencyFrames: number;
  private readonly latencyMs: number;
  private readonly threshold: number;
  private readonly holdFrames: number;
  private readonly maxEdges: number;
  private readonly maxCatchUpFrames: number;
  private readonly gainAt: ((trueMs: number) => number) | undefined;
  private readonly ticker: Ticker;
  private readonly ownTicker: boolean;
  private readonly log: Logger;
  private readonly pacer: FramePacer;
  private readonly buf: Float32Array;
  private readonly recorder: Recorder | null;

  private source: PcmSource | null = null;
  private unsubscribe: (() => void) | null = null;
  private everStarted = false;
  private framesRead = 0;
  private underruns = 0;
  private underrunFrames = 0;
  private lateReads = 0;
  private maxLateMs = 0;
  private skippedFrames = 0;
  private sourceErrors = 0;
  // Onset detector state.
  private inSound = false;
  private lastLoudFrame = -Infinity;
  private readonly onsetList: SoundEdge[] = [];
  private readonly offsetList: SoundEdge[] = [];

  constructor(o: VirtualDacOptions) {
    super();
    this.clock = o.clock;
    this.trueClock = o.trueClock ?? (isSimClock(o.clock) ? o.clock.base : defaultTrueClock);
    this.sampleRate = o.sampleRate ?? SAMPLE_RATE;
    this.periodFrames = o.periodFrames ?? Math.round(this.sampleRate / 100);
    this.latencyMs = o.latencyMs ?? 20;
    this.latencyFrames = Math.round((this.latencyMs * this.sampleRate) / 1000);
    this.threshold = o.onsetThreshold ?? 0.01;
    this.holdFrames = Math.round(((o.onsetHoldMs ?? 50) * this.sampleRate) / 1000);
    this.maxEdges = o.maxEdges ?? 10_000;
    this.maxCatchUpFrames = ((o.maxCatchUpMs ?? 1000) * this.sampleRate) / 1000;
    this.gainAt = o.gainAt;
    if (!(this.periodFrames > 0) || !Number.isInteger(this.periodFrames)) throw new RangeError('periodFrames must be a positive integer');
    if (!(this.latencyMs >= 0)) throw new RangeError('latencyMs must be ≥ 0');
    this.ownTicker = !o.ticker;
    this.ticker = o.ticker ?? createTicker((this.periodFrames * 1000) / this.sampleRate);
    this.log = o.log ?? pino({ level: 'silent' });
    this.pacer = createFramePacer(this.clock, this.sampleRate);
    this.buf = new Float32Array(this.periodFrames);
    const rec = o.record === true ? {} : o.record || null;
    this.recorder = rec ? new Recorder(Math.round((rec.maxSeconds ?? 60) * this.sampleRate), rec.keep ?? 'last', 0) : null;
  }

  attach(source: PcmSource | null): void {
    this.source = source;
  }

  start(): void {
    if (this.unsubscribe) return;
    const t = this.trueClock.now();
    // Frame indices continue across stop/start; the new first frame sounds after the prefill, and never
    // before the frames queued before stop() have drained.
    const drainEnd = this.everStarted ? this.pacer.trueTimeOfFrame(this.framesRead) : -Infinity;
    this.pacer.anchor(this.framesRead, Math.max(t + this.latencyMs, drainEnd));
    this.everStarted = true;
    const tick = (): void => {
      // A throwing 'onset' listener must not kill the timer that every other DAC on this ticker shares.
      try {
        this.tick();
      } catch (err) {
        this.log.error({ err }, 'virtual DAC tick failed');
      }
    };
    this.unsubscribe = this.ticker.add(tick);
    tick();
  }

  /** Stops pulling. Frames already pulled still sound at their stamped times (like snd_pcm_drain). */
  stop(): void {
    if (!this.unsubscribe) return;
    this.unsubscribe();
    this.unsubscribe = null;
    if (this.ownTicker) this.ticker.stop();
  }

  stats(): VirtualDacStats {
    let played = this.framesRead;
    if (this.unsubscribe) {
      const p = Math.floor(this.pacer.playhead(this.trueClock.now()));
      played = Math.max(0, Math.min(this.framesRead, p));
    }
    return {
      framesPlayed: played,
      underruns: this.underruns,
      underrunFrames: this.underrunFrames,
      framesRead: this.framesRead,
      lateReads: this.lateReads,
      maxLateMs: this.maxLateMs,
      skippedFrames: this.skippedFrames,
      sourceErrors: this.sourceErrors,
    };
  }

  onsets(): SoundEdge[] {
    return this.onsetList.slice();
  }

  offsets(): SoundEdge[] {
    return this.offsetList.slice();
  }

  isSounding(): boolean {
    return this.inSound;
  }

  recording(): DacRecording | null {
    if (!this.recorder) return null;
    const { startFrame, samples } = this.recorder.snapshot();
    return {
      startFrame,
      startTrueMs: this.everStarted ? this.pacer.trueTimeOfFrame(startFrame) : NaN,
      sampleRate: this.sampleRate,
      trueSampleRate: this.sampleRate * this.pacer.rate(),
      samples,
    };
  }

  async writeWav(path: string): Promise<void> {
    const r = this.recording();
    if (!r) throw new Error('virtual DAC: recording is off (create it with record: true)');
    await writeWav(path, r.samples, this.sampleRate);
  }

  trueTimeOfFrame(frame: number): number {
    return this.pacer.trueTimeOfFrame(frame);
  }

  clearCapture(): void {
    this.onsetList.length = 0;
    this.offsetList.length = 0;
    this.recorder?.reset(this.framesRead);
  }

  private tick(): void {
    const t = this.trueClock.now();
    this.pacer.update(t);
    const played = this.pacer.playhead(t);
    if (played - this.framesRead > this.maxCatchUpFrames) {
      // Fell too far behind (process stopped, event loop stalled): an xrun. Skip to the playhead rather
      // than pull seconds of audio at once that the listener can no longer hear on time.
      const skip = Math.ceil(played) - this.framesRead;
      this.skippedFrames += skip;
      this.recorder?.write(null, skip);
      this.silence(this.framesRead, skip);
      this.framesRead += skip;
      this.log.warn({ skippedFrames: skip }, 'virtual DAC fell behind; skipped to the playhead');
    }
    const target = Math.max(played, 0) + this.latencyFrames;
    if (this.framesRead >= target) return;
    const hwNow = this.clock.now();
    while (this.framesRead < target) this.readBlock(t, hwNow);
  }

  private readBlock(t: number, hwNow: number): void {
    const k = this.framesRead;
    const n = this.periodFrames;
    const buf = this.buf;
    const presentationTrue = this.pacer.trueTimeOfFrame(k);
    const presentationTime = this.pacer.hwTimeOfFrame(k, t, hwNow);
    buf.fill(0);
    const src = this.source;
    if (src) {
      let got: number;
      try {
        got = src.read(buf, presentationTime);
      } catch (err) {
        this.sourceErrors++;
        this.log.warn({ err }, 'virtual DAC: source.read threw; playing silence');
        got = 0;
      }
      got = Number.isFinite(got) ? Math.max(0, Math.min(n, Math.floor(got))) : 0;
      if (got < n) {
        buf.fill(0, got);
        this.underruns++;
        this.underrunFrames += n - got;
        if (this.listenerCount('underrun') > 0) this.emit('underrun', { frame: k + got, missing: n - got, trueMs: presentationTrue } satisfies UnderrunEvent);
      }
    }
    if (presentationTrue < t) {
      this.lateReads++;
      this.maxLateMs = Math.max(this.maxLateMs, t - presentationTrue);
    }
    this.applyGain(k, n);
    this.recorder?.write(buf, n);
    this.detect(k, n, t, hwNow);
    this.framesRead += n;
    if (this.listenerCount('block') > 0) this.emit('block', { frame: k, frames: n, trueMs: presentationTrue, presentationTime } satisfies BlockEvent);
  }

  private applyGain(k: number, n: number): void {
    const gainAt = this.gainAt;
    if (!gainAt) return;
    const buf = this.buf;
    const g0 = gainAt(this.pacer.trueTimeOfFrame(k));
    const g1 = gainAt(this.pacer.trueTimeOfFrame(k + n - 1));
    if (g0 === g1) {
      if (g0 === 1) return;
      for (let i = 0; i < n; i++) buf[i] = buf[i]! * g0;
      return;
    }
    // The gain changes inside this block (amplifier finished warming mid-block): per sample.
    for (let i = 0; i < n; i++) buf[i] = buf[i]! * gainAt(this.pacer.trueTimeOfFrame(k + i));
  }

  /** Onset/offset detection over one block; cheap enough for hundreds of DACs per process. */
  private detect(k: number, n: number, t: number, hwNow: number): void {
    const buf = this.buf;
    const thr = this.threshold;
    for (let i = 0; i < n; i++) {
      const x = buf[i]!;
      const f = k + i;
      if (x >= thr || x <= -thr) {
        if (!this.inSound) {
          this.inSound = true;
          this.edge('onset', f, t, hwNow);
        }
        this.lastLoudFrame = f;
      } else if (this.inSound && f - this.lastLoudFrame >= this.holdFrames) {
        this.inSound = false;
        this.edge('offset', this.lastLoudFrame + 1, t, hwNow);
      }
    }
  }

  private silence(k: number, n: number): void {
    if (this.inSound && k + n - this.lastLoudFrame >= this.holdFrames) {
      this.inSound = false;
      this.edge('offset', this.lastLoudFrame + 1, this.trueClock.now(), this.clock.now());
    }
  }

  private edge(kind: 'onset' | 'offset', frame: number, t: number, hwNow: number): void {
    const e: SoundEdge = { kind, frame, trueMs: this.pacer.trueTimeOfFrame(frame), hwMs: this.pacer.hwTimeOfFrame(frame, t, hwNow) };
    const list = kind === 'onset' ? this.onsetList : this.offsetList;
    list.push(e);
    if (list.length > this.maxEdges) list.splice(0, list.length - this.maxEdges);
    this.emit(kind, e);
  }
}

/** A pull-model virtual DAC (see the header comment for its timing model). Call start() to run it. */
export function createVirtualDac(opts: VirtualDacOptions): VirtualDac {
  return new VirtualDacImpl(opts);
}
