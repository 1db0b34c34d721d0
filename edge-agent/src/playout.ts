import { pino, type Logger } from 'pino';
import { priorityRank, type Airing, type Plan, type Priority } from '../../schemas/src/index.js';
import type { MediaCache, MediaRef, WantedMedia } from './cache.js';
import type { Clock, Timers } from './clock.js';
import type { Hardware } from './hardware.js';
import { prepareAiringProgram, type AiringProgram, type RelayFeeds } from '../../audio-pipeline/src/airing-program.js';
import type { EndReason, Player, Program } from './player.js';
import { quietHoursVerdict } from './quiet-hours.js';
import type { ReceiptQueue } from './receipts.js';
import type { ClockSource } from './time-sync.js';

/**
 * Store-and-forward playout: plays each airing of the plan at its start time by the agent's OWN clock.
 *
 * Timing: an airing's start in controller time is converted to the hardware clock through the clock
 * source (`toLocal`). A timer only PREPARES it, early (amplifier warm-up + a margin: wake the amp, fetch
 * missing media, open the decoder); the player then places the first sample by sample position against
 * the DAC's presentation time, so timer lateness does not reach the start error.
 *
 * One timer per agent at most, and none when nothing is planned (a fleet bench runs thousands of idle
 * agents on two cores). Receipts go through the on-disk queue.
 */
export interface PlayoutOptions {
  hw: Hardware;
  player: Player;
  /** The hardware clock (what the DAC's presentation times are on). */
  clock: Clock;
  timers: Timers;
  clockSource: ClockSource;
  cache: MediaCache;
  receipts: ReceiptQueue;
  log?: Logger;
  /** Apply the effective volume for the airing on the speakers (priority undefined: none plays). */
  setProgrammeVolume(volume: number | undefined, priority: Priority | undefined): void;
  /** An airing starting within warnLeadMs still lacks media (publish a CacheWarningEvent). */
  onCacheWarning(w: { airingId: string; mediaIds: string[]; startAt: number; detail?: string }): void;
  /** Preparation starts this long before start, on top of the amplifier warm-up; default 2 s. */
  prepareLeadMs?: number;
  /** Warn this long before start if media is missing; default 10 min. */
  warnLeadMs?: number;
  /** Keep the amplifier on if another airing is prepared within this after one ends; default 60 s. */
  ampHoldMs?: number;
  /** Start late (media fetched at air time, agent restarted) only within this; default 5 min. */
  lateStartToleranceMs?: number;
  /** An interrupted airing may resume/restart until this long after its planned end; default 10 min. */
  resumeWindowMs?: number;
  /** Live feeds of scheduled relay items (edge-agent/src/live.ts); without it relays play as silence. */
  relays?: RelayFeeds;
}

type Phase = 'waiting' | 'preparing' | 'armed' | 'playing' | 'suspended' | 'done';

interface Slot {
  airing: Airing;
  key: string;
  phase: Phase;
  gen: number;
  program?: AiringProgram;
  warned: boolean;
  /** Times it has taken the speakers (0: never). */
  starts: number;
  resumeFromMs: number;
  mediaStreamed: boolean;
  /** Why the player is being told to stop it (cancelled); `silent` = agent shutdown, no receipt. */
  stopReason?: string;
  blockedBy?: string;
}

export type PlayoutReceiptReason =
  | 'quiet_hours' | 'media_missing' | 'missed' | 'preempted' | 'amplifier_fault' | 'cancelled' | 'agent_restart'
  | 'resume_expired' | 'media_streamed' | 'resumed' | 'restarted' | 'relay_not_received';

const MAX_TIMER_MS = 300_000;

function airingKey(a: Airing): string {
  return JSON.stringify([a.startAt, a.durationMs, a.priority, a.rank, a.volume, a.onInterrupt, a.quietOverride, a.items]);
}

export function mediaRefsOf(a: Airing): MediaRef[] {
  const out: MediaRef[] = [];
  for (const it of a.items) if (it.kind === 'media') out.push({ mediaId: it.mediaId, sha256: it.sha256, sizeBytes: it.sizeBytes, path: it.path });
  return out;
}

export function createPlayout(o: PlayoutOptions) {
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'playout' });
  const { hw, player, clock, timers, clockSource, cache, receipts } = o;
  const prepareLead = o.prepareLeadMs ?? 2000;
  const warnLead = o.warnLeadMs ?? 600_000;
  const ampHold = o.ampHoldMs ?? 60_000;
  const lateTolerance = o.lateStartToleranceMs ?? 300_000;
  const resumeWindow = o.resumeWindowMs ?? 600_000;
  const slots = new Map<string, Slot>();
  let plan: Plan | undefined;
  let timer: NodeJS.Timeout | undefined;
  /** Local clock time the timer is set for (diagnostics). */
  let wakeAt: number | undefined;
  let running = false;
  let offChange: (() => void) | undefined;

  const ctlNow = () => clockSource.toController(clock.now());
  const startLocal = (a: Airing) => clockSource.toLocal(a.startAt);
  const claimOf = (a: Airing) => ({ priority: a.priority, origin: 'scheduled' as const });

  function record(s: Slot, r: { state: 'started' | 'finished' | 'interrupted' | 'failed'; at?: number; reason?: string; startErrorMs?: number; interruptedBy?: string; playedMs?: number }, startedLocal?: number) {
    receipts.record({
      airingId: s.airing.id, state: r.state, at: r.at ?? ctlNow(),
      ...(r.reason !== undefined ? { reason: r.reason } : {}),
      ...(r.startErrorMs !== undefined ? { startErrorMs: Math.round(r.startErrorMs * 10) / 10 } : {}),
      ...(r.interruptedBy !== undefined ? { interruptedBy: r.interruptedBy.slice(0, 80) } : {}),
      ...(r.playedMs !== undefined ? { playedMs: r.playedMs } : {}),
    }, startedLocal !== undefined ? { startedLocal } : {});
  }

  function done(s: Slot) {
    s.phase = 'done';
    s.gen++;
    s.program?.close();
    s.program = undefined;
  }

  function fail(s: Slot, reason: PlayoutReceiptReason, detail?: string, extra: { interruptedBy?: string } = {}) {
    log.warn({ airingId: s.airing.id, reason, detail }, 'airing failed');
    if (s.phase === 'armed') player.unschedule(s.airing.id);
    done(s);
    record(s, { state: 'failed', reason: detail ? `${reason}: ${detail}`.slice(0, 200) : reason, ...extra });
    afterChange();
  }

  // ---- amplifier ----

  function ampNeeded(): boolean {
    if (player.playing()) return true;
    const nowL = clock.now();
    for (const s of slots.values()) {
      if (s.phase === 'preparing' || s.phase === 'armed' || s.phase === 'playing' || s.phase === 'suspended') return true;
      if (s.phase === 'waiting' && startLocal(s.airing) - hw.warmupMs - prepareLead - nowL <= ampHold) return true;
    }
    return false;
  }

  function wakeAmp(s: Slot) {
    const gen = s.gen;
    hw.setAmplifier(true).catch((e: Error & { code?: string }) => {
      if (gen !== s.gen || !running) return;
      if (e.code === 'SUPERSEDED') { wakeAmp(s); return; }
      if (s.phase === 'preparing' || s.phase === 'armed') fail(s, 'amplifier_fault', e.message);
      else log.warn({ airingId: s.airing.id, err: e.message }, 'amplifier did not start');
    });
  }

  function ampCheck() {
    if (!running || ampNeeded()) return;
    if (hw.status().amplifier.power) {
      log.debug('amplifier off: nothing due soon');
      hw.setAmplifier(false).catch((e: Error) => log.warn({ err: e.message }, 'amplifier off failed'));
    }
  }

  // ---- the one timer ----

  function reschedule() {
    timers.clearTimeout(timer);
    timer = undefined;
    wakeAt = undefined;
    if (!running) return;
    const nowL = clock.now();
    let next = Infinity;
    for (const s of slots.values()) {
      if (s.phase !== 'waiting') continue;
      const st = startLocal(s.airing);
      next = Math.min(next, st - hw.warmupMs - prepareLead);
      if (!s.warned && cache.missing(mediaRefsOf(s.airing)).length) next = Math.min(next, st - warnLead);
    }
    if (next === Infinity) return;
    // Long sleeps are cut short: the offset estimate and the hardware clock's drift move meanwhile.
    const delay = Math.max(0, Math.min(MAX_TIMER_MS, next - nowL));
    wakeAt = nowL + delay;
    timer = timers.setTimeout(tick, delay);
    timer.unref?.();
  }

  function tick() {
    timer = undefined;
    wakeAt = undefined;
    if (!running) return;
    const nowL = clock.now();
    for (const s of [...slots.values()]) {
      if (s.phase !== 'waiting') continue;
      const st = startLocal(s.airing);
      if (!s.warned && st - warnLead <= nowL) {
        s.warned = true;
        const missing = cache.missing(mediaRefsOf(s.airing));
        if (missing.length) {
          log.warn({ airingId: s.airing.id, missing }, 'airing starting soon lacks media');
          o.onCacheWarning({ airingId: s.airing.id, mediaIds: missing, startAt: s.airing.startAt, detail: cache.lastError(mediaRefsOf(s.airing).find((r) => missing.includes(r.mediaId))!.sha256) });
        }
      }
      if (st - hw.warmupMs - prepareLead <= nowL) void prepare(s);
    }
    reschedule();
  }

  // ---- preparing and arming ----

  async function prepare(s: Slot) {
    s.phase = 'preparing';
    const gen = ++s.gen;
    const a = s.airing;
    const p = plan!;
    const v = quietHoursVerdict(a, p.quietHours, p.timezone);
    if (!v.allowed) { fail(s, 'quiet_hours', v.detail); return; }
    wakeAmp(s);
    const missing = mediaRefsOf(a).filter((r) => !cache.has(r.sha256));
    if (missing.length) {
      // Not cached at air time: fetch it now from the controller if it is reachable, start late.
      s.mediaStreamed = true;
      log.warn({ airingId: a.id, missing: missing.map((m) => m.mediaId) }, 'media missing at air time; fetching now');
      try {
        await Promise.all(missing.map((r) => cache.fetchNow(r)));
      } catch (e) {
        if (gen !== s.gen) return;
        fail(s, 'media_missing', (e as Error).message);
        return;
      }
      if (gen !== s.gen) return;
    }
    let program: AiringProgram;
    try {
      program = await prepareAiringProgram({
        id: a.id, items: a.items, media: cache, startOffsetMs: s.resumeFromMs, timebase: clockSource, ...(s.resumeFromMs === 0 ? { dueAt: a.startAt } : {}),
        ...(o.relays ? { relays: o.relays } : {}),
        onItemError: (it, err) => log.error({ airingId: a.id, item: it.kind, err: err.message }, 'item cannot be decoded; playing silence in its place'),
      });
    } catch (e) {
      if (gen === s.gen) fail(s, 'media_missing', (e as Error).message);
      return;
    }
    if (gen !== s.gen || !running) { program.close(); return; }
    const lateBy = ctlNow() - a.startAt;
    if (lateBy > lateTolerance || ctlNow() >= a.startAt + a.durationMs) {
      program.close();
      fail(s, s.mediaStreamed ? 'media_missing' : 'missed', `${Math.round(lateBy)} ms after the start`);
      return;
    }
    arm(s, program, startLocal(a));
  }

  function arm(s: Slot, program: AiringProgram, atLocal: number) {
    s.program = program;
    s.phase = 'armed';
    const a = s.airing;
    player.schedule(program, claimOf(a), atLocal, {
      onStart: (pt) => onStart(s, program, pt),
      onEnd: (why, by, at) => onEnd(s, program, why, by, at),
      onBlocked: (incumbent) => onBlocked(s, program, incumbent),
    });
    log.debug({ airingId: a.id, atLocal, inMs: Math.round(atLocal - clock.now()) }, 'airing armed');
  }

  function onStart(s: Slot, program: AiringProgram, pt: number) {
    if (s.program !== program) return;
    s.phase = 'playing';
    const a = s.airing;
    const at = clockSource.toController(pt);
    const first = s.starts === 0;
    s.starts++;
    const reason = s.mediaStreamed && first ? 'media_streamed' : first ? undefined : s.resumeFromMs > 0 ? 'resumed' : 'restarted';
    record(s, {
      state: 'started', at,
      ...(first ? { startErrorMs: at - a.startAt } : { playedMs: s.resumeFromMs }),
      ...(reason ? { reason } : {}),
    }, pt);
    for (const r of mediaRefsOf(a)) cache.touch(r.sha256);
    o.setProgrammeVolume(a.volume, a.priority);
    log.info({ airingId: a.id, startErrorMs: first ? Math.round((at - a.startAt) * 10) / 10 : undefined }, 'airing started');
  }

  function onEnd(s: Slot, program: AiringProgram, why: EndReason, by?: Program, atHw?: number) {
    if (s.program !== program) return;
    const playedMs = Math.round(program.positionMs());
    program.close();
    // After close(): a relay item cut while it played is counted too. Silence played in its place is
    // reported on the receipt (the other items played), e.g. `relay_not_received:1`.
    const misses = program.relayMisses();
    const relayNote = misses.length ? `relay_not_received:${misses.join(',')}` : undefined;
    if (relayNote) log.warn({ airingId: s.airing.id, items: misses }, 'relay item played as silence: no relay audio received');
    const withNote = (reason: string | undefined) => (reason && relayNote ? `${reason};${relayNote}`.slice(0, 200) : reason ?? relayNote);
    s.program = undefined;
    const a = s.airing;
    if (s.stopReason === 'silent') { s.phase = 'done'; return; }
    // When it actually ended at the DAC (the read runs a buffer ahead of the sound), in controller time.
    const at = atHw !== undefined ? clockSource.toController(atHw) : undefined;
    switch (why) {
      case 'finished':
        s.phase = 'done';
        record(s, { state: 'finished', playedMs, ...(relayNote ? { reason: relayNote } : {}), ...(at !== undefined ? { at } : {}) });
        break;
      case 'preempted': {
        record(s, { state: 'interrupted', reason: withNote(`preempted:${a.onInterrupt}`), playedMs, ...(by ? { interruptedBy: by.id } : {}), ...(at !== undefined ? { at } : {}) });
        if (a.onInterrupt === 'drop') s.phase = 'done';
        else { s.phase = 'suspended'; s.resumeFromMs = a.onInterrupt === 'resume' ? playedMs : 0; }
        break;
      }
      case 'stopped':
        s.phase = 'done';
        record(s, { state: 'interrupted', reason: withNote(s.stopReason ?? 'stopped'), playedMs });
        break;
    }
    afterChange();
  }

  function onBlocked(s: Slot, program: AiringProgram, incumbent: Program) {
    if (s.program !== program) return;
    program.close();
    s.program = undefined;
    const a = s.airing;
    log.info({ airingId: a.id, by: incumbent.id, policy: a.onInterrupt }, 'airing held back by a higher-priority programme');
    if (a.onInterrupt === 'drop') { s.phase = 'preparing'; fail(s, 'preempted', undefined, { interruptedBy: incumbent.id }); return; }
    s.phase = 'suspended';
    s.blockedBy = incumbent.id;
    s.resumeFromMs = 0;
    afterChange();
  }

  /** Something ended: volume back, resume what was interrupted, amplifier off if nothing is due. */
  function afterChange() {
    if (!running) return;
    const cur = player.playing();
    const playingSlot = cur ? slots.get(cur.program.id) : undefined;
    const on = playingSlot?.phase === 'playing' ? playingSlot.airing : undefined;
    o.setProgrammeVolume(on?.volume, on?.priority);
    resumeSuspended();
    ampCheck();
    updateWanted();
  }

  function resumeSuspended() {
    if (player.playing()) return;
    const waiting = [...slots.values()].filter((s) => s.phase === 'suspended')
      .sort((x, y) => priorityRank(y.airing.priority) - priorityRank(x.airing.priority) || x.airing.startAt - y.airing.startAt);
    const now = ctlNow();
    for (const s of waiting) {
      const a = s.airing;
      if (now > a.startAt + a.durationMs + resumeWindow) {
        fail(s, s.starts ? 'resume_expired' : 'preempted', undefined, s.blockedBy ? { interruptedBy: s.blockedBy } : {});
        continue;
      }
      const remaining = Math.max(1, a.durationMs - s.resumeFromMs);
      const v = quietHoursVerdict({ ...a, startAt: Math.floor(now), durationMs: remaining }, plan!.quietHours, plan!.timezone);
      if (!v.allowed) { fail(s, 'quiet_hours', v.detail); continue; }
      void resume(s);
      return;
    }
  }

  async function resume(s: Slot) {
    s.phase = 'preparing';
    const gen = ++s.gen;
    wakeAmp(s);
    let program: AiringProgram;
    try {
      program = await prepareAiringProgram({ id: s.airing.id, items: s.airing.items, media: cache, startOffsetMs: s.resumeFromMs, timebase: clockSource, ...(o.relays ? { relays: o.relays } : {}) });
    } catch (e) {
      if (gen === s.gen) fail(s, 'media_missing', (e as Error).message);
      return;
    }
    if (gen !== s.gen || !running) { program.close(); return; }
    // As soon as possible; the amplifier is normally still on (it was playing a moment ago).
    arm(s, program, clock.now());
  }

  function updateWanted() {
    const want: WantedMedia[] = [];
    for (const s of slots.values()) {
      if (s.phase === 'done') continue;
      for (const r of mediaRefsOf(s.airing)) want.push({ ...r, neededAt: s.airing.startAt });
    }
    cache.want(want);
  }

  function cancel(s: Slot, reason: string) {
    switch (s.phase) {
      case 'playing':
        s.stopReason = reason;
        player.stop(s.airing.id);
        break;
      case 'armed':
        player.unschedule(s.airing.id);
        done(s);
        break;
      case 'waiting': case 'preparing': case 'suspended': case 'done':
        done(s);
        break;
    }
  }

  /** Decide what an airing we have not seen in this process is, from the ledger (crash recovery). */
  function adopt(a: Airing): Slot {
    const s: Slot = { airing: a, key: airingKey(a), phase: 'waiting', gen: 0, warned: false, starts: 0, resumeFromMs: 0, mediaStreamed: false };
    const l = receipts.ledger(a.id);
    const now = ctlNow();
    if (l) {
      s.starts = l.counts.started ?? 0;
      if (l.state === 'started') {
        // We died while it played (crash, power cut, restart): report it, then apply its policy.
        const playedMs = Math.max(0, Math.round(now - l.at));
        record(s, { state: 'interrupted', reason: `agent_restart:${a.onInterrupt}`, playedMs: Math.min(playedMs, a.durationMs) });
        if (a.onInterrupt === 'drop' || playedMs >= a.durationMs) s.phase = 'done';
        else { s.phase = 'suspended'; s.resumeFromMs = a.onInterrupt === 'resume' ? playedMs : 0; }
      } else {
        s.phase = 'done';
      }
      return s;
    }
    if (a.startAt + a.durationMs <= now) s.phase = 'done'; // over before we knew of it
    return s;
  }

  const self = {
    /** Apply a plan (already validated and persisted). Airings kept by id keep their state. */
    setPlan(p: Plan) {
      plan = p;
      const ids = new Set(p.airings.map((a) => a.id));
      for (const [id, s] of slots) {
        if (ids.has(id)) continue;
        cancel(s, 'cancelled');
        slots.delete(id);
      }
      for (const a of p.airings) {
        const s = slots.get(a.id);
        const key = airingKey(a);
        if (s && s.key === key) { s.airing = a; continue; }
        if (s) {
          // Changed by the operator: one not yet playing is re-planned; one playing finishes as it is.
          if (s.phase === 'playing' || s.phase === 'done') { s.airing = a; s.key = key; continue; }
          cancel(s, 'replanned');
        }
        slots.set(a.id, s && s.starts === 0 ? { airing: a, key, phase: 'waiting', gen: s.gen + 1, warned: false, starts: 0, resumeFromMs: 0, mediaStreamed: false } : adopt(a));
      }
      updateWanted();
      if (running) { reschedule(); resumeSuspended(); ampCheck(); }
    },
    plan: () => plan,
    start() {
      if (running) return;
      running = true;
      offChange = player.onChange(() => { if (running) resumeSuspended(); });
      if (plan) self.setPlan(plan);
    },
    /** Stop without receipts: an airing cut by a restart is reported by the next run (from the ledger). */
    stop() {
      if (!running) return;
      running = false;
      timers.clearTimeout(timer);
      timer = undefined;
      offChange?.();
      for (const [id, s] of slots) {
        if (s.phase === 'playing') { s.stopReason = 'silent'; player.stop(id); }
        else if (s.phase === 'armed') player.unschedule(id);
        s.program?.close();
        s.program = undefined;
      }
      // The next start() adopts every airing again from the receipt ledger, as after a crash.
      slots.clear();
    },
    /** Media ids of upcoming airings not cached yet (PlanAck.missing). */
    missingMedia(): string[] {
      const refs: MediaRef[] = [];
      for (const s of slots.values()) if (s.phase !== 'done') refs.push(...mediaRefsOf(s.airing));
      return cache.missing(refs);
    },
    /** Airings starting within the warning lead that still lack media (telemetry cache.missingSoon). */
    missingSoon(): number {
      const now = ctlNow();
      let n = 0;
      for (const s of slots.values()) {
        if ((s.phase === 'waiting' || s.phase === 'preparing') && s.airing.startAt - now <= warnLead && cache.missing(mediaRefsOf(s.airing)).length) n++;
      }
      return n;
    },
    /** The airing on the speakers, if any. */
    nowPlaying(): Airing | undefined {
      const cur = player.playing();
      const s = cur ? slots.get(cur.program.id) : undefined;
      return s && s.phase === 'playing' ? s.airing : undefined;
    },
    phaseOf: (id: string): Phase | undefined => slots.get(id)?.phase,
    /** When the engine's one timer fires (local clock), undefined when none is set (nothing to wait for). */
    nextWake: () => wakeAt,
    /**
     * The controller-time estimate moved (first sync after a restart, a step): re-arm armed airings at
     * their start by the new estimate and recompute the wake-up.
     */
    clockChanged() {
      if (!running) return;
      for (const s of slots.values()) {
        if (s.phase === 'armed' && s.program && s.starts === 0 && !s.mediaStreamed) arm(s, s.program, startLocal(s.airing));
      }
      reschedule();
    },
    /** Nothing planned to prepare, play or resume soon: the amplifier may go off. */
    ampNeeded,
    /** Another part (test tone, live session) released the speakers: switch the amp off if nothing is due. */
    releaseAmp() { if (running) ampCheck(); else if (!player.playing()) hw.setAmplifier(false).catch(() => {}); },
  };
  return self;
}
export type Playout = ReturnType<typeof createPlayout>;
