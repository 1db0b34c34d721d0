/**
 * OASIS CAP 1.2 alert ingest (owned by controller/src/cap): allow-listed senders with hashed tokens, the
 * alerts received (raw XML kept for the record), and per-commune CAP settings.
 */
export const CAP_MIGRATION = `
  CREATE TABLE cap_senders (
    id TEXT PRIMARY KEY,
    commune_id TEXT NOT NULL REFERENCES communes(id),
    name TEXT NOT NULL,
    cap_sender TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    last_used_at INTEGER
  );
  CREATE INDEX cap_senders_commune ON cap_senders(commune_id);

  CREATE TABLE cap_alerts (
    id INTEGER PRIMARY KEY,
    commune_id TEXT NOT NULL REFERENCES communes(id),
    sender_id TEXT NOT NULL,
    identifier TEXT NOT NULL,
    sender TEXT NOT NULL,
    sent TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    msg_type TEXT NOT NULL,
    state TEXT NOT NULL,
    session_id TEXT,
    matched_nodes TEXT NOT NULL DEFAULT '[]',
    expires TEXT,
    area_desc TEXT,
    result TEXT,
    raw_xml TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    -- CAP 1.2 §3.2.1: sender + identifier + sent name one message; the same triple again is a duplicate.
    UNIQUE (commune_id, sender, identifier, sent_ms)
  );
  CREATE INDEX cap_alerts_commune_received ON cap_alerts(commune_id, received_at);

  CREATE TABLE cap_settings (
    commune_id TEXT PRIMARY KEY REFERENCES communes(id),
    json TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL
  );
`;
