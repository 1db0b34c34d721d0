import crypto from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import {
  decodePayload, effectiveVolume, encodePayload, PROTOCOL_VERSION, TOPICS, topicFor,
  type Command, type CommandReply, type Envelope, type NodeConfig, type PayloadOf, type Telemetry, type TopicName,
} from '../../schemas/src/index.js';
import { systemTimers, type Clock, type Timers } from './clock.js';
import type { Hardware, HardwareFault } from './hardware.js';
import { createPlayer, toneProgram } from './player.js';
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
}

type AgentEvents = {
  connected: () => void;
  config: (c: NodeConfig) => void;
  command: (c: Command, r: CommandReply) => void;
  invalid: (topic: string, error: string) => void;
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
  const clockSource: ClockSource = o.clockSource ?? estimator;
  const bootId = crypto.randomBytes(6).toString('hex');
  const startedAt = clock.now();
  const listeners: { [K in keyof AgentEvents]: Set<AgentEvents[K]> } = { connected: new Set(), config: new Set(), command: new Set(), invalid: new Set() };
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

  function header() { return { v: PROTOCOL_VERSION, ts: Math.floor(clock.now()) }; }

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
    const v = effectiveVolume({ technicianMute: technician.mute, technicianVolume: technician.volume, defaultVolume: config?.defaultVolume ?? 70 });
    hw.setVolume(v);
    hw.setMute(v === 0 && technician.mute === true);
  }

  function telemetry(): Telemetry {
    const s = hw.status();
    const e = clockSource.estimate();
    const p = player.playing();
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
      cache: { usedBytes: 0, capacityBytes: 0, items: 0, missingSoon: 0 },
      playing: p ? { kind: p.program.kind, id: p.program.id, priority: p.claim.priority, startedAt: Math.floor(p.startedAt) } : null,
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
    // Fast until synced, then every syncMs; a little jitter so a fleet does not sync in lockstep.
    const base = estimator.estimate().synced ? syncMs : 1000;
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
            () => { void hw.setAmplifier(false).catch(() => {}); });
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
      return;
    }
    switch (name) {
      case 'config': {
        const c = r.value as NodeConfig;
        if (c.nodeId !== o.nodeId) { log.warn({ topic }, 'config for another node dropped'); return; }
        if (!acceptEnvelope(topic, c)) return;
        config = c;
        applyVolume();
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
        return;
      }
      case 'nodeCommand': case 'zoneCommand': case 'communeCommand':
        void onCommand(topic, r.value as Command);
        return;
      case 'status': case 'telemetry': case 'event': case 'reply': case 'timeRequest': case 'planAck': case 'receipts':
      case 'plan': case 'receiptAck':
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
      client = mqtt.connect(o.brokerUrl, {
        clientId: o.nodeId, username: o.credentials.username, password: o.credentials.password,
        protocolVersion: 4, clean: true, keepalive: keepaliveS, reconnectPeriod: 0, connectTimeout: 10_000,
        will: will(), resubscribe: false, queueQoSZero: false,
      });
      client.on('connect', () => { void onConnect(); });
      client.on('message', onMessage);
      client.on('close', () => scheduleReconnect());
      client.on('error', (e) => log.debug({ err: e.message }, 'mqtt error'));
      telemetryTimer = timers.setInterval(() => {
        try { publish('telemetry', telemetry()); } catch (e) { log.error({ err: (e as Error).message }, 'telemetry failed'); }
      }, config?.telemetryIntervalMs ?? telemetryMs);
      scheduleSync();
    },
    /** Clean stop: retained `offline` (reason shutdown), then disconnect. */
    async stop() {
      if (!running) return;
      running = false;
      timers.clearInterval(telemetryTimer);
      timers.clearTimeout(syncTimer);
      timers.clearTimeout(reconnectTimer);
      reconnectTimer = undefined;
      const c = client;
      client = undefined;
      if (c?.connected) {
        await new Promise<void>((resolve) => c.publish(topicFor('status', o.nodeId), encodePayload('status', { ...header(), state: 'offline', reason: 'shutdown', bootId }), { qos: 1, retain: true }, () => resolve()));
      }
      await c?.endAsync(false).catch(() => {});
      player.stop();
    },
    /** Drop the connection without DISCONNECT (the broker publishes the will), as a crash would. */
    async kill() {
      running = false;
      timers.clearInterval(telemetryTimer);
      timers.clearTimeout(syncTimer);
      timers.clearTimeout(reconnectTimer);
      const c = client;
      client = undefined;
      c?.stream?.destroy();
      await c?.endAsync(true).catch(() => {});
      player.stop();
    },
    dispose() { offFault(); player.detach(); },
  };
}
export type Agent = ReturnType<typeof createAgent>;
