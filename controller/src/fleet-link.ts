import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import {
  decodePayload, encodePayload, filterFor, parseTopic, TOPICS,
  type CommandReply, type LiveStatus, type NodeEvent, type PayloadOf, type PlanAck, type Receipt, type Telemetry, type TopicName,
} from '../../schemas/src/index.js';
import { topicFor } from '../../schemas/src/index.js';
import type { EnvelopeFactory } from './envelope.js';

export interface FleetHandlers {
  /** Known node? Unknown ids are dropped (a forged or stale retained message). */
  isKnown(nodeId: string): boolean;
  onStatus(nodeId: string, online: boolean, p: PayloadOf<'status'>): void;
  onTelemetryBatch(batch: { nodeId: string; ts: number; t: Telemetry; json: string }[]): void;
  onEvent(nodeId: string, e: NodeEvent): void;
  onReply(nodeId: string, r: CommandReply): void;
  onPlanAck?(nodeId: string, a: PlanAck): void;
  onLiveStatus?(nodeId: string, s: LiveStatus): void;
  /**
   * Store receipts; return the ids now committed (new or already stored). They are acknowledged to
   * the agent only after this returns, so a receipt leaves the agent's queue only once it is in SQLite.
   */
  onReceipts?(nodeId: string, receipts: Receipt[]): string[];
}

const UP: TopicName[] = (Object.keys(TOPICS) as TopicName[]).filter((n) => TOPICS[n].direction === 'up');

/**
 * The controller's MQTT side: one client of the (embedded or external) broker. Every inbound payload is
 * decoded against schemas/ and dropped with a log line when invalid. Telemetry is queued and handed over
 * in one batch per tick so SQLite writes one transaction, not one per message.
 */
export function createFleetLink(deps: {
  url: string; username?: string; password?: string; log: Logger; now: () => number;
  envelope: EnvelopeFactory; handlers: FleetHandlers; flushMs?: number;
  /**
   * Publish inside the broker's process (the embedded broker): skips the round through our own MQTT
   * connection, on which the broker takes one publish after another: an emergency's 1,000 per-node
   * announcements leave side by side (`npm run bench -- live` prints when they reached the agents).
   */
  publishLocal?: (topic: string, payload: string, qos: 0 | 1, retain: boolean) => Promise<void>;
}) {
  const { log, now, handlers } = deps;
  let client: MqttClient | undefined;
  let flushTimer: NodeJS.Timeout | undefined;
  let queue: { nodeId: string; ts: number; t: Telemetry; json: string }[] = [];
  const counters = { received: 0, invalid: 0, unknownNode: 0, telemetry: 0, telemetryStored: 0 };

  function flush() {
    if (queue.length === 0) return;
    const batch = queue;
    queue = [];
    try { handlers.onTelemetryBatch(batch); counters.telemetryStored += batch.length; } catch (e) { log.error({ err: e }, 'telemetry batch failed'); }
  }

  function onMessage(topic: string, payload: Buffer) {
    counters.received++;
    const pt = parseTopic(topic);
    if (!pt || TOPICS[pt.name].direction !== 'up') return;
    if (!handlers.isKnown(pt.id)) { counters.unknownNode++; log.debug({ topic }, 'message from unknown node dropped'); return; }
    switch (pt.name) {
      case 'status': {
        if (payload.length === 0) return; // retained status cleared
        // Telemetry that arrived before this status must be handled before it, or a dead node's last
        // queued telemetry would bring it back online.
        flush();
        const r = decodePayload('status', payload);
        if (!r.ok) return invalid(topic, r.error);
        // No timestamp filtering: on a session takeover the broker publishes the old session's will
        // before it accepts the new CONNECT, so broker order is already the truth.
        handlers.onStatus(pt.id, r.value.state === 'online', r.value);
        return;
      }
      case 'telemetry': {
        const r = decodePayload('telemetry', payload);
        if (!r.ok) return invalid(topic, r.error);
        counters.telemetry++;
        queue.push({ nodeId: pt.id, ts: Math.floor(now()), t: r.value, json: JSON.stringify(r.value) });
        return;
      }
      case 'event': {
        flush(); // keep order with queued telemetry (alarm conditions)
        const r = decodePayload('event', payload);
        if (!r.ok) return invalid(topic, r.error);
        handlers.onEvent(pt.id, r.value);
        return;
      }
      case 'reply': {
        const r = decodePayload('reply', payload);
        if (!r.ok) return invalid(topic, r.error);
        handlers.onReply(pt.id, r.value);
        return;
      }
      case 'liveStatus': {
        const r = decodePayload('liveStatus', payload);
        if (!r.ok) return invalid(topic, r.error);
        handlers.onLiveStatus?.(pt.id, r.value);
        return;
      }
      case 'planAck': {
        const r = decodePayload('planAck', payload);
        if (!r.ok) return invalid(topic, r.error);
        handlers.onPlanAck?.(pt.id, r.value);
        return;
      }
      case 'receipts': {
        const r = decodePayload('receipts', payload);
        if (!r.ok) return invalid(topic, r.error);
        if (!handlers.onReceipts) return;
        let ids: string[];
        try { ids = handlers.onReceipts(pt.id, r.value.receipts); } catch (e) {
          // Not committed: no ack, the agent keeps them queued and retries.
          log.error({ err: e, nodeId: pt.id }, 'storing receipts failed');
          return;
        }
        if (ids.length) publish('receiptAck', pt.id, { ...deps.envelope(60_000), ids });
        return;
      }
      case 'timeRequest': {
        const t1 = now();
        const r = decodePayload('timeRequest', payload);
        if (!r.ok) return invalid(topic, r.error);
        // RFC 5905 on-wire: t1 = receive, t2 = transmit, both controller time.
        publish('timeResponse', pt.id, { ...deps.envelope(10_000), id: r.value.id, t0: r.value.t0, t1, t2: now() });
        return;
      }
      case 'nodeCommand': case 'zoneCommand': case 'communeCommand': case 'timeResponse': case 'config': case 'plan': case 'receiptAck': case 'live': case 'liveFeed':
        return;
    }
  }

  function invalid(topic: string, error: string) {
    counters.invalid++;
    log.warn({ topic, error }, 'invalid MQTT payload dropped');
  }

  /**
   * In-process publishes run side by side in the broker; those on one topic are chained so that they
   * keep their order (an `ended` announcement must not overtake its `active`), as on a connection.
   */
  const localChains = new Map<string, Promise<void>>();
  function send(topic: string, body: string, qos: 0 | 1, retain: boolean) {
    const local = deps.publishLocal;
    if (!local) {
      client?.publish(topic, body, { qos, retain }, (err) => {
        if (err) log.warn({ topic, err: err.message }, 'publish failed');
      });
      return;
    }
    const prev = localChains.get(topic);
    const next = (prev ? prev.then(() => local(topic, body, qos, retain)) : local(topic, body, qos, retain))
      .catch((err: Error) => log.warn({ topic, err: err.message }, 'publish failed'));
    localChains.set(topic, next);
    void next.then(() => { if (localChains.get(topic) === next) localChains.delete(topic); });
  }

  function publish<N extends TopicName>(name: N, id: string, payload: PayloadOf<N>, opts?: { retain?: boolean }): string {
    const topic = topicFor(name, id);
    const body = encodePayload(name, payload);
    const def = TOPICS[name];
    send(topic, body, def.qos, opts?.retain ?? def.retained);
    return body;
  }

  return {
    counters,
    publish,
    /** Raw publish for republishing stored retained messages. */
    publishRaw(topic: string, payload: string, retain: boolean) {
      send(topic, payload, 1, retain);
    },
    connected: () => client?.connected ?? false,
    async start() {
      client = await mqtt.connectAsync(deps.url, {
        clientId: `controller-${process.pid}-${Math.floor(now()).toString(36)}`,
        username: deps.username, password: deps.password,
        protocolVersion: 4, clean: true, keepalive: 30, reconnectPeriod: 1000, connectTimeout: 10_000,
      });
      client.on('message', onMessage);
      client.on('error', (e) => log.warn({ err: e.message }, 'controller MQTT error'));
      client.on('reconnect', () => log.info('controller MQTT reconnecting'));
      client.on('connect', () => { void subscribeAll(); });
      await subscribeAll();
      flushTimer = setInterval(flush, deps.flushMs ?? 250);
      flushTimer.unref();
    },
    async stop() {
      clearInterval(flushTimer);
      flush();
      const c = client;
      client = undefined;
      if (c) await c.endAsync(true);
    },
    flush,
  };

  async function subscribeAll() {
    if (!client) return;
    const filters = Object.fromEntries(UP.map((n) => [filterFor(n), { qos: TOPICS[n].qos }]));
    const granted = await client.subscribeAsync(filters);
    for (const g of granted) if (g.qos === 128) log.error({ topic: g.topic }, 'broker refused controller subscription');
  }
}
export type FleetLink = ReturnType<typeof createFleetLink>;
