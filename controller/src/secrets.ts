import crypto from 'node:crypto';

/** Machine secrets (node passwords, API tokens): 256 random bits, base64url. */
export function newSecret(bytes = 32): string {
  return crypto.randomBytes(bytes).toString('base64url');
}

/**
 * Machine secrets are stored as SHA-256, not a slow KDF: they carry ≥128 bits of entropy, and 2,000
 * agents reconnecting after a broker restart must not queue behind scrypt on 2 cores (STACK.md).
 */
export function hashSecret(secret: string): string {
  return crypto.createHash('sha256').update(secret).digest('hex');
}

export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

/** Human passwords: scrypt with a per-user salt. Format: scrypt$N$salt$hash. */
export function hashPassword(password: string): string {
  const salt = crypto.randomBytes(16);
  const hash = crypto.scryptSync(password, salt, 32, { N: 16384 });
  return `scrypt$16384$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

export function verifyPassword(password: string, stored: string): boolean {
  const [scheme, n, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !n || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const got = crypto.scryptSync(password, Buffer.from(salt, 'base64url'), expected.length, { N: Number(n) });
  return crypto.timingSafeEqual(got, expected);
}

/** Short random id with a prefix, for rows created without a caller-chosen id. */
export function newId(prefix: string): string {
  return `${prefix}-${crypto.randomBytes(5).toString('hex')}`;
}
