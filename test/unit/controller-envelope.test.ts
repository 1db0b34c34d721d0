import { describe, expect, it } from 'vitest';
import { createEnvelopeFactory } from '../../controller/src/envelope.js';
import { Envelope } from '../../schemas/src/index.js';

describe('controller → agent envelopes', () => {
  it('gives every message its own id across refills of the id pool, valid by the schema, with seq rising', () => {
    let t = 1_800_000_000_000;
    const envelope = createEnvelopeFactory(() => t);
    const all = Array.from({ length: 1000 }, (_, i) => {
      if (i % 100 === 0) t += 1;
      return envelope(i % 2 ? 60_000 : undefined);
    });
    expect(new Set(all.map((e) => e.msgId)).size).toBe(1000);
    for (const e of all) {
      expect(e.msgId).toMatch(/^[A-Za-z0-9_-]{12}$/);
      expect(Envelope.safeParse(e).success).toBe(true);
    }
    for (let i = 1; i < all.length; i++) expect(all[i]!.seq).toBeGreaterThan(all[i - 1]!.seq);
    expect(all[1]!.expiresAt).toBe(all[1]!.issuedAt + 60_000);
    expect(all[0]!.expiresAt).toBeUndefined();
  });
});
