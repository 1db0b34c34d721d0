import type { Logger } from 'pino';
import { AppError } from './errors.js';
import { hashPassword, hashSecret, newSecret, verifyPassword } from './secrets.js';
import type { Store } from './store/store.js';

export interface Principal {
  userId: number;
  username: string;
  role: string;
  communeId: string;
}

const TOKEN_TTL_MS = 12 * 3600_000;

/** Users and bearer tokens. The full role model is its own issue; today: admin (and any roles seeded). */
export function createAuth({ store, log, now, defaultCommuneId }: { store: Store; log: Logger; now: () => number; defaultCommuneId: string }) {
  const db = store.db;
  return {
    /** First start: create `admin` with the given password, or generate one and print it once. */
    ensureAdmin(password: string | undefined): { created: boolean; generated?: string } {
      const exists = db.prepare(`SELECT 1 FROM users WHERE username = 'admin'`).get();
      if (exists) return { created: false };
      const pw = password ?? newSecret(12);
      db.prepare(`INSERT INTO users (commune_id, username, password_hash, role, created_at) VALUES (?, 'admin', ?, 'admin', ?)`)
        .run(defaultCommuneId, hashPassword(pw), now());
      store.audit(defaultCommuneId, now(), 'system', 'user.create', 'admin', { generated: !password });
      if (!password) {
        log.warn({ username: 'admin' }, 'created admin account with a generated password (shown once)');
        // Printed on stdout once so the operator can read it even with JSON logs.
        process.stdout.write(`\n  Admin account created. Username: admin  Password: ${pw}\n  (set RADIO_ADMIN_PASSWORD to choose it; this is shown only once)\n\n`);
        return { created: true, generated: pw };
      }
      return { created: true };
    },
    login(username: string, password: string): { token: string; expiresAt: number; principal: Principal } {
      const u = db.prepare<[string], { id: number; username: string; password_hash: string; role: string; commune_id: string | null }>(
        `SELECT * FROM users WHERE username = ?`).get(username);
      if (!u || !verifyPassword(password, u.password_hash)) {
        store.audit(null, now(), username, 'auth.login_failed', null);
        throw new AppError(401, 'BAD_CREDENTIALS', 'wrong username or password');
      }
      const token = newSecret();
      const expiresAt = now() + TOKEN_TTL_MS;
      const communeId = u.commune_id ?? defaultCommuneId;
      db.prepare(`INSERT INTO tokens (token_hash, user_id, commune_id, expires_at, created_at) VALUES (?, ?, ?, ?, ?)`)
        .run(hashSecret(token), u.id, communeId, expiresAt, now());
      store.audit(communeId, now(), username, 'auth.login', null);
      return { token, expiresAt, principal: { userId: u.id, username: u.username, role: u.role, communeId } };
    },
    verifyToken(token: string): Principal | undefined {
      const r = db.prepare<[string, number], { user_id: number; username: string; role: string; commune_id: string | null }>(
        `SELECT t.user_id, u.username, u.role, t.commune_id FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ? AND t.expires_at > ?`)
        .get(hashSecret(token), now());
      return r ? { userId: r.user_id, username: r.username, role: r.role, communeId: r.commune_id ?? defaultCommuneId } : undefined;
    },
    logout(token: string) {
      db.prepare(`DELETE FROM tokens WHERE token_hash = ?`).run(hashSecret(token));
    },
  };
}
export type Auth = ReturnType<typeof createAuth>;
