import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

/**
 * Ordered, append-only migrations. Every table that holds commune data carries commune_id from the
 * first migration (communes are tenants of one controller).
 */
import { MEDIA_MIGRATION } from './migrations-media.js';
import { SCHEDULING_MIGRATION } from './migrations-scheduling.js';
import { LIVE_MIGRATION } from './migrations-live.js';
import { CAP_MIGRATION } from './migrations-cap.js';

const MIGRATIONS: string[] = [
  `
  CREATE TABLE communes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'Asia/Ho_Chi_Minh',
    created_at INTEGER NOT NULL
  );
  CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    commune_id TEXT REFERENCES communes(id),
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    commune_id TEXT,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE zones (
    id TEXT PRIMARY KEY,
    commune_id TEXT NOT NULL REFERENCES communes(id),
    name TEXT NOT NULL,
    description TEXT,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX zones_commune ON zones(commune_id);
  CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    commune_id TEXT NOT NULL REFERENCES communes(id),
    zone_id TEXT NOT NULL REFERENCES zones(id),
    name TEXT NOT NULL,
    lat REAL, lon REAL,
    hardware TEXT NOT NULL DEFAULT '{}',
    secret_hash TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'offline',
    status_changed_at INTEGER,
    last_seen_at INTEGER,
    agent_version TEXT,
    maintenance INTEGER NOT NULL DEFAULT 0,
    actual_only INTEGER NOT NULL DEFAULT 0,
    last_telemetry TEXT,
    last_telemetry_at INTEGER,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX nodes_commune ON nodes(commune_id);
  CREATE INDEX nodes_zone ON nodes(zone_id);
  CREATE TABLE telemetry_raw (
    node_id TEXT NOT NULL,
    commune_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    data TEXT NOT NULL
  );
  CREATE INDEX telemetry_raw_node_ts ON telemetry_raw(node_id, ts);
  -- Older telemetry, downsampled to fixed buckets (averages; min battery; n = samples summarised).
  CREATE TABLE telemetry_rollup (
    node_id TEXT NOT NULL,
    commune_id TEXT NOT NULL,
    bucket_ts INTEGER NOT NULL,
    n INTEGER NOT NULL,
    temperature_c REAL, battery_v REAL, mains_v REAL, rssi_dbm REAL, volume REAL, clock_offset_ms REAL,
    PRIMARY KEY (node_id, bucket_ts)
  );
  CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    commune_id TEXT NOT NULL,
    node_id TEXT,
    ts INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT
  );
  CREATE INDEX events_node_ts ON events(node_id, ts);
  CREATE TABLE alarms (
    id INTEGER PRIMARY KEY,
    commune_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    type TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT,
    raised_at INTEGER NOT NULL,
    cleared_at INTEGER,
    acked_at INTEGER,
    acked_by TEXT
  );
  CREATE INDEX alarms_state ON alarms(state, node_id);
  CREATE TABLE commands (
    transaction_id TEXT NOT NULL,
    commune_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    name TEXT NOT NULL,
    params TEXT NOT NULL,
    scope TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    issued_by TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    replied_at INTEGER,
    error TEXT,
    data TEXT,
    PRIMARY KEY (transaction_id, node_id)
  );
  -- Controller-published retained messages: the embedded broker keeps state in memory only, so they are
  -- republished from here on start.
  CREATE TABLE retained (
    topic TEXT PRIMARY KEY,
    commune_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY,
    commune_id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT,
    events TEXT NOT NULL DEFAULT '[]',
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
  );
  -- Append-only audit trail: no UPDATE or DELETE, enforced by triggers.
  CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    commune_id TEXT,
    ts INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
  );
  CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
  CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
  CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  `,
  MEDIA_MIGRATION,
  SCHEDULING_MIGRATION,
  LIVE_MIGRATION,
  CAP_MIGRATION,
  // Live-session reception in telemetry: worst loss and jitter of each rollup bucket (NULL: no live session).
  `
  ALTER TABLE telemetry_rollup ADD COLUMN live_loss_pct REAL;
  ALTER TABLE telemetry_rollup ADD COLUMN live_jitter_ms REAL;
  `,
  // Listen keys of the zones' pull streams (streams/listen-keys.ts): SHA-256 of the key, and the key sealed
  // (AES-256-GCM) under a seal key kept in a file of the data directory, so the console can show it again.
  `
  CREATE TABLE zone_stream_keys (
    zone_id TEXT PRIMARY KEY REFERENCES zones(id) ON DELETE CASCADE,
    commune_id TEXT NOT NULL REFERENCES communes(id),
    key_hash TEXT NOT NULL,
    key_sealed TEXT,
    created_at INTEGER NOT NULL,
    rotated_at INTEGER NOT NULL
  );
  CREATE INDEX zone_stream_keys_commune ON zone_stream_keys(commune_id);
  `,
];

export function openDb(file: string): Db {
  if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  // Every prepare in the controller goes through a per-SQL cache (see memoPrepare). Nothing here uses
  // pluck()/raw()/expand()/iterate(), which would make a shared statement stateful or busy.
  db.prepare = memoPrepare(db);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

export function migrate(db: Db): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return MIGRATIONS.length;
}

/**
 * `db.prepare` with a per-SQL-text cache: preparing is not free (it showed up in the fleet bench), and
 * hot paths (plan acks, token checks) run the same statements thousands of times.
 */
export function memoPrepare(db: Db): Db['prepare'] {
  const prepare = db.prepare.bind(db);
  const cache = new Map<string, ReturnType<Db['prepare']>>();
  return ((sql: string) => {
    let s = cache.get(sql);
    if (!s) { s = prepare(sql); cache.set(sql, s); }
    return s;
  }) as Db['prepare'];
}
