import crypto from 'node:crypto';
import { priorityRank, type Airing, type AiringItem, type InterruptPolicy, type Priority, type ScheduleTarget } from '../../../schemas/src/index.js';
import { slotsInWindow, type CompiledRule } from './recurrence.js';
import { formatLocal } from './time.js';

/**
 * The one expansion of schedules into concrete airings. Pure: no clock, no I/O — the window comes from
 * the caller's injected clock. The preview API, conflict detection and the per-node plans all call it.
 */

export interface ExpandProgramme {
  id: string;
  title: string;
  durationMs: number;
  /** Items as the agent plays them (TTS already rendered to media). */
  items: AiringItem[];
  volume?: number | undefined;
  onInterrupt: InterruptPolicy;
}

export interface ExpandSchedule {
  id: string;
  programmeId: string;
  title?: string | null | undefined;
  rule: CompiledRule;
  targets: readonly ScheduleTarget[];
  priority: Priority;
  rank: number;
  volume?: number | null | undefined;
  quietOverride: boolean;
  enabled: boolean;
}

export interface NodeRef { id: string; zoneId: string }

export interface ExpandInput {
  from: number;
  to: number;
  schedules: readonly ExpandSchedule[];
  programmes: ReadonlyMap<string, ExpandProgramme>;
  nodes: readonly NodeRef[];
}

export interface Slot { airing: Airing; nodeIds: string[] }

export interface Expansion {
  /** Every node of `nodes` (even with no airing), its airings sorted by start, then precedence. */
  byNode: Map<string, Airing[]>;
  /** Each airing once, with the nodes it plays on. */
  slots: Slot[];
}

/**
 * Deterministic airing id: the same schedule and slot always give the same id (across re-plans and
 * restarts), so an agent's receipts for it stay unique. Shared by every node of the slot.
 */
export function airingId(scheduleId: string, startAt: number): string {
  const h = crypto.createHash('sha256').update(`${scheduleId}|${new Date(startAt).toISOString()}`).digest('hex');
  return `a${h.slice(0, 31)}`;
}

/** Node ids a schedule's targets reach (whole commune, zones, single nodes), in `nodes` order. */
export function resolveTargets(targets: readonly ScheduleTarget[], nodes: readonly NodeRef[]): string[] {
  if (targets.some((t) => t.kind === 'commune')) return nodes.map((n) => n.id);
  const zones = new Set<string>();
  const ids = new Set<string>();
  for (const t of targets) {
    if (t.kind === 'zone') zones.add(t.id);
    else if (t.kind === 'node') ids.add(t.id);
  }
  return nodes.filter((n) => ids.has(n.id) || zones.has(n.zoneId)).map((n) => n.id);
}

/**
 * Precedence at air time: higher priority first; at equal priority the lower rank (operator order);
 * then the earlier start (the incumbent keeps playing); then the id, so the order is total.
 * Negative: `a` takes precedence.
 */
export function comparePrecedence(a: Pick<Airing, 'priority' | 'rank' | 'startAt' | 'id'>, b: Pick<Airing, 'priority' | 'rank' | 'startAt' | 'id'>): number {
  return priorityRank(b.priority) - priorityRank(a.priority) || a.rank - b.rank || a.startAt - b.startAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function expandAirings(input: ExpandInput): Expansion {
  const byNode = new Map<string, Airing[]>();
  for (const n of input.nodes) byNode.set(n.id, []);
  const slots: Slot[] = [];
  for (const s of input.schedules) {
    if (!s.enabled) continue;
    const p = input.programmes.get(s.programmeId);
    if (!p || p.items.length === 0 || p.durationMs <= 0) continue;
    const nodeIds = resolveTargets(s.targets, input.nodes);
    if (nodeIds.length === 0) continue;
    const volume = s.volume ?? p.volume;
    for (const startAt of slotsInWindow(s.rule, p.durationMs, input.from, input.to)) {
      // One frozen object shared by every node of the slot (1,000 nodes: one airing, not 1,000).
      const airing: Airing = Object.freeze({
        id: airingId(s.id, startAt),
        scheduleId: s.id,
        programmeId: p.id,
        title: s.title ?? p.title,
        startAt,
        durationMs: p.durationMs,
        priority: s.priority,
        rank: s.rank,
        ...(volume !== undefined && volume !== null ? { volume } : {}),
        onInterrupt: p.onInterrupt,
        quietOverride: s.quietOverride,
        items: p.items,
      });
      slots.push({ airing, nodeIds });
      for (const id of nodeIds) byNode.get(id)!.push(airing);
    }
  }
  for (const list of byNode.values()) list.sort((a, b) => a.startAt - b.startAt || comparePrecedence(a, b));
  slots.sort((a, b) => a.airing.startAt - b.airing.startAt || comparePrecedence(a.airing, b.airing));
  return { byNode, slots };
}

/** For each airing of a node's list: the overlapping airings, and whether it takes precedence over all. */
export function overlapsOnNode(airings: readonly Airing[]): Map<string, { overlapsWith: string[]; wins: boolean }> {
  const out = new Map<string, { overlapsWith: string[]; wins: boolean }>();
  for (const a of airings) out.set(a.id, { overlapsWith: [], wins: true });
  for (let i = 0; i < airings.length; i++) {
    const a = airings[i]!;
    for (let j = i + 1; j < airings.length; j++) {
      const b = airings[j]!;
      if (b.startAt >= a.startAt + a.durationMs) break; // sorted by start: no later one overlaps a
      out.get(a.id)!.overlapsWith.push(b.id);
      out.get(b.id)!.overlapsWith.push(a.id);
      if (comparePrecedence(a, b) < 0) out.get(b.id)!.wins = false;
      else out.get(a.id)!.wins = false;
    }
  }
  return out;
}

export interface ConflictSubject {
  schedule: ExpandSchedule;
  programme: ExpandProgramme;
}

export interface Conflict {
  scheduleId: string;
  programmeId: string;
  title: string;
  priority: Priority;
  rank: number;
  thisStartAt: number;
  thisEndAt: number;
  otherStartAt: number;
  otherEndAt: number;
  nodeIds: string[];
  zoneIds: string[];
  winner: 'this' | 'other';
  reason: string;
  message: string;
}

/**
 * Overlaps between one schedule's airings and any other schedule's on the same nodes, in [from, to).
 * Explained (which programme, when, where, who wins), never refused: at air time the higher priority
 * wins and equal priorities play by rank.
 */
export function findConflicts(args: {
  subject: ConflictSubject;
  others: readonly ExpandSchedule[];
  programmes: ReadonlyMap<string, ExpandProgramme>;
  nodes: readonly NodeRef[];
  from: number;
  to: number;
  timezone: string;
}): Conflict[] {
  const { subject, nodes, from, to, timezone } = args;
  const s = subject.schedule;
  const mine = new Set(resolveTargets(s.targets, nodes));
  if (mine.size === 0 || !s.enabled) return [];
  const zoneOf = new Map(nodes.map((n) => [n.id, n.zoneId]));
  const mySlots = slotsInWindow(s.rule, subject.programme.durationMs, from, to);
  const dur = subject.programme.durationMs;
  const out: Conflict[] = [];
  for (const o of args.others) {
    if (o.id === s.id || !o.enabled) continue;
    const op = args.programmes.get(o.programmeId);
    if (!op) continue;
    const shared = resolveTargets(o.targets, nodes).filter((id) => mine.has(id));
    if (shared.length === 0) continue;
    const theirs = slotsInWindow(o.rule, op.durationMs, from, to);
    let j = 0;
    for (const a of mySlots) {
      while (j < theirs.length && theirs[j]! + op.durationMs <= a) j++;
      for (let k = j; k < theirs.length && theirs[k]! < a + dur; k++) {
        const b = theirs[k]!;
        const me = { priority: s.priority, rank: s.rank, startAt: a, id: airingId(s.id, a) };
        const other = { priority: o.priority, rank: o.rank, startAt: b, id: airingId(o.id, b) };
        const winner = comparePrecedence(me, other) < 0 ? 'this' : 'other';
        const reason = precedenceReason(me, other);
        const title = o.title ?? op.title;
        const zoneIds = [...new Set(shared.map((id) => zoneOf.get(id)!))].sort();
        const where = shared.length <= 3 ? `node${shared.length > 1 ? 's' : ''} ${shared.join(', ')}` : `${shared.length} nodes`;
        const inZones = `zone${zoneIds.length > 1 ? 's' : ''} ${zoneIds.join(', ')}`;
        const message = `overlaps '${title}' (${o.priority}, rank ${o.rank}) at ${formatLocal(b, timezone)}-${formatLocal(b + op.durationMs, timezone).slice(11)} `
          + `on ${where} in ${inZones}: ${winner === 'this' ? 'this schedule' : `'${title}'`} plays (${reason})`;
        out.push({
          scheduleId: o.id, programmeId: op.id, title, priority: o.priority, rank: o.rank,
          thisStartAt: a, thisEndAt: a + dur, otherStartAt: b, otherEndAt: b + op.durationMs,
          nodeIds: shared, zoneIds, winner, reason, message,
        });
      }
    }
  }
  return out.sort((x, y) => x.thisStartAt - y.thisStartAt || x.otherStartAt - y.otherStartAt);
}

function precedenceReason(a: { priority: Priority; rank: number; startAt: number }, b: { priority: Priority; rank: number; startAt: number }): string {
  if (a.priority !== b.priority) return 'higher priority';
  if (a.rank !== b.rank) return 'equal priority, lower rank';
  if (a.startAt !== b.startAt) return 'equal priority and rank: the one already playing keeps playing';
  return 'equal priority, rank and start: reorder them with POST /schedules/reorder';
}
