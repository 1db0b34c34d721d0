/**
 * One GPIO output line held through libgpiod's `gpioset` (Debian package gpiod).
 *
 * The GPIO character device keeps a value only while the process that requested the line holds it
 * ("the state … reverts to default when the last process referencing the file descriptor … exits",
 * gpioset --help), so a value is a long-running child: v1 (libgpiod 1.6, Debian 12)
 * `gpioset --mode=signal [--active-low] <chip> <line>=<v>`, v2 (libgpiod 2.x, Debian 13)
 * `gpioset -c <chip> [-l] <line>=<v>`, which holds until signalled by default. Changing the value stops
 * the holder and starts another (the line is released for a few ms in between: wire the relay so
 * that the released line means OFF — pull-down for active-high, pull-up for active-low).
 */
import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { pino, type Logger } from 'pino';
import { systemTimers, type Timers } from './clock.js';

const execFileP = promisify(execFile);

export type GpiosetSyntax = 'v1' | 'v2';

export interface GpioLineOptions {
  /** gpioset binary (resolveLinuxBinary('gpioset')). */
  gpiosetPath: string;
  chip: string;
  line: number;
  activeLow?: boolean;
  /** Command syntax; 'auto' (default) runs `gpioset --version` once. */
  syntax?: GpiosetSyntax | 'auto';
  /** set() resolves once the holder has run this long without failing (default 50 ms). */
  settleMs?: number;
  timers?: Timers;
  log?: Logger;
}

export class GpioError extends Error {
  constructor(readonly code: 'GPIO_FAILED' | 'GPIO_CLOSED', message: string) {
    super(message);
    this.name = 'GpioError';
  }
}

export interface GpioLine {
  /** Drive the line active (true) or inactive (false); resolves once the holder runs (rejects if it fails at once). */
  set(active: boolean): Promise<void>;
  /** The value being held, null before the first set() or after a failure/close. */
  value(): boolean | null;
  /** pid of the holder process, null when none. */
  pid(): number | null;
  /** The holder died while it should hold the line (the line fell back to its default). */
  onFailure(listener: (err: GpioError) => void): () => void;
  /** Stop holding (the line reverts to its default) and wait for the holder to exit. */
  close(): Promise<void>;
}

/** Major version from `gpioset --version` ("gpioset (libgpiod) v1.6.3" → v1). */
export function parseGpiosetVersion(text: string): GpiosetSyntax | null {
  const m = /\bv?(\d+)\.\d+/.exec(text);
  if (!m) return null;
  return Number(m[1]) >= 2 ? 'v2' : 'v1';
}

export function gpiosetArgs(syntax: GpiosetSyntax, chip: string, line: number, active: boolean, activeLow: boolean): string[] {
  const v = `${line}=${active ? 1 : 0}`;
  switch (syntax) {
    case 'v1':
      return ['--mode=signal', ...(activeLow ? ['--active-low'] : []), chip, v];
    case 'v2':
      return ['-c', chip, ...(activeLow ? ['-l'] : []), v];
  }
}

type Holder = ChildProcessByStdio<null, null, Readable>;

interface HolderRec {
  proc: Holder;
  stderr: string;
  exited: Promise<void>;
  retiring: boolean;
}

export function createGpioLine(o: GpioLineOptions): GpioLine {
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'gpio', chip: o.chip, line: o.line });
  const timers = o.timers ?? systemTimers;
  const activeLow = o.activeLow ?? false;
  const settleMs = o.settleMs ?? 50;
  let syntax: GpiosetSyntax | null = o.syntax && o.syntax !== 'auto' ? o.syntax : null;
  let holder: HolderRec | null = null;
  let held: boolean | null = null;
  let closed = false;
  // Serialise set() calls: each waits for the previous holder to be gone before requesting the line.
  let queue: Promise<void> = Promise.resolve();
  const failureListeners = new Set<(err: GpioError) => void>();

  const detectSyntax = async (): Promise<GpiosetSyntax> => {
    if (syntax) return syntax;
    try {
      const { stdout, stderr } = await execFileP(o.gpiosetPath, ['--version'], { timeout: 5000 });
      syntax = parseGpiosetVersion(`${stdout}\n${stderr}`) ?? 'v1';
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'gpioset --version failed; assuming libgpiod v1 syntax');
      syntax = 'v1';
    }
    return syntax;
  };

  const retire = async (rec: HolderRec): Promise<void> => {
    rec.retiring = true;
    rec.proc.kill('SIGTERM');
    const t = timers.setTimeout(() => rec.proc.kill('SIGKILL'), 1000);
    await rec.exited;
    timers.clearTimeout(t);
  };

  const doSet = async (active: boolean): Promise<void> => {
    if (closed) throw new GpioError('GPIO_CLOSED', 'gpio line closed');
    const sx = await detectSyntax();
    // The kernel refuses a second request for a held line (EBUSY): the old holder must be gone first.
    if (holder) await retire(holder);
    holder = null;
    held = null;
    if (closed) throw new GpioError('GPIO_CLOSED', 'gpio line closed');
    const args = gpiosetArgs(sx, o.chip, o.line, active, activeLow);
    const proc = spawn(o.gpiosetPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let resolveExit!: () => void;
    const rec: HolderRec = { proc, stderr: '', retiring: false, exited: new Promise<void>((r) => (resolveExit = r)) };
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d: string) => (rec.stderr = (rec.stderr + d).slice(-2048)));
    holder = rec;
    held = active;
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      let settle: NodeJS.Timeout | undefined;
      const ok = (): void => {
        if (settled) return;
        settled = true;
        resolve();
      };
      const fail = (err: GpioError): void => {
        timers.clearTimeout(settle);
        if (settled) return;
        settled = true;
        reject(err);
      };
      // gpioset fails at once when the line is busy or absent: wait a moment before calling it held.
      proc.once('spawn', () => { settle = timers.setTimeout(ok, settleMs); });
      proc.once('error', (err) => {
        resolveExit();
        if (holder === rec) {
          holder = null;
          held = null;
        }
        fail(new GpioError('GPIO_FAILED', `cannot run ${o.gpiosetPath}: ${err.message}`));
      });
      proc.once('exit', (code, signal) => {
        resolveExit();
        // Gone before it settled: never call that "held".
        timers.clearTimeout(settle);
        if (holder === rec) {
          holder = null;
          held = null;
        }
        if (rec.retiring || closed) return;
        // 'exit' may come before the last stderr bytes: give them a moment, they say why.
        let reported = false;
        const report = (): void => {
          if (reported) return;
          reported = true;
          timers.clearTimeout(grace);
          const err = new GpioError('GPIO_FAILED', `gpioset ${args.join(' ')} exited (${code ?? signal}): ${rec.stderr.trim() || 'no message'}`);
          if (!settled) {
            fail(err);
            return;
          }
          log.warn({ code, signal, stderr: rec.stderr.trim() }, 'gpioset exited while holding the line');
          for (const l of [...failureListeners]) {
            try {
              l(err);
            } catch (e) {
              log.error({ err: e }, 'gpio failure listener threw');
            }
          }
        };
        const grace = timers.setTimeout(report, 100);
        if (proc.stderr.readableEnded) report();
        else proc.stderr.once('end', report);
      });
    });
    log.debug({ pid: proc.pid, args }, 'gpio line set');
  };

  return {
    set(active) {
      const p = queue.then(() => doSet(active));
      queue = p.catch(() => {});
      return p;
    },
    value: () => held,
    pid: () => holder?.proc.pid ?? null,
    onFailure(listener) {
      failureListeners.add(listener);
      return () => failureListeners.delete(listener);
    },
    async close() {
      if (closed) return;
      closed = true;
      await queue;
      failureListeners.clear();
      if (holder) await retire(holder);
      holder = null;
      held = null;
    },
  };
}
