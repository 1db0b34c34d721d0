/**
 * The only place in edge-agent/ that reads real time (lint bans Date.now/performance.now elsewhere).
 * Everything else gets a Clock injected, so schedules, sync and playout are testable with simulated
 * clocks (firmware-sim offsets and drifts them).
 */
export interface Clock {
  /** Milliseconds since the Unix epoch by this clock (fractional allowed). */
  now(): number;
}

/** Real time of this machine, sub-millisecond. */
export const systemClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
};

/** Timers are injectable too, so tests can drive them; defaults are Node's. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout;
  clearTimeout(t: NodeJS.Timeout | undefined): void;
  setInterval(fn: () => void, ms: number): NodeJS.Timeout;
  clearInterval(t: NodeJS.Timeout | undefined): void;
}

export const systemTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (t) => clearInterval(t),
};
