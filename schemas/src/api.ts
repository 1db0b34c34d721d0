import { z } from 'zod';
import { CommandBody } from './commands.js';
import { EpochMs, Id } from './envelope.js';
import { GpsFix, Telemetry } from './health.js';

/** Every API error: a stable machine `code` and a human `message` that says what is wrong. */
export const ApiError = z.object({
  code: z.string(),
  message: z.string(),
  statusCode: z.number().int().optional(),
});
export type ApiError = z.infer<typeof ApiError>;

export const LoginBody = z.object({ username: z.string().min(1).max(64), password: z.string().min(1).max(256) });
export const LoginReply = z.object({ token: z.string(), expiresAt: EpochMs, username: z.string(), role: z.string() });

export const Zone = z.object({
  id: Id,
  communeId: Id,
  name: z.string(),
  description: z.string().nullable(),
  createdAt: EpochMs,
  nodeCount: z.number().int().nonnegative(),
});
export type Zone = z.infer<typeof Zone>;
export const ZoneCreate = z.object({
  id: Id.optional(),
  name: z.string().trim().min(1).max(120),
  description: z.string().max(500).optional(),
});
export const ZoneUpdate = ZoneCreate.omit({ id: true }).partial();

export const Position = z.object({ lat: z.number().min(-90).max(90), lon: z.number().min(-180).max(180) });

export const NodeStatus = z.enum(['online', 'offline']);
export type NodeStatus = z.infer<typeof NodeStatus>;

export const Node = z.object({
  id: Id,
  communeId: Id,
  zoneId: Id,
  name: z.string(),
  status: NodeStatus,
  lastSeenAt: EpochMs.nullable(),
  statusChangedAt: EpochMs.nullable(),
  position: Position.nullable(),
  hardware: z.record(z.string(), z.unknown()),
  maintenance: z.boolean(),
  actualOnly: z.boolean(),
  agentVersion: z.string().nullable(),
  createdAt: EpochMs,
});
export type Node = z.infer<typeof Node>;

export const NodeCreate = z.object({
  id: Id.optional(),
  name: z.string().trim().min(1).max(120),
  zoneId: Id,
  position: Position.optional(),
  hardware: z.record(z.string(), z.unknown()).optional(),
  /** CAP Test/Exercise alerts never sound on an actual-only cluster. */
  actualOnly: z.boolean().optional(),
});
export const NodeUpdate = z.object({
  name: z.string().trim().min(1).max(120).optional(),
  zoneId: Id.optional(),
  position: Position.nullable().optional(),
  hardware: z.record(z.string(), z.unknown()).optional(),
  maintenance: z.boolean().optional(),
  actualOnly: z.boolean().optional(),
});

export const NodeCredentials = z.object({
  username: z.string(),
  password: z.string(),
  mqttUrl: z.string(),
  httpBase: z.string(),
});
/** Returned once, by create and by rotate-credentials; the controller keeps only a hash. */
export const ProvisionReply = z.object({ node: Node, credentials: NodeCredentials });

export const AlarmType = z.enum(['offline', 'amplifier_fault', 'line_open', 'line_short', 'on_battery', 'over_temperature']);
export type AlarmType = z.infer<typeof AlarmType>;
export const Alarm = z.object({
  id: z.number().int(),
  communeId: Id,
  nodeId: Id,
  type: AlarmType,
  severity: z.enum(['critical', 'major', 'minor']),
  state: z.enum(['active', 'cleared']),
  detail: z.string().nullable(),
  raisedAt: EpochMs,
  clearedAt: EpochMs.nullable(),
  ackedAt: EpochMs.nullable(),
  ackedBy: z.string().nullable(),
});
export type Alarm = z.infer<typeof Alarm>;

export const TelemetrySample = z.object({ ts: EpochMs, data: Telemetry });
export const TelemetryPoint = z.object({
  ts: EpochMs,
  /** Number of raw samples this point summarises (1 = raw). */
  n: z.number().int().positive(),
  temperatureC: z.number(),
  batteryV: z.number(),
  mainsV: z.number(),
  rssiDbm: z.number(),
  volume: z.number(),
  clockOffsetMs: z.number(),
  /** Live-session reception (Telemetry.live): the sample's figures, or the worst of a rollup bucket; absent without a live session. */
  liveLossPct: z.number().optional(),
  liveJitterMs: z.number().optional(),
});
export const NodeDetail = Node.extend({
  telemetry: TelemetrySample.nullable(),
  alarms: z.array(Alarm),
});
export const TelemetryQuery = z.object({
  from: z.coerce.number().int().nonnegative().optional(),
  to: z.coerce.number().int().nonnegative().optional(),
  limit: z.coerce.number().int().min(1).max(5000).default(500),
});

export const CommandRequest = z.object({
  /** How long to wait for replies before answering; 0 = answer at once with pending results. */
  waitMs: z.number().int().min(0).max(30_000).default(5000),
}).and(CommandBody);
export const CommandResultRow = z.object({
  nodeId: Id,
  status: z.enum(['pending', 'ok', 'error', 'timeout']),
  error: z.string().nullable(),
  data: z.record(z.string(), z.unknown()).nullable(),
  rttMs: z.number().nullable(),
});
export const CommandResult = z.object({
  transaction: z.string(),
  target: z.object({ scope: z.enum(['node', 'zone', 'commune']), id: z.string() }),
  name: z.string(),
  results: z.array(CommandResultRow),
});

export const Webhook = z.object({
  id: z.number().int(),
  url: z.string().url(),
  events: z.array(z.string()),
  enabled: z.boolean(),
  createdAt: EpochMs,
});
export const WebhookCreate = z.object({
  url: z.string().url().refine((u) => /^https?:/.test(u), 'webhook url must be http(s)'),
  secret: z.string().min(8).max(200).optional(),
  /** Event types to deliver (e.g. alarm.raised); empty = all. */
  events: z.array(z.string().max(64)).max(32).default([]),
});

export const AuditEntry = z.object({
  id: z.number().int(),
  communeId: z.string().nullable(),
  ts: EpochMs,
  actor: z.string(),
  action: z.string(),
  target: z.string().nullable(),
  detail: z.record(z.string(), z.unknown()).nullable(),
});

/** Messages on the WebSocket /api/v1/events. */
export const ServerEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('hello'), ts: EpochMs }),
  z.object({ type: z.literal('node.status'), ts: EpochMs, nodeId: Id, zoneId: Id, status: z.enum(['online', 'offline']) }),
  z.object({ type: z.literal('alarm.raised'), ts: EpochMs, alarm: Alarm }),
  z.object({ type: z.literal('alarm.cleared'), ts: EpochMs, alarm: Alarm }),
  z.object({ type: z.literal('alarm.acked'), ts: EpochMs, alarm: Alarm }),
  z.object({ type: z.literal('command.reply'), ts: EpochMs, transaction: z.string(), nodeId: Id, status: z.string() }),
  z.object({ type: z.literal('job.progress'), ts: EpochMs, jobId: z.string(), kind: z.string(), percent: z.number(), state: z.enum(['running', 'done', 'failed']) }),
  /** A live session started, changed reach (a node joined, became ready, played, failed) or ended. */
  z.object({
    type: z.literal('live.session'), ts: EpochMs, sessionId: z.string(), state: z.enum(['active', 'ended']),
    targets: z.number().int(), ready: z.number().int(), playing: z.number().int(), speakNow: z.boolean(), endReason: z.string().optional(),
  }),
]);
export type ServerEvent = z.infer<typeof ServerEvent>;

export const Paged = <T extends z.ZodType>(item: T) =>
  z.object({ items: z.array(item), total: z.number().int(), offset: z.number().int(), limit: z.number().int() });

export { GpsFix };
