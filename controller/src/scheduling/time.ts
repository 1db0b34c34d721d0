/**
 * Calendar and timezone arithmetic for schedules. Nothing here reads the server's timezone or clock:
 * local dates are day numbers (days since 1970-01-01, proleptic Gregorian, computed with Date.UTC), and
 * the commune's UTC offset comes from the IANA database through Intl, so the same schedule gives the same
 * instants whether the server runs in UTC, America/New_York or Asia/Ho_Chi_Minh.
 */

export const DAY_MS = 86_400_000;
export const DEFAULT_TIMEZONE = 'Asia/Ho_Chi_Minh';

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23',
      year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    formatters.set(tz, f);
  }
  return f;
}

export function isValidTimeZone(tz: string): boolean {
  try { formatter(tz); return true; } catch { return false; }
}

export interface LocalParts { y: number; m: number; d: number; hh: number; mm: number; ss: number }

/** Offset from the IANA database through Intl (slow: a few µs); memoised below. */
function intlOffsetMs(instant: number, tz: string): number {
  const p: Record<string, number> = {};
  for (const part of formatter(tz).formatToParts(new Date(instant))) {
    if (part.type !== 'literal') p[part.type] = Number(part.value);
  }
  return Date.UTC(p.year!, p.month! - 1, p.day!, p.hour! % 24, p.minute!, p.second!) - instant;
}

const BUCKET_MS = 15 * 60_000;
const offsets = new Map<string, Map<number, number>>();

/**
 * Offset of `tz` from UTC at `instant`, ms (Asia/Ho_Chi_Minh: +7 h, no DST since 1975). Memoised per
 * 15-minute UTC bucket: offsets are multiples of 15 min and change at whole local quarter hours, so every
 * transition since 1970 falls on a bucket boundary.
 */
export function tzOffsetMs(instant: number, tz: string): number {
  const bucket = Math.floor(instant / BUCKET_MS);
  let m = offsets.get(tz);
  if (!m) offsets.set(tz, (m = new Map()));
  let off = m.get(bucket);
  if (off === undefined) {
    off = intlOffsetMs(bucket * BUCKET_MS, tz);
    if (m.size > 100_000) m.clear();
    m.set(bucket, off);
  }
  return off;
}

/** Wall-clock fields of an instant in `tz` (milliseconds dropped). */
export function localParts(instant: number, tz: string): LocalParts {
  const d = new Date(Math.floor(instant / 1000) * 1000 + tzOffsetMs(instant, tz));
  return { y: d.getUTCFullYear(), m: d.getUTCMonth() + 1, d: d.getUTCDate(), hh: d.getUTCHours(), mm: d.getUTCMinutes(), ss: d.getUTCSeconds() };
}

/**
 * The instant of a local wall-clock time. In zones with DST a time that does not exist (spring forward)
 * maps to the instant one offset later; a repeated time (fall back) maps to its first occurrence.
 */
export function localToInstant(day: number, secondOfDay: number, tz: string): number {
  const wall = day * DAY_MS + secondOfDay * 1000;
  const off1 = tzOffsetMs(wall, tz);
  const t1 = wall - off1;
  const off2 = tzOffsetMs(t1, tz);
  if (off2 === off1) return t1;
  const t2 = wall - off2;
  return tzOffsetMs(t2, tz) === off2 ? Math.min(t1, t2) : Math.max(t1, t2);
}

/** Local day number of an instant. */
export function localDay(instant: number, tz: string): number {
  const l = localParts(instant, tz);
  return dayNumber(l.y, l.m, l.d);
}

export function dayNumber(y: number, m: number, d: number): number {
  return Math.round(Date.UTC(y, m - 1, d) / DAY_MS);
}

export function fromDayNumber(n: number): { y: number; m: number; d: number } {
  const dt = new Date(n * DAY_MS);
  return { y: dt.getUTCFullYear(), m: dt.getUTCMonth() + 1, d: dt.getUTCDate() };
}

/** 0 = Sunday … 6 = Saturday (1970-01-01 was a Thursday). */
export function weekdayOf(n: number): number {
  return (((n + 4) % 7) + 7) % 7;
}

export function daysInMonth(y: number, m: number): number {
  return new Date(Date.UTC(y, m, 0)).getUTCDate();
}

/** "YYYY-MM-DD" → day number; undefined when malformed or not a calendar date. */
export function parseLocalDate(s: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  if (!m) return undefined;
  const y = Number(m[1]); const mo = Number(m[2]); const d = Number(m[3]);
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) return undefined;
  return dayNumber(y, mo, d);
}

/** "HH:MM" or "HH:MM:SS" → seconds of the day. */
export function parseClock(s: string): number | undefined {
  const m = /^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$/.exec(s);
  if (!m) return undefined;
  return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3] ?? 0);
}

const pad = (n: number) => String(n).padStart(2, '0');

export function formatDay(n: number): string {
  const { y, m, d } = fromDayNumber(n);
  return `${y}-${pad(m)}-${pad(d)}`;
}

/** Seconds of the day → "HH:MM" (with ":SS" when not on a minute). */
export function formatClock(secondOfDay: number): string {
  const s = ((secondOfDay % 86_400) + 86_400) % 86_400;
  const hhmm = `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}`;
  return s % 60 ? `${hhmm}:${pad(s % 60)}` : hhmm;
}

/** "YYYY-MM-DD HH:MM" in `tz`: how the operator reads an instant. */
export function formatLocal(instant: number, tz: string): string {
  const l = localParts(instant, tz);
  const base = `${l.y}-${pad(l.m)}-${pad(l.d)} ${pad(l.hh)}:${pad(l.mm)}`;
  return l.ss ? `${base}:${pad(l.ss)}` : base;
}

/** "1 h 05 min", "15 min", "45 s": durations in messages. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  const mins = rest ? `${m} min ${rest} s` : `${m} min`;
  return h ? `${h} h ${pad(m)} min` : mins;
}
