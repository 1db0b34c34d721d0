/** Migration 2: the media library (content-addressed files under RADIO_DATA_DIR/media). */
export const MEDIA_MIGRATION = `
  CREATE TABLE media (
    id TEXT PRIMARY KEY,
    commune_id TEXT NOT NULL REFERENCES communes(id),
    media_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    original_name TEXT,
    input_sha256 TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    processing TEXT NOT NULL,
    peaks TEXT NOT NULL,
    opus_file TEXT NOT NULL, opus_sha256 TEXT NOT NULL, opus_size INTEGER NOT NULL,
    mp3_file TEXT NOT NULL, mp3_sha256 TEXT NOT NULL, mp3_size INTEGER NOT NULL,
    text TEXT, normalized_text TEXT, voice TEXT, engine TEXT,
    uploaded_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (commune_id, media_key)
  );
  CREATE INDEX media_commune_created ON media(commune_id, created_at);
`;
