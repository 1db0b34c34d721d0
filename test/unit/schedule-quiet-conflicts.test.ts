import { describe, expect, it } from 'vitest';
import type { Airing } from '../../schemas/src/index.js';
import { airingId, findConflicts, overlapsOnNode, type ExpandProgramme, type ExpandSchedule } from '../../controller/src/scheduling/expand.js';
import { checkQuietHours, inQuiet, quietHits } from '../../controller/src/scheduling/quiet-hours.js';
import { compileRule } from '../../controller/src/scheduling/recurrence.js';

const TZ = 'Asia/Ho_Chi_Minh';
const MIN = 60_000;
const at = (hhmm: string) => { const [h, m] = hhmm.split(':').map(Number) as [number, number]; return h * 3600 + m * 60; };
const vn = (iso: string) => Date.parse(`${iso}:00+07:00`);
const Q = { start: '21:30', end: '05:00' };

describe('quiet hours', () => {
  it('a window crossing midnight catches airings inside, at its edges and across midnight', () => {
    const hit = (t: string, min: number, q = Q) => quietHits([at(t)], min * MIN, q).length > 0;
    expect(hit('03:15', 15)).toBe(true); // the 03:15 incident
    expect(hit('23:00', 5)).toBe(true);
    expect(hit('00:00', 5)).toBe(true);
    expect(hit('21:15', 20)).toBe(true); // starts before, ends inside
    expect(hit('04:50', 15)).toBe(true); // starts inside, ends after
    expect(hit('21:00', 30)).toBe(false); // ends exactly at 21:30
    expect(hit('05:00', 60)).toBe(false); // starts exactly at 05:00
    expect(hit('06:00', 15)).toBe(false);
    expect(hit('17:00', 60)).toBe(false);
    // A window that does not cross midnight, and an airing that does.
    const q2 = { start: '00:05', end: '05:00' };
    expect(hit('23:50', 20, q2)).toBe(true);
    expect(hit('23:50', 10, q2)).toBe(false);
    expect(hit('12:00', 30, { start: '12:00', end: '13:30' })).toBe(true);
    expect(quietHits([at('03:15')], 15 * MIN, Q)[0]!.message).toBe('an airing at 03:15-03:30 would sound inside quiet hours 21:30-05:00');
  });

  it('inQuiet gives the window membership of a time of day', () => {
    expect(inQuiet(at('21:29'), Q)).toBe(false);
    expect(inQuiet(at('21:30'), Q)).toBe(true);
    expect(inQuiet(at('04:59'), Q)).toBe(true);
    expect(inQuiet(at('05:00'), Q)).toBe(false);
  });

  it('refuses malformed settings: empty window, swapped start and end, bad times', () => {
    const code = (q: { start: string; end: string }) => { try { checkQuietHours(q); return 'ok'; } catch (e) { return `${(e as { code: string }).code}: ${(e as Error).message}`; } };
    expect(code(Q)).toBe('ok');
    expect(code({ start: '22:00', end: '05:30' })).toBe('ok');
    expect(code({ start: '22:00', end: '22:00' })).toMatch(/^QUIET_HOURS_MALFORMED: .*same time/);
    expect(code({ start: '05:00', end: '21:30' })).toMatch(/^QUIET_HOURS_MALFORMED: .*16 h 30 min.*swapped/);
    expect(code({ start: '25:00', end: '05:00' })).toMatch(/^QUIET_HOURS_MALFORMED/);
  });
});

describe('conflict detection', () => {
  const prog = (id: string, min: number): ExpandProgramme => ({ id, title: `Prog ${id}`, durationMs: min * MIN, onInterrupt: 'drop', items: [{ kind: 'silence', durationMs: min * MIN }] });
  const programmes = new Map([['p15', prog('p15', 15)], ['p30', prog('p30', 30)]]);
  const nodes = [{ id: 'a1', zoneId: 'za' }, { id: 'a2', zoneId: 'za' }, { id: 'b1', zoneId: 'zb' }];
  const sched = (id: string, times: string[], over: Partial<ExpandSchedule> = {}): ExpandSchedule => ({
    id, programmeId: 'p15', rule: compileRule({ recurrence: { kind: 'daily', times } }, TZ), targets: [{ kind: 'commune' }],
    priority: 'normal', rank: 0, quietOverride: false, enabled: true, ...over,
  });
  const window = { from: vn('2026-03-02T00:00'), to: vn('2026-03-03T00:00'), timezone: TZ, nodes, programmes };

  it('explains an overlap on shared nodes: which programme, when, where, who wins', () => {
    const mine = sched('mine', ['06:00'], { priority: 'priority' });
    const other = sched('other', ['06:10'], { programmeId: 'p30', targets: [{ kind: 'zone', id: 'za' }] });
    const c = findConflicts({ ...window, subject: { schedule: mine, programme: programmes.get('p15')! }, others: [mine, other] });
    expect(c).toHaveLength(1);
    expect(c[0]).toMatchObject({
      scheduleId: 'other', programmeId: 'p30', title: 'Prog p30', nodeIds: ['a1', 'a2'], zoneIds: ['za'], winner: 'this', reason: 'higher priority',
      thisStartAt: vn('2026-03-02T06:00'), otherStartAt: vn('2026-03-02T06:10'), otherEndAt: vn('2026-03-02T06:40'),
    });
    expect(c[0]!.message).toBe("overlaps 'Prog p30' (normal, rank 0) at 2026-03-02 06:10-06:40 on nodes a1, a2 in zone za: this schedule plays (higher priority)");
  });

  it('equal priority: rank decides, then the one already playing', () => {
    const mine = sched('mine', ['06:05'], { rank: 2 });
    const first = sched('first', ['06:00'], { rank: 1 });
    const c = findConflicts({ ...window, subject: { schedule: mine, programme: programmes.get('p15')! }, others: [first] });
    expect(c[0]).toMatchObject({ winner: 'other', reason: 'equal priority, lower rank' });
    const c2 = findConflicts({ ...window, subject: { schedule: { ...mine, rank: 1 }, programme: programmes.get('p15')! }, others: [first] });
    expect(c2[0]).toMatchObject({ winner: 'other', reason: expect.stringMatching(/already playing/) });
  });

  it('no conflict for back-to-back airings, other nodes, disabled schedules', () => {
    const mine = sched('mine', ['06:00'], { targets: [{ kind: 'node', id: 'b1' }] });
    const subject = { schedule: mine, programme: programmes.get('p15')! };
    expect(findConflicts({ ...window, subject, others: [sched('next', ['06:15'])] })).toEqual([]);
    expect(findConflicts({ ...window, subject, others: [sched('zone-a', ['06:05'], { targets: [{ kind: 'zone', id: 'za' }] })] })).toEqual([]);
    expect(findConflicts({ ...window, subject, others: [sched('off', ['06:05'], { enabled: false })] })).toEqual([]);
    expect(findConflicts({ ...window, subject, others: [sched('hit', ['05:50'])] })).toHaveLength(1);
  });

  it('overlapsOnNode marks which airing takes precedence', () => {
    const mk = (id: string, start: string, min: number, priority: Airing['priority'], rank = 0): Airing => ({
      id, scheduleId: id, programmeId: 'p', title: id, startAt: vn(start), durationMs: min * MIN, priority, rank, onInterrupt: 'drop', quietOverride: false,
      items: [{ kind: 'silence', durationMs: min * MIN }],
    });
    const list = [mk('n', '2026-03-02T06:00', 30, 'normal'), mk('e', '2026-03-02T06:10', 5, 'emergency'), mk('later', '2026-03-02T07:00', 5, 'normal')];
    const o = overlapsOnNode(list);
    expect(o.get('n')).toEqual({ overlapsWith: ['e'], wins: false });
    expect(o.get('e')).toEqual({ overlapsWith: ['n'], wins: true });
    expect(o.get('later')).toEqual({ overlapsWith: [], wins: true });
    expect(airingId('x', 1)).toBe(airingId('x', 1));
  });
});
