import type {
  InterruptPolicy, Priority, QuietHours, Receipt, Recurrence, ReceiptState, ScheduleTarget,
} from '../../../schemas/src/index.js';
import type { Db } from '../store/db.js';
import { DEFAULT_QUIET_HOURS } from './quiet-hours.js';
import { DEFAULT_TIMEZONE } from './time.js';

/** A programme item as stored (TTS keeps its text and the media it was rendered to). */
export type StoredItem =
  | { kind: 'media'; mediaId: string }
  | { kind: 'tts'; text: string; voice: string | null; mediaId: string }
  | { kind: 'chime'; chime: 'attention' | 'start' | 'end'; durationMs: number }
  | { kind: 'silence'; durationMs: number }
  | { kind: 'relay'; url: string; durationMs: number };

export interface ProgrammeRec {
  id: string; communeId: string; title: string; description: string | null; items: StoredItem[]; durationMs: number;
  priority: Priority; volume: number | null; onInterrupt: InterruptPolicy; createdBy: string; createdAt: number; updatedAt: number;
}

export interface ScheduleRec {
  id: string; communeId: string; programmeId: string; title: string | null; recurrence: Recurrence;
  validFrom: string | null; validUntil: string | null; exceptions: string[]; targets: ScheduleTarget[];
  priority: Priority; rank: number; volume: number | null; quietOverride: boolean; quietOverrideReason: string | null;
  enabled: boolean; createdBy: string; createdAt: number; updatedBy: string; updatedAt: number;
}

export interface MediaRec { id: string; communeId: string; title: string; durationMs: number; sha256: string; sizeBytes: number }

export interface NodePlanRec {
  nodeId: string; communeId: string; version: number; contentHash: string; windowFrom: number; windowTo: number;
  airingCount: number; publishedAt: number; ackedVersion: number | null; ackStatus: 'applied' | 'rejected' | null;
  ackError: string | null; ackedAt: number | null; missing: string[];
}

export interface PlanAiringRec {
  nodeId: string; airingId: string; communeId: string; scheduleId: string; programmeId: string; title: string;
  startAt: number; durationMs: number; priority: Priority; rank: number; planVersion: number;
}

export interface ReceiptRec {
  nodeId: string; id: string; communeId: string; airingId: string; state: ReceiptState; at: number;
  startErrorMs: number | null; reason: string | null; interruptedBy: string | null; playedMs: number | null;
  airingMatch: 'planned' | 'unknown' | 'other_node'; receivedAt: number;
}

interface ProgrammeRow {
  id: string; commune_id: string; title: string; description: string | null; items: string; duration_ms: number;
  priority: string; volume: number | null; on_interrupt: string; created_by: string; created_at: number; updated_at: number;
}
interface ScheduleRow {
  id: string; commune_id: string; programme_id: string; title: string | null; recurrence: string; valid_from: string | null;
  valid_until: string | null; exceptions: string; targets: string; priority: string; rank: number; volume: number | null;
  quiet_override: number; quiet_override_reason: string | null; enabled: number; created_by: string; created_at: number;
  updated_by: string; updated_at: number;
}
interface NodePlanRow {
  node_id: string; commune_id: string; version: number; content_hash: string; window_from: number; window_to: number;
  airing_count: number; published_at: number; acked_version: number | null; ack_status: string | null; ack_error: string | null;
  acked_at: number | null; missing: string;
}
interface PlanAiringRow {
  node_id: string; airing_id: string; commune_id: string; schedule_id: string; programme_id: string; title: string;
  start_at: number; duration_ms: number; priority: string; rank: number; plan_version: number;
}
interface ReceiptDbRow {
  node_id: string; id: string; commune_id: string; airing_id: string; state: string; at: number; start_error_ms: number | null;
  reason: string | null; interrupted_by: string | null; played_ms: number | null; airing_match: string; received_at: number;
}

const toProgramme = (r: ProgrammeRow): ProgrammeRec => ({
  id: r.id, communeId: r.commune_id, title: r.title, description: r.description, items: JSON.parse(r.items) as StoredItem[],
  durationMs: r.duration_ms, priority: r.priority as Priority, volume: r.volume, onInterrupt: r.on_interrupt as InterruptPolicy,
  createdBy: r.created_by, createdAt: r.created_at, updatedAt: r.updated_at,
});
const toSchedule = (r: ScheduleRow): ScheduleRec => ({
  id: r.id, communeId: r.commune_id, programmeId: r.programme_id, title: r.title, recurrence: JSON.parse(r.recurrence) as Recurrence,
  validFrom: r.valid_from, validUntil: r.valid_until, exceptions: JSON.parse(r.exceptions) as string[],
  targets: JSON.parse(r.targets) as ScheduleTarget[], priority: r.priority as Priority, rank: r.rank, volume: r.volume,
  quietOverride: r.quiet_override === 1, quietOverrideReason: r.quiet_override_reason, enabled: r.enabled === 1,
  createdBy: r.created_by, createdAt: r.created_at, updatedBy: r.updated_by, updatedAt: r.updated_at,
});
const toNodePlan = (r: NodePlanRow): NodePlanRec => ({
  nodeId: r.node_id, communeId: r.commune_id, version: r.version, contentHash: r.content_hash, windowFrom: r.window_from,
  windowTo: r.window_to, airingCount: r.airing_count, publishedAt: r.published_at, ackedVersion: r.acked_version,
  ackStatus: r.ack_status as NodePlanRec['ackStatus'], ackError: r.ack_error, ackedAt: r.acked_at, missing: JSON.parse(r.missing) as string[],
});
const toPlanAiring = (r: PlanAiringRow): PlanAiringRec => ({
  nodeId: r.node_id, airingId: r.airing_id, communeId: r.commune_id, scheduleId: r.schedule_id, programmeId: r.programme_id,
  title: r.title, startAt: r.start_at, durationMs: r.duration_ms, priority: r.priority as Priority, rank: r.rank, planVersion: r.plan_version,
});
const toReceipt = (r: ReceiptDbRow): ReceiptRec => ({
  nodeId: r.node_id, id: r.id, communeId: r.commune_id, airingId: r.airing_id, state: r.state as ReceiptState, at: r.at,
  startErrorMs: r.start_error_ms, reason: r.reason, interruptedBy: r.interrupted_by, playedMs: r.played_ms,
  airingMatch: r.airing_match as ReceiptRec['airingMatch'], receivedAt: r.received_at,
});

/** SQL for the scheduling tables. Synchronous (better-sqlite3); every query is commune-scoped. */
export function createSchedulingRepo(db: Db) {
  const q = {
    progGet: db.prepare<[string, string], ProgrammeRow>(`SELECT * FROM programmes WHERE id = ? AND commune_id = ?`),
    progList: db.prepare<[string], ProgrammeRow>(`SELECT * FROM programmes WHERE commune_id = ? ORDER BY title, id`),
    schedGet: db.prepare<[string, string], ScheduleRow>(`SELECT * FROM schedules WHERE id = ? AND commune_id = ?`),
    schedList: db.prepare<[string], ScheduleRow>(`SELECT * FROM schedules WHERE commune_id = ? ORDER BY created_at, id`),
    mediaGet: db.prepare<[string, string], { id: string; commune_id: string; title: string; duration_ms: number; opus_sha256: string; opus_size: number }>(
      `SELECT id, commune_id, title, duration_ms, opus_sha256, opus_size FROM media WHERE id = ? AND commune_id = ?`),
    planGet: db.prepare<[string], NodePlanRow>(`SELECT * FROM node_plans WHERE node_id = ?`),
    // This node's row if it has one, else any node's (then the airing was planned elsewhere only).
    airingKnown: db.prepare<[string, string], { node_id: string }>(`SELECT node_id FROM plan_airings WHERE airing_id = ? ORDER BY (node_id = ?) DESC LIMIT 1`),
    insReceipt: db.prepare(`INSERT OR IGNORE INTO receipts (node_id, id, commune_id, airing_id, state, at, start_error_ms, reason, interrupted_by, played_ms, airing_match, received_at)
      VALUES (@nodeId, @id, @communeId, @airingId, @state, @at, @startErrorMs, @reason, @interruptedBy, @playedMs, @airingMatch, @receivedAt)`),
    upAiring: db.prepare(`INSERT INTO plan_airings (node_id, airing_id, commune_id, schedule_id, programme_id, title, start_at, duration_ms, priority, rank, plan_version)
      VALUES (@nodeId, @airingId, @communeId, @scheduleId, @programmeId, @title, @startAt, @durationMs, @priority, @rank, @planVersion)
      ON CONFLICT(node_id, airing_id) DO UPDATE SET title = excluded.title, duration_ms = excluded.duration_ms, priority = excluded.priority,
        rank = excluded.rank, programme_id = excluded.programme_id, plan_version = excluded.plan_version, commune_id = excluded.commune_id`),
    nodeAirings: db.prepare<[string, number], { airing_id: string; start_at: number; title: string; duration_ms: number; priority: string; rank: number; programme_id: string }>(
      `SELECT airing_id, start_at, title, duration_ms, priority, rank, programme_id FROM plan_airings WHERE node_id = ? AND start_at + duration_ms > ?`),
    putPlan: db.prepare(`INSERT INTO node_plans (node_id, commune_id, version, content_hash, window_from, window_to, airing_count, published_at)
      VALUES (@nodeId, @communeId, @version, @contentHash, @windowFrom, @windowTo, @airingCount, @publishedAt)
      ON CONFLICT(node_id) DO UPDATE SET commune_id = excluded.commune_id, version = excluded.version, content_hash = excluded.content_hash,
        window_from = excluded.window_from, window_to = excluded.window_to, airing_count = excluded.airing_count, published_at = excluded.published_at`),
    putRetained: db.prepare(`INSERT INTO retained (topic, commune_id, payload, updated_at) VALUES (?, ?, ?, ?)
      ON CONFLICT(topic) DO UPDATE SET commune_id = excluded.commune_id, payload = excluded.payload, updated_at = excluded.updated_at`),
    delAiring: db.prepare(`DELETE FROM plan_airings WHERE node_id = ? AND airing_id = ?`),
  };

  return {
    db,
    tx<T>(fn: () => T): T { return db.transaction(fn)(); },

    // --- communes and settings
    communeIds: () => db.prepare<[], { id: string }>(`SELECT id FROM communes ORDER BY id`).all().map((r) => r.id),
    timezone(communeId: string): string {
      return db.prepare<[string], { timezone: string }>(`SELECT timezone FROM communes WHERE id = ?`).get(communeId)?.timezone ?? DEFAULT_TIMEZONE;
    },
    quietHours(communeId: string): QuietHours & { updatedAt: number | null; updatedBy: string | null } {
      const r = db.prepare<[string], { quiet_start: string; quiet_end: string; updated_at: number | null; updated_by: string | null }>(
        `SELECT quiet_start, quiet_end, updated_at, updated_by FROM commune_settings WHERE commune_id = ?`).get(communeId);
      return r ? { start: r.quiet_start, end: r.quiet_end, updatedAt: r.updated_at, updatedBy: r.updated_by } : { ...DEFAULT_QUIET_HOURS, updatedAt: null, updatedBy: null };
    },
    setQuietHours(communeId: string, q: QuietHours, ts: number, by: string) {
      db.prepare(`INSERT INTO commune_settings (commune_id, quiet_start, quiet_end, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT(commune_id) DO UPDATE SET quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, updated_at = excluded.updated_at, updated_by = excluded.updated_by`)
        .run(communeId, q.start, q.end, ts, by);
    },

    // --- media (owned by the media service; read here)
    media(communeId: string, id: string): MediaRec | undefined {
      const r = q.mediaGet.get(id, communeId);
      return r ? { id: r.id, communeId: r.commune_id, title: r.title, durationMs: r.duration_ms, sha256: r.opus_sha256, sizeBytes: r.opus_size } : undefined;
    },
    isMediaInUse: (communeId: string, mediaId: string) =>
      db.prepare(`SELECT 1 FROM programme_media WHERE commune_id = ? AND media_id = ? LIMIT 1`).get(communeId, mediaId) !== undefined,

    // --- programmes
    getProgramme: (communeId: string, id: string) => { const r = q.progGet.get(id, communeId); return r ? toProgramme(r) : undefined; },
    listProgrammes: (communeId: string) => q.progList.all(communeId).map(toProgramme),
    programmeExistsAnywhere: (id: string) => db.prepare(`SELECT 1 FROM programmes WHERE id = ?`).get(id) !== undefined,
    putProgramme(p: ProgrammeRec, insert: boolean) {
      if (insert) {
        db.prepare(`INSERT INTO programmes (id, commune_id, title, description, items, duration_ms, priority, volume, on_interrupt, created_by, created_at, updated_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(p.id, p.communeId, p.title, p.description, JSON.stringify(p.items), p.durationMs, p.priority, p.volume, p.onInterrupt, p.createdBy, p.createdAt, p.updatedAt);
      } else {
        db.prepare(`UPDATE programmes SET title = ?, description = ?, items = ?, duration_ms = ?, priority = ?, volume = ?, on_interrupt = ?, updated_at = ? WHERE id = ? AND commune_id = ?`)
          .run(p.title, p.description, JSON.stringify(p.items), p.durationMs, p.priority, p.volume, p.onInterrupt, p.updatedAt, p.id, p.communeId);
      }
      db.prepare(`DELETE FROM programme_media WHERE programme_id = ?`).run(p.id);
      const ins = db.prepare(`INSERT OR IGNORE INTO programme_media (programme_id, commune_id, media_id) VALUES (?, ?, ?)`);
      for (const it of p.items) if (it.kind === 'media' || it.kind === 'tts') ins.run(p.id, p.communeId, it.mediaId);
    },
    deleteProgramme: (communeId: string, id: string) => db.prepare(`DELETE FROM programmes WHERE id = ? AND commune_id = ?`).run(id, communeId).changes > 0,
    scheduleCountByProgramme(communeId: string): Map<string, number> {
      const rows = db.prepare<[string], { programme_id: string; n: number }>(`SELECT programme_id, count(*) AS n FROM schedules WHERE commune_id = ? GROUP BY programme_id`).all(communeId);
      return new Map(rows.map((r) => [r.programme_id, r.n]));
    },

    // --- schedules
    getSchedule: (communeId: string, id: string) => { const r = q.schedGet.get(id, communeId); return r ? toSchedule(r) : undefined; },
    listSchedules: (communeId: string) => q.schedList.all(communeId).map(toSchedule),
    scheduleExistsAnywhere: (id: string) => db.prepare(`SELECT 1 FROM schedules WHERE id = ?`).get(id) !== undefined,
    putSchedule(s: ScheduleRec, insert: boolean) {
      const args = [s.programmeId, s.title, JSON.stringify(s.recurrence), s.validFrom, s.validUntil, JSON.stringify(s.exceptions), JSON.stringify(s.targets),
        s.priority, s.rank, s.volume, s.quietOverride ? 1 : 0, s.quietOverrideReason, s.enabled ? 1 : 0] as const;
      if (insert) {
        db.prepare(`INSERT INTO schedules (programme_id, title, recurrence, valid_from, valid_until, exceptions, targets, priority, rank, volume, quiet_override, quiet_override_reason, enabled,
          id, commune_id, created_by, created_at, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(...args, s.id, s.communeId, s.createdBy, s.createdAt, s.updatedBy, s.updatedAt);
      } else {
        db.prepare(`UPDATE schedules SET programme_id = ?, title = ?, recurrence = ?, valid_from = ?, valid_until = ?, exceptions = ?, targets = ?, priority = ?, rank = ?,
          volume = ?, quiet_override = ?, quiet_override_reason = ?, enabled = ?, updated_by = ?, updated_at = ? WHERE id = ? AND commune_id = ?`)
          .run(...args, s.updatedBy, s.updatedAt, s.id, s.communeId);
      }
    },
    setRank: (communeId: string, id: string, rank: number, ts: number, by: string) =>
      db.prepare(`UPDATE schedules SET rank = ?, updated_at = ?, updated_by = ? WHERE id = ? AND commune_id = ?`).run(rank, ts, by, id, communeId),
    deleteSchedule: (communeId: string, id: string) => db.prepare(`DELETE FROM schedules WHERE id = ? AND commune_id = ?`).run(id, communeId).changes > 0,

    // --- plans
    nodePlan: (nodeId: string) => { const r = q.planGet.get(nodeId); return r ? toNodePlan(r) : undefined; },
    putNodePlan(p: { nodeId: string; communeId: string; version: number; contentHash: string; windowFrom: number; windowTo: number; airingCount: number; publishedAt: number }) {
      q.putPlan.run({ nodeId: p.nodeId, communeId: p.communeId, version: p.version, contentHash: p.contentHash, windowFrom: p.windowFrom, windowTo: p.windowTo, airingCount: p.airingCount, publishedAt: p.publishedAt });
    },
    /** The retained plan body, written with the plan row (the same table the controller republishes from). */
    putRetainedPlan: (topic: string, communeId: string, payload: string, ts: number) => q.putRetained.run(topic, communeId, payload, ts),
    /** Record a plan ack; an older version's ack never moves the acknowledged version backwards. */
    ackPlan(nodeId: string, version: number, status: 'applied' | 'rejected', error: string | null, missing: string[], ts: number): boolean {
      return db.prepare(`UPDATE node_plans SET
          acked_version = CASE WHEN @status = 'applied' THEN max(coalesce(acked_version, 0), @version) ELSE acked_version END,
          ack_status = @status, ack_error = @error, acked_at = @ts, missing = @missing
        WHERE node_id = @nodeId AND @version >= coalesce(acked_version, 0)`)
        .run({ nodeId, version, status, error, ts, missing: JSON.stringify(missing) }).changes > 0;
    },
    /**
     * Keep the airing history of a node in step with the plan just sent: insert new airings, update
     * changed ones, delete the ones not yet started (start > now) that the new plan no longer has.
     * Unchanged rows are not written (a re-plan of 1,000 nodes touches only what moved).
     */
    syncPlanAirings(nodeId: string, communeId: string, version: number, airings: readonly { id: string; scheduleId: string; programmeId: string; title: string; startAt: number; durationMs: number; priority: Priority; rank: number }[], now: number) {
      const keep = new Set(airings.map((a) => a.id));
      const have = new Map(q.nodeAirings.all(nodeId, Math.min(now, airings[0]?.startAt ?? now)).map((r) => [r.airing_id, r]));
      for (const [id, r] of have) if (r.start_at > now && !keep.has(id)) q.delAiring.run(nodeId, id);
      for (const a of airings) {
        const r = have.get(a.id);
        if (r && r.title === a.title && r.duration_ms === a.durationMs && r.priority === a.priority && r.rank === a.rank && r.programme_id === a.programmeId) continue;
        q.upAiring.run({ nodeId, airingId: a.id, communeId, scheduleId: a.scheduleId, programmeId: a.programmeId, title: a.title, startAt: a.startAt, durationMs: a.durationMs, priority: a.priority, rank: a.rank, planVersion: version });
      }
    },
    listPlanAirings(communeId: string, f: { from: number; to: number; nodeIds?: string[] | undefined; scheduleId?: string | undefined; airingId?: string | undefined; limit: number }): PlanAiringRec[] {
      const where = ['commune_id = @c', 'start_at < @to', 'start_at + duration_ms > @from'];
      if (f.nodeIds) where.push(`node_id IN (SELECT value FROM json_each(@nodes))`);
      if (f.scheduleId) where.push('schedule_id = @s');
      if (f.airingId) where.push('airing_id = @a');
      return db.prepare<[Record<string, unknown>], PlanAiringRow>(`SELECT * FROM plan_airings WHERE ${where.join(' AND ')} ORDER BY start_at, node_id LIMIT @limit`)
        .all({ c: communeId, from: f.from, to: f.to, nodes: JSON.stringify(f.nodeIds ?? []), s: f.scheduleId, a: f.airingId, limit: f.limit }).map(toPlanAiring);
    },
    planAiringsOf(communeId: string, airingId: string): PlanAiringRec[] {
      return db.prepare<[string, string], PlanAiringRow>(`SELECT * FROM plan_airings WHERE airing_id = ? AND commune_id = ? ORDER BY node_id`).all(airingId, communeId).map(toPlanAiring);
    },

    // --- receipts
    /**
     * Store a batch exactly once, in ONE transaction (INSERT OR IGNORE on (node_id, id)). Returns every id
     * of the batch that is now stored — new or already there — so the agent can drop them all.
     */
    storeReceipts(nodeId: string, communeId: string, receipts: readonly Receipt[], ts: number): { ids: string[]; inserted: number; unknown: number } {
      return db.transaction(() => {
        let inserted = 0; let unknown = 0;
        const ids = new Set<string>();
        for (const r of receipts) {
          const known = q.airingKnown.get(r.airingId, nodeId);
          const airingMatch = !known ? 'unknown' : known.node_id === nodeId ? 'planned' : 'other_node';
          if (airingMatch !== 'planned') unknown++;
          inserted += q.insReceipt.run({
            nodeId, id: r.id, communeId, airingId: r.airingId, state: r.state, at: r.at, startErrorMs: r.startErrorMs ?? null,
            reason: r.reason ?? null, interruptedBy: r.interruptedBy ?? null, playedMs: r.playedMs ?? null, airingMatch, receivedAt: ts,
          }).changes;
          ids.add(r.id);
        }
        return { ids: [...ids], inserted, unknown };
      })();
    },
    listReceipts(communeId: string, f: { from?: number | undefined; to?: number | undefined; nodeId?: string | undefined; airingId?: string | undefined; limit: number }): ReceiptRec[] {
      const where = ['commune_id = @c'];
      if (f.from !== undefined) where.push('at >= @from');
      if (f.to !== undefined) where.push('at < @to');
      if (f.nodeId) where.push('node_id = @n');
      if (f.airingId) where.push('airing_id = @a');
      return db.prepare<[Record<string, unknown>], ReceiptDbRow>(`SELECT * FROM receipts WHERE ${where.join(' AND ')} ORDER BY at, node_id, id LIMIT @limit`)
        .all({ c: communeId, from: f.from, to: f.to, n: f.nodeId, a: f.airingId, limit: f.limit }).map(toReceipt);
    },
    /** Receipts of these (node, airing) pairs, grouped by `${nodeId}|${airingId}`. */
    receiptsFor(communeId: string, pairs: readonly { nodeId: string; airingId: string }[]): Map<string, ReceiptRec[]> {
      const out = new Map<string, ReceiptRec[]>();
      if (pairs.length === 0) return out;
      const airingIds = [...new Set(pairs.map((p) => p.airingId))];
      const rows = db.prepare<[string, string], ReceiptDbRow>(`SELECT * FROM receipts WHERE commune_id = ? AND airing_id IN (SELECT value FROM json_each(?)) ORDER BY at, id`)
        .all(communeId, JSON.stringify(airingIds)).map(toReceipt);
      for (const r of rows) {
        const k = `${r.nodeId}|${r.airingId}`;
        let l = out.get(k);
        if (!l) out.set(k, (l = []));
        l.push(r);
      }
      return out;
    },
  };
}
export type SchedulingRepo = ReturnType<typeof createSchedulingRepo>;
