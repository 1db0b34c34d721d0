import type { QuietHours } from '../../../schemas/src/index.js';
import { badRequest } from '../errors.js';
import { formatClock, formatDuration, parseClock } from './time.js';

export const DEFAULT_QUIET_HOURS: QuietHours = { start: '21:30', end: '05:00' };

/** Longest quiet window accepted: longer ones are almost always start and end swapped (05:00-21:30). */
export const MAX_QUIET_MS = 12 * 3600_000;

const DAY_S = 86_400;

/** [start, end) in seconds of the day; end < start when the window crosses midnight. */
function window(q: QuietHours): { start: number; end: number; lengthS: number } {
  const start = parseClock(q.start);
  const end = parseClock(q.end);
  if (start === undefined || end === undefined) throw badRequest('QUIET_HOURS_MALFORMED', `quiet hours must be HH:MM-HH:MM, got ${q.start}-${q.end}`);
  return { start, end, lengthS: (end - start + DAY_S) % DAY_S };
}

/** Validate a quiet-hours setting (malformed, empty, or implausibly long). */
export function checkQuietHours(q: QuietHours): void {
  const w = window(q);
  if (w.lengthS === 0) throw badRequest('QUIET_HOURS_MALFORMED', `quiet hours ${q.start}-${q.end} start and end at the same time`);
  if (w.lengthS * 1000 > MAX_QUIET_MS) {
    throw badRequest('QUIET_HOURS_MALFORMED', `quiet hours ${q.start}-${q.end} would last ${formatDuration(w.lengthS * 1000)} (more than ${MAX_QUIET_MS / 3600_000} h): are start and end swapped?`);
  }
}

export interface QuietHit {
  /** Local time of day the airing starts, and when it ends. */
  start: string;
  end: string;
  message: string;
}

/**
 * Which of these start times (seconds of the day) give an airing of `durationMs` that sounds inside the
 * quiet window, even partly. Windows crossing midnight (21:30-05:00) and airings crossing midnight are
 * both handled by comparing on a 3-day line.
 */
export function quietHits(timesOfDay: readonly number[], durationMs: number, q: QuietHours): QuietHit[] {
  const w = window(q);
  if (w.lengthS === 0) return [];
  const durS = durationMs / 1000;
  const hits: QuietHit[] = [];
  for (const t of timesOfDay) {
    let hit = false;
    for (const k of [-1, 0, 1]) {
      const qs = w.start + k * DAY_S;
      const qe = qs + w.lengthS;
      if (t < qe && t + durS > qs) { hit = true; break; }
    }
    if (hit) {
      const start = formatClock(t);
      const end = formatClock(Math.ceil(t + durS));
      hits.push({ start, end, message: `an airing at ${start}-${end} would sound inside quiet hours ${q.start}-${q.end}` });
    }
  }
  return hits;
}

/** Is the instant's local second of the day inside the quiet window? (used for previews/tests). */
export function inQuiet(secondOfDay: number, q: QuietHours): boolean {
  const w = window(q);
  const rel = (secondOfDay - w.start + DAY_S) % DAY_S;
  return rel < w.lengthS;
}
