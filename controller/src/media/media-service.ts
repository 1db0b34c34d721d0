import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { ingestAudio, isMediaError, sha256File, type IngestResult, type Supervisor } from '../../../audio-pipeline/src/index.js';
import type { Tts } from '../../../audio-pipeline/src/tts/index.js';
import type { Media, MediaFormat } from '../../../schemas/src/index.js';
import { AppError, notFound } from '../errors.js';
import type { EventBus } from '../event-bus.js';
import type { Store } from '../store/store.js';

interface MediaRow {
  id: string; commune_id: string; media_key: string; kind: string; title: string; original_name: string | null;
  input_sha256: string; profile_id: string; duration_ms: number; input: string; output: string; processing: string; peaks: string;
  opus_file: string; opus_sha256: string; opus_size: number; mp3_file: string; mp3_sha256: string; mp3_size: number;
  text: string | null; normalized_text: string | null; voice: string | null; engine: string | null; uploaded_by: string; created_at: number;
}

export interface IngestMeta {
  title: string;
  originalName?: string | null;
  kind: 'upload' | 'tts';
  text?: string | null;
  normalizedText?: string | null;
  voice?: string | null;
  engine?: string | null;
  urgent?: boolean;
}

const MIME: Record<MediaFormat, string> = { opus: 'audio/ogg', mp3: 'audio/mpeg' };

function toMedia(r: MediaRow): Media {
  const info = (f: MediaFormat) => ({
    sha256: f === 'opus' ? r.opus_sha256 : r.mp3_sha256, sizeBytes: f === 'opus' ? r.opus_size : r.mp3_size,
    mime: MIME[f], url: `/api/v1/media/${r.id}/audio?format=${f}`,
  });
  return {
    id: r.id, communeId: r.commune_id, kind: r.kind as Media['kind'], title: r.title, originalName: r.original_name,
    durationMs: r.duration_ms, sha256: r.input_sha256, mediaKey: r.media_key, profileId: r.profile_id,
    input: JSON.parse(r.input) as Media['input'], output: JSON.parse(r.output) as Media['output'],
    processing: JSON.parse(r.processing) as Record<string, unknown>,
    formats: { opus: info('opus'), mp3: info('mp3') },
    text: r.text, normalizedText: r.normalized_text, voice: r.voice, uploadedBy: r.uploaded_by, createdAt: r.created_at,
  };
}

/**
 * The media library: ingest (probe → loudness → Opus + MP3, in audio-pipeline) into a content-addressed
 * store under RADIO_DATA_DIR/media, one row per commune and content address. A failed ingest leaves no
 * row and no file (audio-pipeline removes its temp files; the caller removes the upload's temp file).
 */
export function createMediaService(deps: {
  store: Store; log: Logger; bus: EventBus; now: () => number; dataDir: string; supervisor: Supervisor;
  maxDurationMs?: number; isInUse?: (communeId: string, mediaId: string) => boolean; tts?: Tts;
}) {
  const { store, bus, now } = deps;
  const db = store.db;
  const mediaDir = path.join(deps.dataDir, 'media');
  const tmpDir = path.join(deps.dataDir, 'tmp');
  fs.mkdirSync(mediaDir, { recursive: true });
  fs.mkdirSync(tmpDir, { recursive: true });
  // Upload temp files left by a crash are garbage: nothing references them.
  for (const f of fs.readdirSync(tmpDir)) fs.rmSync(path.join(tmpDir, f), { force: true });

  const byKey = db.prepare<[string, string], MediaRow>(`SELECT * FROM media WHERE commune_id = ? AND media_key = ?`);
  const byId = db.prepare<[string, string], MediaRow>(`SELECT * FROM media WHERE id = ? AND commune_id = ?`);
  const byIdAny = db.prepare<[string], MediaRow>(`SELECT * FROM media WHERE id = ?`);

  return {
    tmpDir,
    mediaDir,
    /** A fresh temp path for an upload or a TTS render. */
    tmpPath(ext = '.bin') { return path.join(tmpDir, `${crypto.randomBytes(8).toString('hex')}${ext}`); },

    async ingest(communeId: string, actor: string, file: string, meta: IngestMeta): Promise<{ media: Media; duplicate: boolean; timing: { ingestMs: number } }> {
      const jobId = crypto.randomBytes(6).toString('hex');
      const t0 = performance.now();
      const progress = (percent: number, state: 'running' | 'done' | 'failed') =>
        bus.emit(communeId, { type: 'job.progress', ts: now(), jobId, kind: meta.kind === 'tts' ? 'tts' : 'ingest', percent, state });
      let r: IngestResult;
      try {
        r = await ingestAudio(file, {
          outDir: mediaDir, supervisor: deps.supervisor, maxDurationMs: deps.maxDurationMs ?? 3 * 3600_000,
          urgent: meta.urgent ?? false, jobId, onProgress: (p) => progress(p.percent, 'running'),
        });
      } catch (e) {
        progress(100, 'failed');
        if (isMediaError(e)) throw new AppError(e.httpStatus, e.code, e.message);
        throw e;
      }
      const existing = byKey.get(communeId, r.mediaKey);
      if (existing) {
        progress(100, 'done');
        return { media: toMedia(existing), duplicate: true, timing: { ingestMs: performance.now() - t0 } };
      }
      const [opusSha, mp3Sha] = await Promise.all([sha256File(r.files.opus), sha256File(r.files.mp3)]);
      const id = `m-${crypto.randomBytes(6).toString('hex')}`;
      const ts = now();
      db.transaction(() => {
        db.prepare(`INSERT INTO media (id, commune_id, media_key, kind, title, original_name, input_sha256, profile_id, duration_ms, input, output, processing, peaks,
            opus_file, opus_sha256, opus_size, mp3_file, mp3_sha256, mp3_size, text, normalized_text, voice, engine, uploaded_by, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(id, communeId, r.mediaKey, meta.kind, meta.title, meta.originalName ?? null, r.sha256, r.profileId, Math.round(r.durationMs),
            JSON.stringify(r.input), JSON.stringify(r.output), JSON.stringify(r.processing), JSON.stringify(r.peaks),
            path.basename(r.files.opus), opusSha, fs.statSync(r.files.opus).size, path.basename(r.files.mp3), mp3Sha, fs.statSync(r.files.mp3).size,
            meta.text ?? null, meta.normalizedText ?? null, meta.voice ?? null, meta.engine ?? null, actor, ts);
        store.audit(communeId, ts, actor, meta.kind === 'tts' ? 'media.tts' : 'media.upload', id, { title: meta.title, durationMs: Math.round(r.durationMs), sha256: r.sha256 });
      })();
      progress(100, 'done');
      deps.log.info({ id, communeId, durationMs: Math.round(r.durationMs), inLufs: r.input.lufs, outLufs: r.output.lufs }, 'media ingested');
      return { media: toMedia(byId.get(id, communeId)!), duplicate: false, timing: { ingestMs: performance.now() - t0 } };
    },

    /** Text → normalised Vietnamese → speech → the same ingest as an upload (urgent lane for emergencies). */
    async tts(communeId: string, actor: string, req: { text: string; voice?: string; title?: string; engine?: string; urgent?: boolean }) {
      if (!deps.tts) throw new AppError(503, 'TTS_UNAVAILABLE', 'no text-to-speech engine is configured');
      let spoken: Awaited<ReturnType<Tts['speak']>>;
      try {
        spoken = await deps.tts.speak(req.text, { voice: req.voice, engine: req.engine, urgent: req.urgent ?? false, outDir: tmpDir });
      } catch (e) {
        if (isMediaError(e)) throw new AppError(e.httpStatus, e.code, e.message);
        throw e;
      }
      try {
        const title = req.title ?? (req.text.length > 60 ? `${req.text.slice(0, 57)}…` : req.text);
        return await this.ingest(communeId, actor, spoken.wavPath, {
          kind: 'tts', title, text: req.text, normalizedText: spoken.normalizedText, voice: spoken.voice, engine: spoken.engine, urgent: req.urgent ?? false,
        });
      } finally {
        fs.rmSync(spoken.wavPath, { force: true });
      }
    },

    async voices() { return deps.tts ? deps.tts.voices() : []; },

    list(communeId: string, q: { q?: string; kind?: string; offset: number; limit: number }) {
      const where = ['commune_id = @c'];
      if (q.kind) where.push('kind = @k');
      if (q.q) where.push(`(title LIKE @q ESCAPE '\\' OR original_name LIKE @q ESCAPE '\\' OR text LIKE @q ESCAPE '\\')`);
      const params = { c: communeId, k: q.kind, q: q.q ? `%${q.q.replace(/[\\%_]/g, (m) => `\\${m}`)}%` : undefined, l: q.limit, o: q.offset };
      const total = (db.prepare(`SELECT count(*) AS n FROM media WHERE ${where.join(' AND ')}`).get(params) as { n: number }).n;
      const items = db.prepare<[typeof params], MediaRow>(`SELECT * FROM media WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id LIMIT @l OFFSET @o`).all(params).map(toMedia);
      return { items, total, offset: q.offset, limit: q.limit };
    },

    get(communeId: string, id: string): Media {
      const r = byId.get(id, communeId);
      if (!r) throw notFound('media', id);
      return toMedia(r);
    },

    peaks(communeId: string, id: string) {
      const r = byId.get(id, communeId);
      if (!r) throw notFound('media', id);
      return { id, durationMs: r.duration_ms, peaks: JSON.parse(r.peaks) as number[] };
    },

    /** File of a format; `communeId` null = any commune (node downloads check the commune themselves). */
    file(id: string, format: MediaFormat, communeId: string | null) {
      const r = communeId ? byId.get(id, communeId) : byIdAny.get(id);
      if (!r) throw notFound('media', id);
      const name = format === 'opus' ? r.opus_file : r.mp3_file;
      return {
        communeId: r.commune_id, path: path.join(mediaDir, name), mime: MIME[format],
        sha256: format === 'opus' ? r.opus_sha256 : r.mp3_sha256, size: format === 'opus' ? r.opus_size : r.mp3_size,
      };
    },

    remove(communeId: string, id: string, actor: string) {
      const r = byId.get(id, communeId);
      if (!r) throw notFound('media', id);
      if (deps.isInUse?.(communeId, id)) throw new AppError(409, 'MEDIA_IN_USE', `media '${id}' is used by a programme or schedule; remove it there first`);
      db.transaction(() => {
        db.prepare(`DELETE FROM media WHERE id = ?`).run(id);
        store.audit(communeId, now(), actor, 'media.delete', id, { title: r.title });
      })();
      // Files are shared by content address: delete them only when no row (any commune) still uses them.
      const still = db.prepare(`SELECT 1 FROM media WHERE media_key = ? LIMIT 1`).get(r.media_key);
      if (!still) {
        fs.rmSync(path.join(mediaDir, r.opus_file), { force: true });
        fs.rmSync(path.join(mediaDir, r.mp3_file), { force: true });
      }
    },
  };
}
export type MediaService = ReturnType<typeof createMediaService>;
