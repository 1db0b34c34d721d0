import crypto from 'node:crypto';
import { PROTOCOL_VERSION, type Envelope } from '../../schemas/src/index.js';

/**
 * Builds the envelope of every controller→agent message. seq starts from the wall clock in µs so it keeps
 * increasing across controller restarts; agents drop a seq they have already seen.
 */
export function createEnvelopeFactory(now: () => number) {
  let seq = Math.floor(now() * 1000);
  // Message ids from one CSPRNG draw per 256 envelopes: a live session builds one envelope per target
  // (1,000 in an emergency's critical path), and a draw per envelope was most of their cost.
  const ID_BYTES = 9;
  const pool = Buffer.alloc(ID_BYTES * 256);
  let at = pool.length;
  const msgId = (): string => {
    if (at === pool.length) { crypto.randomFillSync(pool); at = 0; }
    at += ID_BYTES;
    return pool.toString('base64url', at - ID_BYTES, at);
  };
  return (ttlMs?: number): Envelope => {
    const issuedAt = Math.floor(now());
    seq = Math.max(seq + 1, Math.floor(now() * 1000));
    return {
      v: PROTOCOL_VERSION,
      msgId: msgId(),
      issuedAt,
      ...(ttlMs !== undefined ? { expiresAt: issuedAt + ttlMs } : {}),
      seq,
    };
  };
}
export type EnvelopeFactory = ReturnType<typeof createEnvelopeFactory>;
