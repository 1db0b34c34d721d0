/**
 * Scheduled relays: the `relay` items of planned airings played through the live path.
 *
 * An airing is played by each agent from its plan; a relay item cannot be cached, so the controller pulls
 * the stream (ffmpeg, controller/src/live/sources.ts) and sends it as a live session to exactly the
 * airing's nodes, bound to the item (`LiveAnnouncement.airing`). The agent does not claim its speakers for
 * that session: the airing program reads it at the item's slot (audio-pipeline/src/airing-program.ts), and
 * plays silence of the item's length (receipt `relay_not_received:<item>`) when nothing came.
 *
 * Timing: the session is announced `leadMs` before the item and its timeline is fixed so that the first
 * relay sample SOUNDS at the item's start, controller time (`audioAt`: stream position 0 is captured at
 * audioAt − D, jitter-buffer.ts (1)); D (`delayMs`) covers the network, and costs nothing on a stream
 * that is not live in the room.
 *
 * Which items: the preview of the scheduling service, i.e. the same expansion (scheduling/expand.ts) and
 * the same programme/schedule state that the node plans are built from, over [now, now + lookaheadMs).
 * It is recomputed at once when the scheduling service re-plans the commune (`scheduling.onReplanned`: a
 * schedule or programme edited or deleted, quiet hours, a node moved, the rolling re-plan), and every
 * `refreshMs` otherwise (a fallback: the window moves, and a missed notification heals). A pending start
 * whose item is gone or changed is cancelled or rescheduled; a running session whose item is gone is
 * stopped, one whose item changed (url, nodes, time) is stopped and started again for the rest.
 *
 * Late and restarted: an item whose start is too close (or past: the controller restarted while it
 * played, which ends every live session) is started LATE, for what is left of it, with its first sample
 * at now + D + `minJoinMs` (the agents keep the item's slot: silence until then). Less than
 * `minRemainingMs` left: skipped, logged and audited (`live.relay_skipped`). A session that ends before
 * its item does (the stream failed or hung) is started again for the rest, at most `retries` times.
 *
 * Sessions are started through `live.startSession` with actor `schedule` (audited like every session).
 */
import type { Logger } from 'pino';
import type { Priority } from '../../../schemas/src/index.js';
import type { Scheduling } from '../scheduling/index.js';
import type { Store } from '../store/store.js';
import type { Live } from './index.js';

export interface ScheduledRelayOptions {
  /** Announce the session this long before the item starts, ms. */
  leadMs: number;
  /** Playout delay D of scheduled relay sessions, ms. */
  delayMs: number;
  /** How often starts, ends and plan changes are checked, ms. */
  pollMs: number;
  /** Recompute the airings this often even without a re-plan notification (the window moves), ms. */
  refreshMs: number;
  /** Airings looked at: [now, now + lookaheadMs). */
  lookaheadMs: number;
  /** Agents get at least this long between the announcement and the first frame, ms. */
  minJoinMs: number;
  /** A late start needs at least this much of the item left, ms. */
  minRemainingMs: number;
  /** A session ended before its item is started again for the rest at most this often. */
  retries: number;
  /** Wait this long before such a restart, ms. */
  retryDelayMs: number;
}

const DEFAULTS: ScheduledRelayOptions = {
  leadMs: 3000,
  delayMs: 1000,
  pollMs: 250,
  refreshMs: 60_000,
  lookaheadMs: 10 * 60_000,
  minJoinMs: 1000,
  minRemainingMs: 2000,
  retries: 2,
  retryDelayMs: 1000,
};

export interface ScheduledRelayDeps {
  store: Store;
  live: Live;
  scheduling: Scheduling;
  log: Logger;
  /** Controller time. */
  now: () => number;
  options?: Partial<ScheduledRelayOptions>;
}

type ItemState = 'pending' | 'starting' | 'running' | 'done';

/** One relay item of one airing. */
export interface ScheduledRelayItem {
  key: string;
  communeId: string;
  airingId: string;
  itemIndex: number;
  title: string;
  priority: Priority;
  url: string;
  /** The item's slot, controller time. */
  startAt: number;
  endAt: number;
  nodeIds: string[];
  state: ItemState;
  sessionId: string | null;
  /** Sessions started for it so far. */
  attempts: number;
  /** When its current session's first sample sounds (late starts: after startAt). */
  audioAt: number | null;
  /** Why it was skipped or gave up, if it did. */
  note: string | null;
}

interface Entry extends ScheduledRelayItem {
  sig: string;
  notBefore: number;
}

/** Programme items as the scheduling service shows them (each stored item is one airing item, in order). */
interface ProgrammeView { items: { kind: string; durationMs: number; url?: string }[] }

export function createScheduledRelays(deps: ScheduledRelayDeps) {
  const { log, now, live, scheduling, store } = deps;
  const opt: ScheduledRelayOptions = { ...DEFAULTS, ...(deps.options ?? {}) };
  const entries = new Map<string, Entry>();
  /** Per commune: the controller time of the last expansion (absent: expand at the next poll). */
  const seen = new Map<string, number>();
  const qCommunes = store.db.prepare<[], { id: string }>('SELECT id FROM communes ORDER BY id');
  let timer: NodeJS.Timeout | undefined;
  let offReplanned: (() => void) | undefined;
  let running = false;
  let polling = false;

  function audit(e: Entry, action: string, detail: Record<string, unknown>) {
    try { store.audit(e.communeId, now(), 'schedule', action, e.airingId, { itemIndex: e.itemIndex, url: e.url, ...detail }); }
    catch (err) { log.warn({ err: (err as Error).message }, 'audit write failed'); }
  }

  /** The relay items of the commune's airings in the window, from the same expansion as the plans. */
  function expand(communeId: string, t: number): Map<string, Omit<Entry, 'state' | 'sessionId' | 'attempts' | 'audioAt' | 'note' | 'notBefore'>> {
    const view = scheduling.preview(communeId, { from: t, hours: opt.lookaheadMs / 3600_000 });
    const airings = new Map<string, { a: (typeof view.nodes)[number]['airings'][number]; nodeIds: string[] }>();
    for (const n of view.nodes) {
      for (const a of n.airings) {
        let x = airings.get(a.airingId);
        if (!x) airings.set(a.airingId, (x = { a, nodeIds: [] }));
        x.nodeIds.push(n.nodeId);
      }
    }
    const programmes = new Map<string, ProgrammeView | null>();
    const out = new Map<string, Omit<Entry, 'state' | 'sessionId' | 'attempts' | 'audioAt' | 'note' | 'notBefore'>>();
    for (const { a, nodeIds } of airings.values()) {
      let p = programmes.get(a.programmeId);
      if (p === undefined) {
        try { p = scheduling.getProgramme(communeId, a.programmeId) as ProgrammeView; } catch { p = null; }
        programmes.set(a.programmeId, p);
      }
      if (!p || !p.items.some((it) => it.kind === 'relay')) continue;
      const total = p.items.reduce((s, it) => s + it.durationMs, 0);
      if (total !== a.durationMs) {
        // The programme changed between the expansion and this read: the next refresh has both agree.
        log.warn({ airingId: a.airingId, programmeId: a.programmeId }, 'scheduled relay: programme and airing disagree on duration; skipped this round');
        seen.delete(communeId);
        continue;
      }
      let off = 0;
      p.items.forEach((it, itemIndex) => {
        const startAt = a.startAt + off;
        off += it.durationMs;
        if (it.kind !== 'relay' || !it.url) return;
        const endAt = startAt + it.durationMs;
        if (endAt <= t) return;
        const ids = [...nodeIds].sort();
        const key = `${a.airingId}#${itemIndex}`;
        out.set(key, {
          key, communeId, airingId: a.airingId, itemIndex, title: `${a.title} (relay)`.slice(0, 200), priority: a.priority, url: it.url,
          startAt, endAt, nodeIds: ids, sig: JSON.stringify([it.url, startAt, endAt, a.priority, ids]),
        });
      });
    }
    return out;
  }

  async function stopSession(e: Entry, reason: string) {
    if (!e.sessionId) return;
    try { await live.stopSession(e.communeId, 'schedule', e.sessionId, reason); }
    catch (err) { log.warn({ err: (err as Error).message, sessionId: e.sessionId }, 'scheduled relay: stopping the session failed'); }
  }

  /** Reconcile what is known for a commune with a fresh expansion (a re-plan). */
  function reconcile(communeId: string, t: number) {
    const fresh = expand(communeId, t);
    for (const [key, e] of entries) {
      if (e.communeId !== communeId || e.endAt <= t) continue;
      const f = fresh.get(key);
      if (f && f.sig === e.sig) continue;
      const why = f ? 'airing changed' : 'airing no longer planned';
      if (e.state === 'pending') {
        log.info({ airingId: e.airingId, itemIndex: e.itemIndex, why }, 'scheduled relay: pending start cancelled');
        entries.delete(key);
      } else if (e.state === 'running') {
        log.info({ airingId: e.airingId, itemIndex: e.itemIndex, sessionId: e.sessionId, why }, 'scheduled relay: stopping its session (re-planned)');
        void stopSession(e, f ? 'airing_changed' : 'airing_cancelled');
        entries.delete(key);
      } else if (e.state === 'starting') {
        // Its session is being created: mark it; the start completion stops it.
        e.note = why;
        entries.delete(key);
      } else if (f) {
        entries.delete(key);
      }
    }
    for (const [key, f] of fresh) {
      if (entries.has(key)) continue;
      entries.set(key, { ...f, state: 'pending', sessionId: null, attempts: 0, audioAt: null, note: null, notBefore: -Infinity });
      log.debug({ airingId: f.airingId, itemIndex: f.itemIndex, startAt: f.startAt, nodes: f.nodeIds.length }, 'scheduled relay planned');
    }
  }

  async function launch(e: Entry, t: number) {
    const D = opt.delayMs;
    // On time when the agents still have minJoinMs before the first frame leaves; otherwise late.
    const audioAt = t + D + opt.minJoinMs <= e.startAt ? e.startAt : Math.ceil(t + D + opt.minJoinMs);
    const left = e.endAt - audioAt;
    if (left < opt.minRemainingMs) {
      e.state = 'done';
      e.note = `skipped: ${Math.max(0, Math.round(left))} ms of the item left at ${e.attempts ? 'restart' : 'start'}`;
      log.warn({ airingId: e.airingId, itemIndex: e.itemIndex, leftMs: Math.round(left) }, 'scheduled relay skipped: too little of the item left');
      audit(e, 'live.relay_skipped', { reason: e.note });
      return;
    }
    if (audioAt > e.startAt) log.warn({ airingId: e.airingId, itemIndex: e.itemIndex, lateMs: audioAt - e.startAt }, 'scheduled relay starts late (restart, re-plan or retry)');
    e.state = 'starting';
    e.attempts++;
    e.audioAt = audioAt;
    try {
      const info = await live.startSession(e.communeId, 'schedule', {
        kind: 'relay', title: e.title, priority: e.priority, targets: { commune: false, zones: [], nodes: e.nodeIds },
        url: e.url, durationMs: left, repeat: 1, delayMs: D, airing: { airingId: e.airingId, itemIndex: e.itemIndex }, audioAt,
      });
      e.sessionId = info.sessionId;
      if (entries.get(e.key) !== e || !running) {
        // Re-planned (or stopping) while it was being started.
        e.state = 'done';
        await stopSession(e, 'airing_cancelled');
        return;
      }
      e.state = 'running';
      log.info({ airingId: e.airingId, itemIndex: e.itemIndex, sessionId: info.sessionId, audioAt, durationMs: left, nodes: e.nodeIds.length }, 'scheduled relay session started');
    } catch (err) {
      const msg = (err as Error).message;
      log.error({ airingId: e.airingId, itemIndex: e.itemIndex, err: msg }, 'scheduled relay: the session could not start');
      e.note = `start failed: ${msg}`.slice(0, 200);
      if (e.attempts > opt.retries) { e.state = 'done'; audit(e, 'live.relay_skipped', { reason: e.note }); return; }
      e.state = 'pending';
      e.notBefore = now() + opt.retryDelayMs;
    }
  }

  function check(e: Entry, t: number) {
    switch (e.state) {
      case 'pending':
        if (t >= e.startAt - opt.leadMs && t >= e.notBefore) void launch(e, t);
        return;
      case 'running': {
        let st: { state: string; endReason: string | null } | undefined;
        try { st = live.get(e.communeId, e.sessionId!); } catch { st = undefined; }
        if (st && st.state === 'active') {
          // Safety net: the source is bounded by the item's duration; this only catches a stuck session.
          if (t > e.endAt + opt.delayMs + 5000) void stopSession(e, 'item_over');
          return;
        }
        const reason = st?.endReason ?? 'gone';
        if (e.endAt - t >= opt.minRemainingMs + opt.delayMs + opt.minJoinMs && e.attempts <= opt.retries && reason !== 'airing_cancelled' && reason !== 'airing_changed') {
          log.warn({ airingId: e.airingId, itemIndex: e.itemIndex, sessionId: e.sessionId, reason }, 'scheduled relay ended before its item: starting it again for the rest');
          e.state = 'pending';
          e.notBefore = t + opt.retryDelayMs;
          e.note = `session ended early: ${reason}`.slice(0, 200);
        } else {
          e.state = 'done';
        }
        return;
      }
      case 'starting': case 'done':
        return;
    }
  }

  function poll() {
    if (!running || polling) return;
    polling = true;
    try {
      const t = now();
      for (const { id } of qCommunes.all()) {
        const at = seen.get(id);
        if (at !== undefined && t - at < opt.refreshMs && t >= at) continue;
        try {
          reconcile(id, t);
          seen.set(id, t);
        } catch (err) {
          log.error({ err, communeId: id }, 'scheduled relay: expanding the airings failed');
        }
      }
      for (const e of entries.values()) check(e, t);
      for (const [key, e] of entries) if (e.state !== 'running' && e.state !== 'starting' && e.endAt + 60_000 < t) entries.delete(key);
    } finally {
      polling = false;
    }
  }

  return {
    /** Start after live.start() (it ends sessions a previous run left) and scheduling.start(). */
    start() {
      if (running) return;
      running = true;
      // A re-plan is reconciled at once (inside the request that edited the schedule), not at the next
      // refresh. If a poll is under way, the commune stays unseen and the next poll (pollMs) takes it.
      offReplanned = scheduling.onReplanned((communeId) => {
        seen.delete(communeId);
        poll();
      });
      poll();
      timer = setInterval(poll, opt.pollMs);
      timer.unref();
    },
    /** Stop planning; sessions already on air end with live.stop(). Idempotent. */
    stop() {
      running = false;
      offReplanned?.();
      offReplanned = undefined;
      clearInterval(timer);
      timer = undefined;
    },
    /** Recompute now (after a bulk change or a clock step), instead of at the next poll. */
    refresh() {
      seen.clear();
      poll();
    },
    /** Relay items known now (pending, running, done in the last minute). */
    items(communeId?: string): ScheduledRelayItem[] {
      return [...entries.values()].filter((e) => !communeId || e.communeId === communeId)
        .map(({ sig: _sig, notBefore: _nb, ...e }) => ({ ...e, nodeIds: [...e.nodeIds] }))
        .sort((a, b) => a.startAt - b.startAt || a.itemIndex - b.itemIndex);
    },
    options: () => ({ ...opt }),
  };
}
export type ScheduledRelays = ReturnType<typeof createScheduledRelays>;
