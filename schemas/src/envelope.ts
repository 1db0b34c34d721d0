import { z } from 'zod';

export const PROTOCOL_VERSION = 1 as const;
export const TOPIC_ROOT = 'radio/v1' as const;

/** Largest MQTT payload any side accepts; bigger ones are dropped before parsing. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;

export const Id = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'ids are 1-64 chars of a-z, 0-9, _ or -, starting with a letter or digit');
export type Id = z.infer<typeof Id>;

/** Epoch milliseconds (controller time on controller→agent messages). */
export const EpochMs = z.number().int().nonnegative();

/**
 * Room for the Ed25519 signature the security work adds: the signature covers the canonical JSON of the
 * message without `sig`. Agents will verify against a key pinned at provisioning.
 */
export const Signature = z.object({
  alg: z.literal('ed25519'),
  keyId: z.string().min(1).max(64),
  value: z.string().min(1).max(200),
});

/** Every controller→agent message carries this envelope. */
export const Envelope = z.object({
  v: z.literal(PROTOCOL_VERSION),
  msgId: z.string().min(8).max(64),
  issuedAt: EpochMs,
  expiresAt: EpochMs.optional(),
  /** Monotonic per sender; receivers drop a seq they have already seen from the same sender epoch. */
  seq: z.number().int().nonnegative(),
  sig: Signature.optional(),
});
export type Envelope = z.infer<typeof Envelope>;

/** Agent→controller messages carry the protocol version and the agent's own timestamp. */
export const AgentHeader = z.object({
  v: z.literal(PROTOCOL_VERSION),
  ts: EpochMs,
});
