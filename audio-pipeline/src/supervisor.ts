/**
 * The one place every ffmpeg / ffprobe / espeak-ng child runs (STYLE.md §7, after snapcast's
 * ProcessStream `wd_timeout`).
 *
 * - Two lanes. `normal` jobs share `concurrency` slots. `urgent` jobs (emergency TTS, live/relay)
 *   have `urgentSlots` reserved slots of their own and may also borrow an idle normal slot; when a
 *   slot frees, waiting urgent jobs are served first. An urgent job therefore never waits behind
 *   normal jobs.
 * - A slot may hold several processes at once (a decoder piped into encoders is one job): take it
 *   with `withSlot()`, spawn inside it, and it is released (and its stragglers killed) at the end.
 * - Watchdog: a process whose stdout, stderr, progress fd and stdin drain have all been silent for
 *   `watchdogMs` is SIGKILLed and its `done` rejects with MediaError TIMEOUT.
 * - stderr goes to the log (debug per line; the tail is kept for error classification).
 * - Progress: ffmpeg run with `-progress pipe:3` writes key=value lines on fd 3; `out_time_us`
 *   against the known duration gives a percent, published as `progress` events
 *   `{jobId, kind, percent, state}` for the controller to forward to its WebSocket.
 * - AbortSignal cancels a queued or running job (ABORTED); `stop()` kills every child and rejects
 *   every waiter (STOPPED).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { createBinaryResolver, isBinaryName, type BinaryName, type BinaryResolver } from './binaries.js';
import { MediaError } from './errors.js';

export type Lane = 'normal' | 'urgent';
export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled' | 'timeout';

export interface ProgressEvent {
  jobId: string;
  kind: string;
  /** 0..100, monotonically non-decreasing per job; null when the duration is unknown. */
  percent: number | null;
  state: JobState;
  lane: Lane;
}

export interface SupervisorOptions {
  /** Slots of the normal lane (the machine has 2 cores; ffmpeg encoders are single-threaded). */
  concurrency?: number;
  /** Slots reserved for the urgent lane. */
  urgentSlots?: number;
  /** Kill a child silent for this long (default 30 s). */
  watchdogMs?: number;
  log?: Logger;
  /** Where binaries are looked up (default: process.env). */
  env?: NodeJS.ProcessEnv;
  binaries?: BinaryResolver;
  /** Bytes of stderr kept per process for error messages (default 16 KiB). */
  stderrTailBytes?: number;
  now?: () => number;
}

export interface ProcessSpec {
  /** What this is, for events and logs: 'probe', 'analyse', 'encode-opus', 'tts', 'live' … */
  kind: string;
  /** A known binary name (resolved through env/PATH) or a path/command of your own. */
  command: BinaryName | (string & {});
  args: readonly string[];
  /** Media duration the process works through; turns ffmpeg progress into a percent. */
  durationMs?: number;
  /** The command writes ffmpeg `-progress pipe:3` lines on file descriptor 3. */
  progressFd?: boolean;
  /** 'pipe' exposes `handle.stdin`; a Buffer (or `{text}`) is written and closed. Default 'ignore'. */
  stdin?: 'ignore' | 'pipe' | Buffer | { text: string };
  /** 'collect' buffers into `result.stdout`; 'stream' exposes `handle.stdout`. Default 'ignore'. */
  stdout?: 'ignore' | 'collect' | 'stream';
  /** Cap for 'collect' (default 64 MiB); more kills the process with PROCESS_FAILED. */
  maxStdoutBytes?: number;
  watchdogMs?: number;
  signal?: AbortSignal;
  jobId?: string;
  cwd?: string;
}

export interface ProcessResult {
  jobId: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  /** Tail of stderr (see stderrTailBytes). */
  stderr: string;
  wallMs: number;
}

export interface ProcessHandle {
  readonly jobId: string;
  readonly pid: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  /**
   * Resolves when the process exits on its own or by `kill()` (check exitCode); rejects with
   * MediaError TIMEOUT / ABORTED / STOPPED / BINARY_MISSING / PROCESS_FAILED (stdout cap).
   */
  readonly done: Promise<ProcessResult>;
  /** Graceful stop: SIGTERM, then SIGKILL after `graceMs`. `done` resolves. */
  kill(graceMs?: number): void;
}

export interface Slot {
  readonly id: string;
  readonly lane: Lane;
  /** Spawn at once under this slot. */
  spawn(spec: ProcessSpec): ProcessHandle;
  /** Idempotent; kills processes of this slot that are still running. */
  release(): void;
}

export interface Supervisor {
  start(): void;
  /** Kill every child, reject every waiter with STOPPED. Idempotent. */
  stop(): Promise<void>;
  /** Wait for a slot of `lane`. */
  acquire(opts?: { lane?: Lane; signal?: AbortSignal }): Promise<Slot>;
  withSlot<T>(opts: { lane?: Lane; signal?: AbortSignal }, fn: (slot: Slot) => Promise<T>): Promise<T>;
  /** Queue, run to completion, release. Non-zero exit resolves; check `exitCode` (or `assertExitOk`). */
  run(spec: ProcessSpec & { lane?: Lane }): Promise<ProcessResult>;
  /** Queue and start (e.g. a long-running live encoder); resolves with the running handle; its slot is released when it exits. */
  launch(spec: ProcessSpec & { lane?: Lane }): Promise<ProcessHandle>;
  /** Publish a progress event on the same bus (e.g. an ingest's overall percent). */
  publish(ev: ProgressEvent): void;
  onProgress(listener: (ev: ProgressEvent) => void): () => void;
  binaryPath(name: BinaryName): string;
  stats(): { normalBusy: number; urgentBusy: number; queuedNormal: number; queuedUrgent: number; running: number };
  readonly log: Logger;
}

/** Throw PROCESS_FAILED when a process did not exit 0. */
export function assertExitOk(result: ProcessResult, what: string): void {
  if (result.exitCode === 0) return;
  throw new MediaError('PROCESS_FAILED', `${what} failed (exit ${result.exitCode ?? result.signal ?? '?'}): ${lastLines(result.stderr, 3)}`, {
    details: { exitCode: result.exitCode, signal: result.signal, stderr: lastLines(result.stderr, 20) },
  });
}

export function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}

interface Waiter {
  lane: Lane;
  resolve: (slot: Slot) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

type KillReason = 'timeout' | 'aborted' | 'stopped' | 'released' | 'overflow';

export function createSupervisor(opts: SupervisorOptions = {}): Supervisor {
  const concurrency = Math.max(1, Math.floor(opts.concurrency ?? 1));
  const urgentSlots = Math.max(0, Math.floor(opts.urgentSlots ?? 1));
  const defaultWatchdogMs = opts.watchdogMs ?? 30_000;
  const log = (opts.log ?? pino({ level: 'silent' })).child({ component: 'media-supervisor' });
  const binaries = opts.binaries ?? createBinaryResolver(opts.env ?? process.env);
  const stderrTailBytes = opts.stderrTailBytes ?? 16 * 1024;
  const now = opts.now ?? Date.now;
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);

  let stopped = false;
  let normalBusy = 0;
  let urgentBusy = 0;
  const queues: Record<Lane, Waiter[]> = { normal: [], urgent: [] };
  /** Running children → their settled-or-not `done`, so stop() can wait for them to be reaped. */
  const live = new Map<{ kill: (reason: KillReason) => void }, Promise<unknown>>();

  function publish(ev: ProgressEvent): void {
    emitter.emit('progress', ev);
  }

  function canGrant(lane: Lane): boolean {
    if (lane === 'urgent') return urgentBusy < urgentSlots || normalBusy < concurrency;
    return normalBusy < concurrency;
  }

  function pump(): void {
    for (const lane of ['urgent', 'normal'] as const) {
      const q = queues[lane];
      while (q.length > 0 && canGrant(lane)) {
        const w = q.shift()!;
        if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
        w.resolve(makeSlot(lane));
      }
    }
  }

  function makeSlot(lane: Lane): Slot {
    // Urgent work takes its reserved pool first, then borrows a normal slot.
    const pool: Lane = lane === 'urgent' && urgentBusy < urgentSlots ? 'urgent' : 'normal';
    if (pool === 'urgent') urgentBusy++;
    else normalBusy++;
    const id = randomUUID();
    const procs = new Set<{ kill: (reason: KillReason) => void }>();
    let released = false;
    const slot: Slot = {
      id,
      lane,
      spawn(spec) {
        if (released) throw new MediaError('STOPPED', `slot ${id} already released`);
        const h = spawnProcess(spec, lane);
        procs.add(h.ctl);
        void h.handle.done.then(
          () => procs.delete(h.ctl),
          () => procs.delete(h.ctl),
        );
        return h.handle;
      },
      release() {
        if (released) return;
        released = true;
        for (const p of procs) p.kill('released');
        if (pool === 'urgent') urgentBusy--;
        else normalBusy--;
        pump();
      },
    };
    return slot;
  }

  function acquire(o: { lane?: Lane; signal?: AbortSignal } = {}): Promise<Slot> {
    const lane = o.lane ?? 'normal';
    if (stopped) return Promise.reject(new MediaError('STOPPED', 'media supervisor is stopped'));
    if (o.signal?.aborted) return Promise.reject(abortError(o.signal));
    if (queues[lane].length === 0 && canGrant(lane) && (lane === 'urgent' || queues.urgent.length === 0)) {
      return Promise.resolve(makeSlot(lane));
    }
    return new Promise<Slot>((resolve, reject) => {
      const w: Waiter = { lane, resolve, reject, signal: o.signal, onAbort: undefined };
      if (o.signal) {
        const signal = o.signal;
        w.onAbort = () => {
          const q = queues[lane];
          const i = q.indexOf(w);
          if (i >= 0) q.splice(i, 1);
          reject(abortError(signal));
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      queues[lane].push(w);
    });
  }

  async function withSlot<T>(o: { lane?: Lane; signal?: AbortSignal }, fn: (slot: Slot) => Promise<T>): Promise<T> {
    const slot = await acquire(o);
    try {
      return await fn(slot);
    } finally {
      slot.release();
    }
  }

  function resolveCommand(command: string): string {
    return isBinaryName(command) ? binaries.path(command) : command;
  }

  function spawnProcess(spec: ProcessSpec, lane: Lane): { handle: ProcessHandle; ctl: { kill: (r: KillReason) => void } } {
    const jobId = spec.jobId ?? randomUUID();
    const kind = spec.kind;
    const plog = log.child({ jobId, kind });
    const watchdogMs = spec.watchdogMs ?? defaultWatchdogMs;
    const started = now();
    const command = resolveCommand(spec.command);
    const stdinMode = spec.stdin === undefined || spec.stdin === 'ignore' ? 'ignore' : 'pipe';
    const stdoutMode = spec.stdout ?? 'ignore';
    const stdio: ('ignore' | 'pipe')[] = [stdinMode, stdoutMode === 'ignore' ? 'ignore' : 'pipe', 'pipe'];
    if (spec.progressFd) stdio.push('pipe');

    let child: ChildProcess;
    let killReason: KillReason | null = null;
    let percent: number | null = spec.durationMs && spec.durationMs > 0 ? 0 : null;
    let lastActivity = now();
    let watchdog: NodeJS.Timeout | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    const stdoutChunks: Buffer[] = [];
    let stdoutBytes = 0;
    let stderrTail = '';
    let stderrPartial = '';
    let progressPartial = '';
    let outStream: PassThrough | null = null;

    const touch = (): void => {
      lastActivity = now();
    };

    const emit = (state: JobState): void => publish({ jobId, kind, percent, state, lane });

    let settle!: { resolve: (r: ProcessResult) => void; reject: (e: unknown) => void };
    const done = new Promise<ProcessResult>((resolve, reject) => {
      settle = { resolve, reject };
    });
    // Callers may not await `done` (fire-and-forget kill paths); never let that crash the process.
    done.catch(() => undefined);

    const ctl = {
      kill(reason: KillReason) {
        if (killReason !== null) return;
        killReason = reason;
        try {
          child.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      },
    };

    try {
      child = spawn(command, [...spec.args], { stdio, cwd: spec.cwd, windowsHide: true });
    } catch (err) {
      // Synchronous spawn failure (e.g. EACCES on some platforms).
      const e = new MediaError('BINARY_MISSING', `cannot run ${command}: ${(err as Error).message}`, { cause: err });
      settle.reject(e);
      const handle: ProcessHandle = { jobId, pid: undefined, stdin: null, stdout: null, done, kill: () => undefined };
      return { handle, ctl: { kill: () => undefined } };
    }
    live.set(ctl, done);
    plog.debug({ command, args: spec.args, pid: child.pid }, 'spawn');
    emit('running');

    const onAbort = (): void => ctl.kill('aborted');
    if (spec.signal) {
      if (spec.signal.aborted) queueMicrotask(onAbort);
      else spec.signal.addEventListener('abort', onAbort, { once: true });
    }

    const armWatchdog = (): void => {
      if (!(watchdogMs > 0)) return;
      const wait = Math.max(1, lastActivity + watchdogMs - now());
      watchdog = setTimeout(() => {
        if (now() - lastActivity >= watchdogMs) {
          plog.warn({ watchdogMs }, 'watchdog: no output, killing');
          ctl.kill('timeout');
        } else {
          armWatchdog();
        }
      }, wait);
      watchdog.unref?.();
    };
    armWatchdog();

    if (child.stdin) {
      child.stdin.on('error', (err: NodeJS.ErrnoException) => {
        // EPIPE when the child exits before reading everything: the exit code tells the story.
        plog.debug({ err: err.message }, 'stdin error');
      });
      child.stdin.on('drain', touch);
      if (Buffer.isBuffer(spec.stdin)) child.stdin.end(spec.stdin);
      else if (typeof spec.stdin === 'object') child.stdin.end(spec.stdin.text, 'utf8');
    }

    if (child.stdout) {
      if (stdoutMode === 'collect') {
        const cap = spec.maxStdoutBytes ?? 64 * 1024 * 1024;
        child.stdout.on('data', (chunk: Buffer) => {
          touch();
          stdoutBytes += chunk.length;
          if (stdoutBytes > cap) {
            ctl.kill('overflow');
            return;
          }
          stdoutChunks.push(chunk);
        });
      } else {
        outStream = new PassThrough({ highWaterMark: 1 << 20 });
        child.stdout.on('data', touch);
        child.stdout.pipe(outStream);
      }
    }

    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      touch();
      stderrTail += text;
      if (stderrTail.length > stderrTailBytes) stderrTail = stderrTail.slice(-stderrTailBytes);
      const lines = (stderrPartial + text).split('\n');
      stderrPartial = lines.pop() ?? '';
      for (const line of lines) if (line.trim() !== '') plog.debug({ stderr: line.trimEnd() }, 'stderr');
    });

    const progressStream = spec.progressFd ? (child.stdio[3] as Readable | null | undefined) : undefined;
    if (progressStream) {
      progressStream.setEncoding('utf8');
      progressStream.on('data', (text: string) => {
        touch();
        const lines = (progressPartial + text).split('\n');
        progressPartial = lines.pop() ?? '';
        let changed = false;
        for (const line of lines) {
          const eq = line.indexOf('=');
          if (eq < 0) continue;
          const key = line.slice(0, eq);
          const value = line.slice(eq + 1).trim();
          // ffmpeg 5.1 writes both out_time_us and (misnamed, also µs) out_time_ms.
          if (key === 'out_time_us' && spec.durationMs && spec.durationMs > 0) {
            const us = Number(value);
            if (Number.isFinite(us) && us >= 0) {
              const p = Math.min(100, Math.round((us / 1000 / spec.durationMs) * 1000) / 10);
              if (percent === null || p > percent) {
                percent = p;
                changed = true;
              }
            }
          } else if (key === 'progress' && value === 'end' && percent !== null && percent < 100) {
            percent = 100;
            changed = true;
          }
        }
        if (changed) emit('running');
      });
      progressStream.on('error', () => undefined);
    }

    child.on('error', (err: NodeJS.ErrnoException) => {
      // 'error' without a pid = spawn failed (ENOENT/EACCES); 'close' may still follow.
      if (child.pid === undefined) {
        cleanup();
        emit('failed');
        settle.reject(
          new MediaError('BINARY_MISSING', `cannot run ${command}: ${err.code ?? err.message}`, { cause: err, details: { command } }),
        );
      } else {
        plog.warn({ err: err.message }, 'child error');
      }
    });

    const cleanup = (): void => {
      if (watchdog) clearTimeout(watchdog);
      if (graceTimer) clearTimeout(graceTimer);
      spec.signal?.removeEventListener('abort', onAbort);
      live.delete(ctl);
    };

    child.on('close', (code, signal) => {
      if (child.pid === undefined) return;
      cleanup();
      if (stderrPartial.trim() !== '') plog.debug({ stderr: stderrPartial.trimEnd() }, 'stderr');
      const result: ProcessResult = {
        jobId,
        exitCode: code,
        signal,
        stdout: Buffer.concat(stdoutChunks),
        stderr: stderrTail,
        wallMs: now() - started,
      };
      const reason = killReason as KillReason | null;
      if (reason === null) {
        if (code === 0 && percent !== null) percent = 100;
        emit(code === 0 ? 'done' : 'failed');
        if (code !== 0) plog.warn({ exitCode: code, signal, stderr: lastLines(stderrTail, 8) }, 'process failed');
        else plog.debug({ wallMs: result.wallMs }, 'exit 0');
        settle.resolve(result);
        return;
      }
      switch (reason) {
        case 'timeout':
          emit('timeout');
          settle.reject(
            new MediaError('TIMEOUT', `${kind}: ${command} produced no output for ${watchdogMs} ms and was killed`, {
              details: { watchdogMs, stderr: lastLines(stderrTail, 10) },
            }),
          );
          return;
        case 'aborted':
        case 'released':
          emit('cancelled');
          settle.reject(spec.signal?.aborted ? abortError(spec.signal) : new MediaError('ABORTED', `${kind}: cancelled`));
          return;
        case 'stopped':
          emit('cancelled');
          settle.reject(new MediaError('STOPPED', `${kind}: media supervisor stopped`));
          return;
        case 'overflow':
          emit('failed');
          settle.reject(new MediaError('PROCESS_FAILED', `${kind}: output larger than ${spec.maxStdoutBytes ?? 64 * 1024 * 1024} bytes`));
          return;
      }
    });

    const handle: ProcessHandle = {
      jobId,
      pid: child.pid,
      stdin: stdinMode === 'pipe' && spec.stdin === 'pipe' ? child.stdin : null,
      stdout: outStream,
      done,
      kill(graceMs = 2000) {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        graceTimer = setTimeout(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        }, graceMs);
        graceTimer.unref?.();
      },
    };
    return { handle, ctl };
  }

  async function run(spec: ProcessSpec & { lane?: Lane }): Promise<ProcessResult> {
    const lane = spec.lane ?? 'normal';
    const jobId = spec.jobId ?? randomUUID();
    publish({ jobId, kind: spec.kind, percent: spec.durationMs ? 0 : null, state: 'queued', lane });
    let slot: Slot;
    try {
      slot = await acquire({ lane, signal: spec.signal });
    } catch (err) {
      publish({ jobId, kind: spec.kind, percent: null, state: 'cancelled', lane });
      throw err;
    }
    try {
      return await slot.spawn({ ...spec, jobId }).done;
    } finally {
      slot.release();
    }
  }

  async function startQueued(spec: ProcessSpec & { lane?: Lane }): Promise<ProcessHandle> {
    const lane = spec.lane ?? 'normal';
    const jobId = spec.jobId ?? randomUUID();
    publish({ jobId, kind: spec.kind, percent: spec.durationMs ? 0 : null, state: 'queued', lane });
    const slot = await acquire({ lane, signal: spec.signal });
    let handle: ProcessHandle;
    try {
      handle = slot.spawn({ ...spec, jobId });
    } catch (err) {
      slot.release();
      throw err;
    }
    void handle.done.then(
      () => slot.release(),
      () => slot.release(),
    );
    return handle;
  }

  const sup: Supervisor = {
    log,
    start() {
      stopped = false;
    },
    async stop() {
      if (stopped && live.size === 0) return;
      stopped = true;
      for (const lane of ['urgent', 'normal'] as const) {
        for (const w of queues[lane].splice(0)) {
          if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
          w.reject(new MediaError('STOPPED', 'media supervisor stopped'));
        }
      }
      const pending = [...live.values()];
      for (const p of [...live.keys()]) p.kill('stopped');
      // Wait (bounded) for the children to be reaped so no process outlives stop().
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(pending),
        new Promise((r) => {
          timer = setTimeout(r, 5000);
        }),
      ]);
      if (timer) clearTimeout(timer);
    },
    acquire,
    withSlot,
    run,
    launch: startQueued,
    publish,
    onProgress(listener) {
      emitter.on('progress', listener);
      return () => emitter.off('progress', listener);
    },
    binaryPath: (name) => binaries.path(name),
    stats: () => ({
      normalBusy,
      urgentBusy,
      queuedNormal: queues.normal.length,
      queuedUrgent: queues.urgent.length,
      running: live.size,
    }),
  };
  return sup;
}

function abortError(signal: AbortSignal): MediaError {
  const reason: unknown = signal.reason;
  return new MediaError('ABORTED', `cancelled${reason instanceof Error ? `: ${reason.message}` : ''}`, { cause: reason });
}
