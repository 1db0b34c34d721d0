import { z } from 'zod';
import { AgentHeader, Envelope, EpochMs, Id } from './envelope.js';
import { Priority, Volume } from './priority.js';

/** "HH:MM" in the commune's timezone. */
export const ClockTime = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'time of day must be HH:MM (00:00-23:59)');

/** Quiet hours (default 21:30-05:00): non-emergency audio is refused inside them unless overridden. */
export const QuietHours = z.object({ start: ClockTime, end: ClockTime })
  .refine((q) => q.start !== q.end, 'quiet hours must not start and end at the same time');
export type QuietHours = z.infer<typeof QuietHours>;

/** What happens to an airing that a higher-priority one interrupts. */
export const InterruptPolicy = z.enum(['drop', 'restart', 'resume']);
export type InterruptPolicy = z.infer<typeof InterruptPolicy>;

export const Sha256 = z.string().regex(/^[0-9a-f]{64}$/);

/** One item of an airing as the agent plays it (TTS is rendered to media before it is planned). */
export const AiringItem = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('media'),
    mediaId: z.string().min(1).max(64),
    /** sha256 of the distribution file (Ogg/Opus) the agent downloads and verifies. */
    sha256: Sha256,
    sizeBytes: z.number().int().positive(),
    durationMs: z.number().int().positive(),
    /** Path on the controller's HTTP base, e.g. /api/v1/media/{id}/audio?format=opus. */
    path: z.string().startsWith('/').max(300),
  }),
  z.object({ kind: z.literal('silence'), durationMs: z.number().int().positive().max(600_000) }),
  /** A chime the agent synthesises (no download). */
  z.object({ kind: z.literal('chime'), chime: z.enum(['attention', 'start', 'end']), durationMs: z.number().int().positive().max(10_000) }),
  /** Relay of an external stream for a duration (live work); the agent receives it over RTP. */
  z.object({ kind: z.literal('relay'), url: z.string().url().max(500), durationMs: z.number().int().positive() }),
]);
export type AiringItem = z.infer<typeof AiringItem>;

/**
 * A concrete airing on one node. `id` is deterministic: the same schedule and slot always give the same
 * id, so receipts stay unique across re-plans, retries and restarts.
 */
export const Airing = z.object({
  id: z.string().min(8).max(80),
  scheduleId: Id,
  programmeId: Id,
  title: z.string().max(200),
  /** Start in controller time (epoch ms). */
  startAt: EpochMs,
  durationMs: z.number().int().positive(),
  priority: Priority,
  /** Operator order among equal-priority airings that overlap (lower plays first). */
  rank: z.number().int().default(0),
  volume: Volume.optional(),
  onInterrupt: InterruptPolicy.default('drop'),
  /** Saved with an explicit quiet-hours override (and a reason in the audit trail). */
  quietOverride: z.boolean().default(false),
  items: z.array(AiringItem).min(1).max(200),
});
export type Airing = z.infer<typeof Airing>;

/** Retained on radio/v1/node/{id}/plan: the node's next 48 hours, versioned. Replaces the previous one. */
export const Plan = Envelope.extend({
  nodeId: Id,
  version: z.number().int().positive(),
  from: EpochMs,
  to: EpochMs,
  timezone: z.string().default('Asia/Ho_Chi_Minh'),
  quietHours: QuietHours,
  airings: z.array(Airing).max(2000),
}).refine((p) => p.to > p.from, 'plan window must end after it starts');
export type Plan = z.infer<typeof Plan>;

/** On radio/v1/node/{id}/plan/ack: the agent applied (or rejected) a plan version. */
export const PlanAck = AgentHeader.extend({
  version: z.number().int().positive(),
  status: z.enum(['applied', 'rejected']),
  error: z.string().max(500).optional(),
  /** Media of upcoming airings not yet in the cache. */
  missing: z.array(z.string().max(64)).max(2000).default([]),
});
export type PlanAck = z.infer<typeof PlanAck>;

export const ReceiptState = z.enum(['started', 'finished', 'interrupted', 'failed']);
export type ReceiptState = z.infer<typeof ReceiptState>;

/** Proof of play. `id` = `${airingId}:${state}[:n]`, so the controller stores each exactly once. */
export const Receipt = z.object({
  id: z.string().min(1).max(120),
  airingId: z.string().min(1).max(80),
  state: ReceiptState,
  /** When it happened, controller time by the agent's estimate. */
  at: EpochMs,
  /** started: actual − scheduled start, ms (true-time error needs the DAC; this is the agent's view). */
  startErrorMs: z.number().optional(),
  /** failed/interrupted: why (media_missing, quiet_hours, preempted, amplifier_fault, …). */
  reason: z.string().max(200).optional(),
  interruptedBy: z.string().max(80).optional(),
  playedMs: z.number().int().nonnegative().optional(),
});
export type Receipt = z.infer<typeof Receipt>;

/** On radio/v1/node/{id}/receipts: queued on disk while offline, resent until acknowledged. */
export const ReceiptBatch = AgentHeader.extend({ receipts: z.array(Receipt).min(1).max(200) });
export type ReceiptBatch = z.infer<typeof ReceiptBatch>;

/** On radio/v1/node/{id}/receipts/ack: sent after the database commit; the agent then drops them. */
export const ReceiptAck = Envelope.extend({ ids: z.array(z.string().min(1).max(120)).max(200) });
export type ReceiptAck = z.infer<typeof ReceiptAck>;
