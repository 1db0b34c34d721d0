/**
 * The field audio output: a pull sink that feeds ALSA through `aplay` reading raw s16le mono from stdin.
 *
 * Pacing. aplay writes as fast as its input arrives and blocks only when the ALSA buffer is full, so the
 * sink itself keeps the pace: it writes ahead of the DAC by at most `leadMs`, judging what the DAC has
 * consumed from the wall clock and the frames written since an anchor ("frame N sounds at time T").
 * The ALSA buffer is twice the lead and playback starts once `leadMs` of audio is queued
 * (`--start-delay`), so in steady state about `leadMs` sits in the device and the presentationTime
 * handed to the source is `now + queued audio` (+ a fixed output latency). A tick that comes so late
 * that the estimate says the device ran dry re-anchors the timeline (an underrun: audio is lost, times
 * stay true). Drift steering (hw/plughw devices, or an explicit status path): the device's own `delay`
 * from /proc/asound/…/status nudges the anchor once a second, so a sound-card crystal that runs 50 ppm off the system clock does not
 * accumulate into an underrun (~17 min at a 50 ms lead) or a growing backlog.
 *
 * Supervision (STYLE.md §7, snapcast's ProcessStream): start() spawns aplay, stop() closes its stdin so
 * it drains the last lead of audio and exits (killed if it does not); idle means no process. An aplay
 * that dies while wanted is restarted with backoff, its stderr tail logged; a child that stops reading
 * its stdin is killed. After `failAfterRestarts` restarts without a healthy run the sink reports itself
 * failed (the hardware raises an `amplifier` fault: no sound leaves the cluster).
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import fs from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { systemClock, systemTimers, type Clock, type Timers } from './clock.js';
import { SAMPLE_RATE, type AudioSink, type PcmSource, type SinkStats } from './hardware.js';

// ---------------------------------------------------------------------------------------------------
// Write-ahead pacer (pure: unit-tested with a fake clock)

export interface WriteAheadPacer {
  readonly leadFrames: number;
  readonly periodFrames: number;
  /** Frames written since the pacer was created (the sink's frame index). */
  written(): number;
  /** Declare that the next frame written sounds at `now`: (re)start of the device. */
  anchor(now: number): void;
  /** Estimated frames the DAC has consumed by `now`. */
  played(now: number): number;
  /** Estimated frames queued ahead of the DAC at `now` (≥ 0). */
  queued(now: number): number;
  /**
   * Whole periods to write now to keep `leadFrames` queued. `starved` when the estimate says the device
   * ran dry since the last write (the tick came later than the lead); the pacer then re-anchors at `now`.
   */
  plan(now: number): { blocks: number; starved: boolean };
  wrote(frames: number): void;
  /** Time (on the pacer's clock) at which frame index `frame` sounds. */
  presentationTime(frame: number): number;
  /**
   * Steer by a device measurement: `deviceQueued` frames were in the device at `now`. Moves the estimate
   * `gain` of the way to the measurement (all the way when off by more than the lead). Returns the
   * error before correction, frames (positive: the device is behind the estimate).
   */
  correct(now: number, deviceQueued: number, gain?: number): number;
}

export function createWriteAheadPacer(o: { sampleRate: number; leadMs: number; periodMs: number; outputLatencyMs?: number }): WriteAheadPacer {
  const rate = o.sampleRate;
  const periodFrames = Math.max(1, Math.round((o.periodMs * rate) / 1000));
  const leadFrames = Math.max(periodFrames, Math.round((o.leadMs * rate) / 1000));
  const latency = o.outputLatencyMs ?? 0;
  let written = 0;
  let anchorFrame = 0;
  let anchorTime = Number.NaN;
  const played = (now: number): number => (Number.isNaN(anchorTime) ? written : anchorFrame + ((now - anchorTime) * rate) / 1000);
  const anchor = (now: number): void => {
    anchorFrame = written;
    anchorTime = now;
  };
  return {
    leadFrames,
    periodFrames,
    written: () => written,
    anchor,
    played,
    queued: (now) => Math.max(0, written - played(now)),
    plan(now) {
      let starved = false;
      if (Number.isNaN(anchorTime)) anchor(now);
      else if (played(now) > written) {
        starved = true;
        anchor(now);
      }
      const blocks = Math.max(0, Math.floor((played(now) + leadFrames - written) / periodFrames));
      return { blocks, starved };
    },
    wrote(frames) {
      written += frames;
    },
    presentationTime: (frame) => anchorTime + ((frame - anchorFrame) * 1000) / rate + latency,
    correct(now, deviceQueued, gain = 0.3) {
      // An estimate past `written` (a late tick) is clamped: the device cannot have played unwritten frames.
      const est = Math.min(played(now), written);
      const truePlayed = written - deviceQueued;
      const err = est - truePlayed;
      const g = Math.abs(err) > leadFrames ? 1 : gain;
      anchorFrame = est - g * err;
      anchorTime = now;
      return err;
    },
  };
}

/**
 * Frames queued in the device from an ALSA /proc status file (`delay : N` while RUNNING); null when the
 * stream is not running or the file says `closed`.
 */
export function parseProcPcmDelay(text: string): number | null {
  if (!/^state\s*:\s*RUNNING\b/m.test(text)) return null;
  const m = /^delay\s*:\s*(-?\d+)/m.exec(text);
  return m ? Number(m[1]) : null;
}

/** The hardware rate from /proc/asound/…/hw_params (`rate: 44100 (44100/1)`); null when closed. */
export function parseProcHwRate(text: string): number | null {
  const m = /^rate\s*:\s*(\d+)/m.exec(text);
  return m ? Number(m[1]) : null;
}

/**
 * The /proc status file of a `hw:`/`plughw:` device name (`hw:1,0`, `plughw:CARD=Headphones,DEV=0`):
 * /proc/asound/<card>/pcm<dev>p/sub0/status (a card id is a symlink there, like its number). Null for
 * anything else (`default`, `dmix`, `null`, a named plug): no single hardware stream to ask.
 */
export function procStatusPathFor(device: string): string | null {
  const m = /^(?:plug)?hw:(?:CARD=)?([A-Za-z0-9_]+)(?:,(?:DEV=)?(\d+))?$/.exec(device.trim());
  if (!m) return null;
  const card = /^\d+$/.test(m[1]!) ? `card${m[1]}` : m[1]!;
  return `/proc/asound/${card}/pcm${m[2] ?? '0'}p/sub0/status`;
}

/** float32 [-1, 1] → s16le, clamped. */
export function encodeS16le(src: Float32Array, out: Buffer): void {
  for (let i = 0; i < src.length; i++) {
    const x = src[i]!;
    const c = x > 1 ? 1 : x < -1 ? -1 : Number.isNaN(x) ? 0 : x;
    out.writeInt16LE(Math.round(c < 0 ? c * 32768 : c * 32767), i * 2);
  }
}

// ---------------------------------------------------------------------------------------------------
// The sink

export interface AlsaSinkOptions {
  /** aplay binary (resolve it with resolveLinuxBinary('aplay')). */
  aplayPath: string;
  /** ALSA PCM for `aplay -D`; default 'default'. */
  device?: string;
  sampleRate?: number;
  leadMs?: number;
  periodMs?: number;
  /** ALSA buffer; default 2 × leadMs. */
  bufferMs?: number;
  outputLatencyMs?: number;
  /**
   * /proc/asound/cardN/pcmMp/sub0/status for drift steering (see file comment). Default: derived from a
   * `hw:`/`plughw:` device name; `false` turns steering off.
   */
  statusPath?: string | false;
  /** The hardware clock: presentation times are on it. Default: system clock. */
  clock?: Clock;
  timers?: Timers;
  log?: Logger;
  /** While true the sink writes silence (mute as the last safety, whatever the source does). */
  muted?: () => boolean;
  /** Linear gain applied to every sample (software volume); default 1. */
  gain?: () => number;
  /** Restart backoff after an unexpected exit: min doubling to max. Defaults 200 ms, 5 s. */
  restartMinMs?: number;
  restartMaxMs?: number;
  /** Report failure after this many restarts without a healthy run (default 3). */
  failAfterRestarts?: number;
  /** A child counts as healthy once it has run this long (default 2 s). */
  healthyAfterMs?: number;
  /** Anchor anyway if aplay has not printed its setup within this time (default 1 s). */
  readyTimeoutMs?: number;
  /** Kill a child that leaves this much audio unread on its stdin (default 1000 ms of audio). */
  stallMs?: number;
  /** Extra arguments placed before the input (tests, special devices). */
  extraArgs?: string[];
}

export interface AlsaSinkStats extends SinkStats {
  /** Times the device ran dry: reported by aplay ("underrun!!!") or a tick later than the lead. */
  deviceUnderruns: number;
  /** Unexpected aplay exits that were restarted. */
  restarts: number;
  bytesWritten: number;
  /** Frames queued ahead of the DAC by the estimate, now. */
  queuedFrames: number;
  /** Device delay readings applied (once a second while a status file reports RUNNING). */
  corrections: number;
  /** Error found by the last reading, frames at the sink's rate: positive = the device holds more than estimated. */
  lastCorrectionFrames: number;
}

export interface AlsaSinkHealth {
  ok: boolean;
  detail: string;
}

export interface AlsaSink extends AudioSink {
  stats(): AlsaSinkStats;
  /** pid of the aplay being fed, null when none is running. */
  pid(): number | null;
  /** The argv used for aplay (for logs and tests). */
  readonly argv: readonly string[];
  /** Failure/recovery transitions of the output device. */
  onHealth(listener: (h: AlsaSinkHealth) => void): () => void;
  /** Resolves once no aplay process of this sink remains (e.g. after stop()). */
  idle(): Promise<void>;
  /** stop() and kill whatever still runs; resolves when no process remains. */
  close(): Promise<void>;
}

type Proc = ChildProcessByStdio<Writable, null, Readable>;

interface ChildRec {
  proc: Proc;
  ready: boolean;
  readyAt: number;
  stderrTail: string;
  exited: Promise<void>;
  done: boolean;
  readyTimer: NodeJS.Timeout | undefined;
  killTimers: NodeJS.Timeout[];
  /** The card's rate, from hw_params, once known. */
  hwRate: number | undefined;
}

const STDERR_TAIL = 4096;

export function createAlsaSink(o: AlsaSinkOptions): AlsaSink {
  const sampleRate = o.sampleRate ?? SAMPLE_RATE;
  const clock = o.clock ?? systemClock;
  const timers = o.timers ?? systemTimers;
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'alsa-sink' });
  const leadMs = o.leadMs ?? 50;
  const periodMs = o.periodMs ?? 10;
  const bufferMs = Math.max(o.bufferMs ?? 2 * leadMs, leadMs + periodMs);
  const restartMin = o.restartMinMs ?? 200;
  const restartMax = o.restartMaxMs ?? 5000;
  const failAfter = o.failAfterRestarts ?? 3;
  const healthyAfterMs = o.healthyAfterMs ?? 2000;
  const readyTimeoutMs = o.readyTimeoutMs ?? 1000;
  const stallBytes = Math.round((((o.stallMs ?? 1000) * sampleRate) / 1000) * 2);
  const muted = o.muted ?? (() => false);
  const gain = o.gain ?? (() => 1);
  const device = o.device ?? 'default';
  const statusPath = o.statusPath === false ? null : (o.statusPath ?? procStatusPathFor(device));

  const pacer = createWriteAheadPacer({ sampleRate, leadMs, periodMs, outputLatencyMs: o.outputLatencyMs });
  const period = pacer.periodFrames;
  const buf = new Float32Array(period);
  const argv: string[] = [
    // -v prints the PCM setup once the device is open and configured: that is our anchor (see markReady).
    '-v', '-D', device, '-t', 'raw', '-f', 'S16_LE', '-r', String(sampleRate), '-c', '1',
    `--buffer-time=${bufferMs * 1000}`, `--period-time=${periodMs * 1000}`,
    // Start playback once the lead is queued, not when the (2 × lead) buffer is full.
    `--start-delay=${Math.round((pacer.leadFrames * 1e6) / sampleRate)}`,
    ...(o.extraArgs ?? []),
  ];

  let source: PcmSource | null = null;
  let wanted = false;
  let child: ChildRec | null = null;
  const draining = new Set<ChildRec>();
  let tickTimer: NodeJS.Timeout | undefined;
  let restartTimer: NodeJS.Timeout | undefined;
  let spawnPending = false;
  let consecutiveFailures = 0;
  let failedReported = false;
  let lastProbe = Number.NEGATIVE_INFINITY;
  let lastSelfStarve = Number.NEGATIVE_INFINITY;
  let lastUnderrunLog = Number.NEGATIVE_INFINITY;
  const healthListeners = new Set<(h: AlsaSinkHealth) => void>();
  const st = { framesPlayed: 0, underruns: 0, underrunFrames: 0, deviceUnderruns: 0, restarts: 0, bytesWritten: 0, corrections: 0, lastCorrectionFrames: 0 };

  const emitHealth = (h: AlsaSinkHealth): void => {
    for (const l of [...healthListeners]) {
      try {
        l(h);
      } catch (err) {
        log.error({ err }, 'alsa sink health listener threw');
      }
    }
  };

  const stopTicking = (): void => {
    timers.clearInterval(tickTimer);
    tickTimer = undefined;
  };

  const deviceUnderrun = (now: number, why: string): void => {
    st.deviceUnderruns++;
    if (now - lastUnderrunLog > 10_000) {
      lastUnderrunLog = now;
      log.warn({ why, deviceUnderruns: st.deviceUnderruns }, 'audio device underrun');
    }
  };

  const pullAndWrite = (rec: ChildRec): void => {
    const k = pacer.written();
    buf.fill(0);
    if (source) {
      let got: number;
      try {
        got = source.read(buf, pacer.presentationTime(k));
      } catch (err) {
        log.warn({ err }, 'alsa sink: source.read threw; writing silence');
        got = 0;
      }
      got = Number.isFinite(got) ? Math.max(0, Math.min(period, Math.floor(got))) : 0;
      if (got < period) {
        buf.fill(0, got);
        st.underruns++;
        st.underrunFrames += period - got;
      }
    }
    const g = muted() ? 0 : Math.max(0, Math.min(1, gain()));
    if (g === 0) buf.fill(0);
    else if (g !== 1) for (let i = 0; i < period; i++) buf[i]! *= g;
    const bytes = Buffer.allocUnsafe(period * 2);
    encodeS16le(buf, bytes);
    rec.proc.stdin.write(bytes);
    pacer.wrote(period);
    st.framesPlayed += period;
    st.bytesWritten += bytes.length;
  };

  const probe = (rec: ChildRec, now: number): void => {
    if (!statusPath || now - lastProbe < 1000) return;
    lastProbe = now;
    let delay: number | null;
    try {
      // A /proc file of a few hundred bytes, once a second: sync read is cheaper than a promise round trip.
      delay = parseProcPcmDelay(fs.readFileSync(statusPath, 'utf8'));
      // plughw may resample: the delay counts frames at the card's rate.
      rec.hwRate ??= parseProcHwRate(fs.readFileSync(statusPath.replace(/status$/, 'hw_params'), 'utf8')) ?? sampleRate;
    } catch {
      return;
    }
    if (delay === null) return;
    st.corrections++;
    // pacer.correct returns estimate − truth of frames played, i.e. device queue − estimated queue.
    st.lastCorrectionFrames = Math.round(pacer.correct(now, (delay * sampleRate) / rec.hwRate));
  };

  const tick = (): void => {
    const rec = child;
    if (!wanted || !rec || !rec.ready || rec.done) return;
    const now = clock.now();
    if (rec.proc.stdin.writableLength > stallBytes) {
      log.warn({ pid: rec.proc.pid, unreadBytes: rec.proc.stdin.writableLength }, 'aplay stopped reading its input; killing it');
      rec.proc.kill('SIGKILL');
      return;
    }
    if (consecutiveFailures > 0 && now - rec.readyAt >= healthyAfterMs) {
      consecutiveFailures = 0;
      if (failedReported) {
        failedReported = false;
        emitHealth({ ok: true, detail: 'audio output recovered' });
      }
    }
    probe(rec, now);
    const { blocks, starved } = pacer.plan(now);
    if (starved) {
      lastSelfStarve = now;
      deviceUnderrun(now, 'sink tick later than the lead');
    }
    for (let i = 0; i < blocks; i++) pullAndWrite(rec);
  };

  const safeTick = (): void => {
    try {
      tick();
    } catch (err) {
      log.error({ err }, 'alsa sink tick failed');
    }
  };

  const markReady = (rec: ChildRec): void => {
    if (rec.ready || rec.done || rec !== child) return;
    rec.ready = true;
    timers.clearTimeout(rec.readyTimer);
    const now = clock.now();
    rec.readyAt = now;
    pacer.anchor(now);
    stopTicking();
    // A tick after a stall of the event loop runs from setImmediate, so that the poll phase reads the
    // datagrams that came in meanwhile before the sink pulls their frames; an on-time tick runs at once.
    let lastTick = clock.now();
    tickTimer = timers.setInterval(() => {
      const t = clock.now();
      const late = t - lastTick > 2 * periodMs;
      lastTick = t;
      if (late) setImmediate(safeTick);
      else safeTick();
    }, periodMs);
    safeTick();
  };

  const onStderrLine = (rec: ChildRec, line: string): void => {
    if (/underrun!!!/.test(line)) {
      const now = clock.now();
      // The same event as a late tick the sink already re-anchored for: do not count it twice.
      if (now - lastSelfStarve > leadMs + 200) {
        deviceUnderrun(now, line.trim());
        // The device restarts once a lead is queued again: the next frame written sounds about now.
        if (rec === child && rec.ready) pacer.anchor(now);
      }
      return;
    }
    log.debug({ pid: rec.proc.pid, line }, 'aplay');
    // The setup dump ends with `boundary`: the PCM is open and configured, data may flow.
    if (/^\s*boundary\s*:/.test(line)) markReady(rec);
  };

  const scheduleSpawn = (): void => {
    if (spawnPending || child || !wanted) return;
    spawnPending = true;
    void Promise.all([...draining].map((c) => c.exited)).then(() => {
      spawnPending = false;
      if (wanted && !child && !restartTimer) spawnChild();
    });
  };

  const spawnChild = (): void => {
    let proc: Proc;
    try {
      // C locale: aplay's messages ("underrun!!!", the setup dump) are parsed, and gettext would translate them.
      proc = spawn(o.aplayPath, argv, { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    } catch (err) {
      // spawn throws synchronously only for bad arguments; treat like an immediate exit.
      log.error({ err }, 'cannot spawn aplay');
      onUnexpectedExit(null, `spawn failed: ${(err as Error).message}`);
      return;
    }
    let resolveExit!: () => void;
    const rec: ChildRec = {
      proc, ready: false, readyAt: 0, stderrTail: '', done: false, readyTimer: undefined, killTimers: [], hwRate: undefined,
      exited: new Promise<void>((r) => (resolveExit = r)),
    };
    child = rec;
    log.debug({ pid: proc.pid, argv: [o.aplayPath, ...argv] }, 'aplay spawned');
    proc.stdin.on('error', (err) => log.debug({ err: err.message }, 'aplay stdin error'));
    let partial = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d: string) => {
      rec.stderrTail = (rec.stderrTail + d).slice(-STDERR_TAIL);
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) onStderrLine(rec, l);
    });
    rec.readyTimer = timers.setTimeout(() => {
      if (!rec.ready && !rec.done && rec === child) {
        log.debug({ pid: proc.pid }, 'aplay printed no setup; anchoring without it');
        markReady(rec);
      }
    }, readyTimeoutMs);
    let finished = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null, err?: Error): void => {
      if (finished) return;
      finished = true;
      rec.done = true;
      timers.clearTimeout(rec.readyTimer);
      for (const t of rec.killTimers) timers.clearTimeout(t);
      draining.delete(rec);
      const wasCurrent = rec === child;
      if (wasCurrent) {
        child = null;
        stopTicking();
      }
      resolveExit();
      if (wasCurrent && wanted) {
        const detail = err ? err.message : `exit code ${code ?? 'none'}${signal ? `, signal ${signal}` : ''}`;
        log.warn({ code, signal, err: err?.message, stderr: rec.stderrTail.trim().split('\n').slice(-8).join('\n') }, 'aplay exited unexpectedly; restarting');
        onUnexpectedExit(rec, detail);
      } else {
        log.debug({ pid: proc.pid, code, signal }, 'aplay exited');
      }
    };
    proc.once('error', (err) => finish(null, null, err));
    proc.once('exit', (code, signal) => finish(code, signal));
  };

  const onUnexpectedExit = (rec: ChildRec | null, detail: string): void => {
    st.restarts++;
    const now = clock.now();
    const ranHealthy = rec !== null && rec.ready && now - rec.readyAt >= healthyAfterMs;
    consecutiveFailures = ranHealthy ? 1 : consecutiveFailures + 1;
    if (consecutiveFailures >= failAfter && !failedReported) {
      failedReported = true;
      const tail = rec?.stderrTail.trim().split('\n').slice(-2).join(' / ') ?? '';
      emitHealth({ ok: false, detail: `audio output failing: aplay -D ${device} ${detail}${tail ? `: ${tail}` : ''}`.slice(0, 480) });
    }
    const backoff = Math.min(restartMax, restartMin * 2 ** Math.max(0, consecutiveFailures - 1));
    timers.clearTimeout(restartTimer);
    restartTimer = timers.setTimeout(() => {
      restartTimer = undefined;
      scheduleSpawn();
    }, backoff);
  };

  const retire = (rec: ChildRec, drainMs: number): void => {
    draining.add(rec);
    rec.proc.stdin.end();
    // aplay drains what it holds on EOF (snd_pcm_drain) and exits; make sure it does.
    rec.killTimers.push(timers.setTimeout(() => { if (!rec.done) rec.proc.kill('SIGTERM'); }, drainMs));
    rec.killTimers.push(timers.setTimeout(() => { if (!rec.done) rec.proc.kill('SIGKILL'); }, drainMs + 1000));
  };

  const stop = (): void => {
    if (!wanted) return;
    wanted = false;
    stopTicking();
    timers.clearTimeout(restartTimer);
    restartTimer = undefined;
    const rec = child;
    child = null;
    if (rec && !rec.done) retire(rec, bufferMs + 1000);
  };

  return {
    sampleRate,
    argv,
    attach(s) {
      source = s;
    },
    start() {
      if (wanted) return;
      wanted = true;
      scheduleSpawn();
    },
    stop,
    stats() {
      return { ...st, queuedFrames: child?.ready ? Math.round(pacer.queued(clock.now())) : 0 };
    },
    pid: () => (child && !child.done ? (child.proc.pid ?? null) : null),
    onHealth(listener) {
      healthListeners.add(listener);
      return () => healthListeners.delete(listener);
    },
    async idle() {
      while (child || draining.size > 0 || spawnPending) {
        const all = [...draining].map((c) => c.exited);
        if (child) all.push(child.exited);
        if (all.length === 0) await new Promise<void>((r) => setImmediate(r));
        else await Promise.all(all);
      }
    },
    async close() {
      stop();
      for (const rec of draining) if (!rec.done) rec.proc.kill('SIGKILL');
      healthListeners.clear();
      await Promise.all([...draining].map((c) => c.exited));
    },
  };
}
