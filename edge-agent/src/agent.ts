import crypto from 'node:crypto';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import {
  decodePayload, effectiveVolume, encodePayload, PROTOCOL_VERSION, TOPICS, topicFor,
  type Command, type CommandReply, type LiveAnnouncement, type Envelope, type NodeConfig, type PayloadOf, type Plan, type Telemetry, type TopicName,
} from '../../schemas/src/index.js';
import { createMediaCache } from './cache.js';
import { createAgentLive, warmLiveValidation, type LiveVolume } from './live.js';
import { rehearseLiveJoin } from './live-rehearsal.js';
import { systemTimers, type Clock, type Timers } from './clock.js';
import { createPersistedClockSource } from './clock-persist.js';
import type { Hardware, HardwareFault } from './hardware.js';
import { createPlanStore } from './plan-store.js';
import { createPlayer, toneProgram } from './player.js';
import { createPlayout } from './playout.js';
import { createReceiptQueue } from './receipts.js';
import { createOffsetEstimator, type ClockSource } from './time-sync.js';

export const AGENT_VERSION = '0.1.0';

export interface AgentOptions {
  nodeId: string;
  credentials: { username: string; password: string };
  brokerUrl: string;
  hardware: Hardware;
  /** Defaults to the hardware clock: the agent knows only the time its own hardware keeps. */
  clock?: Clock;
  timers?: Timers;
  log?: Logger;
  telemetryIntervalMs?: number;
  /** MQTT keepalive; the broker declares the node dead after 1.5× this with no packet. */
  keepaliveS?: number;
  /** Time-sync exchange period once synced (faster until then). */
  syncIntervalMs?: number;
  /** Reconnect backoff: full jitter between base·2^n/2 and base·2^n, capped. */
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  /** Called after hardware.reboot() so the process owner can restart the agent. */
  onReboot?: () => void;
  /** External clock source (chrony, GPS); default is the MQTT offset estimator. */
  clockSource?: ClockSource;
  /**
   * Where the plan, the media cache (`media/`), the receipt queue and the last clock estimate live
   * across restarts. Without it they are kept in memory and media in a temp dir (tests, fleets).
   */
  dataDir?: string;
  /** Controller HTTP base for media downloads; default: `httpBase` of the retained NodeConfig. */
  httpBase?: string;
  /** Media cache capacity, bytes; default 2 GiB. */
  cacheCapacityBytes?: number;
  /** Parallel media downloads (1-2); default 2. */
  cacheConcurrency?: number;
  /** Media download retry backoff: base and cap, ms. */
  cacheRetryBaseMs?: number;
  cacheRetryMaxMs?: number;
  /** Prepare an airing this long before its start on top of the amplifier warm-up; default 2000. */
  prepareLeadMs?: number;
  /** Warn the controller when an airing starting within this lacks media; default 10 min. */
  cacheWarnLeadMs?: number;
  /** Keep the amplifier on between airings closer than this; default 60 s. */
  ampHoldMs?: number;
  /** Unacknowledged receipts are resent after this; default 30 s. */
  receiptResendMs?: number;
  /** Start an airing late (media fetched at air time, agent restarted) only within this; default 5 min. */
  lateStartToleranceMs?: number;
  /** Cluster marked actual-only: CAP Test/Exercise live sessions are refused here. */
  actualOnly?: boolean;
  /** Bind address of live-session receive sockets (default all interfaces). */
  liveBindAddress?: string;
  /** Rehearse a live join on loopback at start, once per process (live-rehearsal.ts); default true. */
  rehearseLive?: boolean;
}

/** warmLiveReports runs once per process (the schemas are shared by every agent in it). */
let liveReportsWarmedInProcess = false;

type AgentEvents = {
  connected: () => void;
  config: (c: NodeConfig) => void;
  command: (c: Command, r: CommandReply) => void;
  invalid: (topic: string, error: string) => void;
  /** A plan was offered: applied, unchanged (re-acknowledged), stale (ignored) or rejected. */
  plan: (r: { version: number; status: 'applied' | 'unchanged' | 'stale' | 'rejected'; error?: string }) => void;
  /** The controller acknowledged receipts (ids removed from the disk queue). */
  receiptsAcked: (ids: string[]) => void;
  /** A live-session announcement for this node (validated envelope); the live module acts on it. */
  live: (a: LiveAnnouncement) => void;
};

/**
 * The edge agent: MQTT session with retained availability and last will, telemetry on an interval, fault
 * events, command execution with replies, and the clock-offset estimate to the controller.
 */
export function createAgent(o: AgentOptions) {
  const hw = o.hardware;
  const clock = o.clock ?? hw.clock;
  const timers = o.timers ?? systemTimers;
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'agent', nodeId: o.nodeId });
  const keepaliveS = o.keepaliveS ?? 8;
  const telemetryMs = o.telemetryIntervalMs ?? 15_000;
  const syncMs = o.syncIntervalMs ?? 16_000;
  const estimator = createOffsetEstimator();
  const persistedClock = o.clockSource ? undefined : createPersistedClockSource({ inner: estimator, dir: o.dataDir });
  const clockSource: ClockSource = o.clockSource ?? persistedClock!;
  const bootId = crypto.randomBytes(6).toString('hex');
  const startedAt = clock.now();
  const listeners: { [K in keyof AgentEvents]: Set<AgentEvents[K]> } = {
    connected: new Set(), config: new Set(), command: new Set(), invalid: new Set(), plan: new Set(), receiptsAcked: new Set(), live: new Set(),
  };
  const emit = <K extends keyof AgentEvents>(k: K, ...a: Parameters<AgentEvents[K]>) => { for (const l of listeners[k]) (l as (...x: unknown[]) => void)(...a); };

  let client: MqttClient | undefined;
  let config: NodeConfig | undefined;
  let subscribedScopes: string[] = [];
  let telemetryTimer: NodeJS.Timeout | undefined;
  let syncTimer: NodeJS.Timeout | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let attempt = 0;
  let running = false;
  let syncId = 0;
  const syncPending = new Map<number, number>();
  const seenMsgIds = new Set<string>();
  const technician: { volume?: number; mute?: boolean } = {};
  const player = createPlayer({ sink: hw.sink, now: () => clock.now() });
  const offFault = hw.onFault((f) => publishFault(f));
  const planStore = createPlanStore({ nodeId: o.nodeId, dir: o.dataDir, log });
  let planMsgId: string | undefined;
  const receipts = createReceiptQueue({
    dir: o.dataDir, log, timers, clock, resendMs: o.receiptResendMs,
    send: (batch) => publish('receipts', { ...header(), receipts: batch }),
  });
  const cache = createMediaCache({
    dir: o.dataDir ? path.join(o.dataDir, 'media') : undefined, credentials: o.credentials, httpBase: o.httpBase,
    capacityBytes: o.cacheCapacityBytes, concurrency: o.cacheConcurrency, retryBaseMs: o.cacheRetryBaseMs, retryMaxMs: o.cacheRetryMaxMs,
    log, timers, clock,
  });
  /** Volume and level of the airing on the speakers (undefined: none). */
  let programme: { volume?: number; emergency: boolean } | undefined;
  /** Volume override of the live session on the speakers (undefined: none). */
  let liveVolume: LiveVolume | undefined;
  let clockNotified = { synced: false, offsetMs: 0 };
  const playout = createPlayout({
    hw, player, clock, timers, clockSource, cache, receipts, log,
    prepareLeadMs: o.prepareLeadMs, warnLeadMs: o.cacheWarnLeadMs, ampHoldMs: o.ampHoldMs, lateStartToleranceMs: o.lateStartToleranceMs,
    // Scheduled relay items play the live session announced for them (`live` is created below).
    relays: { feed: (airingId, itemIndex) => live.relayFeed(airingId, itemIndex) },
    setProgrammeVolume: (volume, priority) => {
      programme = priority ? { ...(volume !== undefined ? { volume } : {}), emergency: priority === 'emergency' } : undefined;
      applyVolume();
    },
    onCacheWarning: (w) => {
      publish('event', { ...header(), kind: 'cache_missing', airingId: w.airingId, mediaIds: w.mediaIds.slice(0, 200), startAt: w.startAt, ...(w.detail ? { detail: w.detail.slice(0, 500) } : {}) });
    },
  });

  function header() { return { v: PROTOCOL_VERSION, ts: Math.floor(clock.now()) }; }

  const live = createAgentLive({
    nodeId: o.nodeId, hw, player, clock, timers, clockSource, log,
    publishStatus: (st) => { publish('liveStatus', { ...header(), ...st }); },
    setLiveVolume: (v) => { liveVolume = v; applyVolume(); },
    releaseAmp: () => playout.releaseAmp(),
    actualOnly: () => o.actualOnly === true,
    ...(o.liveBindAddress ? { bindAddress: o.liveBindAddress } : {}),
  });

  function publish<N extends TopicName>(name: N, payload: PayloadOf<N>) {
    const c = client;
    if (!c?.connected) return false;
    const d = TOPICS[name];
    let body: string;
    try {
      body = encodePayload(name, payload);
    } catch (e) {
      // A bad reading (e.g. a NaN sensor value) must not take the agent down: log it, skip this message.
      log.error({ topic: name, err: (e as Error).message }, 'refusing to publish an invalid payload');
      return false;
    }
    c.publish(topicFor(name, o.nodeId), body, { qos: d.qos, retain: d.retained }, (err) => {
      if (err) log.debug({ err: err.message, topic: name }, 'publish failed');
    });
    return true;
  }

  function will() {
    return {
      topic: topicFor('status', o.nodeId),
      payload: Buffer.from(encodePayload('status', { ...header(), state: 'offline', reason: 'lwt', bootId })),
      qos: 1 as const, retain: true,
    };
  }

  function applyVolume() {
    const defaultVolume = config?.defaultVolume ?? 70;
    // An emergency airing's own volume is the forced emergency volume, and emergency audio is never
    // muted (schemas/priority.ts); everything else follows technician > programme > default.
    // A live session on the speakers overrides the programme: its forced volume wins over the technician.
    const lv = liveVolume;
    const emergency = lv ? lv.emergency || lv.forcedVolume !== undefined : programme?.emergency === true;
    const forced = lv ? lv.forcedVolume : programme?.volume;
    const v = effectiveVolume({
      emergencyForced: emergency ? (forced ?? (technician.mute ? technician.volume ?? defaultVolume : undefined)) : undefined,
      technicianMute: technician.mute, technicianVolume: technician.volume, programmeVolume: programme?.volume, defaultVolume,
    });
    hw.setVolume(v);
    hw.setMute(!emergency && v === 0 && technician.mute === true);
  }

  /** A finished session's reception stays in telemetry this long, so a technician can still see it. */
  const LIVE_TELEMETRY_RETAIN_MS = 10 * 60_000;
  /** When this agent first saw the last session finished (agent clock). */
  let liveEnded: { sessionId: string; at: number } | undefined;

  /** Reception of the current live session, or of the last one within LIVE_TELEMETRY_RETAIN_MS of its end. */
  function liveReception(): Telemetry['live'] {
    const st = live.stats();
    if (!st) return undefined;
    const terminal = st.state === 'ended' || st.state === 'failed' || st.state === 'refused';
    const t = clock.now();
    if (!terminal) liveEnded = undefined;
    else if (liveEnded?.sessionId !== st.sessionId) liveEnded = { sessionId: st.sessionId, at: t };
    if (liveEnded && t - liveEnded.at > LIVE_TELEMETRY_RETAIN_MS) return undefined;
    // Frames due ≈ received packets + frames whose packet never came (RED-recovered or lost); a late
    // packet is both received and lost, so it is taken out once. Missing-in-time share of those, %.
    const missing = Math.max(0, st.lost - st.late) + st.recoveredByRed + st.late;
    const due = st.packets + Math.max(0, st.lost - st.late) + st.recoveredByRed;
    const int = (x: number) => Math.max(0, Math.round(Number.isFinite(x) ? x : 0));
    return {
      sessionId: st.sessionId.slice(0, 64), state: st.state,
      packets: int(st.packets), lost: int(st.lost), late: int(st.late), concealed: int(st.concealed), recoveredByRed: int(st.recoveredByRed),
      jitterMs: Math.max(0, Number.isFinite(st.jitterMs) ? Math.round(st.jitterMs * 100) / 100 : 0),
      lossPct: due > 0 ? Math.min(100, Math.round((10_000 * missing) / due) / 100) : 0,
      ...(liveEnded ? { endedAt: Math.floor(Math.max(0, liveEnded.at)) } : {}),
    };
  }

  /**
   * Once per process, with the rehearsal: validate the reports a live session adds (a `liveStatus`, and
   * telemetry with its `live` and `playing` parts), so that zod compiles those schemas now and not in the
   * first emergency's first second (measured there: 20–30 ms of a worker's CPU for the telemetry alone).
   */
  function warmLiveReports() {
    if (liveReportsWarmedInProcess) return;
    liveReportsWarmedInProcess = true;
    const sessionId = 'live-0000000000000000';
    const stats = { packets: 0, lost: 0, late: 0, concealed: 0, recoveredByRed: 0, jitterMs: 0 };
    const t: Telemetry = {
      ...telemetry(),
      playing: { kind: 'live', id: `live-${sessionId}`, priority: 'emergency', startedAt: 0 },
      live: { sessionId, state: 'playing', ...stats, lossPct: 0 },
    };
    try {
      let validated = 0;
      for (let i = 0; i < 200; i++) {
        encodePayload('telemetry', t);
        encodePayload('liveStatus', { ...header(), sessionId, state: 'playing', stats });
        validated += 2;
      }
      log.debug({ validated }, 'live reports warmed');
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'live report warm-up failed');
    }
  }

  function telemetry(): Telemetry {
    const s = hw.status();
    const e = clockSource.estimate();
    const p = player.playing();
    const airing = playout.nowPlaying();
    const liveNow = liveReception();
    persistedClock?.save(clock.now());
    return {
      ...header(),
      uptimeS: Math.max(0, (clock.now() - startedAt) / 1000),
      agentVersion: AGENT_VERSION,
      firmwareVersion: s.firmwareVersion,
      amplifier: s.amplifier,
      lines: s.lines,
      volume: s.volume,
      mute: s.mute,
      power: s.power,
      temperatureC: s.temperatureC,
      modem: s.modem,
      gps: s.gps,
      clock: { offsetMs: e.offsetMs, rttMs: e.rttMs, driftPpm: e.driftPpm, synced: e.synced },
      cache: { ...cache.state(), missingSoon: playout.missingSoon() },
      playing: p ? {
        kind: p.program.kind, id: p.program.id.slice(0, 128), priority: p.claim.priority,
        ...(airing ? { title: airing.title } : {}), startedAt: Math.floor(Math.max(0, clockSource.toController(p.startedAt))),
      } : null,
      ...(liveNow ? { live: liveNow } : {}),
    };
  }

  function publishFault(f: HardwareFault) {
    publish('event', { ...header(), kind: 'fault', fault: f.fault, state: f.state, ...(f.lineId ? { lineId: f.lineId } : {}), ...(f.detail ? { detail: f.detail } : {}) });
  }

  function sendSync() {
    const id = ++syncId;
    const t0 = clock.now();
    syncPending.set(id, t0);
    if (syncPending.size > 16) syncPending.delete(syncPending.keys().next().value!);
    publish('timeRequest', { ...header(), id, t0 });
  }

  function scheduleSync() {
    timers.clearTimeout(syncTimer);
    // Fast until synced (and while the estimate rests on samples far worse than its best: time-sync.ts
    // wantsMore), then every syncMs; a little jitter so a fleet does not sync in lockstep.
    const base = estimator.wantsMore() ? 1000 : syncMs;
    syncTimer = timers.setTimeout(() => { sendSync(); scheduleSync(); }, base * (0.9 + Math.random() * 0.2));
  }

  /** Drop replays and expired messages (controller time by our estimate). Signatures come with security. */
  function acceptEnvelope(topic: string, e: Envelope): boolean {
    if (seenMsgIds.has(e.msgId)) { log.debug({ topic, msgId: e.msgId }, 'duplicate message dropped'); return false; }
    seenMsgIds.add(e.msgId);
    if (seenMsgIds.size > 2000) seenMsgIds.delete(seenMsgIds.values().next().value!);
    if (e.expiresAt !== undefined) {
      const ctlNow = clockSource.estimate().synced ? clockSource.toController(clock.now()) : clock.now();
      if (ctlNow > e.expiresAt) { log.warn({ topic, msgId: e.msgId, expiresAt: e.expiresAt }, 'expired message dropped'); return false; }
    }
    return true;
  }

  async function onCommand(topic: string, cmd: Command) {
    if (!acceptEnvelope(topic, cmd)) return;
    const reply = (status: 'ok' | 'error', data?: Record<string, unknown>, error?: string): CommandReply =>
      ({ ...header(), transaction: cmd.transaction, status, ...(data ? { data } : {}), ...(error ? { error } : {}) });
    let r: CommandReply;
    try {
      switch (cmd.name) {
        case 'set_volume':
          technician.volume = cmd.params.volume;
          applyVolume();
          r = reply('ok', { volume: hw.status().volume });
          break;
        case 'set_mute':
          technician.mute = cmd.params.mute;
          applyVolume();
          r = reply('ok', { mute: cmd.params.mute });
          break;
        case 'reboot':
          r = reply('ok', { rebooting: true });
          publish('reply', r);
          emit('command', cmd, r);
          await hw.reboot();
          o.onReboot?.();
          return;
        case 'test_tone': {
          const { durationMs, frequencyHz } = cmd.params;
          const id = `tone-${cmd.transaction}`;
          const started = player.play(toneProgram(id, frequencyHz, durationMs, hw.sink.sampleRate), { priority: 'normal', origin: 'scheduled' },
            () => { playout.releaseAmp(); });
          if (!started) { r = reply('error', undefined, 'speakers busy with a higher-priority programme'); break; }
          // Amplifier warm-up runs in the background; the reply says the tone was accepted.
          void hw.setAmplifier(true).catch((e: Error) => log.warn({ err: e.message }, 'amplifier failed to start'));
          r = reply('ok', { durationMs, frequencyHz });
          break;
        }
      }
    } catch (e) {
      r = reply('error', undefined, (e as Error).message);
    }
    publish('reply', r);
    emit('command', cmd, r);
  }

  async function syncSubscriptions() {
    const c = client;
    if (!c?.connected || !config) return;
    const want = [`radio/v1/zone/${config.zoneId}/#`, `radio/v1/commune/${config.communeId}/#`];
    const drop = subscribedScopes.filter((s) => !want.includes(s));
    const add = want.filter((s) => !subscribedScopes.includes(s));
    if (drop.length) await c.unsubscribeAsync(drop).catch(() => {});
    subscribedScopes = want;
    if (add.length) {
      try {
        await c.subscribeAsync(add, { qos: 1 });
      } catch (e) {
        // Refused by the broker's ACL (e.g. a zone move not yet applied): the controller drops our
        // connection after it changes the ACL, and we subscribe again from the retained config.
        log.error({ topics: add, err: (e as Error).message }, 'broker refused subscription');
        subscribedScopes = subscribedScopes.filter((x) => !add.includes(x));
      }
    }
  }

  function onMessage(topic: string, payload: Buffer) {
    const name = topicName(topic);
    if (!name) return;
    const r = decodePayload(name, payload);
    if (!r.ok) {
      log.warn({ topic, error: r.error }, 'invalid message dropped');
      emit('invalid', topic, r.error);
      if (name === 'plan') rejectUnparsedPlan(payload, r.error);
      return;
    }
    switch (name) {
      case 'config': {
        const c = r.value as NodeConfig;
        if (c.nodeId !== o.nodeId) { log.warn({ topic }, 'config for another node dropped'); return; }
        if (!acceptEnvelope(topic, c)) return;
        config = c;
        applyVolume();
        cache.setBase(o.httpBase ?? c.httpBase);
        // `config` is emitted once the zone/commune subscriptions are in place.
        void syncSubscriptions().catch((e: Error) => log.warn({ err: e.message }, 'subscribe failed')).then(() => emit('config', c));
        return;
      }
      case 'timeResponse': {
        const t3 = clock.now();
        const m = r.value as PayloadOf<'timeResponse'>;
        const t0 = syncPending.get(m.id);
        if (t0 === undefined || t0 !== m.t0) return;
        syncPending.delete(m.id);
        estimator.add({ t0, t1: m.t1, t2: m.t2, t3 });
        // Playout converts start times through this estimate: tell it when it first syncs or moves.
        const e = clockSource.estimate();
        if (e.synced && (!clockNotified.synced || Math.abs(e.offsetMs - clockNotified.offsetMs) > 2)) {
          clockNotified = { synced: true, offsetMs: e.offsetMs };
          playout.clockChanged();
        }
        return;
      }
      case 'nodeCommand': case 'zoneCommand': case 'communeCommand':
        void onCommand(topic, r.value as Command);
        return;
      case 'plan':
        onPlan(topic, r.value as Plan);
        return;
      case 'receiptAck': {
        const ack = r.value as PayloadOf<'receiptAck'>;
        if (!acceptEnvelope(topic, ack)) return;
        const n = receipts.onAck(ack.ids);
        log.debug({ acked: n, ids: ack.ids.length }, 'receipts acknowledged');
        emit('receiptsAcked', ack.ids);
        return;
      }
      case 'live': case 'liveFeed': {
        const a = r.value as LiveAnnouncement;
        if (name === 'liveFeed' && !a.airing) {
          log.warn({ topic, sessionId: a.sessionId }, 'live feed announcement without `airing` dropped');
          return;
        }
        if (!acceptEnvelope(topic, a)) return;
        live.onAnnouncement(a);
        emit('live', a);
        return;
      }
      case 'status': case 'telemetry': case 'event': case 'reply': case 'timeRequest': case 'planAck': case 'receipts': case 'liveStatus':
        return;
    }
  }

  function ackPlan(version: number, status: 'applied' | 'rejected', error?: string) {
    publish('planAck', {
      ...header(), version, status, ...(error ? { error: error.slice(0, 500) } : {}),
      missing: status === 'applied' ? playout.missingMedia().slice(0, 2000) : [],
    });
  }

  /** A plan that failed the schema: rejected with the reason if it names its version (never half-applied). */
  function rejectUnparsedPlan(payload: Buffer, error: string) {
    let version: unknown;
    try { version = (JSON.parse(payload.toString('utf8')) as { version?: unknown }).version; } catch { return; }
    if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) return;
    ackPlan(version, 'rejected', error);
    emit('plan', { version, status: 'rejected', error });
  }

  function onPlan(topic: string, p: Plan) {
    // The retained plan comes again on every reconnect (same msgId): acknowledge it again, change nothing.
    if (p.msgId === planMsgId && p.version === planStore.current()?.version) {
      ackPlan(p.version, 'applied');
      emit('plan', { version: p.version, status: 'unchanged' });
      return;
    }
    if (!acceptEnvelope(topic, p)) return;
    const r = planStore.offer(p);
    switch (r.status) {
      case 'rejected':
        log.warn({ version: p.version, error: r.error }, 'plan rejected');
        ackPlan(p.version, 'rejected', r.error);
        emit('plan', { version: p.version, status: 'rejected', error: r.error });
        return;
      case 'stale':
        log.info({ version: p.version, current: r.current }, 'older plan ignored');
        emit('plan', { version: p.version, status: 'stale' });
        return;
      case 'unchanged':
        planMsgId = p.msgId;
        ackPlan(p.version, 'applied');
        emit('plan', { version: p.version, status: 'unchanged' });
        return;
      case 'applied':
        planMsgId = p.msgId;
        playout.setPlan(r.plan);
        log.info({ version: p.version, airings: p.airings.length }, 'plan applied');
        ackPlan(p.version, 'applied');
        emit('plan', { version: p.version, status: 'applied' });
        return;
    }
  }

  /** Map an inbound topic to its table entry, accepting our node/zone/commune ids only. */
  function topicName(topic: string): TopicName | undefined {
    const own = `radio/v1/node/${o.nodeId}/`;
    if (topic.startsWith(own)) {
      const suffix = topic.slice(own.length);
      return (Object.keys(TOPICS) as TopicName[]).find((n) => TOPICS[n].scope === 'node' && TOPICS[n].direction === 'down' && TOPICS[n].suffix === suffix);
    }
    if (config && topic === topicFor('zoneCommand', config.zoneId)) return 'zoneCommand';
    if (config && topic === topicFor('communeCommand', config.communeId)) return 'communeCommand';
    return undefined;
  }

  async function onConnect() {
    attempt = 0;
    const c = client!;
    subscribedScopes = [];
    try {
      // Zone and commune topics follow from the retained config that this subscription delivers: a
      // config remembered from before may be stale (the node was moved while it was away).
      // Not awaited: MQTT keeps order on one connection, so the status, time request and telemetry
      // pipeline behind the SUBSCRIBE instead of waiting a round trip for its SUBACK.
      const subscribed = c.subscribeAsync(`radio/v1/node/${o.nodeId}/#`, { qos: 1 });
      publish('status', { ...header(), state: 'online', reason: 'connect', agentVersion: AGENT_VERSION, bootId });
      sendSync();
      publish('telemetry', telemetry());
      receipts.onConnect();
      await subscribed;
      emit('connected');
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'post-connect setup failed');
    }
  }

  function scheduleReconnect() {
    if (!running || reconnectTimer) return;
    const ceiling = Math.min(o.reconnectMaxMs ?? 5000, (o.reconnectBaseMs ?? 500) * 2 ** attempt);
    attempt = Math.min(attempt + 1, 20);
    const delay = ceiling * (0.5 + Math.random() * 0.5);
    reconnectTimer = timers.setTimeout(() => {
      reconnectTimer = undefined;
      if (!running || !client) return;
      // A fresh will per connection, stamped now, so its ts says which session died.
      client.options.will = will();
      client.reconnect();
    }, delay);
  }

  return {
    nodeId: o.nodeId,
    bootId,
    player,
    playout,
    cache,
    receipts,
    planStore,
    live,
    clockSource,
    estimator,
    config: () => config,
    connected: () => client?.connected ?? false,
    telemetry,
    on<K extends keyof AgentEvents>(k: K, l: AgentEvents[K]) { listeners[k].add(l); return () => listeners[k].delete(l); },
    /** Controller time now, by the current estimate. */
    controllerNow: () => clockSource.toController(clock.now()),
    async start() {
      if (running) return;
      running = true;
      // Play from disk whatever happens to the link: the plan, the cache and the receipt queue first.
      player.attach();
      receipts.start();
      cache.start();
      const saved = planStore.load();
      if (saved && saved !== playout.plan()) playout.setPlan(saved);
      playout.start();
      // The first emergency after boot must join as fast as the next ones (live-rehearsal.ts): once per process.
      if (o.rehearseLive ?? true) {
        void rehearseLiveJoin({ log, clock });
        warmLiveReports();
      } else warmLiveValidation();
      live.start();
      client = mqtt.connect(o.brokerUrl, {
        clientId: o.nodeId, username: o.credentials.username, password: o.credentials.password,
        protocolVersion: 4, clean: true, keepalive: keepaliveS, reconnectPeriod: 0, connectTimeout: 10_000,
        will: will(), resubscribe: false, queueQoSZero: false,
      });
      client.on('connect', () => { void onConnect(); });
      client.on('message', onMessage);
      client.on('close', () => scheduleReconnect());
      client.on('error', (e) => log.debug({ err: e.message }, 'mqtt error'));
      const period = config?.telemetryIntervalMs ?? telemetryMs;
      const report = () => {
        try { publish('telemetry', telemetry()); } catch (e) { log.error({ err: (e as Error).message }, 'telemetry failed'); }
      };
      // At a random phase of the period: a fleet that starts together (power back after an outage, a
      // broker restart) must not report in lockstep for ever — a thousand reports in the same instant
      // queue behind one another in the broker and the controller (and in an emergency's first second).
      telemetryTimer = timers.setTimeout(() => {
        report();
        if (running) telemetryTimer = timers.setInterval(report, period);
      }, Math.random() * period);
      scheduleSync();
    },
    /** Clean stop: retained `offline` (reason shutdown), then disconnect. */
    async stop() {
      if (!running) return;
      running = false;
      timers.clearTimeout(telemetryTimer);
      timers.clearInterval(telemetryTimer);
      timers.clearTimeout(syncTimer);
      timers.clearTimeout(reconnectTimer);
      reconnectTimer = undefined;
      live.stop();
      playout.stop();
      persistedClock?.save(clock.now(), true);
      const c = client;
      client = undefined;
      if (c?.connected) {
        await new Promise<void>((resolve) => c.publish(topicFor('status', o.nodeId), encodePayload('status', { ...header(), state: 'offline', reason: 'shutdown', bootId }), { qos: 1, retain: true }, () => resolve()));
      }
      await c?.endAsync(false).catch(() => {});
      player.stop();
      cache.stop();
      receipts.stop();
    },
    /** Drop the connection without DISCONNECT (the broker publishes the will), as a crash would. */
    async kill() {
      running = false;
      timers.clearTimeout(telemetryTimer);
      timers.clearInterval(telemetryTimer);
      timers.clearTimeout(syncTimer);
      timers.clearTimeout(reconnectTimer);
      reconnectTimer = undefined;
      live.stop();
      playout.stop();
      const c = client;
      client = undefined;
      c?.stream?.destroy();
      await c?.endAsync(true).catch(() => {});
      player.stop();
      cache.stop();
      receipts.stop();
    },
    dispose() { offFault(); player.detach(); },
  };
}
export type Agent = ReturnType<typeof createAgent>;
