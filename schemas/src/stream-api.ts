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

/**
 * Query of GET /api/v1/zones/{id}/stream.{format}: players (VLC, IP speakers) cannot send a header.
 * `key`: the zone's listen key (grants listening to that zone only; it wins over `token` when both are given);
 * `token`: a user's bearer token (expires, opens the whole API: for a person's own player, never a speaker).
 */
export const ZoneStreamQuery = z.object({
  key: z.string().max(200).optional(),
  token: z.string().max(2000).optional(),
});
export type ZoneStreamQuery = z.infer<typeof ZoneStreamQuery>;

/** A zone's listen key as the operator sees it. */
export const ZoneStreamListenKey = z.object({
  /** The key (base64url, 192 random bits); null when the controller cannot show it again (rotate to get one). */
  key: z.string().nullable(),
  createdAt: EpochMs,
  rotatedAt: EpochMs,
});
export type ZoneStreamListenKey = z.infer<typeof ZoneStreamListenKey>;

/** GET /api/v1/zones/{id}/stream: the stream URLs of a zone and who listens. */
export const ZoneStreamInfo = z.object({
  zoneId: Id,
  /** A mixer and at least one encoder run (someone listens). */
  running: z.boolean(),
  listeners: z.object({ total: z.number().int().nonnegative(), ogg: z.number().int().nonnegative(), mp3: z.number().int().nonnegative() }),
  formats: z.array(z.object({
    format: StreamFormat,
    contentType: z.string(),
    /** Path on the controller; authenticate with `?key=<listen key>`, `Authorization: Bearer`, `?token=<bearer token>` or a node's HTTP Basic credentials. */
    path: z.string(),
    /** Absolute URL on the controller's public address. */
    url: z.string(),
    /** `url` with the zone's listen key (`?key=`), for speakers and players; null when `listenKey` is. */
    listenUrl: z.string().nullable(),
    bitrateKbps: z.number().int().positive(),
  })),
  /**
   * The zone's listen key (created on the first look), for roles that may hand it out (admin, operator);
   * null for other roles.
   */
  listenKey: ZoneStreamListenKey.nullable(),
  onAir: StreamOnAir,
  since: EpochMs.nullable(),
});
export type ZoneStreamInfo = z.infer<typeof ZoneStreamInfo>;

/**
 * POST /api/v1/zones/{id}/stream/key (no body; admin, operator): a new listen key, shown this once in full
 * here (the JSON view shows it again to the same roles). URLs with the old key stop working at once, and
 * players listening on it are disconnected.
 */
export const ZoneStreamKeyRotated = z.object({
  zoneId: Id,
  key: z.string(),
  createdAt: EpochMs,
  rotatedAt: EpochMs,
  /** Players on the old key that were disconnected. */
  disconnected: z.number().int().nonnegative(),
  formats: z.array(z.object({ format: StreamFormat, listenUrl: z.string() })),
});
export type ZoneStreamKeyRotated = z.infer<typeof ZoneStreamKeyRotated>;
