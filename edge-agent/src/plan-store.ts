import fs from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { Plan } from '../../schemas/src/index.js';
import { isValidTimeZone } from './quiet-hours.js';

/**
 * The node's current plan, persisted atomically (write a temp file, fsync, rename) so it plays even if
 * the controller never comes back. A plan is checked whole before anything changes: a rejected plan
 * leaves the previous one in force (never half-applied).
 */
export type PlanOffer =
  | { status: 'applied'; plan: Plan }
  /** The same version again (retained redelivery on reconnect): acknowledged, nothing changes. */
  | { status: 'unchanged'; plan: Plan }
  /** Older than the plan in force: ignored (a stale retained message), not acknowledged. */
  | { status: 'stale'; current: number }
  | { status: 'rejected'; error: string };

/** Checks beyond the schema: what would make a plan unusable on this node. Returns the first problem. */
export function checkPlan(p: Plan, nodeId: string): string | undefined {
  if (p.nodeId !== nodeId) return `plan is for node ${p.nodeId}, not ${nodeId}`;
  if (!isValidTimeZone(p.timezone)) return `unknown timezone ${JSON.stringify(p.timezone)}`;
  const seen = new Set<string>();
  for (const a of p.airings) {
    if (seen.has(a.id)) return `airing id ${a.id} appears twice`;
    seen.add(a.id);
    if (a.startAt >= p.to) return `airing ${a.id} starts after the plan window ends`;
    for (const it of a.items) {
      if (it.kind === 'media' && /[\s#]/.test(it.path)) return `airing ${a.id}: media ${it.mediaId} has an invalid path`;
    }
  }
  return undefined;
}

export function createPlanStore(o: { nodeId: string; dir?: string; log?: Logger }) {
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'plan-store' });
  const file = o.dir ? path.join(o.dir, 'plan.json') : undefined;
  let current: Plan | undefined;

  function persist(p: Plan) {
    if (!file) return;
    fs.mkdirSync(o.dir!, { recursive: true });
    const tmp = `${file}.tmp`;
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, JSON.stringify(p));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  }

  return {
    /** Load the persisted plan (if any and valid). Called at start. */
    load(): Plan | undefined {
      if (!file) return current;
      let raw: unknown;
      try {
        raw = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err: (e as Error).message }, 'persisted plan unreadable; ignored');
        return current;
      }
      const r = Plan.safeParse(raw);
      const problem = r.success ? checkPlan(r.data, o.nodeId) : r.error.issues[0]?.message;
      if (!r.success || problem) { log.warn({ problem }, 'persisted plan invalid; ignored'); return current; }
      if (!current || r.data.version >= current.version) current = r.data;
      return current;
    },
    current: () => current,
    /** Offer a plan that passed the schema and the envelope checks. */
    offer(p: Plan): PlanOffer {
      const problem = checkPlan(p, o.nodeId);
      if (problem) return { status: 'rejected', error: problem };
      if (current && p.version < current.version) return { status: 'stale', current: current.version };
      if (current && p.version === current.version) return { status: 'unchanged', plan: current };
      try {
        persist(p);
      } catch (e) {
        // Disk full or read-only: refuse rather than play a plan that would vanish at the next restart.
        return { status: 'rejected', error: `cannot persist plan: ${(e as Error).message}` };
      }
      current = p;
      return { status: 'applied', plan: p };
    },
  };
}
export type PlanStore = ReturnType<typeof createPlanStore>;
