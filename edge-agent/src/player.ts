import { preempts, type Claim } from '../../schemas/src/index.js';
import type { AudioSink, PcmSource } from './hardware.js';

/**
 * A program the player can run: fills `out` (starting at hardware-clock `presentationTime`) and returns
 * frames written; `ended()` true once it has nothing more to give.
 */
export interface Program extends PcmSource {
  readonly id: string;
  readonly kind: 'airing' | 'live' | 'test_tone';
  ended(): boolean;
}

export type EndReason = 'finished' | 'preempted' | 'stopped';

export interface Playing {
  program: Program;
  claim: Claim;
  /** Clock reading when the program took the speakers (scheduled: when its first sample sounds). */
  startedAt: number;
  /**
   * `by`: the program that preempted it; `at`: hardware-clock time at which its last sample sounds
   * (finished, preempted; undefined when stopped).
   */
  onEnd: (why: EndReason, by?: Program, at?: number) => void;
}

export interface ScheduleCallbacks {
  /** The first sample is placed; `presentationTime` = hardware-clock time at which it sounds. */
  onStart?: (presentationTime: number) => void;
  onEnd?: Playing['onEnd'];
  /** At its start instant the program in place kept the speakers (it does not preempt it). */
  onBlocked?: (incumbent: Program) => void;
}

interface Armed { program: Program; claim: Claim; at: number; cb: ScheduleCallbacks }

/**
 * The one PcmSource attached to the sink. It holds at most one program; a challenger replaces it only if
 * it preempts by the schemas' priority rules. Gain is applied here (software volume on top of the amp).
 *
 * Scheduled programs are placed by SAMPLE POSITION, not by when a timer fires: `schedule()` arms a
 * program with the hardware-clock instant its first sample must sound, and read() — which knows the
 * presentation time of out[0] — switches at exactly that frame (the previous program plays up to it,
 * or silence). Timers only decide when the program is armed, which can be seconds early.
 */
export function createPlayer({ sink, now }: { sink: AudioSink; now: () => number }) {
  let current: Playing | undefined;
  let armed: Armed[] = [];
  let gain = 1;
  const changeListeners = new Set<() => void>();
  // The sink runs only while a program is loaded or armed (as aplay opens the device): an idle fleet of
  // thousands of simulated clusters then costs no DAC ticks.
  let sinkRunning = false;
  const startSink = () => { if (!sinkRunning) { sinkRunning = true; sink.start(); } };
  const stopSink = () => { if (sinkRunning) { sinkRunning = false; sink.stop(); } };
  const changed = () => { for (const l of changeListeners) l(); };
  // Callbacks leave the DAC's read path: they run after it, in order.
  const defer = (fn: () => void) => queueMicrotask(fn);
  const msPerFrame = 1000 / sink.sampleRate;

  function renderCurrent(out: Float32Array, from: number, to: number, pt: number) {
    const p = current;
    if (!p) { out.fill(0, from, to); return; }
    const sub = from === 0 && to === out.length ? out : out.subarray(from, to);
    const n = p.program.read(sub, pt + from * msPerFrame);
    if (n < sub.length) sub.fill(0, Math.max(0, n));
    if (gain !== 1) for (let i = 0; i < n; i++) sub[i]! *= gain;
    if (p.program.ended()) {
      current = undefined;
      const endAt = pt + (from + Math.max(0, n)) * msPerFrame;
      defer(() => { if (!current && armed.length === 0) stopSink(); p.onEnd('finished', undefined, endAt); changed(); });
    }
  }

  function activate(a: Armed, pt: number) {
    const cur = current;
    if (cur && !cur.program.ended() && !preempts(a.claim, cur.claim)) {
      defer(() => a.cb.onBlocked?.(cur.program));
      return;
    }
    current = { program: a.program, claim: a.claim, startedAt: now(), onEnd: a.cb.onEnd ?? (() => {}) };
    defer(() => {
      if (cur) cur.onEnd('preempted', a.program, pt);
      a.cb.onStart?.(pt);
      changed();
    });
  }

  const source: PcmSource = {
    read(out, presentationTime) {
      const n = out.length;
      let off = 0;
      while (off < n) {
        const a = armed[0];
        // Frame index within this block at which the armed program's first sample falls.
        const s = a ? Math.max(off, Math.ceil((a.at - presentationTime) / msPerFrame - 1e-6)) : n;
        const end = Math.min(n, s);
        if (end > off) { renderCurrent(out, off, end, presentationTime); off = end; }
        if (a && s < n) { armed.shift(); activate(a, presentationTime + off * msPerFrame); }
        else if (!a || s >= n) break;
      }
      // Silence after a program ends is not an underrun: the player always fills the buffer.
      return n;
    },
  };
  sink.attach(source);

  return {
    /** Try to start `program` now; false if the current one keeps the speakers. */
    play(program: Program, claim: Claim, onEnd: Playing['onEnd'] = () => {}): boolean {
      const cur = current;
      if (cur && !cur.program.ended() && !preempts(claim, cur.claim)) return false;
      current = { program, claim, startedAt: now(), onEnd };
      startSink();
      if (cur) cur.onEnd('preempted', program);
      changed();
      return true;
    },
    /**
     * Arm `program` to take the speakers with its first sample at hardware-clock time `at` (a past
     * instant means "as soon as possible"). Whether it preempts is decided at that instant.
     */
    schedule(program: Program, claim: Claim, at: number, cb: ScheduleCallbacks = {}) {
      armed = armed.filter((x) => x.program.id !== program.id);
      armed.push({ program, claim, at, cb });
      armed.sort((x, y) => x.at - y.at);
      startSink();
    },
    /** Disarm a scheduled program that has not started; true if it was armed. */
    unschedule(id: string): boolean {
      const before = armed.length;
      armed = armed.filter((x) => x.program.id !== id);
      if (!current && armed.length === 0) stopSink();
      return armed.length !== before;
    },
    isArmed: (id: string) => armed.some((x) => x.program.id === id),
    stop(id?: string) {
      if (id !== undefined) armed = armed.filter((x) => x.program.id !== id);
      else armed = [];
      const cur = current;
      if (!cur || (id !== undefined && cur.program.id !== id)) {
        if (!current && armed.length === 0) stopSink();
        return;
      }
      current = undefined;
      if (armed.length === 0) stopSink();
      cur.onEnd('stopped');
      changed();
    },
    setGain(g: number) { gain = Math.max(0, Math.min(1, g)); },
    playing: () => current,
    /** Called after the program in place changes (ended, preempted, stopped, started). */
    onChange(l: () => void) { changeListeners.add(l); return () => changeListeners.delete(l); },
    /** Re-attach to the sink (a hardware reboot detaches the DAC's source). */
    attach() { sink.attach(source); if (current || armed.length) { sinkRunning = false; startSink(); } },
    detach() { stopSink(); sink.attach(null); },
  };
}
export type Player = ReturnType<typeof createPlayer>;

/** A sine test tone of fixed length with 10 ms fades (no clicks). */
export function toneProgram(id: string, frequencyHz: number, durationMs: number, sampleRate: number): Program {
  const total = Math.round((durationMs / 1000) * sampleRate);
  const fade = Math.round(0.01 * sampleRate);
  let pos = 0;
  return {
    id, kind: 'test_tone',
    read(out) {
      const n = Math.min(out.length, total - pos);
      for (let i = 0; i < n; i++) {
        const k = pos + i;
        const env = Math.min(1, k / fade, (total - k) / fade);
        out[i] = 0.5 * env * Math.sin((2 * Math.PI * frequencyHz * k) / sampleRate);
      }
      pos += n;
      return n;
    },
    ended: () => pos >= total,
  };
}
