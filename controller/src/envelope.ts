import crypto from 'node:crypto';
import { PROTOCOL_VERSION, type Envelope } from '../../schemas/src/index.js';

/**
 * Builds the envelope of every controller→agent message. seq starts from the wall clock in µs so it keeps
 * increasing across controller restarts; agents drop a seq they have already seen.
 */
export function createEnvelopeFactory(now: () => number) {
  let seq = Math.floor(now() * 1000);
  return (ttlMs?: number): Envelope => {
    const issuedAt = Math.floor(now());
    seq = Math.max(seq + 1, Math.floor(now() * 1000));
    return {
      v: PROTOCOL_VERSION,
      msgId: crypto.randomBytes(9).toString('base64url'),
      issuedAt,
      ...(ttlMs !== undefined ? { expiresAt: issuedAt + ttlMs } : {}),
      seq,
    };
  };
}
export type EnvelopeFactory = ReturnType<typeof createEnvelopeFactory>;
