import { z } from 'zod';
import { AgentHeader, EpochMs, Id } from './envelope.js';
import { Priority, Volume } from './priority.js';
import { LiveNodeState, LiveReceptionStats } from './live.js';

/** Retained on radio/v1/node/{id}/status. The agent's last will publishes `offline` here. */
export const Availability = AgentHeader.extend({
  state: z.enum(['online', 'offline']),
  /** Why offline: `lwt` (broker published the will), `shutdown` (clean stop), `controller` (set by controller). */
  reason: z.enum(['lwt', 'shutdown', 'controller', 'connect']).optional(),
  agentVersion: z.string().max(40).optional(),
  bootId: z.string().max(64).optional(),
});
export type Availability = z.infer<typeof Availability>;

export const LineFault = z.enum(['ok', 'open', 'short']);
export type LineFault = z.infer<typeof LineFault>;

export const AmplifierState = z.enum(['off', 'warming', 'on', 'fault']);
export type AmplifierState = z.infer<typeof AmplifierState>;

export const SpeakerLine = z.object({
  id: z.string().min(1).max(32),
  impedanceOhm: z.number().nonnegative(),
  nominalOhm: z.number().positive(),
  fault: LineFault,
});
export type SpeakerLine = z.infer<typeof SpeakerLine>;

export const PowerState = z.object({
  source: z.enum(['mains', 'battery']),
  mainsV: z.number().nonnegative(),
  batteryV: z.number().nonnegative(),
  batteryPct: z.number().min(0).max(100).optional(),
});

export const ModemState = z.object({
  rssiDbm: z.number().min(-150).max(0),
  operator: z.string().max(40),
  tech: z.enum(['2g', '3g', '4g', '5g', 'ethernet', 'wifi', 'none']).optional(),
});

export const GpsFix = z.object({
  lat: z.number().min(-90).max(90),
  lon: z.number().min(-180).max(180),
  fix: z.boolean(),
});

export const ClockState = z.object({
  /** Estimated controller time − agent clock, ms. */
  offsetMs: z.number(),
  /** Round-trip of the best recent samples, ms. */
  rttMs: z.number().nonnegative(),
  /** Estimated rate error of the agent clock, parts per million. */
  driftPpm: z.number(),
  synced: z.boolean(),
});

export const CacheState = z.object({
  usedBytes: z.number().int().nonnegative(),
  capacityBytes: z.number().int().nonnegative(),
  items: z.number().int().nonnegative(),
  missingSoon: z.number().int().nonnegative().default(0),
});

export const NowPlaying = z.object({
  kind: z.enum(['airing', 'live', 'test_tone']),
  id: z.string().max(128),
  priority: Priority,
  title: z.string().max(200).optional(),
  startedAt: EpochMs,
});

/**
 * Reception of the live session on this node (the one playing, or the last one for a while after it
 * ended): the receiver-side figures of the RTP path (RFC 3550 §6.4.2 terms), so a technician sees a
 * lossy 4G link in the node's health, not only in a session's receipts.
 */
export const LiveReception = LiveReceptionStats.extend({
  sessionId: z.string().min(1).max(64),
  state: LiveNodeState,
  /** Frames whose own packet did not arrive in time (recovered by RED or lost), percent of the frames due. */
  lossPct: z.number().min(0).max(100),
  /** Agent time the session ended on this node (absent while it runs). */
  endedAt: EpochMs.optional(),
});
export type LiveReception = z.infer<typeof LiveReception>;

/** Periodic health on radio/v1/node/{id}/telemetry. Everything a technician needs to judge a cluster. */
export const Telemetry = AgentHeader.extend({
  uptimeS: z.number().nonnegative(),
  agentVersion: z.string().max(40),
  firmwareVersion: z.string().max(40),
  amplifier: z.object({ power: z.boolean(), state: AmplifierState, tempC: z.number() }),
  lines: z.array(SpeakerLine).max(16),
  volume: Volume,
  mute: z.boolean(),
  power: PowerState,
  temperatureC: z.number(),
  modem: ModemState,
  gps: GpsFix.nullable(),
  clock: ClockState,
  cache: CacheState,
  playing: NowPlaying.nullable(),
  /** Live-session reception; optional so agents that predate it stay valid. */
  live: LiveReception.optional(),
});
export type Telemetry = z.infer<typeof Telemetry>;

export const FAULT_KINDS = ['amplifier', 'line_open', 'line_short', 'on_battery', 'over_temperature', 'clock_unsynced', 'cache'] as const;
export const FaultKind = z.enum(FAULT_KINDS);
export type FaultKind = z.infer<typeof FaultKind>;

/** Fault transitions on radio/v1/node/{id}/event, published the moment the agent sees them. */
export const FaultEvent = AgentHeader.extend({
  kind: z.literal('fault'),
  fault: FaultKind,
  state: z.enum(['raised', 'cleared']),
  /** Speaker line, for line faults. */
  lineId: z.string().max(32).optional(),
  detail: z.string().max(500).optional(),
});
export type FaultEvent = z.infer<typeof FaultEvent>;

/** The agent warns that an airing starting soon has media it has not cached. */
export const CacheWarningEvent = AgentHeader.extend({
  kind: z.literal('cache_missing'),
  airingId: z.string().max(80),
  mediaIds: z.array(z.string().max(64)).max(200),
  startAt: EpochMs,
  detail: z.string().max(500).optional(),
});
export type CacheWarningEvent = z.infer<typeof CacheWarningEvent>;

export const NodeEvent = z.discriminatedUnion('kind', [FaultEvent, CacheWarningEvent]);
export type NodeEvent = z.infer<typeof NodeEvent>;

export { Id };
