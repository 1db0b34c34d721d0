/**
 * Listen keys of the zones' pull streams: one per zone, a capability that grants nothing but listening
 * to that zone (`?key=` on GET …/zones/{id}/stream.ogg|.mp3). Off-the-shelf IP speakers and VLC need a
 * URL that lives for months; a user's login token expires and opens the whole API, so it must never be
 * typed into a speaker.
 *
 * A key is 192 random bits, base64url (secrets.ts `newSecret`). It is created on first use (the JSON
 * view of an operator) and replaced by `rotate`. Stored per zone (table zone_stream_keys):
 *  - `key_hash`: SHA-256 of the key; a presented key is checked by comparing hashes in constant time
 *    (secrets.ts `secretMatches`: a machine secret with ≥128 bits needs no slow KDF, STACK.md);
 *  - `key_sealed`: the key under AES-256-GCM (NIST SP 800-38D) with a seal key that lives in a file of the
 *    data directory, NOT in SQLite, so the console can show the URL to an operator again while a copy of
 *    the database alone yields no working key. The zone id is the GCM additional data: a sealed key
 *    copied onto another zone's row does not open. When the seal key is missing (file lost, or no file
 *    configured: the seal key then lives only as long as the process) the key still works for players
 *    but cannot be shown: `reveal` gives `key: null` and the operator rotates.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { hashSecret, newSecret, secretMatches } from '../secrets.js';
import type { Store } from '../store/store.js';

/** Random bytes of a listen key: 192 bits (the brief asks ≥ 128), 32 base64url characters. */
const KEY_BYTES = 24;
const SEAL_VERSION = 'v1';

export interface ListenKeysDeps {
  store: Store;
  now: () => number;
  /** File holding the seal key (created 0600 on first use); default none: a per-process seal key. */
  sealKeyFile?: string;
  log?: Logger;
}

export interface ListenKeyView {
  /** The key; null when it cannot be shown (the seal key is gone): rotate to get one. */
  key: string | null;
  createdAt: number;
  rotatedAt: number;
}

interface KeyRow { zone_id: string; commune_id: string; key_hash: string; key_sealed: string | null; created_at: number; rotated_at: number }

export function createListenKeys(deps: ListenKeysDeps) {
  const log = (deps.log ?? pino({ level: 'silent' })).child({ component: 'listen-keys' });
  const db = deps.store.db;
  const q = {
    get: db.prepare<[string], KeyRow>(`SELECT * FROM zone_stream_keys WHERE zone_id = ?`),
    insert: db.prepare(`INSERT INTO zone_stream_keys (zone_id, commune_id, key_hash, key_sealed, created_at, rotated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(zone_id) DO NOTHING`),
    rotate: db.prepare(`UPDATE zone_stream_keys SET key_hash = ?, key_sealed = ?, rotated_at = ? WHERE zone_id = ? AND commune_id = ?`),
  };
  /** undefined: not loaded yet; null: unavailable (a broken file: logged once). */
  let sealKey: Buffer | null | undefined;

  /** Lazily (constructors do no I/O): read the seal key file, or create it (exclusive, 0600). */
  function seal(): Buffer | null {
    if (sealKey !== undefined) return sealKey;
    if (!deps.sealKeyFile) return (sealKey = crypto.randomBytes(32));
    const file = deps.sealKeyFile;
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      try {
        fs.writeFileSync(file, `${crypto.randomBytes(32).toString('base64url')}\n`, { flag: 'wx', mode: 0o600 });
        log.info({ file }, 'listen-key seal key created');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const k = Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64url');
      if (k.length !== 32) throw new Error(`expected 32 bytes, found ${k.length}`);
      sealKey = k;
    } catch (e) {
      log.error({ file, err: (e as Error).message }, 'listen-key seal key unavailable: keys work but cannot be shown again (rotate them)');
      sealKey = null;
    }
    return sealKey;
  }

  function sealFor(zoneId: string, key: string): string | null {
    const k = seal();
    if (!k) return null;
    const iv = crypto.randomBytes(12);
    const c = crypto.createCipheriv('aes-256-gcm', k, iv);
    c.setAAD(Buffer.from(zoneId, 'utf8'));
    const ct = Buffer.concat([c.update(key, 'utf8'), c.final()]);
    return [SEAL_VERSION, iv.toString('base64url'), c.getAuthTag().toString('base64url'), ct.toString('base64url')].join('.');
  }

  function unseal(r: KeyRow): string | null {
    const k = seal();
    if (!k || !r.key_sealed) return null;
    const [v, iv, tag, ct] = r.key_sealed.split('.');
    if (v !== SEAL_VERSION || !iv || !tag || ct === undefined) return null;
    try {
      const d = crypto.createDecipheriv('aes-256-gcm', k, Buffer.from(iv, 'base64url'));
      d.setAAD(Buffer.from(r.zone_id, 'utf8'));
      d.setAuthTag(Buffer.from(tag, 'base64url'));
      const key = Buffer.concat([d.update(Buffer.from(ct, 'base64url')), d.final()]).toString('utf8');
      // The hash is what grants access: a sealed copy that disagrees with it is not shown.
      return secretMatches(key, r.key_hash) ? key : null;
    } catch {
      return null; // another seal key (file replaced) or a damaged row
    }
  }

  const view = (r: KeyRow, key: string | null): ListenKeyView => ({ key, createdAt: r.created_at, rotatedAt: r.rotated_at });

  return {
    /**
     * The zone's key, created if it has none (`created`). The caller has checked that the zone exists in
     * `communeId` and that the principal may see keys.
     */
    ensure(communeId: string, zoneId: string): ListenKeyView & { created: boolean } {
      const cur = q.get.get(zoneId);
      if (cur && cur.commune_id === communeId) return { ...view(cur, unseal(cur)), created: false };
      if (cur) throw new Error(`zone '${zoneId}' has a listen key of another commune`);
      const key = newSecret(KEY_BYTES);
      const t = deps.now();
      const won = q.insert.run(zoneId, communeId, hashSecret(key), sealFor(zoneId, key), t, t).changes === 1;
      const row = q.get.get(zoneId)!;
      // Lost a race with another first use (better-sqlite3 is synchronous, so only across processes): theirs stands.
      return won ? { ...view(row, key), created: true } : { ...view(row, unseal(row)), created: false };
    },

    /** The zone's key as stored, without creating one. */
    reveal(communeId: string, zoneId: string): ListenKeyView | undefined {
      const r = q.get.get(zoneId);
      return r && r.commune_id === communeId ? view(r, unseal(r)) : undefined;
    },

    /** Replace the zone's key (creating it if it had none): the old one stops working at once. */
    rotate(communeId: string, zoneId: string): ListenKeyView & { key: string } {
      const key = newSecret(KEY_BYTES);
      const t = deps.now();
      const hash = hashSecret(key);
      const sealed = sealFor(zoneId, key);
      db.transaction(() => {
        if (q.rotate.run(hash, sealed, t, zoneId, communeId).changes === 0) q.insert.run(zoneId, communeId, hash, sealed, t, t);
      })();
      const r = q.get.get(zoneId);
      if (!r || r.commune_id !== communeId || !secretMatches(key, r.key_hash)) throw new Error(`zone '${zoneId}': listen key not stored`);
      return { ...view(r, key), key };
    },

    /** The commune of the zone if `key` is its current key (constant-time compare of SHA-256 hashes). */
    verify(zoneId: string, key: string): { communeId: string } | undefined {
      const r = q.get.get(zoneId);
      // Hash the presented key even for a zone without a key, so timing says nothing about which zones have one.
      const ok = secretMatches(key, r?.key_hash ?? '0'.repeat(64));
      return r && ok ? { communeId: r.commune_id } : undefined;
    },
  };
}
export type ListenKeys = ReturnType<typeof createListenKeys>;
