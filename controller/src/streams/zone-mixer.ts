/**
 * What one zone plays, as 48 kHz mono PCM produced in real time by the controller clock: the same
 * arbitration the agents apply (schemas `preempts`): an active live session targeting the zone's
 * clusters, else the scheduled airing on air for the zone (decoded in-process from the controller's
 * media store with the agent's own airing program), else silence.
 *
 * Timing: block k covers controller time [t0 + k·B, t0 + (k+1)·B) and is produced once the clock has
 * passed its end plus `latencyMs` (room for live PCM that arrives in bursts). The timer is re-armed for
 * the next block's due time on every tick and every due block is produced (catch-up), so late timers
 * never accumulate into drift; after a stall longer than `maxCatchUpMs` the lost time is skipped
 * instead of being burst out.
 *
 * Differences from an agent (documented, deliberate): an interrupted airing whose policy is not `drop`
 * comes back at its clock position (what would be on air now), not where it stopped; relay items of an
 * airing are silence here as on the agent (relays are live work).
 */
import { pino, type Logger } from 'pino';
import { preempts, priorityRank, type Airing, type Claim, type Priority } from '../../../schemas/src/index.js';
import { prepareAiringProgram, type AiringProgram } from '../../../audio-pipeline/src/airing-program.js';
import { comparePrecedence } from '../scheduling/expand.js';

export const STREAM_SAMPLE_RATE = 48_000;

/** A live session as the PCM tap describes it. */
export interface MixerLiveSession {
  sessionId: string;
  priority: Priority;
  startedAt: number;
}

export interface ZoneMixerOptions {
  /** Block length, ms (20 ms = one Opus frame). */
  blockMs: number;
  /** How far behind the clock a block is produced, ms. */
  latencyMs: number;
  /** A stall longer than this is skipped, not caught up. */
  maxCatchUpMs: number;
  /** How often the zone's airings are re-read, ms. */
  airingPollMs: number;
  /** Airings starting within this are opened ahead (file read, decoder init), ms. */
  lookaheadMs: number;
  /** PCM kept for the live session on air (more is dropped, oldest first), ms. */
  liveBufferMs: number;
  /** PCM kept for a live session that is not on air (so it starts near "now" when it takes over), ms. */
  idleLiveBufferMs: number;
}

const DEFAULTS: ZoneMixerOptions = {
  blockMs: 20, latencyMs: 100, maxCatchUpMs: 1000, airingPollMs: 1000, lookaheadMs: 3000, liveBufferMs: 3000, idleLiveBufferMs: 300,
};

export interface ZoneMixerDeps {
  now: () => number;
  log?: Logger;
  /** Airings planned on the zone's clusters (any window; the mixer filters by time). */
  airings(): readonly Airing[];
  /** Controller file of a media item of an airing (Ogg/Opus distribution file), undefined if gone. */
  mediaPath(item: { mediaId: string; sha256: string }): string | undefined;
  /** One block of PCM (48 kHz mono float), `at` = controller time of its first sample. */
  onBlock(pcm: Float32Array, at: number): void;
  options?: Partial<ZoneMixerOptions>;
}

export type OnAir =
  | { origin: 'live'; sessionId: string; priority: Priority }
  | { origin: 'scheduled'; airingId: string; title: string; priority: Priority }
  | { origin: 'silence' };

interface LiveSrc {
  s: MixerLiveSession;
  fifo: Float32Array;
  len: number;
  ended: boolean;
}

interface SchedSrc {
  a: Airing;
  program: AiringProgram | null;
  opening: boolean;
  /** Generation: a reopen makes an in-flight open stale. */
  gen: number;
  /** Programme position (ms) the open program started from. */
  openedAtMs: number;
  finished: boolean;
  dropped: boolean;
}

type Current = { kind: 'live'; id: string } | { kind: 'scheduled'; id: string } | null;

export function createZoneMixer(deps: ZoneMixerDeps) {
  const o: ZoneMixerOptions = { ...DEFAULTS, ...(deps.options ?? {}) };
  const log = deps.log ?? pino({ level: 'silent' });
  const N = Math.round((STREAM_SAMPLE_RATE * o.blockMs) / 1000);
  const lives = new Map<string, LiveSrc>();
  const sched = new Map<string, SchedSrc>();
  let airings: readonly Airing[] = [];
  let polledAt = -Infinity;
  let current: Current = null;
  let t0 = 0;
  let produced = 0;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  const counters = { blocks: 0, skippedBlocks: 0, liveUnderrunSamples: 0, liveDroppedSamples: 0, itemErrors: 0 };

  const claimOf = (c: NonNullable<Current>): Claim | null => {
    if (c.kind === 'live') { const l = lives.get(c.id); return l ? { priority: l.s.priority, origin: 'live' } : null; }
    const s = sched.get(c.id);
    return s ? { priority: s.a.priority, origin: 'scheduled' } : null;
  };

  // ------------------------------------------------------------------ live input

  function pushLive(s: MixerLiveSession, pcm: Float32Array) {
    let l = lives.get(s.sessionId);
    if (!l) lives.set(s.sessionId, (l = { s, fifo: new Float32Array(STREAM_SAMPLE_RATE), len: 0, ended: false }));
    if (l.ended) return;
    const onAir = current?.kind === 'live' && current.id === s.sessionId;
    const cap = Math.round((STREAM_SAMPLE_RATE * (onAir ? o.liveBufferMs : o.idleLiveBufferMs)) / 1000);
    if (l.len + pcm.length > l.fifo.length) {
      let size = l.fifo.length;
      while (size < l.len + pcm.length) size *= 2;
      const next = new Float32Array(size);
      next.set(l.fifo.subarray(0, l.len));
      l.fifo = next;
    }
    l.fifo.set(pcm, l.len);
    l.len += pcm.length;
    if (l.len > cap) {
      const drop = l.len - cap;
      if (onAir) counters.liveDroppedSamples += drop;
      l.fifo.copyWithin(0, drop, l.len);
      l.len = cap;
    }
  }

  function endLive(sessionId: string) {
    const l = lives.get(sessionId);
    if (l) l.ended = true; // what is buffered still plays out
  }

  function takeLive(l: LiveSrc, out: Float32Array) {
    const n = Math.min(out.length, l.len);
    out.set(l.fifo.subarray(0, n));
    if (n < out.length) {
      out.fill(0, n);
      if (!l.ended) counters.liveUnderrunSamples += out.length - n;
    }
    l.fifo.copyWithin(0, n, l.len);
    l.len -= n;
  }

  // ------------------------------------------------------------------ scheduled input

  function refreshAirings(t: number) {
    if (t - polledAt < o.airingPollMs) return;
    polledAt = t;
    try { airings = deps.airings(); } catch (e) { log.warn({ err: (e as Error).message }, 'zone stream: reading the zone airings failed'); }
    const keep = new Set<string>();
    for (const a of airings) {
      if (a.startAt + a.durationMs <= t || a.startAt > t + o.lookaheadMs) continue;
      keep.add(a.id);
      if (!sched.has(a.id)) sched.set(a.id, { a, program: null, opening: false, gen: 0, openedAtMs: 0, finished: false, dropped: false });
    }
    for (const [id, s] of sched) {
      if (keep.has(id) || (current?.kind === 'scheduled' && current.id === id && !s.finished)) continue;
      closeProgram(s);
      sched.delete(id);
    }
    // Open what starts soon, so the first block of an airing does not wait for a file read.
    for (const s of sched.values()) if (!s.program && !s.opening && !s.dropped && !s.finished && s.a.startAt > t) openProgram(s, 0);
  }

  function closeProgram(s: SchedSrc) {
    s.gen++;
    s.opening = false;
    s.program?.close();
    s.program = null;
  }

  function openProgram(s: SchedSrc, offsetMs: number) {
    closeProgram(s);
    const gen = s.gen;
    s.opening = true;
    s.openedAtMs = offsetMs;
    const byId = new Map<string, string>();
    for (const it of s.a.items) if (it.kind === 'media') byId.set(it.sha256, it.mediaId);
    prepareAiringProgram({
      id: s.a.id, items: s.a.items, startOffsetMs: offsetMs,
      media: { pathOf: (sha) => { const id = byId.get(sha); return id ? deps.mediaPath({ mediaId: id, sha256: sha }) : undefined; } },
      onItemError: (it, err) => { counters.itemErrors++; log.warn({ airingId: s.a.id, item: it.kind, err: err.message }, 'zone stream: airing item plays as silence'); },
    }).then((p) => {
      if (s.gen !== gen || !running) { p.close(); return; }
      s.opening = false;
      s.program = p;
    }, (e: unknown) => {
      if (s.gen !== gen) return;
      s.opening = false;
      s.finished = true;
      log.warn({ airingId: s.a.id, err: (e as Error).message }, 'zone stream: airing could not be opened');
    });
  }

  function readScheduled(s: SchedSrc, out: Float32Array, t: number) {
    out.fill(0);
    if (s.finished || s.dropped) return;
    const lead = Math.round(((s.a.startAt - t) * STREAM_SAMPLE_RATE) / 1000);
    if (lead >= out.length) return;
    const expectedMs = Math.max(0, t - s.a.startAt);
    if (!s.program) {
      // Not open (joined mid-airing, back after a live session): open at its clock position.
      if (!s.opening) openProgram(s, expectedMs);
      return;
    }
    // An airing opened ahead but taken up late (a live session held the zone): jump to "now".
    if (lead <= 0 && Math.abs(s.program.positionMs() - expectedMs) > 250) { openProgram(s, expectedMs); return; }
    const from = Math.max(0, lead);
    const n = s.program.read(out.subarray(from), t + (from * 1000) / STREAM_SAMPLE_RATE); // no timebase: time unused
    if (from + n < out.length) out.fill(0, from + n);
    if (s.program.ended()) { s.finished = true; closeProgram(s); }
  }

  // ------------------------------------------------------------------ arbitration

  function candidates(t: number): NonNullable<Current>[] {
    const c: NonNullable<Current>[] = [];
    for (const [id, l] of lives) {
      if (l.ended && l.len === 0) { lives.delete(id); continue; }
      c.push({ kind: 'live', id });
    }
    for (const [id, s] of sched) {
      if (s.finished || s.dropped) continue;
      if (s.a.startAt < t + o.blockMs && s.a.startAt + s.a.durationMs > t) c.push({ kind: 'scheduled', id });
    }
    return c;
  }

  /** Best of a set with nothing incumbent: priority, then live before scheduled, then the airings' own order. */
  function better(x: NonNullable<Current>, y: NonNullable<Current>): number {
    const cx = claimOf(x)!;
    const cy = claimOf(y)!;
    const d = priorityRank(cy.priority) - priorityRank(cx.priority);
    if (d !== 0) return d;
    if (x.kind !== y.kind) return x.kind === 'live' ? -1 : 1;
    if (x.kind === 'scheduled' && y.kind === 'scheduled') return comparePrecedence(sched.get(x.id)!.a, sched.get(y.id)!.a);
    return lives.get(x.id)!.s.startedAt - lives.get(y.id)!.s.startedAt;
  }

  function arbitrate(t: number) {
    const c = candidates(t);
    const still = current && c.some((x) => x.kind === current!.kind && x.id === current!.id) ? current : null;
    let next = still;
    if (!next) next = c.sort(better)[0] ?? null;
    else {
      const inc = claimOf(next)!;
      const challengers = c.filter((x) => !(x.kind === next!.kind && x.id === next!.id) && preempts(claimOf(x)!, inc)).sort(better);
      if (challengers[0]) next = challengers[0];
    }
    if (current && (!next || next.kind !== current.kind || next.id !== current.id) && current.kind === 'scheduled') {
      const s = sched.get(current.id);
      // Preempted (not finished): the airing's interrupt policy decides whether it may come back.
      if (s && !s.finished && s.a.startAt + s.a.durationMs > t) {
        if (s.a.onInterrupt === 'drop') s.dropped = true;
        closeProgram(s);
      }
    }
    current = next;
    // An airing due now that does not get the zone (a stronger source holds it) and may not come back
    // later is lost, as on the agent.
    for (const x of c) {
      if (x.kind !== 'scheduled' || (current?.kind === 'scheduled' && current.id === x.id)) continue;
      const s = sched.get(x.id)!;
      if (s.a.onInterrupt === 'drop' && s.a.startAt <= t) { s.dropped = true; closeProgram(s); }
    }
  }

  // ------------------------------------------------------------------ clock

  const block = new Float32Array(N);

  function produce(t: number) {
    refreshAirings(t);
    arbitrate(t);
    if (!current) block.fill(0);
    else if (current.kind === 'live') takeLive(lives.get(current.id)!, block);
    else readScheduled(sched.get(current.id)!, block, t);
    // Sessions not on air keep only their last moments.
    for (const [id, l] of lives) {
      if (current?.kind === 'live' && current.id === id) continue;
      const keep = Math.round((STREAM_SAMPLE_RATE * o.idleLiveBufferMs) / 1000);
      if (l.len > keep) { l.fifo.copyWithin(0, l.len - keep, l.len); l.len = keep; }
    }
    counters.blocks++;
    deps.onBlock(block, t);
  }

  function tick() {
    timer = undefined;
    if (!running) return;
    const now = deps.now();
    let due = Math.floor((now - o.latencyMs - t0) / o.blockMs) - produced;
    const maxBlocks = Math.max(1, Math.ceil(o.maxCatchUpMs / o.blockMs));
    if (due > maxBlocks) {
      // The event loop stalled: skip the lost time rather than burst it out (listeners would overflow).
      counters.skippedBlocks += due - 1;
      produced += due - 1;
      due = 1;
    }
    for (let i = 0; i < due && running; i++) {
      try { produce(t0 + produced * o.blockMs); } catch (e) { log.error({ err: e }, 'zone stream: producing a block failed'); }
      produced++;
    }
    if (!running) return;
    const nextDue = t0 + (produced + 1) * o.blockMs + o.latencyMs;
    timer = setTimeout(tick, Math.max(1, nextDue - deps.now()));
  }

  return {
    start() {
      if (running) return;
      running = true;
      t0 = deps.now() - o.latencyMs;
      produced = 0;
      tick();
    },
    stop() {
      if (!running) return;
      running = false;
      clearTimeout(timer);
      timer = undefined;
      for (const s of sched.values()) closeProgram(s);
      sched.clear();
      lives.clear();
      current = null;
    },
    pushLive,
    endLive,
    onAir(): OnAir {
      if (!current) return { origin: 'silence' };
      if (current.kind === 'live') {
        const l = lives.get(current.id);
        return l ? { origin: 'live', sessionId: current.id, priority: l.s.priority } : { origin: 'silence' };
      }
      const s = sched.get(current.id);
      return s ? { origin: 'scheduled', airingId: s.a.id, title: s.a.title, priority: s.a.priority } : { origin: 'silence' };
    },
    stats: () => ({ running, ...counters }),
  };
}
export type ZoneMixer = ReturnType<typeof createZoneMixer>;
