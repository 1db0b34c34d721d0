import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { CommandBody, CommandReply } from '../../schemas/src/index.js';
import type { EnvelopeFactory } from './envelope.js';
import type { EventBus } from './event-bus.js';
import type { FleetLink } from './fleet-link.js';
import type { Store } from './store/store.js';

export type Scope = 'node' | 'zone' | 'commune';
export interface ResultRow { nodeId: string; status: 'pending' | 'ok' | 'error' | 'timeout'; error: string | null; data: Record<string, unknown> | null; rttMs: number | null }

interface Pending { sentAt: number; communeId: string; remaining: Set<string>; waiters: Set<() => void> }

/** Command fan-out and reply tracking: one MQTT message per target scope, one result row per node. */
export function createCommands(deps: { store: Store; link: () => FleetLink; bus: EventBus; log: Logger; now: () => number; envelope: EnvelopeFactory; ttlMs?: number }) {
  const { store, bus, log, now } = deps;
  const db = store.db;
  const ttlMs = deps.ttlMs ?? 60_000;
  const pending = new Map<string, Pending>();
  const insert = db.prepare(`INSERT INTO commands (transaction_id, commune_id, node_id, name, params, scope, scope_id, issued_by, sent_at, status, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const update = db.prepare(`UPDATE commands SET status = ?, replied_at = ?, error = ?, data = ? WHERE transaction_id = ? AND node_id = ? AND status = 'pending'`);

  let replies: { nodeId: string; r: CommandReply; ts: number }[] = [];
  function flushReplies() {
    const batch = replies;
    replies = [];
    const applied: typeof batch = [];
    try {
      db.transaction(() => {
        for (const x of batch) {
          const changed = update.run(x.r.status, x.ts, x.r.error ?? null, x.r.data ? JSON.stringify(x.r.data) : null, x.r.transaction, x.nodeId).changes;
          if (changed) applied.push(x);
          else log.debug({ nodeId: x.nodeId, transaction: x.r.transaction }, 'reply for an unknown or finished command');
        }
      })();
    } catch (e) {
      log.error({ err: e, count: batch.length }, 'storing command replies failed');
      return;
    }
    const done = new Set<Pending>();
    for (const x of applied) {
      const entry = pending.get(x.r.transaction);
      if (!entry) continue;
      bus.emit(entry.communeId, { type: 'command.reply', ts: x.ts, transaction: x.r.transaction, nodeId: x.nodeId, status: x.r.status });
      entry.remaining.delete(x.nodeId);
      if (entry.remaining.size === 0) done.add(entry);
    }
    for (const entry of done) for (const w of [...entry.waiters]) w();
  }

  function results(transaction: string): ResultRow[] {
    return db.prepare<[string], { node_id: string; status: string; error: string | null; data: string | null; sent_at: number; replied_at: number | null }>(
      `SELECT node_id, status, error, data, sent_at, replied_at FROM commands WHERE transaction_id = ? ORDER BY node_id`).all(transaction)
      .map((r) => ({
        nodeId: r.node_id, status: r.status as ResultRow['status'], error: r.error,
        data: r.data ? (JSON.parse(r.data) as Record<string, unknown>) : null,
        rttMs: r.replied_at !== null ? r.replied_at - r.sent_at : null,
      }));
  }

  return {
    /**
     * Send `body` to the targets (online nodes get the message; offline ones are recorded as errors at
     * once) and wait up to waitMs for every online target to reply.
     */
    async send(p: { communeId: string; actor: string; scope: Scope; scopeId: string; targets: { id: string; online: boolean }[]; body: CommandBody; waitMs: number }) {
      const transaction = crypto.randomBytes(8).toString('hex');
      const sentAt = now();
      const remaining = new Set<string>();
      db.transaction(() => {
        for (const t of p.targets) {
          insert.run(transaction, p.communeId, t.id, p.body.name, JSON.stringify(p.body.params), p.scope, p.scopeId, p.actor, sentAt,
            t.online ? 'pending' : 'error', t.online ? null : 'node is offline');
          if (t.online) remaining.add(t.id);
        }
      })();
      store.audit(p.communeId, sentAt, p.actor, `command.${p.body.name}`, `${p.scope}:${p.scopeId}`, { transaction, params: p.body.params, targets: p.targets.length });
      const entry: Pending = { sentAt, communeId: p.communeId, remaining, waiters: new Set() };
      pending.set(transaction, entry);
      const topic = p.scope === 'node' ? 'nodeCommand' : p.scope === 'zone' ? 'zoneCommand' : 'communeCommand';
      if (remaining.size > 0) deps.link().publish(topic, p.scopeId, { ...deps.envelope(ttlMs), transaction, ...p.body });
      if (remaining.size > 0 && p.waitMs > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, p.waitMs);
          function done() { clearTimeout(timer); entry.waiters.delete(done); resolve(); }
          entry.waiters.add(done);
        });
      }
      // Forget the waiter after the command's TTL: late replies past it are marked timeout.
      setTimeout(() => {
        if (!pending.has(transaction)) return;
        pending.delete(transaction);
        db.prepare(`UPDATE commands SET status = 'timeout', error = 'no reply before the command expired' WHERE transaction_id = ? AND status = 'pending'`).run(transaction);
      }, ttlMs).unref();
      return { transaction, results: results(transaction) };
    },
    /**
     * Replies to a fleet-wide command arrive by the thousand within a few hundred ms: they are stamped on
     * arrival (that is the round trip measured) and written in one transaction per event-loop turn.
     */
    onReply(nodeId: string, r: CommandReply) {
      replies.push({ nodeId, r, ts: now() });
      if (replies.length === 1) setImmediate(flushReplies);
    },
    results,
    get(transaction: string, communeId: string) {
      const head = db.prepare<[string, string], { name: string; scope: string; scope_id: string }>(`SELECT name, scope, scope_id FROM commands WHERE transaction_id = ? AND commune_id = ? LIMIT 1`).get(transaction, communeId);
      return head ? { transaction, name: head.name, target: { scope: head.scope as Scope, id: head.scope_id }, results: results(transaction) } : undefined;
    },
  };
}
export type Commands = ReturnType<typeof createCommands>;
