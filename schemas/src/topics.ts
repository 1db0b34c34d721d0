import type { z } from 'zod';
import { CommandReply, Command } from './commands.js';
import { MAX_PAYLOAD_BYTES, TOPIC_ROOT } from './envelope.js';
import { Availability, NodeEvent, Telemetry } from './health.js';
import { TimeRequest, TimeResponse } from './timesync.js';
import { NodeConfig } from './node-config.js';
import { Plan, PlanAck, ReceiptAck, ReceiptBatch } from './plan.js';
import { LiveAnnouncement, LiveStatus } from './live.js';

/** Who publishes: `up` = agent → controller, `down` = controller → agent(s). */
export type Direction = 'up' | 'down';
export type Scope = 'node' | 'zone' | 'commune';

export interface TopicDef<S extends z.ZodType = z.ZodType> {
  /** Scope of the id in the topic: radio/v1/{scope}/{id}/{suffix}. */
  scope: Scope;
  suffix: string;
  direction: Direction;
  retained: boolean;
  qos: 0 | 1;
  schema: S;
}

function def<S extends z.ZodType>(d: TopicDef<S>): TopicDef<S> {
  return d;
}

/**
 * The one table of every MQTT topic and its payload. Publishers build topics and payloads from it;
 * subscribers parse with it. docs/protocol.md documents the same table.
 */
export const TOPICS = {
  status: def({ scope: 'node', suffix: 'status', direction: 'up', retained: true, qos: 1, schema: Availability }),
  telemetry: def({ scope: 'node', suffix: 'telemetry', direction: 'up', retained: false, qos: 0, schema: Telemetry }),
  event: def({ scope: 'node', suffix: 'event', direction: 'up', retained: false, qos: 1, schema: NodeEvent }),
  reply: def({ scope: 'node', suffix: 'reply', direction: 'up', retained: false, qos: 1, schema: CommandReply }),
  timeRequest: def({ scope: 'node', suffix: 'time/req', direction: 'up', retained: false, qos: 0, schema: TimeRequest }),
  planAck: def({ scope: 'node', suffix: 'plan/ack', direction: 'up', retained: false, qos: 1, schema: PlanAck }),
  receipts: def({ scope: 'node', suffix: 'receipts', direction: 'up', retained: false, qos: 1, schema: ReceiptBatch }),
  liveStatus: def({ scope: 'node', suffix: 'live/status', direction: 'up', retained: false, qos: 1, schema: LiveStatus }),
  live: def({ scope: 'node', suffix: 'live', direction: 'down', retained: true, qos: 1, schema: LiveAnnouncement }),
  /**
   * Announcements of scheduled relay feeds (those with `airing`): a topic of their own, so a relay airing
   * and an API session (an emergency) on the same node never overwrite each other's retained message.
   */
  liveFeed: def({ scope: 'node', suffix: 'live/feed', direction: 'down', retained: true, qos: 1, schema: LiveAnnouncement }),
  plan: def({ scope: 'node', suffix: 'plan', direction: 'down', retained: true, qos: 1, schema: Plan }),
  receiptAck: def({ scope: 'node', suffix: 'receipts/ack', direction: 'down', retained: false, qos: 1, schema: ReceiptAck }),
  nodeCommand: def({ scope: 'node', suffix: 'cmd', direction: 'down', retained: false, qos: 1, schema: Command }),
  zoneCommand: def({ scope: 'zone', suffix: 'cmd', direction: 'down', retained: false, qos: 1, schema: Command }),
  communeCommand: def({ scope: 'commune', suffix: 'cmd', direction: 'down', retained: false, qos: 1, schema: Command }),
  config: def({ scope: 'node', suffix: 'config', direction: 'down', retained: true, qos: 1, schema: NodeConfig }),
  timeResponse: def({ scope: 'node', suffix: 'time/resp', direction: 'down', retained: false, qos: 0, schema: TimeResponse }),
} as const;

export type TopicName = keyof typeof TOPICS;
export type PayloadOf<N extends TopicName> = z.infer<(typeof TOPICS)[N]['schema']>;

const ID_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;

export function topicFor(name: TopicName, id: string): string {
  if (!ID_RE.test(id)) throw new Error(`invalid ${TOPICS[name].scope} id for topic: ${JSON.stringify(id)}`);
  const t = TOPICS[name];
  return `${TOPIC_ROOT}/${t.scope}/${id}/${t.suffix}`;
}

/** Subscription filter for one topic kind across all ids: radio/v1/node/+/telemetry. */
export function filterFor(name: TopicName): string {
  const t = TOPICS[name];
  return `${TOPIC_ROOT}/${t.scope}/+/${t.suffix}`;
}

export interface ParsedTopic {
  name: TopicName;
  scope: Scope;
  id: string;
}

const BY_KEY = new Map<string, TopicName>(
  (Object.keys(TOPICS) as TopicName[]).map((n) => [`${TOPICS[n].scope}|${TOPICS[n].suffix}`, n]),
);

/** Inverse of topicFor; undefined for anything outside the table (including a wrong version root). */
export function parseTopic(topic: string): ParsedTopic | undefined {
  if (!topic.startsWith(`${TOPIC_ROOT}/`)) return undefined;
  const rest = topic.slice(TOPIC_ROOT.length + 1).split('/');
  if (rest.length < 3) return undefined;
  const [scope, id, ...suffix] = rest as [string, string, ...string[]];
  if (!ID_RE.test(id)) return undefined;
  const name = BY_KEY.get(`${scope}|${suffix.join('/')}`);
  if (!name) return undefined;
  return { name, scope: scope as Scope, id };
}

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; error: string };

/**
 * Decode a payload for a known topic kind: size guard first (before JSON.parse can be abused), then JSON,
 * then the zod schema. Never throws.
 */
export function decodePayload<N extends TopicName>(name: N, payload: Buffer | string): DecodeResult<PayloadOf<N>> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > MAX_PAYLOAD_BYTES) return { ok: false, error: `payload of ${size} bytes exceeds ${MAX_PAYLOAD_BYTES}` };
  let json: unknown;
  try {
    json = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch (e) {
    return { ok: false, error: `not JSON: ${(e as Error).message}` };
  }
  const r = TOPICS[name].schema.safeParse(json);
  if (!r.success) {
    const first = r.error.issues[0];
    const where = first?.path.length ? first.path.join('.') : '(root)';
    return { ok: false, error: `invalid ${name} payload at ${where}: ${first?.message ?? 'unknown'}` };
  }
  return { ok: true, value: r.data as PayloadOf<N> };
}

/** Validate and serialise an outbound payload; throws on a programming error (invalid payload). */
export function encodePayload<N extends TopicName>(name: N, value: PayloadOf<N>): string {
  const r = TOPICS[name].schema.safeParse(value);
  if (!r.success) throw new Error(`refusing to publish invalid ${name}: ${r.error.message}`);
  return JSON.stringify(r.data);
}

/**
 * The topics a node may publish and subscribe to (broker ACL), given its commune and zone. Used by the
 * embedded broker's hooks and written to Mosquitto's dynamic-security roles.
 */
export function nodeAcl(nodeId: string, zoneId: string | null, communeId: string): { publish: string[]; subscribe: string[] } {
  // Every id is validated: a '+', '#' or '/' in a zone or commune id would widen the node's access.
  for (const [what, id] of [['node', nodeId], ['zone', zoneId], ['commune', communeId]] as const) {
    if (id !== null && !ID_RE.test(id)) throw new Error(`invalid ${what} id for an ACL: ${JSON.stringify(id)}`);
  }
  const up = (Object.keys(TOPICS) as TopicName[]).filter((n) => TOPICS[n].direction === 'up');
  const publish = up.map((n) => topicFor(n, nodeId));
  const subscribe = [`${TOPIC_ROOT}/node/${nodeId}/#`, `${TOPIC_ROOT}/commune/${communeId}/#`];
  if (zoneId) subscribe.push(`${TOPIC_ROOT}/zone/${zoneId}/#`);
  return { publish, subscribe };
}
