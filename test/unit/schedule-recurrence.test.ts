import cron from 'node-cron';
import { describe, expect, it } from 'vitest';
import type { Recurrence } from '../../schemas/src/index.js';
import { airingId, expandAirings, type ExpandProgramme, type ExpandSchedule } from '../../controller/src/scheduling/expand.js';
import { checkNotPast, checkSelfOverlap, compileRule, slotsInWindow, type RuleInput } from '../../controller/src/scheduling/recurrence.js';
import { formatLocal } from '../../controller/src/scheduling/time.js';

const TZ = 'Asia/Ho_Chi_Minh';
const H = 3600_000;
const DAY = 24 * H;
const MIN = 60_000;
/** Instant of a wall-clock time in Vietnam (UTC+7, no DST): independent of the test process's TZ. */
const vn = (iso: string) => Date.parse(`${iso}:00+07:00`);
const local = (ts: number[]) => ts.map((t) => formatLocal(t, TZ));

function slots(rec: Recurrence, from: string, to: string, extra: Omit<RuleInput, 'recurrence'> = {}, durationMs = 10 * MIN) {
  return local(slotsInWindow(compileRule({ recurrence: rec, ...extra }, TZ), durationMs, vn(from), vn(to)));
}

describe('recurrence expansion (Asia/Ho_Chi_Minh, injected window)', () => {
  it('daily at several times lands on the commune clock, not the server clock', () => {
    const s = slotsInWindow(compileRule({ recurrence: { kind: 'daily', times: ['17:00', '06:00'] } }, TZ), 15 * MIN, vn('2026-03-02T00:00'), vn('2026-03-04T00:00'));
    // 06:00 in Hanoi is 23:00 UTC the day before.
    expect(s.map((t) => new Date(t).toISOString())).toEqual([
      '2026-03-01T23:00:00.000Z', '2026-03-02T10:00:00.000Z', '2026-03-02T23:00:00.000Z', '2026-03-03T10:00:00.000Z',
    ]);
  });

  it('includes an airing that started before the window and is still playing; excludes one that ended', () => {
    const r = compileRule({ recurrence: { kind: 'daily', times: ['06:00'] } }, TZ);
    expect(local(slotsInWindow(r, 30 * MIN, vn('2026-03-02T06:10'), vn('2026-03-02T12:00')))).toEqual(['2026-03-02 06:00']);
    expect(slotsInWindow(r, 5 * MIN, vn('2026-03-02T06:10'), vn('2026-03-02T12:00'))).toEqual([]);
  });

  it('weekly on chosen weekdays across a year end', () => {
    // 2026-12-28 is a Monday; 2027-01-01 a Friday.
    expect(slots({ kind: 'weekly', weekdays: ['mon', 'fri'], times: ['06:00'] }, '2026-12-27T00:00', '2027-01-09T00:00'))
      .toEqual(['2026-12-28 06:00', '2027-01-01 06:00', '2027-01-04 06:00', '2027-01-08 06:00']);
  });

  it('daily across the year end, where the local date differs from the UTC date', () => {
    // 00:15 on 1 Jan in Hanoi is 17:15 UTC on 31 Dec: the exception date is the commune's date.
    expect(slots({ kind: 'daily', times: ['00:15', '23:30'] }, '2026-12-31T00:00', '2027-01-02T00:00'))
      .toEqual(['2026-12-31 00:15', '2026-12-31 23:30', '2027-01-01 00:15', '2027-01-01 23:30']);
    expect(slots({ kind: 'daily', times: ['00:15', '23:30'] }, '2026-12-31T00:00', '2027-01-02T00:00', { exceptions: ['2027-01-01'] }))
      .toEqual(['2026-12-31 00:15', '2026-12-31 23:30']);
  });

  it('monthly on the 31st skips months without one by default', () => {
    const got = slots({ kind: 'monthly', days: [31], times: ['06:00'], ifMissing: 'skip' }, '2026-01-01T00:00', '2027-01-01T00:00');
    expect(got).toEqual(['2026-01-31', '2026-03-31', '2026-05-31', '2026-07-31', '2026-08-31', '2026-10-31', '2026-12-31'].map((d) => `${d} 06:00`));
  });

  it('monthly on the 31st with ifMissing=last plays on the last day of short months (Feb 28, Feb 29 in 2028)', () => {
    const y26 = slots({ kind: 'monthly', days: [31], times: ['06:00'], ifMissing: 'last' }, '2026-01-01T00:00', '2027-01-01T00:00');
    expect(y26).toHaveLength(12);
    expect(y26).toContain('2026-02-28 06:00');
    expect(y26).toContain('2026-04-30 06:00');
    const y28 = slots({ kind: 'monthly', days: [31], times: ['06:00'], ifMissing: 'last' }, '2028-02-01T00:00', '2028-03-02T00:00');
    expect(y28).toEqual(['2028-02-29 06:00']);
  });

  it('monthly "last" and a listed 30th never play twice on the same day', () => {
    const got = slots({ kind: 'monthly', days: [30, 'last'], times: ['06:00'], ifMissing: 'last' }, '2026-04-01T00:00', '2026-06-01T00:00');
    expect(got).toEqual(['2026-04-30 06:00', '2026-05-30 06:00', '2026-05-31 06:00']);
  });

  it('leap day: the 29th of February exists in 2028 only', () => {
    expect(slots({ kind: 'monthly', days: [29], times: ['06:00'], ifMissing: 'skip' }, '2027-02-01T00:00', '2027-03-05T00:00')).toEqual([]);
    expect(slots({ kind: 'monthly', days: [29], times: ['06:00'], ifMissing: 'skip' }, '2028-02-01T00:00', '2028-03-05T00:00')).toEqual(['2028-02-29 06:00']);
    expect(slots({ kind: 'daily', times: ['06:00'] }, '2028-02-28T00:00', '2028-03-02T00:00')).toEqual(['2028-02-28 06:00', '2028-02-29 06:00', '2028-03-01 06:00']);
    expect(slots({ kind: 'cron', expression: '0 6 29 2 *' }, '2026-01-01T00:00', '2030-01-01T00:00')).toEqual(['2028-02-29 06:00']);
  });

  it('a date range is inclusive of both ends; exception dates are removed', () => {
    const got = slots({ kind: 'daily', times: ['17:00'] }, '2026-03-01T00:00', '2026-04-01T00:00', {
      validFrom: '2026-03-10', validUntil: '2026-03-14', exceptions: ['2026-03-12'],
    });
    expect(got).toEqual(['2026-03-10 17:00', '2026-03-11 17:00', '2026-03-13 17:00', '2026-03-14 17:00']);
  });

  it('a one-off plays once, and only inside its window', () => {
    expect(slots({ kind: 'once', at: '2026-03-02T06:00' }, '2026-03-01T00:00', '2026-03-03T00:00')).toEqual(['2026-03-02 06:00']);
    expect(slots({ kind: 'once', at: '2026-03-02T06:00' }, '2026-03-03T00:00', '2026-03-04T00:00')).toEqual([]);
    expect(slots({ kind: 'once', at: '2026-03-02T06:00' }, '2026-03-01T00:00', '2026-03-03T00:00', { exceptions: ['2026-03-02'] })).toEqual([]);
  });

  it('cron expressions (5 and 6 fields, L, nW, d#n) agree with node-cron\'s own matcher', () => {
    const exprs = ['0 6,17 * * *', '*/15 6-7 * * 1-5', '0 6 L * *', '30 5 15W * *', '0 7 * * 1#2', '0 18 * * 5L', '0 30 6 * * 0', '0 6 1 1 *', '0 6 L-2 * *'];
    const from = vn('2026-01-01T00:00');
    const to = vn('2026-04-01T00:00');
    for (const expr of exprs) {
      const ours = slotsInWindow(compileRule({ recurrence: { kind: 'cron', expression: expr } }, TZ), MIN, from, to);
      const task = cron.createTask(expr, () => undefined, { timezone: TZ });
      try {
        const fields = cron.parse(expr);
        const theirs: number[] = [];
        // Every candidate time of every day: node-cron's match() decides; ours must give the same set.
        for (let d = from; d < to; d += DAY) {
          for (const h of fields.hour) for (const m of fields.minute) for (const s of fields.second) {
            const t = d + ((h * 60 + m) * 60 + s) * 1000;
            if (task.match(new Date(t))) theirs.push(t);
          }
        }
        expect(ours, expr).toEqual(theirs.sort((a, b) => a - b));
        expect(ours.length, expr).toBeGreaterThan(0);
      } finally {
        void task.destroy();
      }
    }
  });

  it('refuses bad rules with a code and a message naming the field', () => {
    const err = (f: () => unknown) => { try { f(); } catch (e) { return e as { code: string; message: string; statusCode: number }; } throw new Error('no error'); };
    expect(err(() => compileRule({ recurrence: { kind: 'cron', expression: '61 * * * *' } }, TZ))).toMatchObject({ code: 'INVALID_CRON', statusCode: 400, message: expect.stringMatching(/recurrence\.expression.*61/) });
    expect(err(() => compileRule({ recurrence: { kind: 'cron', expression: 'every day' } }, TZ)).code).toBe('INVALID_CRON');
    expect(err(() => compileRule({ recurrence: { kind: 'cron', expression: '*/5 * * * *' } }, TZ))).toMatchObject({ code: 'TOO_FREQUENT', message: expect.stringMatching(/288 times a day/) });
    expect(err(() => compileRule({ recurrence: { kind: 'daily', times: ['06:00'] }, validFrom: '2026-05-01', validUntil: '2026-04-01' }, TZ)))
      .toMatchObject({ code: 'END_BEFORE_START', message: expect.stringMatching(/validUntil 2026-04-01 is before validFrom 2026-05-01/) });
    expect(err(() => compileRule({ recurrence: { kind: 'daily', times: ['06:00', '06:00'] } }, TZ))).toMatchObject({ code: 'DUPLICATE_TIME' });
    const now = vn('2026-03-02T12:00');
    const once = { recurrence: { kind: 'once', at: '2026-03-02T06:00' } } as const;
    expect(err(() => checkNotPast(compileRule(once, TZ), once, now))).toMatchObject({ code: 'IN_PAST', message: expect.stringMatching(/2026-03-02T06:00.*past/) });
    const ended: RuleInput = { recurrence: { kind: 'daily', times: ['06:00'] }, validUntil: '2026-03-01' };
    expect(err(() => checkNotPast(compileRule(ended, TZ), ended, now))).toMatchObject({ code: 'IN_PAST' });
    expect(() => checkNotPast(compileRule({ recurrence: { kind: 'once', at: '2026-03-02T18:00' } }, TZ), once, now)).not.toThrow();
    expect(err(() => checkSelfOverlap(compileRule({ recurrence: { kind: 'daily', times: ['06:00', '06:10'] } }, TZ), 15 * MIN)))
      .toMatchObject({ code: 'SELF_OVERLAP', message: expect.stringMatching(/06:00 and 06:10/) });
    expect(() => checkSelfOverlap(compileRule({ recurrence: { kind: 'daily', times: ['06:00', '06:15'] } }, TZ), 15 * MIN)).not.toThrow();
  });
});

describe('expandAirings', () => {
  const prog: ExpandProgramme = {
    id: 'p1', title: 'Bản tin sáng', durationMs: 15 * MIN, onInterrupt: 'resume', volume: 80,
    items: [{ kind: 'chime', chime: 'start', durationMs: 3000 }, { kind: 'silence', durationMs: 15 * MIN - 3000 }],
  };
  const nodes = [{ id: 'a1', zoneId: 'za' }, { id: 'a2', zoneId: 'za' }, { id: 'b1', zoneId: 'zb' }];
  const sched = (over: Partial<ExpandSchedule>): ExpandSchedule => ({
    id: 's1', programmeId: 'p1', rule: compileRule({ recurrence: { kind: 'daily', times: ['06:00', '17:00'] } }, TZ),
    targets: [{ kind: 'commune' }], priority: 'normal', rank: 0, quietOverride: false, enabled: true, ...over,
  });

  it('gives every targeted node the same airings with deterministic ids, and none to the others', () => {
    const input = { schedules: [sched({ targets: [{ kind: 'zone', id: 'za' }] })], programmes: new Map([['p1', prog]]), nodes, from: vn('2026-03-02T00:00'), to: vn('2026-03-03T00:00') };
    const e = expandAirings(input);
    expect(e.byNode.get('a1')!.map((a) => a.id)).toEqual([airingId('s1', vn('2026-03-02T06:00')), airingId('s1', vn('2026-03-02T17:00'))]);
    expect(e.byNode.get('a2')!.map((a) => a.id)).toEqual(e.byNode.get('a1')!.map((a) => a.id));
    expect(e.byNode.get('b1')).toEqual([]);
    expect(e.slots.map((s) => s.nodeIds)).toEqual([['a1', 'a2'], ['a1', 'a2']]);
    const a = e.byNode.get('a1')![0]!;
    expect(a).toMatchObject({ scheduleId: 's1', programmeId: 'p1', title: 'Bản tin sáng', durationMs: 15 * MIN, volume: 80, onInterrupt: 'resume', priority: 'normal' });
    // Same slot seen through another window (a later re-plan, a restart): same id.
    const again = expandAirings({ ...input, from: vn('2026-03-02T05:00'), to: vn('2026-03-05T00:00') });
    expect(again.byNode.get('a1')![0]!.id).toBe(a.id);
    expect(a.id).toMatch(/^a[0-9a-f]{31}$/);
    expect(airingId('s2', a.startAt)).not.toBe(a.id);
    expect(airingId('s1', a.startAt + 60_000)).not.toBe(a.id);
  });

  it('targets single nodes, skips disabled schedules, and sorts by start then precedence', () => {
    const e = expandAirings({
      schedules: [
        sched({ id: 'low', targets: [{ kind: 'node', id: 'b1' }] }),
        sched({ id: 'high', targets: [{ kind: 'node', id: 'b1' }], priority: 'emergency' }),
        sched({ id: 'off', enabled: false }),
      ],
      programmes: new Map([['p1', prog]]), nodes, from: vn('2026-03-02T00:00'), to: vn('2026-03-02T12:00'),
    });
    expect(e.byNode.get('b1')!.map((a) => a.scheduleId)).toEqual(['high', 'low']);
    expect(e.byNode.get('a1')).toEqual([]);
  });
});
