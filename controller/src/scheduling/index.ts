import crypto from 'node:crypto';
import type { Logger } from 'pino';
import {
  Airing as AiringSchema, MAX_PAYLOAD_BYTES, Plan as PlanSchema, topicFor,
  type Airing, type AiringItem, type PlanAck, type Priority, type QuietHours, type Receipt,
} from '../../../schemas/src/index.js';
import type {
  AiringState, ProgrammeCreate, ProgrammeItem, ProgrammeItemInput, ProgrammeUpdate, ScheduleCreate, ScheduleTarget, ScheduleUpdate,
} from '../../../schemas/src/index.js';
import { AppError, badRequest, conflict, notFound } from '../errors.js';
import type { EventBus } from '../event-bus.js';
import type { EnvelopeFactory } from '../envelope.js';
import type { FleetLink } from '../fleet-link.js';
import { newId } from '../secrets.js';
import type { NodeCacheEntry } from '../services.js';
import type { Store } from '../store/store.js';
import {
  airingId, expandAirings, findConflicts, overlapsOnNode, resolveTargets,
  type Conflict, type ExpandProgramme, type ExpandSchedule, type NodeRef,
} from './expand.js';
import { checkQuietHours, quietHits } from './quiet-hours.js';
import { checkNotPast, checkSelfOverlap, compileRule, slotsInWindow, type CompiledRule } from './recurrence.js';
import { createSchedulingRepo, type PlanAiringRec, type ProgrammeRec, type ReceiptRec, type ScheduleRec, type StoredItem } from './repo.js';
import { DAY_MS, formatDuration, formatLocal, localDay } from './time.js';

export { expandAirings, airingId, findConflicts, comparePrecedence, resolveTargets, overlapsOnNode } from './expand.js';
export { compileRule, slotsInWindow, checkNotPast, checkSelfOverlap } from './recurrence.js';
export { quietHits, checkQuietHours, DEFAULT_QUIET_HOURS } from './quiet-hours.js';

export type RenderTts = (communeId: string, text: string, voice: string | undefined, actor: string) => Promise<{ id: string }>;

export interface SchedulingDeps {
  store: Store;
  bus: EventBus;
  log: Logger;
  /** Controller time (injectable: tests step it to compress a day). */
  now: () => number;
  envelope: EnvelopeFactory;
  link: () => FleetLink;
  nodes: Map<string, NodeCacheEntry>;
  /** Render TTS text to a media item (id) ahead of air; provided by the media service. */
  renderTts?: RenderTts | undefined;
  /** Every plan covers at least this far ahead (default 48 h). */
  planHorizonMs?: number;
  /**
   * Plan windows move in steps of this size (default 6 h): a plan covers [step start, step start +
   * horizon + step), so within a step an unchanged schedule gives byte-identical plan content and no
   * node is re-sent anything it already has.
   */
  planStepMs?: number;
  /** Longest wait between two rolling re-plans (default 1 h); the timer also fires at each step boundary. */
  tickMs?: number;
  /** How far ahead conflicts are looked for when a schedule is saved (default 14 days). */
  conflictHorizonDays?: number;
}

/** Told that a commune was re-planned; `published`: the nodes whose plan changed (may be empty). */
export type ReplannedListener = (communeId: string, r: { published: readonly string[] }) => void;

/** Who acts (the HTTP principal): everything is scoped to their commune. */
export interface Actor { communeId: string; username: string }

const MEDIA_PATH = (id: string) => `/api/v1/media/${encodeURIComponent(id)}/audio?format=opus`;
const MAX_PROGRAMME_MS = 12 * 3600_000;
const MAX_CONFLICTS = 100;
/** An airing over for this long without any receipt counts as `no_receipt`. */
const RECEIPT_GRACE_MS = 15 * 60_000;

interface CommuneCtx {
  communeId: string;
  tz: string;
  quiet: QuietHours;
  programmes: Map<string, ExpandProgramme>;
  schedules: ExpandSchedule[];
  scheduleRecs: Map<string, ScheduleRec>;
  nodes: NodeRef[];
}

/**
 * Programmes, schedules, expansion into airings, conflicts and quiet hours, per-node plans and receipts.
 * construct → start() (re-plan every node, start the rolling timer) → stop().
 */
export function createScheduling(deps: SchedulingDeps) {
  const { log, store } = deps;
  const repo = createSchedulingRepo(store.db);
  const horizonMs = deps.planHorizonMs ?? 48 * 3600_000;
  const stepMs = deps.planStepMs ?? 6 * 3600_000;
  const tickMs = deps.tickMs ?? 3600_000;
  const conflictDays = deps.conflictHorizonDays ?? 14;
  let renderTts = deps.renderTts;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  const ruleCache = new Map<string, { key: string; rule: CompiledRule }>();

  const link = (): FleetLink | undefined => { try { return deps.link() as FleetLink | undefined; } catch { return undefined; } };

  // ------------------------------------------------------------------ context

  function compiled(s: ScheduleRec, tz: string): CompiledRule {
    const key = `${s.updatedAt}|${tz}|${JSON.stringify(s.recurrence)}|${s.validFrom}|${s.validUntil}|${s.exceptions.join(',')}`;
    const c = ruleCache.get(s.id);
    if (c && c.key === key) return c.rule;
    const rule = compileRule(s, tz);
    ruleCache.set(s.id, { key, rule });
    return rule;
  }

  /** Programme → the items an agent plays; undefined when a media row it needs is gone. */
  function resolveProgramme(p: ProgrammeRec): ExpandProgramme | undefined {
    const items: AiringItem[] = [];
    for (const it of p.items) {
      switch (it.kind) {
        case 'media': case 'tts': {
          const m = repo.media(p.communeId, it.mediaId);
          if (!m || m.durationMs <= 0 || m.sizeBytes <= 0) {
            log.error({ programmeId: p.id, mediaId: it.mediaId }, 'programme refers to missing media: not planned');
            return undefined;
          }
          items.push({ kind: 'media', mediaId: m.id, sha256: m.sha256, sizeBytes: m.sizeBytes, durationMs: m.durationMs, path: MEDIA_PATH(m.id) });
          break;
        }
        case 'chime': items.push({ kind: 'chime', chime: it.chime, durationMs: it.durationMs }); break;
        case 'silence': items.push({ kind: 'silence', durationMs: it.durationMs }); break;
        case 'relay': items.push({ kind: 'relay', url: it.url, durationMs: it.durationMs }); break;
      }
    }
    if (items.length === 0) return undefined;
    return {
      id: p.id, title: p.title, durationMs: items.reduce((a, i) => a + i.durationMs, 0), items,
      volume: p.volume ?? undefined, onInterrupt: p.onInterrupt,
    };
  }

  function toExpand(s: ScheduleRec, rule: CompiledRule): ExpandSchedule {
    return {
      id: s.id, programmeId: s.programmeId, title: s.title, rule, targets: s.targets, priority: s.priority, rank: s.rank,
      volume: s.volume, quietOverride: s.quietOverride, enabled: s.enabled,
    };
  }

  function context(communeId: string): CommuneCtx {
    const tz = repo.timezone(communeId);
    const q = repo.quietHours(communeId);
    const programmes = new Map<string, ExpandProgramme>();
    for (const p of repo.listProgrammes(communeId)) {
      const r = resolveProgramme(p);
      if (r) programmes.set(p.id, r);
    }
    const schedules: ExpandSchedule[] = [];
    const scheduleRecs = new Map<string, ScheduleRec>();
    for (const s of repo.listSchedules(communeId)) {
      scheduleRecs.set(s.id, s);
      try { schedules.push(toExpand(s, compiled(s, tz))); } catch (e) {
        log.error({ err: e, scheduleId: s.id }, 'stored schedule does not compile: not planned');
      }
    }
    const nodes = store.listNodes(communeId).map((n) => ({ id: n.id, zoneId: n.zoneId }));
    return { communeId, tz, quiet: { start: q.start, end: q.end }, programmes, schedules, scheduleRecs, nodes };
  }

  // ------------------------------------------------------------------ distribution

  function planWindow(now: number) {
    const from = Math.floor(now / stepMs) * stepMs;
    return { from, to: from + horizonMs + stepMs };
  }

  /**
   * Airings are shared by every node of a slot: each is validated against the wire schema and serialised
   * once per re-plan, and node plans are assembled from those strings (1,000 nodes, 20 airings each: 20
   * validations, not 1,000 whole-plan ones).
   */
  function airingJsonCache() {
    const cache = new WeakMap<Airing, string>();
    return (a: Airing): string => {
      let j = cache.get(a);
      if (j === undefined) {
        const r = AiringSchema.safeParse(a);
        if (!r.success) throw new Error(`airing ${a.id} is invalid: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`);
        j = JSON.stringify(a);
        cache.set(a, j);
      }
      return j;
    };
  }

  /**
   * Recompute every node plan of a commune and publish only those whose content changed (new version).
   * DB first (node_plans, retained, airing history in one transaction), then MQTT: a crash in between
   * loses nothing, the controller republishes retained plans from SQLite on start.
   */
  const pendingReplan = new Set<string>();
  let replanTimer: NodeJS.Timeout | undefined;
  /** onReplanned listeners: told after every re-plan of a commune (the scheduled relay runner). */
  const replannedListeners = new Set<ReplannedListener>();

  /** Synchronous, after the plans are stored and published; a failing listener is logged, never the caller's error. */
  function notifyReplanned(communeId: string, published: readonly string[]) {
    for (const l of [...replannedListeners]) {
      try { l(communeId, { published }); } catch (e) { log.error({ err: e, communeId }, 're-plan listener failed'); }
    }
  }

  function replanCommune(communeId: string): { published: string[] } {
    const ctx = context(communeId);
    const now = deps.now();
    const { from, to } = planWindow(now);
    const exp = expandAirings({ from, to, schedules: ctx.schedules, programmes: ctx.programmes, nodes: ctx.nodes });
    const json = airingJsonCache();
    const head = `${from}|${to}|${ctx.tz}|${ctx.quiet.start}-${ctx.quiet.end}|`;
    const out: { nodeId: string; body: string }[] = [];
    repo.tx(() => {
      for (const n of ctx.nodes) {
        let airings = exp.byNode.get(n.id) ?? [];
        let jsons: string[];
        try { jsons = airings.map(json); } catch (e) {
          log.error({ err: e, nodeId: n.id }, 'plan failed validation: not sent');
          continue;
        }
        const hash = crypto.createHash('sha256').update(head).update(jsons.join(',')).digest('hex');
        const prev = repo.nodePlan(n.id);
        if (prev && prev.contentHash === hash && prev.communeId === communeId) continue;
        // Grows by one per change, and never below the wall clock in seconds: a controller restored from
        // an older backup still sends versions above what agents hold (they ignore lower ones as stale).
        const version = Math.max((prev?.version ?? 0) + 1, Math.floor(now / 1000));
        let planTo = to;
        let body: string;
        for (;;) {
          const top = { ...deps.envelope(), nodeId: n.id, version, from, to: planTo, timezone: ctx.tz, quietHours: ctx.quiet };
          const r = PlanSchema.safeParse({ ...top, airings: [] });
          if (!r.success) { log.error({ nodeId: n.id, error: r.error.issues[0]?.message }, 'plan failed validation: not sent'); body = ''; break; }
          body = `${JSON.stringify(top).slice(0, -1)},"airings":[${jsons.join(',')}]}`;
          if (jsons.length <= 2000 && Buffer.byteLength(body) <= MAX_PAYLOAD_BYTES) break;
          // Too big for one MQTT payload (256 KiB, 2,000 airings): drop the latest, shorten the window;
          // every airing must still start before `to` (agents check it).
          const cut = airings[Math.min(2000, Math.floor(airings.length * 0.9))];
          if (!cut || cut.startAt <= from) { body = ''; break; }
          log.warn({ nodeId: n.id, airings: airings.length }, 'plan too large for one payload: window shortened');
          planTo = cut.startAt;
          airings = airings.filter((a) => a.startAt < planTo);
          jsons = jsons.slice(0, airings.length);
        }
        if (!body) { log.error({ nodeId: n.id }, 'plan does not fit one MQTT payload: not sent'); continue; }
        repo.putNodePlan({ nodeId: n.id, communeId, version, contentHash: hash, windowFrom: from, windowTo: planTo, airingCount: airings.length, publishedAt: now });
        repo.putRetainedPlan(topicFor('plan', n.id), communeId, body, now);
        repo.syncPlanAirings(n.id, communeId, version, airings, now);
        out.push({ nodeId: n.id, body });
      }
    });
    // The bodies are exactly what encodePayload('plan', …) accepts (validated above), published
    // retained at the topic's QoS.
    const l = link();
    for (const p of out) {
      try { l?.publishRaw(topicFor('plan', p.nodeId), p.body, true); } catch (e) { log.error({ err: e, nodeId: p.nodeId }, 'publishing plan failed'); }
    }
    if (out.length) log.info({ communeId, nodes: out.length, from, to }, 'plans published');
    const published = out.map((p) => p.nodeId);
    notifyReplanned(communeId, published);
    return { published };
  }

  function replanAll(): { published: string[] } {
    const published: string[] = [];
    for (const c of repo.communeIds()) {
      try { published.push(...replanCommune(c).published); } catch (e) { log.error({ err: e, communeId: c }, 're-plan failed'); }
    }
    return { published };
  }

  function armTimer() {
    if (!running) return;
    const now = deps.now();
    const toBoundary = stepMs - (now % stepMs) + 1000;
    timer = setTimeout(() => {
      replanAll();
      armTimer();
    }, Math.max(1000, Math.min(tickMs, toBoundary)));
    timer.unref();
  }

  // ------------------------------------------------------------------ programmes

  function checkPlayableMedia(communeId: string, mediaId: string, field: string) {
    const m = repo.media(communeId, mediaId);
    if (!m) throw new AppError(404, 'MEDIA_NOT_FOUND', `${field}: media '${mediaId}' does not exist in this commune`);
    if (m.durationMs <= 0 || m.sizeBytes <= 0) throw badRequest('MEDIA_EMPTY', `${field}: media '${mediaId}' has no audio to play`);
    return m;
  }

  async function resolveItems(actor: Actor, items: readonly ProgrammeItemInput[], prev: readonly StoredItem[]): Promise<StoredItem[]> {
    if (items.length === 0) throw badRequest('EMPTY_PROGRAMME', 'items: a programme needs at least one item (media, tts, chime, silence or relay)');
    const out: StoredItem[] = [];
    for (const [i, it] of items.entries()) {
      const field = `items[${i}]`;
      switch (it.kind) {
        case 'media':
          checkPlayableMedia(actor.communeId, it.mediaId, field);
          out.push({ kind: 'media', mediaId: it.mediaId });
          break;
        case 'tts': {
          const voice = it.voice ?? null;
          // Unchanged text keeps its rendered audio: an edit elsewhere in the programme re-renders nothing.
          const same = prev.find((p) => p.kind === 'tts' && p.text === it.text && p.voice === voice && repo.media(actor.communeId, p.mediaId));
          if (same) { out.push(same); break; }
          if (!renderTts) {
            throw new AppError(503, 'TTS_UNAVAILABLE', `${field}: text-to-speech is not available on this controller (no TTS renderer is configured); upload the bulletin as audio instead`);
          }
          let id: string;
          try {
            ({ id } = await renderTts(actor.communeId, it.text, it.voice, actor.username));
          } catch (e) {
            if (e instanceof AppError) throw new AppError(e.statusCode, e.code, `${field}: ${e.message}`);
            log.error({ err: e }, 'TTS rendering failed');
            throw new AppError(502, 'TTS_FAILED', `${field}: rendering the text to speech failed`);
          }
          checkPlayableMedia(actor.communeId, id, field);
          out.push({ kind: 'tts', text: it.text, voice, mediaId: id });
          break;
        }
        case 'chime': out.push({ kind: 'chime', chime: it.chime, durationMs: it.durationMs }); break;
        case 'silence': out.push({ kind: 'silence', durationMs: it.durationMs }); break;
        case 'relay': out.push({ kind: 'relay', url: it.url, durationMs: it.durationMs }); break;
      }
    }
    return out;
  }

  function itemDuration(communeId: string, it: StoredItem): number {
    return it.kind === 'media' || it.kind === 'tts' ? (repo.media(communeId, it.mediaId)?.durationMs ?? 0) : it.durationMs;
  }

  function programmeDto(p: ProgrammeRec, scheduleCount: number) {
    const items: ProgrammeItem[] = p.items.map((it) => {
      switch (it.kind) {
        case 'media': { const m = repo.media(p.communeId, it.mediaId); return { kind: 'media', mediaId: it.mediaId, title: m?.title ?? null, durationMs: m?.durationMs ?? 0 }; }
        case 'tts': return { kind: 'tts', text: it.text, voice: it.voice, mediaId: it.mediaId, durationMs: itemDuration(p.communeId, it) };
        case 'chime': return { ...it };
        case 'silence': return { ...it };
        case 'relay': return { ...it };
      }
    });
    return {
      id: p.id, communeId: p.communeId, title: p.title, description: p.description, items, durationMs: p.durationMs,
      priority: p.priority, volume: p.volume, onInterrupt: p.onInterrupt, scheduleCount, createdBy: p.createdBy, createdAt: p.createdAt, updatedAt: p.updatedAt,
    };
  }

  function schedulesOf(communeId: string, programmeId: string) {
    return repo.listSchedules(communeId).filter((s) => s.programmeId === programmeId);
  }

  // ------------------------------------------------------------------ schedules

  interface Checked { rule: CompiledRule; programme: ExpandProgramme; warnings: string[]; quietSlots: string[] }

  /**
   * Validate a whole schedule (new or merged with a patch). Throws AppError with a code and a message
   * naming the field; returns warnings for what is legal but worth knowing.
   */
  function checkSchedule(ctx: CommuneCtx, s: ScheduleRec, opts: { checkPast: boolean }): Checked {
    const pr = repo.getProgramme(ctx.communeId, s.programmeId);
    if (!pr) throw new AppError(404, 'PROGRAMME_NOT_FOUND', `programmeId: programme '${s.programmeId}' does not exist`);
    const programme = ctx.programmes.get(pr.id) ?? resolveProgramme(pr);
    if (!programme) throw conflict('PROGRAMME_UNPLAYABLE', `programme '${pr.id}' refers to media that no longer exists`);
    for (const [i, t] of s.targets.entries()) {
      if (t.kind === 'zone' && !store.getZone(ctx.communeId, t.id)) throw new AppError(404, 'ZONE_NOT_FOUND', `targets[${i}]: zone '${t.id}' does not exist`);
      if (t.kind === 'node' && !store.getNode(ctx.communeId, t.id)) throw new AppError(404, 'NODE_NOT_FOUND', `targets[${i}]: node '${t.id}' does not exist`);
    }
    const rule = compileRule(s, ctx.tz);
    if (opts.checkPast) checkNotPast(rule, s, deps.now());
    checkSelfOverlap(rule, programme.durationMs);
    if (s.quietOverride && !(s.quietOverrideReason && s.quietOverrideReason.trim().length >= 3)) {
      throw badRequest('QUIET_OVERRIDE_REASON_REQUIRED', 'quietOverrideReason: a reason (at least 3 characters) is required when quietOverride is set; it is recorded in the audit trail');
    }
    const warnings: string[] = [];
    const hits = quietHits(rule.times, programme.durationMs, ctx.quiet);
    if (hits.length && s.priority !== 'emergency' && !s.quietOverride) {
      throw conflict('QUIET_HOURS', `this schedule would sound inside the commune's quiet hours ${ctx.quiet.start}-${ctx.quiet.end} (${ctx.tz}): `
        + `${hits.map((h) => h.message.replace(/^an airing/, 'the airing')).join('; ')} ('${programme.title}' lasts ${formatDuration(programme.durationMs)}). `
        + 'Change the time, or save it with quietOverride: true and a quietOverrideReason.');
    }
    if (hits.length && s.priority === 'emergency') warnings.push(`emergency priority: sounds inside quiet hours ${ctx.quiet.start}-${ctx.quiet.end} at ${hits.map((h) => h.start).join(', ')}`);
    if (!hits.length && s.quietOverride) warnings.push('quietOverride is set but no airing falls inside quiet hours');
    const nodeCount = resolveTargets(s.targets, ctx.nodes).length;
    if (nodeCount === 0) warnings.push('no node is in the targeted zones or commune yet: nothing will sound until one is added');
    if (s.targets.some((t) => t.kind === 'commune') && s.targets.length > 1) warnings.push('the whole commune is targeted: the other targets add nothing');
    if (s.enabled && nextSlots(rule, programme.durationMs, deps.now(), 1).length === 0) {
      warnings.push('it will not sound in the next year: check the date range, exception dates and days of the month');
    }
    return { rule, programme, warnings, quietSlots: hits.map((h) => `${h.start}-${h.end}`) };
  }

  function nextSlots(rule: CompiledRule, durationMs: number, now: number, n: number): number[] {
    for (const days of [2, 35, 400]) {
      const s = slotsInWindow(rule, durationMs, now, now + days * DAY_MS).filter((t) => t >= now);
      if (s.length >= n || days === 400) return s.slice(0, n);
    }
    return [];
  }

  function conflictsFor(ctx: CommuneCtx, s: ScheduleRec, checked: Checked): { list: Conflict[]; truncated: number } {
    const now = deps.now();
    const list = findConflicts({
      subject: { schedule: toExpand(s, checked.rule), programme: checked.programme },
      others: ctx.schedules, programmes: ctx.programmes, nodes: ctx.nodes, from: now, to: now + conflictDays * DAY_MS, timezone: ctx.tz,
    });
    return { list: list.slice(0, MAX_CONFLICTS), truncated: Math.max(0, list.length - MAX_CONFLICTS) };
  }

  function scheduleDto(s: ScheduleRec) {
    const p = repo.getProgramme(s.communeId, s.programmeId);
    return {
      id: s.id, communeId: s.communeId, programmeId: s.programmeId, programmeTitle: p?.title ?? '', title: s.title, recurrence: s.recurrence,
      validFrom: s.validFrom, validUntil: s.validUntil, exceptions: s.exceptions, targets: s.targets, priority: s.priority, rank: s.rank,
      volume: s.volume, quietOverride: s.quietOverride, quietOverrideReason: s.quietOverrideReason, enabled: s.enabled,
      durationMs: p?.durationMs ?? 0, createdBy: s.createdBy, createdAt: s.createdAt, updatedBy: s.updatedBy, updatedAt: s.updatedAt,
    };
  }

  function saveReply(communeId: string, s: ScheduleRec, checked: Checked) {
    // Conflicts against the commune as it is after the save (the schedule's own slots excluded).
    const ctx = context(communeId);
    const c = conflictsFor(ctx, s, checked);
    const nodeCount = resolveTargets(s.targets, ctx.nodes).length;
    const now = deps.now();
    const next = s.enabled ? nextSlots(checked.rule, checked.programme.durationMs, now, 5) : [];
    return {
      schedule: scheduleDto(s),
      conflicts: c.list,
      conflictsTruncated: c.truncated,
      conflictHorizonDays: conflictDays,
      warnings: checked.warnings,
      nextAirings: next.map((t) => ({ airingId: airingId(s.id, t), startAt: t, startLocal: formatLocal(t, ctx.tz), durationMs: checked.programme.durationMs, nodeCount })),
    };
  }

  function dedupeTargets(t: readonly ScheduleTarget[]): ScheduleTarget[] {
    const seen = new Set<string>();
    return t.filter((x) => { const k = x.kind === 'commune' ? 'commune' : `${x.kind}:${x.id}`; if (seen.has(k)) return false; seen.add(k); return true; });
  }

  function nextRank(communeId: string, priority: Priority): number {
    const ranks = repo.listSchedules(communeId).filter((s) => s.priority === priority).map((s) => s.rank);
    return ranks.length ? Math.min(1000, Math.max(...ranks) + 1) : 0;
  }

  function auditSchedule(actor: Actor, action: string, s: ScheduleRec, checked: Checked, detail: Record<string, unknown>) {
    const ts = deps.now();
    store.audit(actor.communeId, ts, actor.username, action, s.id, {
      ...detail, priority: s.priority, quietOverride: s.quietOverride, quietOverrideReason: s.quietOverrideReason, quietSlots: checked.quietSlots,
    });
    if (s.quietOverride && checked.quietSlots.length) {
      // A separate line for the override itself: who allowed sound inside quiet hours, when, why.
      store.audit(actor.communeId, ts, actor.username, 'schedule.quiet_override', s.id, { reason: s.quietOverrideReason, slots: checked.quietSlots, programmeId: s.programmeId });
    }
  }

  // ------------------------------------------------------------------ airings and receipts

  function airingState(a: { startAt: number; durationMs: number }, receipts: readonly ReceiptRec[] | undefined, now: number): AiringState {
    const rs = receipts ?? [];
    const terminal = rs.filter((r) => r.state !== 'started');
    if (terminal.length) return terminal.reduce((x, y) => (y.at >= x.at ? y : x)).state;
    if (rs.length) return 'started';
    return now > a.startAt + a.durationMs + RECEIPT_GRACE_MS ? 'no_receipt' : 'scheduled';
  }

  function nodeIdsFilter(communeId: string, nodeId?: string, zoneId?: string): string[] | undefined {
    if (nodeId) {
      if (!store.getNode(communeId, nodeId)) throw notFound('node', nodeId);
      return [nodeId];
    }
    if (zoneId) {
      if (!store.getZone(communeId, zoneId)) throw notFound('zone', zoneId);
      return store.listNodes(communeId, zoneId).map((n) => n.id);
    }
    return undefined;
  }

  // ------------------------------------------------------------------ public API

  const api = {
    async start() {
      if (running) return;
      running = true;
      replanAll();
      armTimer();
    },
    async stop() {
      running = false;
      clearTimeout(timer);
      timer = undefined;
      clearTimeout(replanTimer);
      replanTimer = undefined;
      pendingReplan.clear();
    },
    /** Let the media service provide TTS after construction (it may be built later in the composition root). */
    setRenderTts(fn: RenderTts | undefined) { renderTts = fn; },

    /** Re-plan every commune now (the rolling timer calls this; tests with a stepped clock too). */
    tick: () => replanAll(),
    replanCommune,
    /**
     * Call `listener` after every re-plan of a commune (a schedule, programme, quiet hours or node
     * changed, or the rolling timer), synchronously, once the new plans are stored. Returns the unsubscribe.
     */
    onReplanned(listener: ReplannedListener): () => void {
      replannedListeners.add(listener);
      return () => { replannedListeners.delete(listener); };
    },

    onPlanAck(nodeId: string, a: PlanAck) {
      const cur = repo.nodePlan(nodeId);
      if (!cur) { log.warn({ nodeId, version: a.version }, 'plan ack from a node that was never sent a plan'); return; }
      if (a.version > cur.version) { log.warn({ nodeId, version: a.version, sent: cur.version }, 'plan ack for a version never sent: ignored'); return; }
      const ts = deps.now();
      const changed = repo.ackPlan(nodeId, a.version, a.status, a.error ?? null, a.missing, ts);
      if (a.status === 'rejected') {
        log.warn({ nodeId, version: a.version, error: a.error }, 'node rejected its plan');
        store.addEvent(cur.communeId, nodeId, ts, 'plan.rejected', { version: a.version, error: a.error ?? null });
      } else if (a.missing.length) {
        log.info({ nodeId, version: a.version, missing: a.missing.length }, 'node applied its plan; media still downloading');
      }
      if (!changed) log.debug({ nodeId, version: a.version }, 'stale plan ack');
    },

    /**
     * Store receipts exactly once (one transaction) and return every id of the batch now stored (new or
     * duplicate) for the ack. A receipt for an airing this node was never planned is stored anyway,
     * flagged `unknown`/`other_node`, and acked — the agent's queue must drain, reports can exclude it.
     */
    onReceipts(nodeId: string, receipts: Receipt[]): string[] {
      const communeId = deps.nodes.get(nodeId)?.communeId ?? store.getNodeAny(nodeId)?.communeId;
      if (!communeId) { log.warn({ nodeId }, 'receipts from an unknown node: not stored, not acked'); return []; }
      const r = repo.storeReceipts(nodeId, communeId, receipts, deps.now());
      if (r.unknown) log.warn({ nodeId, unknown: r.unknown }, 'receipts for airings not planned on this node (stored, flagged)');
      log.debug({ nodeId, batch: receipts.length, inserted: r.inserted }, 'receipts stored');
      return r.ids;
    },

    /** Is this media item used by a programme (then it cannot be deleted)? */
    isMediaInUse: (communeId: string, mediaId: string) => repo.isMediaInUse(communeId, mediaId),

    /** Schedules that target this zone (the zone API may refuse deleting it). */
    schedulesTargetingZone: (communeId: string, zoneId: string) =>
      repo.listSchedules(communeId).filter((s) => s.targets.some((t) => t.kind === 'zone' && t.id === zoneId)).map((s) => s.id),

    /** A node was created, moved or deleted: re-plan its commune (only changed plans are re-sent). */
    onNodeChanged(nodeId: string) {
      const n = store.getNodeAny(nodeId);
      if (!n) {
        const topic = topicFor('plan', nodeId);
        const cur = repo.nodePlan(nodeId);
        store.putRetained(topic, '', '', deps.now());
        // Forget the content so a node re-created with this id is sent a plan, at a higher version.
        if (cur) repo.putNodePlan({ ...cur, contentHash: '', airingCount: 0 });
        link()?.publishRaw(topic, '', true);
        if (cur) notifyReplanned(cur.communeId, []);
        return;
      }
      // Coalesced: bulk provisioning creates nodes one request at a time, and a whole-commune re-plan per
      // node would make it quadratic. One re-plan per commune per 200 ms burst is enough.
      pendingReplan.add(n.communeId);
      replanTimer ??= setTimeout(() => {
        replanTimer = undefined;
        const communes = [...pendingReplan];
        pendingReplan.clear();
        for (const c of communes) {
          try { replanCommune(c); } catch (e) { log.error({ err: e, communeId: c }, 're-plan after node change failed'); }
        }
      }, 200);
    },

    // --- quiet hours
    getQuietHours(communeId: string) {
      const q = repo.quietHours(communeId);
      return { start: q.start, end: q.end, timezone: repo.timezone(communeId), updatedAt: q.updatedAt, updatedBy: q.updatedBy };
    },
    setQuietHours(actor: Actor, q: QuietHours) {
      checkQuietHours(q);
      const ctx = context(actor.communeId);
      const now = deps.now();
      const silenced: string[] = [];
      for (const s of ctx.schedules) {
        const rec = ctx.scheduleRecs.get(s.id)!;
        if (!s.enabled || s.priority === 'emergency' || s.quietOverride) continue;
        // Finished schedules cannot sound again: they do not hold the setting back.
        if (s.rule.onceAt !== undefined && s.rule.onceAt < now) continue;
        if (s.rule.untilDay !== undefined && s.rule.untilDay < localDay(now, ctx.tz)) continue;
        const p = ctx.programmes.get(s.programmeId);
        if (!p) continue;
        const hits = quietHits(s.rule.times, p.durationMs, q);
        if (hits.length) silenced.push(`schedule '${s.id}' ('${rec.title ?? p.title}') at ${hits.map((h) => `${h.start}-${h.end}`).join(', ')}`);
      }
      if (silenced.length) {
        throw conflict('QUIET_HOURS_CONFLICT', `quiet hours ${q.start}-${q.end} overlap existing schedules: ${silenced.slice(0, 10).join('; ')}`
          + `${silenced.length > 10 ? `; and ${silenced.length - 10} more` : ''}. Move or override those schedules first.`);
      }
      const old = repo.quietHours(actor.communeId);
      repo.setQuietHours(actor.communeId, q, now, actor.username);
      store.audit(actor.communeId, now, actor.username, 'settings.quiet_hours', actor.communeId, { from: { start: old.start, end: old.end }, to: q });
      replanCommune(actor.communeId);
      return api.getQuietHours(actor.communeId);
    },

    // --- programmes
    listProgrammes(communeId: string) {
      const counts = repo.scheduleCountByProgramme(communeId);
      return repo.listProgrammes(communeId).map((p) => programmeDto(p, counts.get(p.id) ?? 0));
    },
    getProgramme(communeId: string, id: string) {
      const p = repo.getProgramme(communeId, id);
      if (!p) throw notFound('programme', id);
      return programmeDto(p, schedulesOf(communeId, id).length);
    },
    async createProgramme(actor: Actor, b: ProgrammeCreate) {
      const id = b.id ?? newId('p');
      if (repo.programmeExistsAnywhere(id)) throw conflict('PROGRAMME_EXISTS', `programme '${id}' already exists`);
      const items = await resolveItems(actor, b.items, []);
      const durationMs = items.reduce((a, it) => a + itemDuration(actor.communeId, it), 0);
      if (durationMs > MAX_PROGRAMME_MS) throw badRequest('PROGRAMME_TOO_LONG', `items: the programme would last ${formatDuration(durationMs)}; at most ${MAX_PROGRAMME_MS / 3600_000} h`);
      const now = deps.now();
      const rec: ProgrammeRec = {
        id, communeId: actor.communeId, title: b.title, description: b.description ?? null, items, durationMs, priority: b.priority,
        volume: b.volume ?? null, onInterrupt: b.onInterrupt, createdBy: actor.username, createdAt: now, updatedAt: now,
      };
      // Re-checked after the await: another request may have taken the id meanwhile.
      if (repo.programmeExistsAnywhere(id)) throw conflict('PROGRAMME_EXISTS', `programme '${id}' already exists`);
      repo.tx(() => repo.putProgramme(rec, true));
      store.audit(actor.communeId, now, actor.username, 'programme.create', id, { title: b.title, items: items.length, durationMs, priority: b.priority });
      return programmeDto(rec, 0);
    },
    async updateProgramme(actor: Actor, id: string, b: ProgrammeUpdate) {
      const cur = repo.getProgramme(actor.communeId, id);
      if (!cur) throw notFound('programme', id);
      const items = b.items ? await resolveItems(actor, b.items, cur.items) : cur.items;
      const durationMs = items.reduce((a, it) => a + itemDuration(actor.communeId, it), 0);
      if (durationMs > MAX_PROGRAMME_MS) throw badRequest('PROGRAMME_TOO_LONG', `items: the programme would last ${formatDuration(durationMs)}; at most ${MAX_PROGRAMME_MS / 3600_000} h`);
      const rec: ProgrammeRec = {
        ...cur, items, durationMs,
        title: b.title ?? cur.title,
        description: b.description === undefined ? cur.description : b.description,
        priority: b.priority ?? cur.priority,
        volume: b.volume === undefined ? cur.volume : b.volume,
        onInterrupt: b.onInterrupt ?? cur.onInterrupt,
        updatedAt: deps.now(),
      };
      // A longer programme can push its schedules into quiet hours or make their slots overlap.
      if (durationMs !== cur.durationMs) {
        const ctx = context(actor.communeId);
        for (const s of schedulesOf(actor.communeId, id)) {
          const rule = compiled(s, ctx.tz);
          try { checkSelfOverlap(rule, durationMs); } catch (e) {
            if (e instanceof AppError) throw new AppError(e.statusCode, e.code, `schedule '${s.id}': ${e.message}`);
            throw e;
          }
          if (s.priority === 'emergency' || s.quietOverride) continue;
          const hits = quietHits(rule.times, durationMs, ctx.quiet);
          if (hits.length) {
            throw conflict('QUIET_HOURS', `the programme would now last ${formatDuration(durationMs)}, so schedule '${s.id}' would sound inside quiet hours `
              + `${ctx.quiet.start}-${ctx.quiet.end}: ${hits.map((h) => `${h.start}-${h.end}`).join(', ')}. Shorten it, move the schedule, or override it.`);
          }
        }
      }
      repo.tx(() => repo.putProgramme(rec, false));
      store.audit(actor.communeId, rec.updatedAt, actor.username, 'programme.update', id, { ...b, items: b.items ? items.length : undefined, durationMs });
      replanCommune(actor.communeId);
      return programmeDto(rec, schedulesOf(actor.communeId, id).length);
    },
    deleteProgramme(actor: Actor, id: string) {
      const cur = repo.getProgramme(actor.communeId, id);
      if (!cur) throw notFound('programme', id);
      const users = schedulesOf(actor.communeId, id);
      if (users.length) throw conflict('PROGRAMME_IN_USE', `programme '${id}' is used by schedule${users.length > 1 ? 's' : ''} ${users.map((s) => `'${s.id}'`).join(', ')}; delete those first`);
      repo.deleteProgramme(actor.communeId, id);
      store.audit(actor.communeId, deps.now(), actor.username, 'programme.delete', id, { title: cur.title });
    },

    // --- schedules
    listSchedules(communeId: string, f: { programmeId?: string | undefined; enabled?: boolean | undefined } = {}) {
      return repo.listSchedules(communeId)
        .filter((s) => (f.programmeId === undefined || s.programmeId === f.programmeId) && (f.enabled === undefined || s.enabled === f.enabled))
        .map(scheduleDto);
    },
    getSchedule(communeId: string, id: string) {
      const s = repo.getSchedule(communeId, id);
      if (!s) throw notFound('schedule', id);
      return scheduleDto(s);
    },
    createSchedule(actor: Actor, b: ScheduleCreate) {
      const id = b.id ?? newId('s');
      if (repo.scheduleExistsAnywhere(id)) throw conflict('SCHEDULE_EXISTS', `schedule '${id}' already exists`);
      const ctx = context(actor.communeId);
      const pr = repo.getProgramme(actor.communeId, b.programmeId);
      if (!pr) throw new AppError(404, 'PROGRAMME_NOT_FOUND', `programmeId: programme '${b.programmeId}' does not exist`);
      const priority = b.priority ?? pr.priority;
      const now = deps.now();
      const rec: ScheduleRec = {
        id, communeId: actor.communeId, programmeId: b.programmeId, title: b.title ?? null, recurrence: b.recurrence,
        validFrom: b.validFrom ?? null, validUntil: b.validUntil ?? null, exceptions: [...new Set(b.exceptions)].sort(),
        targets: dedupeTargets(b.targets), priority, rank: b.rank ?? nextRank(actor.communeId, priority), volume: b.volume ?? null,
        quietOverride: b.quietOverride, quietOverrideReason: b.quietOverride ? (b.quietOverrideReason ?? null) : null, enabled: b.enabled,
        createdBy: actor.username, createdAt: now, updatedBy: actor.username, updatedAt: now,
      };
      const checked = checkSchedule(ctx, rec, { checkPast: true });
      repo.tx(() => repo.putSchedule(rec, true));
      auditSchedule(actor, 'schedule.create', rec, checked, { programmeId: rec.programmeId, recurrence: rec.recurrence, targets: rec.targets, validFrom: rec.validFrom, validUntil: rec.validUntil });
      replanCommune(actor.communeId);
      return saveReply(actor.communeId, rec, checked);
    },
    updateSchedule(actor: Actor, id: string, b: ScheduleUpdate) {
      const cur = repo.getSchedule(actor.communeId, id);
      if (!cur) throw notFound('schedule', id);
      const ctx = context(actor.communeId);
      const quietOverride = b.quietOverride ?? cur.quietOverride;
      const rec: ScheduleRec = {
        ...cur,
        programmeId: b.programmeId ?? cur.programmeId,
        title: b.title === undefined ? cur.title : b.title,
        recurrence: b.recurrence ?? cur.recurrence,
        validFrom: b.validFrom === undefined ? cur.validFrom : b.validFrom,
        validUntil: b.validUntil === undefined ? cur.validUntil : b.validUntil,
        exceptions: b.exceptions ? [...new Set(b.exceptions)].sort() : cur.exceptions,
        targets: b.targets ? dedupeTargets(b.targets) : cur.targets,
        priority: b.priority ?? cur.priority,
        rank: b.rank ?? cur.rank,
        volume: b.volume === undefined ? cur.volume : b.volume,
        quietOverride,
        quietOverrideReason: !quietOverride ? null : b.quietOverrideReason === undefined ? cur.quietOverrideReason : b.quietOverrideReason,
        enabled: b.enabled ?? cur.enabled,
        updatedBy: actor.username,
        updatedAt: Math.max(deps.now(), cur.updatedAt + 1),
      };
      // "In the past" is judged only on what changes when: editing the title of a finished one-off is fine.
      const whenChanged = b.recurrence !== undefined || b.validUntil !== undefined || b.validFrom !== undefined || (b.enabled === true && !cur.enabled);
      const checked = checkSchedule(ctx, rec, { checkPast: whenChanged });
      repo.tx(() => repo.putSchedule(rec, false));
      auditSchedule(actor, 'schedule.update', rec, checked, { changes: b });
      replanCommune(actor.communeId);
      return saveReply(actor.communeId, rec, checked);
    },
    deleteSchedule(actor: Actor, id: string) {
      const cur = repo.getSchedule(actor.communeId, id);
      if (!cur) throw notFound('schedule', id);
      repo.deleteSchedule(actor.communeId, id);
      ruleCache.delete(id);
      store.audit(actor.communeId, deps.now(), actor.username, 'schedule.delete', id, { programmeId: cur.programmeId, recurrence: cur.recurrence });
      replanCommune(actor.communeId);
    },
    /** Operator order among equal-priority schedules: ids[0] gets rank 0 (plays first), ids[1] rank 1, … */
    reorderSchedules(actor: Actor, ids: readonly string[]) {
      if (new Set(ids).size !== ids.length) throw badRequest('DUPLICATE_ID', 'ids: a schedule is listed twice');
      const recs = ids.map((id) => { const s = repo.getSchedule(actor.communeId, id); if (!s) throw notFound('schedule', id); return s; });
      const prios = new Set(recs.map((s) => s.priority));
      if (prios.size > 1) {
        throw badRequest('MIXED_PRIORITY', `ids: only schedules of equal priority can be reordered (got ${recs.map((s) => `${s.id}: ${s.priority}`).join(', ')}); priority itself decides between levels`);
      }
      const now = deps.now();
      repo.tx(() => recs.forEach((s, i) => repo.setRank(actor.communeId, s.id, i, now, actor.username)));
      store.audit(actor.communeId, now, actor.username, 'schedule.reorder', null, { order: ids, priority: recs[0]!.priority });
      replanCommune(actor.communeId);
      return ids.map((id) => scheduleDto(repo.getSchedule(actor.communeId, id)!));
    },
    /** Conflicts of an existing schedule, as they are now (the save reply gives the same list). */
    scheduleConflicts(communeId: string, id: string) {
      const s = repo.getSchedule(communeId, id);
      if (!s) throw notFound('schedule', id);
      const ctx = context(communeId);
      const p = ctx.programmes.get(s.programmeId);
      if (!p) return { conflicts: [], conflictsTruncated: 0, conflictHorizonDays: conflictDays };
      const c = conflictsFor(ctx, s, { rule: compiled(s, ctx.tz), programme: p, warnings: [], quietSlots: [] });
      return { conflicts: c.list, conflictsTruncated: c.truncated, conflictHorizonDays: conflictDays };
    },

    // --- preview: the same expansion that feeds the plans
    preview(communeId: string, q: { from?: number | undefined; hours: number; nodeId?: string | undefined; zoneId?: string | undefined }) {
      if (q.nodeId && !store.getNode(communeId, q.nodeId)) throw notFound('node', q.nodeId);
      if (q.zoneId && !store.getZone(communeId, q.zoneId)) throw notFound('zone', q.zoneId);
      const ctx = context(communeId);
      const from = q.from ?? deps.now();
      const to = from + q.hours * 3600_000;
      const exp = expandAirings({ from, to, schedules: ctx.schedules, programmes: ctx.programmes, nodes: ctx.nodes });
      const allNodes = store.listNodes(communeId);
      const shown = allNodes.filter((n) => (!q.nodeId || n.id === q.nodeId) && (!q.zoneId || n.zoneId === q.zoneId));
      const view = (a: Airing) => ({
        airingId: a.id, scheduleId: a.scheduleId, programmeId: a.programmeId, title: a.title, startAt: a.startAt, endAt: a.startAt + a.durationMs,
        startLocal: formatLocal(a.startAt, ctx.tz), endLocal: formatLocal(a.startAt + a.durationMs, ctx.tz), durationMs: a.durationMs,
        priority: a.priority, rank: a.rank, quietOverride: a.quietOverride,
      });
      const nodes = shown.map((n) => {
        const list = exp.byNode.get(n.id) ?? [];
        const ov = overlapsOnNode(list);
        return { nodeId: n.id, name: n.name, zoneId: n.zoneId, airings: list.map((a) => ({ ...view(a), ...ov.get(a.id)! })) };
      });
      const zoneIds = q.nodeId ? [...new Set(shown.map((n) => n.zoneId))] : q.zoneId ? [q.zoneId] : store.listZones(communeId).map((z) => z.id);
      const zones = zoneIds.map((zid) => {
        const z = store.getZone(communeId, zid)!;
        const members = allNodes.filter((n) => n.zoneId === zid).map((n) => n.id);
        const byAiring = new Map<string, { a: Airing; nodeIds: string[] }>();
        for (const nid of members) {
          for (const a of exp.byNode.get(nid) ?? []) {
            let e = byAiring.get(a.id);
            if (!e) byAiring.set(a.id, (e = { a, nodeIds: [] }));
            e.nodeIds.push(nid);
          }
        }
        const airings = [...byAiring.values()].sort((x, y) => x.a.startAt - y.a.startAt).map((e) => ({ ...view(e.a), nodeIds: e.nodeIds, nodeCount: e.nodeIds.length }));
        return { zoneId: zid, name: z.name, nodeCount: members.length, airings };
      });
      return { from, to, timezone: ctx.tz, quietHours: ctx.quiet, nodes, zones };
    },

    // --- plans
    nodePlan(communeId: string, nodeId: string) {
      if (!store.getNode(communeId, nodeId)) throw notFound('node', nodeId);
      const p = repo.nodePlan(nodeId);
      const now = deps.now();
      const airings = p ? repo.listPlanAirings(communeId, { from: now, to: p.windowTo, nodeIds: [nodeId], limit: 2000 }) : [];
      return {
        nodeId, version: p?.version ?? 0, ackedVersion: p?.ackedVersion ?? null, ackStatus: p?.ackStatus ?? null, ackError: p?.ackError ?? null,
        ackedAt: p?.ackedAt ?? null, missing: p?.missing ?? [], upToDate: !!p && p.ackedVersion === p.version,
        publishedAt: p?.publishedAt ?? null, from: p?.windowFrom ?? null, to: p?.windowTo ?? null, airingCount: p?.airingCount ?? 0,
        airings: airings.map((a) => ({ airingId: a.airingId, startAt: a.startAt, durationMs: a.durationMs, title: a.title, priority: a.priority })),
      };
    },

    // --- airings with their receipt state ("scheduled vs played")
    airings(communeId: string, q: { from?: number | undefined; to?: number | undefined; nodeId?: string | undefined; zoneId?: string | undefined; scheduleId?: string | undefined; limit: number }) {
      const now = deps.now();
      const from = q.from ?? now - DAY_MS;
      const to = q.to ?? now + DAY_MS;
      if (from > to) throw badRequest('BAD_RANGE', '`from` must not be after `to`');
      const nodeIds = nodeIdsFilter(communeId, q.nodeId, q.zoneId);
      const rows = repo.listPlanAirings(communeId, { from, to, nodeIds, scheduleId: q.scheduleId, limit: q.limit });
      return { from, to, ...withStates(communeId, rows, now) };
    },
    airing(communeId: string, id: string) {
      const rows = repo.planAiringsOf(communeId, id);
      if (rows.length === 0) throw notFound('airing', id);
      return withStates(communeId, rows, deps.now());
    },
    receipts(communeId: string, q: { from?: number | undefined; to?: number | undefined; nodeId?: string | undefined; airingId?: string | undefined; limit: number }) {
      if (q.from !== undefined && q.to !== undefined && q.from > q.to) throw badRequest('BAD_RANGE', '`from` must not be after `to`');
      return repo.listReceipts(communeId, q);
    },
  };

  function withStates(communeId: string, rows: PlanAiringRec[], now: number) {
    const tz = repo.timezone(communeId);
    const receipts = repo.receiptsFor(communeId, rows.map((r) => ({ nodeId: r.nodeId, airingId: r.airingId })));
    const summary = { total: 0, scheduled: 0, started: 0, finished: 0, interrupted: 0, failed: 0, noReceipt: 0 };
    const items = rows.map((r) => {
      const rs = receipts.get(`${r.nodeId}|${r.airingId}`);
      const state = airingState(r, rs, now);
      summary.total++;
      if (state === 'no_receipt') summary.noReceipt++; else summary[state]++;
      return {
        airingId: r.airingId, nodeId: r.nodeId, scheduleId: r.scheduleId, programmeId: r.programmeId, title: r.title, startAt: r.startAt,
        startLocal: formatLocal(r.startAt, tz), durationMs: r.durationMs, priority: r.priority, state,
        receipts: (rs ?? []).map((x) => ({ id: x.id, state: x.state, at: x.at, startErrorMs: x.startErrorMs, reason: x.reason, playedMs: x.playedMs })),
      };
    });
    return { summary, items };
  }

  return api;
}
export type Scheduling = ReturnType<typeof createScheduling>;
