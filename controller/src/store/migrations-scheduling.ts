/**
 * Migration 3: programmes, schedules, airings, plans and receipts (owned by controller/src/scheduling).
 * Every table carries commune_id. Times are epoch ms; local dates/times (schedule rules) are stored as the
 * operator typed them, in the commune's timezone.
 */
export const SCHEDULING_MIGRATION = `
  -- Per-commune scheduling settings: quiet hours (default 21:30-05:00, commune time).
  CREATE TABLE commune_settings (
    commune_id TEXT PRIMARY KEY REFERENCES communes(id),
    quiet_start TEXT NOT NULL DEFAULT '21:30',
    quiet_end TEXT NOT NULL DEFAULT '05:00',
    updated_at INTEGER,
    updated_by TEXT
  );

  CREATE TABLE programmes (
    id TEXT PRIMARY KEY,
    commune_id TEXT NOT NULL REFERENCES communes(id),
    title TEXT NOT NULL,
    description TEXT,
    items TEXT NOT NULL,            -- JSON: media {mediaId} | tts {text, voice, mediaId} | chime | silence | relay
    duration_ms INTEGER NOT NULL,
    priority TEXT NOT NULL,          -- default priority of new schedules
    volume INTEGER,
    on_interrupt TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX programmes_commune ON programmes(commune_id);

  -- Media a programme uses (media items and rendered TTS): answers "is this media in use?" and, through
  -- the foreign key, refuses deleting a media row that a programme still plays.
  CREATE TABLE programme_media (
    programme_id TEXT NOT NULL REFERENCES programmes(id) ON DELETE CASCADE,
    commune_id TEXT NOT NULL,
    media_id TEXT NOT NULL REFERENCES media(id),
    PRIMARY KEY (programme_id, media_id)
  );
  CREATE INDEX programme_media_media ON programme_media(commune_id, media_id);

  CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    commune_id TEXT NOT NULL REFERENCES communes(id),
    programme_id TEXT NOT NULL REFERENCES programmes(id),
    title TEXT,
    recurrence TEXT NOT NULL,        -- JSON Recurrence (schemas/src/scheduling-api.ts)
    valid_from TEXT,                 -- YYYY-MM-DD, commune time, inclusive
    valid_until TEXT,
    exceptions TEXT NOT NULL DEFAULT '[]',
    targets TEXT NOT NULL,           -- JSON ScheduleTarget[] (no FK: zones/nodes are resolved at expansion)
    priority TEXT NOT NULL,
    rank INTEGER NOT NULL DEFAULT 0,
    volume INTEGER,
    quiet_override INTEGER NOT NULL DEFAULT 0,
    quiet_override_reason TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX schedules_commune ON schedules(commune_id);
  CREATE INDEX schedules_programme ON schedules(programme_id);

  -- The plan each node was last sent. The row outlives the node so that a node re-created with the same
  -- id continues the version sequence (agents ignore versions they have already passed).
  CREATE TABLE node_plans (
    node_id TEXT PRIMARY KEY,
    commune_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    window_from INTEGER NOT NULL,
    window_to INTEGER NOT NULL,
    airing_count INTEGER NOT NULL,
    published_at INTEGER NOT NULL,
    acked_version INTEGER,
    ack_status TEXT,
    ack_error TEXT,
    acked_at INTEGER,
    missing TEXT NOT NULL DEFAULT '[]'
  );

  -- Every airing sent to a node (history: "scheduled vs played"). Future airings that a re-plan drops are
  -- deleted; those that have started stay. Airing ids are shared by every node of a slot.
  CREATE TABLE plan_airings (
    node_id TEXT NOT NULL,
    airing_id TEXT NOT NULL,
    commune_id TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    programme_id TEXT NOT NULL,
    title TEXT NOT NULL,
    start_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    priority TEXT NOT NULL,
    rank INTEGER NOT NULL,
    plan_version INTEGER NOT NULL,
    PRIMARY KEY (node_id, airing_id)
  ) WITHOUT ROWID;
  CREATE INDEX plan_airings_commune_start ON plan_airings(commune_id, start_at);
  CREATE INDEX plan_airings_node_start ON plan_airings(node_id, start_at);
  CREATE INDEX plan_airings_airing ON plan_airings(airing_id);

  -- Proof of play, stored exactly once: the agent's receipt id is unique per node
  -- (airing ids are shared across the nodes of a slot, so the key is (node_id, id)).
  CREATE TABLE receipts (
    node_id TEXT NOT NULL,
    id TEXT NOT NULL,
    commune_id TEXT NOT NULL,
    airing_id TEXT NOT NULL,
    state TEXT NOT NULL,
    at INTEGER NOT NULL,
    start_error_ms REAL,
    reason TEXT,
    interrupted_by TEXT,
    played_ms INTEGER,
    airing_match TEXT NOT NULL,      -- planned | unknown | other_node
    received_at INTEGER NOT NULL,
    PRIMARY KEY (node_id, id)
  ) WITHOUT ROWID;
  CREATE INDEX receipts_airing ON receipts(airing_id, node_id);
  CREATE INDEX receipts_commune_at ON receipts(commune_id, at);
`;
