import type { Airing, QuietHours } from '../../schemas/src/index.js';

/**
 * Quiet hours on the agent: the second lock against a mistyped relay time (the 03:15 incident). The
 * controller refuses such schedules when they are saved; the agent refuses them again at air time, in
 * the commune's timezone, whatever timezone the cluster computer is set to.
 */

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    // Throws RangeError for an unknown zone: callers validate the plan's timezone with isValidTimeZone.
    f = new Intl.DateTimeFormat('en-GB', { timeZone, hourCycle: 'h23', hour: '2-digit', minute: '2-digit', second: '2-digit' });
    formatters.set(timeZone, f);
  }
  return f;
}

export function isValidTimeZone(tz: string): boolean {
  try {
    formatter(tz);
    return true;
  } catch {
    return false;
  }
}

/** Minutes since local midnight (fractional, ms precision) of an instant in `timeZone`. */
export function minuteOfDay(epochMs: number, timeZone: string): number {
  let h = 0; let m = 0; let s = 0;
  for (const p of formatter(timeZone).formatToParts(new Date(epochMs))) {
    if (p.type === 'hour') h = Number(p.value);
    else if (p.type === 'minute') m = Number(p.value);
    else if (p.type === 'second') s = Number(p.value);
  }
  const ms = ((epochMs % 1000) + 1000) % 1000;
  return h * 60 + m + (s + ms / 1000) / 60;
}

const parseHHMM = (t: string) => Number(t.slice(0, 2)) * 60 + Number(t.slice(3, 5));
const DAY = 1440;

/** Is this instant inside the quiet window [start, end)? The window may cross midnight (21:30-05:00). */
export function inQuietHours(epochMs: number, q: QuietHours, timeZone: string): boolean {
  const m = minuteOfDay(epochMs, timeZone);
  const s = parseHHMM(q.start);
  const e = parseHHMM(q.end);
  return s < e ? m >= s && m < e : m >= s || m < e;
}

/**
 * Would audio over [startMs, startMs + durationMs) sound inside quiet hours? True if any part of it
 * overlaps the window, so a 20:00 airing that runs past 21:30 is refused too. The duration is laid on
 * the local clock face from the start (exact in zones without DST, such as Asia/Ho_Chi_Minh).
 */
export function overlapsQuietHours(startMs: number, durationMs: number, q: QuietHours, timeZone: string): boolean {
  if (durationMs >= DAY * 60_000) return true;
  const a = minuteOfDay(startMs, timeZone);
  const b = a + Math.max(0, durationMs) / 60_000;
  const s = parseHHMM(q.start);
  const e = parseHHMM(q.end);
  // Quiet intervals on an unrolled two-day axis: [s, e) (or [s, e + 1440) across midnight) and the same
  // shifted by a day either way; the airing [a, b) lies within [0, 2880).
  const len = s < e ? e - s : e + DAY - s;
  for (const base of [-DAY, 0, DAY]) {
    const qs = s + base;
    const qe = qs + len;
    if (a < qe && qs < b) return true;
  }
  return false;
}

export type QuietVerdict = { allowed: true } | { allowed: false; reason: 'quiet_hours'; detail: string };

/** The agent's rule: emergency audio always sounds; others only outside quiet hours unless overridden. */
export function quietHoursVerdict(a: Pick<Airing, 'startAt' | 'durationMs' | 'priority' | 'quietOverride'>, q: QuietHours, timeZone: string): QuietVerdict {
  if (a.priority === 'emergency' || a.quietOverride) return { allowed: true };
  if (!overlapsQuietHours(a.startAt, a.durationMs, q, timeZone)) return { allowed: true };
  return { allowed: false, reason: 'quiet_hours', detail: `would sound inside quiet hours ${q.start}-${q.end} (${timeZone})` };
}
