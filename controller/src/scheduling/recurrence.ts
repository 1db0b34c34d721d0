import cron from 'node-cron';
import type { Recurrence, Weekday } from '../../../schemas/src/index.js';
import { AppError, badRequest } from '../errors.js';
import {
  DAY_MS, daysInMonth, formatClock, formatDay, fromDayNumber, localDay, localToInstant, parseClock, parseLocalDate, weekdayOf,
} from './time.js';

/** At most this many slots per day: a radio schedule, not a ticker (and it bounds every expansion). */
export const MAX_SLOTS_PER_DAY = 48;

export interface RuleInput {
  recurrence: Recurrence;
  validFrom?: string | null | undefined;
  validUntil?: string | null | undefined;
  exceptions?: readonly string[] | undefined;
}

type DayMatcher = (day: number) => boolean;

/** A schedule's recurrence compiled for fast, repeated expansion. Pure data + functions, no clock. */
export interface CompiledRule {
  kind: Recurrence['kind'];
  timezone: string;
  /** Seconds of the day at which it sounds on a matching day (sorted); for `once`, the one time. */
  times: number[];
  /** For `once`: the instant. */
  onceAt?: number;
  /** Day number of the once slot. */
  onceDay?: number;
  matchesDay: DayMatcher;
  fromDay?: number;
  untilDay?: number;
  exceptions: ReadonlySet<number>;
}

const WEEKDAY_INDEX: Record<Weekday, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };

function parseTimes(times: readonly string[], field: string): number[] {
  const out: number[] = [];
  const seen = new Set<number>();
  for (const [i, t] of times.entries()) {
    const s = parseClock(t);
    if (s === undefined) throw badRequest('INVALID_TIME', `${field}[${i}]: '${t}' is not a time of day (HH:MM, 00:00-23:59)`);
    if (seen.has(s)) throw badRequest('DUPLICATE_TIME', `${field}: ${t} is listed twice`);
    seen.add(s);
    out.push(s);
  }
  return out.sort((a, b) => a - b);
}

/**
 * Day-of-month / day-of-week matching for the tokens node-cron 4 accepts (numbers, L, nW, LW, L-n; d, dL,
 * d#n). Both fields must match (node-cron's rule); tested against node-cron's own matcher.
 */
function cronDayMatcher(expression: string): { matches: DayMatcher; times: number[] } {
  const v = cron.validateDetailed(expression);
  if (!v.valid || !v.fields) {
    const why = v.errors.map((e) => e.message).join('; ') || 'invalid';
    throw badRequest('INVALID_CRON', `recurrence.expression: invalid cron '${expression}': ${why}`);
  }
  const f = v.fields;
  const months = new Set(f.month);
  const domNums = new Set<number>();
  const domTokens: ((y: number, m: number, d: number) => boolean)[] = [];
  for (const x of f.dayOfMonth) {
    if (typeof x === 'number') { domNums.add(x); continue; }
    let m: RegExpExecArray | null;
    if (x === 'L') domTokens.push((y, mo, d) => d === daysInMonth(y, mo));
    else if ((m = /^(\d{1,2}|L)W$/.exec(x))) {
      const tok = m[1]!;
      domTokens.push((y, mo, d) => nearestWeekday(y, mo, tok === 'L' ? daysInMonth(y, mo) : Number(tok)) === d);
    } else if ((m = /^L-(\d{1,2})$/.exec(x))) {
      const back = Number(m[1]);
      domTokens.push((y, mo, d) => daysInMonth(y, mo) - back === d);
    } else throw badRequest('INVALID_CRON', `recurrence.expression: day-of-month token '${x}' in '${expression}' is not supported`);
  }
  const dowNums = new Set<number>();
  const dowTokens: ((y: number, m: number, d: number, wd: number) => boolean)[] = [];
  for (const x of f.dayOfWeek) {
    if (typeof x === 'number') { dowNums.add(x % 7); continue; }
    let m: RegExpExecArray | null;
    if ((m = /^([0-7])L$/i.exec(x))) {
      const want = Number(m[1]) % 7;
      dowTokens.push((y, mo, d, wd) => wd === want && d + 7 > daysInMonth(y, mo));
    } else if ((m = /^([0-7])#([1-5])$/.exec(x))) {
      const want = Number(m[1]) % 7; const nth = Number(m[2]);
      dowTokens.push((_y, _mo, d, wd) => wd === want && Math.floor((d - 1) / 7) + 1 === nth);
    } else throw badRequest('INVALID_CRON', `recurrence.expression: day-of-week token '${x}' in '${expression}' is not supported`);
  }
  const combos = f.hour.length * f.minute.length * f.second.length;
  if (combos > MAX_SLOTS_PER_DAY) {
    throw badRequest('TOO_FREQUENT', `recurrence.expression: cron '${expression}' fires ${combos} times a day; at most ${MAX_SLOTS_PER_DAY} are allowed`);
  }
  const times: number[] = [];
  for (const h of f.hour) for (const mi of f.minute) for (const s of f.second) times.push(h * 3600 + mi * 60 + s);
  times.sort((a, b) => a - b);
  const matches: DayMatcher = (day) => {
    const { y, m, d } = fromDayNumber(day);
    if (!months.has(m)) return false;
    const wd = weekdayOf(day);
    const domOk = domNums.has(d) || domTokens.some((t) => t(y, m, d));
    if (!domOk) return false;
    return dowNums.has(wd) || dowTokens.some((t) => t(y, m, d, wd));
  };
  return { matches, times };
}

/** Quartz/node-cron "nW": the weekday nearest to day n, without leaving the month. */
function nearestWeekday(y: number, m: number, target: number): number {
  const last = daysInMonth(y, m);
  if (target < 1 || target > last) return -1;
  const wd = new Date(Date.UTC(y, m - 1, target)).getUTCDay();
  if (wd === 6) return target === 1 ? target + 2 : target - 1;
  if (wd === 0) return target === last ? target - 2 : target + 1;
  return target;
}

/**
 * Validate and compile a recurrence. Throws AppError (400) with a code and a message naming the field.
 * Does not judge "in the past" (that needs a clock: see checkNotPast).
 */
export function compileRule(input: RuleInput, timezone: string): CompiledRule {
  const r = input.recurrence;
  const fromDay = input.validFrom ? parseLocalDate(input.validFrom) : undefined;
  const untilDay = input.validUntil ? parseLocalDate(input.validUntil) : undefined;
  if (input.validFrom && fromDay === undefined) throw badRequest('INVALID_DATE', `validFrom: '${input.validFrom}' is not a date (YYYY-MM-DD)`);
  if (input.validUntil && untilDay === undefined) throw badRequest('INVALID_DATE', `validUntil: '${input.validUntil}' is not a date (YYYY-MM-DD)`);
  if (fromDay !== undefined && untilDay !== undefined && untilDay < fromDay) {
    throw badRequest('END_BEFORE_START', `validUntil ${input.validUntil} is before validFrom ${input.validFrom}`);
  }
  const exceptions = new Set<number>();
  for (const [i, e] of (input.exceptions ?? []).entries()) {
    const d = parseLocalDate(e);
    if (d === undefined) throw badRequest('INVALID_DATE', `exceptions[${i}]: '${e}' is not a date (YYYY-MM-DD)`);
    exceptions.add(d);
  }
  const base = { kind: r.kind, timezone, exceptions, ...(fromDay !== undefined ? { fromDay } : {}), ...(untilDay !== undefined ? { untilDay } : {}) };
  switch (r.kind) {
    case 'once': {
      const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})$/.exec(r.at);
      const day = m ? parseLocalDate(m[1]!) : undefined;
      const sec = m ? parseClock(m[2]!) : undefined;
      if (day === undefined || sec === undefined) throw badRequest('INVALID_DATE', `recurrence.at: '${r.at}' is not a local date-time (YYYY-MM-DDTHH:MM)`);
      return { ...base, times: [sec], onceAt: localToInstant(day, sec, timezone), onceDay: day, matchesDay: (d) => d === day };
    }
    case 'daily':
      return { ...base, times: parseTimes(r.times, 'recurrence.times'), matchesDay: () => true };
    case 'weekly': {
      const days = new Set(r.weekdays.map((w) => WEEKDAY_INDEX[w]));
      if (days.size !== r.weekdays.length) throw badRequest('DUPLICATE_WEEKDAY', 'recurrence.weekdays: a weekday is listed twice');
      return { ...base, times: parseTimes(r.times, 'recurrence.times'), matchesDay: (d) => days.has(weekdayOf(d)) };
    }
    case 'monthly': {
      const nums = new Set<number>();
      let last = false;
      for (const x of r.days) {
        if (x === 'last') { last = true; continue; }
        if (nums.has(x)) throw badRequest('DUPLICATE_DAY', `recurrence.days: ${x} is listed twice`);
        nums.add(x);
      }
      const maxListed = Math.max(0, ...nums);
      const ifMissingLast = r.ifMissing === 'last';
      return {
        ...base, times: parseTimes(r.times, 'recurrence.times'),
        matchesDay: (day) => {
          const { y, m, d } = fromDayNumber(day);
          if (nums.has(d)) return true;
          const dim = daysInMonth(y, m);
          if (d !== dim) return false;
          // The month's last day: 'last', or a listed 29-31 this month lacks when ifMissing = 'last'.
          return last || (ifMissingLast && maxListed > dim);
        },
      };
    }
    case 'cron': {
      const c = cronDayMatcher(r.expression);
      return { ...base, times: c.times, matchesDay: c.matches };
    }
  }
}

/**
 * Slot starts (epoch ms, ascending) whose airing [start, start + durationMs) overlaps [from, to).
 * Pure: the caller passes the window (from its injected clock).
 */
export function slotsInWindow(rule: CompiledRule, durationMs: number, from: number, to: number): number[] {
  if (to <= from) return [];
  if (rule.onceAt !== undefined) {
    const ok = rule.onceAt < to && rule.onceAt + durationMs > from && dayAllowed(rule, rule.onceDay!);
    return ok ? [rule.onceAt] : [];
  }
  const out: number[] = [];
  // One day of margin each side covers any UTC offset; the exact window test is below.
  let first = localDay(from - durationMs, rule.timezone) - 1;
  let last = localDay(to, rule.timezone) + 1;
  if (rule.fromDay !== undefined) first = Math.max(first, rule.fromDay);
  if (rule.untilDay !== undefined) last = Math.min(last, rule.untilDay);
  for (let day = first; day <= last; day++) {
    if (rule.exceptions.has(day) || !rule.matchesDay(day)) continue;
    for (const s of rule.times) {
      const t = localToInstant(day, s, rule.timezone);
      if (t < to && t + durationMs > from) out.push(t);
    }
  }
  return out.sort((a, b) => a - b);
}

function dayAllowed(rule: CompiledRule, day: number): boolean {
  if (rule.fromDay !== undefined && day < rule.fromDay) return false;
  if (rule.untilDay !== undefined && day > rule.untilDay) return false;
  return !rule.exceptions.has(day);
}

/**
 * Refuse a schedule that can only sound in the past: a one-off before `now`, or a date range that
 * ended before today (commune time).
 */
export function checkNotPast(rule: CompiledRule, input: RuleInput, now: number): void {
  if (rule.onceAt !== undefined && rule.onceAt <= now) {
    throw badRequest('IN_PAST', `recurrence.at: ${(input.recurrence as { at: string }).at} (${rule.timezone}) is in the past`);
  }
  if (rule.untilDay !== undefined && rule.untilDay < localDay(now, rule.timezone)) {
    throw badRequest('IN_PAST', `validUntil ${formatDay(rule.untilDay)} is in the past`);
  }
}

/**
 * Refuse slots of one schedule that overlap each other on a node (06:00 and 06:10 with a 15-minute
 * programme). Times of day are compared around the clock (23:50 then 00:05 the next day).
 */
export function checkSelfOverlap(rule: CompiledRule, durationMs: number): void {
  const t = rule.times;
  if (rule.onceAt !== undefined || t.length === 0) return;
  if (durationMs > DAY_MS) throw badRequest('PROGRAMME_TOO_LONG', `a recurring programme cannot last longer than a day (${Math.round(durationMs / 60000)} min)`);
  for (let i = 0; i < t.length; i++) {
    const a = t[i]!;
    const b = i + 1 < t.length ? t[i + 1]! : t[0]! + 86_400;
    if (t.length === 1 && durationMs <= DAY_MS) continue;
    if ((b - a) * 1000 < durationMs) {
      throw new AppError(400, 'SELF_OVERLAP', `times ${formatClock(a)} and ${formatClock(b)} are ${Math.round((b - a) / 60)} min apart but the programme lasts ${Math.ceil(durationMs / 60000)} min: its airings would overlap`);
    }
  }
}
