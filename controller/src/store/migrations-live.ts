/**
 * Live sessions (issue 5): one row per session (voice, relay, file, sound card, emergency) and one
 * receipt per targeted cluster, so reports can count who carried what and why the others did not.
 */
export const LIVE_MIGRATION = `
  CREATE TABLE live_sessions (
    id TEXT PRIMARY KEY,
    commune_id TEXT NOT NULL REFERENCES communes(id),
    kind TEXT NOT NULL,
    priority TEXT NOT NULL,
    title TEXT NOT NULL,
    actor TEXT NOT NULL,
    request TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT,
    stats TEXT
  );
  CREATE INDEX live_sessions_commune_started ON live_sessions(commune_id, started_at);
  CREATE TABLE live_receipts (
    session_id TEXT NOT NULL REFERENCES live_sessions(id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    commune_id TEXT NOT NULL,
    zone_id TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    played INTEGER NOT NULL DEFAULT 0,
    first_playing_at INTEGER,
    updated_at INTEGER NOT NULL,
    stats TEXT,
    PRIMARY KEY (session_id, node_id)
  );
  CREATE INDEX live_receipts_commune ON live_receipts(commune_id, updated_at);
`;
