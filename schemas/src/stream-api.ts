import { z } from 'zod';
import { EpochMs, Id } from './envelope.js';
import { Priority } from './priority.js';

/** Pull-stream formats of a zone: Ogg/Opus and MP3 (GET /api/v1/zones/{id}/stream.{format}). */
export const StreamFormat = z.enum(['ogg', 'mp3']);
export type StreamFormat = z.infer<typeof StreamFormat>;

/** What a zone's stream carries right now (the same arbitration as the agents: `preempts`). */
export const StreamOnAir = z.discriminatedUnion('origin', [
  z.object({ origin: z.literal('live'), sessionId: z.string(), priority: Priority }),
  z.object({ origin: z.literal('scheduled'), airingId: z.string(), title: z.string(), priority: Priority }),
  z.object({ origin: z.literal('silence') }),
]);
export type StreamOnAir = z.infer<typeof StreamOnAir>;

/** GET /api/v1/zones/{id}/stream: the stream URLs of a zone and who listens. */
export const ZoneStreamInfo = z.object({
  zoneId: Id,
  /** A mixer and at least one encoder run (someone listens). */
  running: z.boolean(),
  listeners: z.object({ total: z.number().int().nonnegative(), ogg: z.number().int().nonnegative(), mp3: z.number().int().nonnegative() }),
  formats: z.array(z.object({
    format: StreamFormat,
    contentType: z.string(),
    /** Path on the controller; authenticate with `Authorization: Bearer`, `?token=<bearer token>` or a node's HTTP Basic credentials. */
    path: z.string(),
    /** Absolute URL on the controller's public address. */
    url: z.string(),
    bitrateKbps: z.number().int().positive(),
  })),
  onAir: StreamOnAir,
  since: EpochMs.nullable(),
});
export type ZoneStreamInfo = z.infer<typeof ZoneStreamInfo>;
