import { execFile } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const mod = (p: string) => pathToFileURL(path.join(root, p)).href;

/**
 * The same expansion, run in child processes whose server timezone is UTC and America/New_York (which
 * has DST: 2026-03-08 and 2026-11-01 are its switch days), must give identical instants — the commune's
 * clock is Asia/Ho_Chi_Minh whatever the server runs in.
 */
const script = `
import { compileRule, slotsInWindow } from '${mod('controller/src/scheduling/recurrence.ts')}';
import { expandAirings } from '${mod('controller/src/scheduling/expand.ts')}';
import { formatLocal } from '${mod('controller/src/scheduling/time.ts')}';
const TZ = 'Asia/Ho_Chi_Minh';
const from = Date.parse('2026-02-25T00:00:00+07:00');
const to = Date.parse('2026-11-05T00:00:00+07:00');
const rules = {
  daily: { recurrence: { kind: 'daily', times: ['06:00', '17:00'] }, exceptions: ['2026-03-08', '2026-11-01'] },
  weekly: { recurrence: { kind: 'weekly', weekdays: ['sun'], times: ['01:30', '02:30'] } },
  monthly31: { recurrence: { kind: 'monthly', days: [31], times: ['06:00'], ifMissing: 'last' } },
  cron: { recurrence: { kind: 'cron', expression: '0 6 L * *' } },
  once: { recurrence: { kind: 'once', at: '2026-03-08T02:30' } },
};
const out = { offset: new Date(2026, 0, 1).getTimezoneOffset(), tz: Intl.DateTimeFormat().resolvedOptions().timeZone, slots: {} };
for (const [k, r] of Object.entries(rules)) {
  out.slots[k] = slotsInWindow(compileRule(r, TZ), 600000, from, to).map((t) => new Date(t).toISOString() + ' ' + formatLocal(t, TZ));
}
const e = expandAirings({
  from, to: from + 3 * 86400000, nodes: [{ id: 'n1', zoneId: 'z1' }],
  programmes: new Map([['p', { id: 'p', title: 'x', durationMs: 60000, onInterrupt: 'drop', items: [{ kind: 'silence', durationMs: 60000 }] }]]),
  schedules: [{ id: 's', programmeId: 'p', rule: compileRule(rules.daily, TZ), targets: [{ kind: 'commune' }], priority: 'normal', rank: 0, quietOverride: false, enabled: true }],
});
out.airings = e.byNode.get('n1').map((a) => [a.id, a.startAt]);
console.log(JSON.stringify(out));
`;

async function expandIn(tz: string) {
  const { stdout } = await run(process.execPath, ['--import', './deploy/ts-register.mjs', '--input-type=module', '-e', script], { cwd: root, env: { ...process.env, TZ: tz }, timeout: 30_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { offset: number; tz: string; slots: Record<string, string[]>; airings: [string, number][] };
}

describe('expansion does not depend on the server timezone', () => {
  it('gives identical airings with the server in UTC and in America/New_York', async () => {
    const [utc, ny] = await Promise.all([expandIn('UTC'), expandIn('America/New_York')]);
    // The server timezone really differed between the two runs.
    expect(utc.offset).toBe(0);
    expect(ny.offset).toBe(300);
    expect(ny.tz).toBe('America/New_York');
    expect(ny.slots).toEqual(utc.slots);
    expect(ny.airings).toEqual(utc.airings);

    // And the instants are the commune's wall clock (UTC+7), on New York's DST switch days too.
    expect(utc.slots.daily![0]).toBe('2026-02-24T23:00:00.000Z 2026-02-25 06:00');
    expect(utc.slots.daily).not.toContain('2026-03-07T23:00:00.000Z 2026-03-08 06:00');
    expect(utc.slots.daily).toContain('2026-03-09T10:00:00.000Z 2026-03-09 17:00');
    expect(utc.slots.weekly).toContain('2026-03-07T18:30:00.000Z 2026-03-08 01:30');
    expect(utc.slots.weekly).toContain('2026-10-31T19:30:00.000Z 2026-11-01 02:30');
    expect(utc.slots.once).toEqual(['2026-03-07T19:30:00.000Z 2026-03-08 02:30']);
    expect(utc.slots.monthly31).toContain('2026-02-27T23:00:00.000Z 2026-02-28 06:00');
    expect(utc.slots.monthly31).toContain('2026-04-29T23:00:00.000Z 2026-04-30 06:00');
    expect(utc.slots.cron).toEqual(utc.slots.monthly31);
    expect(utc.airings).toHaveLength(6);
  });
});
