import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPlanStore } from '../../edge-agent/src/plan-store.js';
import { airing, plan } from '../helpers/agent-playout.js';

const dirs: string[] = [];
const tmp = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-plan-')); dirs.push(d); return d; };
afterAll(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }); });

const silence = (id: string, startAt: number) => airing({ id, startAt, items: [{ kind: 'silence', durationMs: 1000 }] });

describe('agent plan store', () => {
  it('applies a valid plan, persists it atomically and loads it in a new process', () => {
    const dir = tmp();
    const s = createPlanStore({ nodeId: 'node-a', dir });
    const p = plan('node-a', 3, [silence('airing-0001', Date.now() + 60_000)]);
    const r = s.offer(p);
    expect(r.status).toBe('applied');
    expect(fs.readdirSync(dir)).toEqual(['plan.json']); // no temp file left behind
    const again = createPlanStore({ nodeId: 'node-a', dir });
    expect(again.load()?.version).toBe(3);
    expect(again.current()?.airings[0]!.id).toBe('airing-0001');
  });

  it('rejects an invalid plan with a reason and changes nothing (memory or disk)', () => {
    const dir = tmp();
    const s = createPlanStore({ nodeId: 'node-a', dir });
    const good = plan('node-a', 1, [silence('airing-0001', Date.now() + 60_000)]);
    expect(s.offer(good).status).toBe('applied');
    const before = fs.readFileSync(path.join(dir, 'plan.json'), 'utf8');
    const bad = [
      { p: plan('node-b', 2, []), msg: 'node-b' },
      { p: plan('node-a', 2, [silence('airing-dup1', Date.now()), silence('airing-dup1', Date.now() + 5000)]), msg: 'twice' },
      { p: plan('node-a', 2, [], { timezone: 'Mars/Olympus_Mons' }), msg: 'timezone' },
      { p: plan('node-a', 2, [silence('airing-late', Date.now() + 72 * 3600_000)]), msg: 'after the plan window' },
    ];
    for (const b of bad) {
      const r = s.offer(b.p);
      expect(r.status).toBe('rejected');
      if (r.status === 'rejected') expect(r.error).toContain(b.msg);
      expect(s.current()?.version).toBe(1);
      expect(fs.readFileSync(path.join(dir, 'plan.json'), 'utf8')).toBe(before);
    }
  });

  it('ignores an older version and re-acknowledges the same version without re-applying', () => {
    const s = createPlanStore({ nodeId: 'node-a', dir: tmp() });
    expect(s.offer(plan('node-a', 5, [])).status).toBe('applied');
    expect(s.offer(plan('node-a', 4, [silence('airing-0001', Date.now())]))).toEqual({ status: 'stale', current: 5 });
    expect(s.offer(plan('node-a', 5, [silence('airing-0001', Date.now())])).status).toBe('unchanged');
    expect(s.current()?.airings).toEqual([]);
    expect(s.offer(plan('node-a', 6, [silence('airing-0001', Date.now())])).status).toBe('applied');
  });

  it('ignores a corrupt persisted plan instead of crashing', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'plan.json'), '{"v":1,"nodeId":');
    expect(createPlanStore({ nodeId: 'node-a', dir }).load()).toBeUndefined();
  });
});
