import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import fastifyMultipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Media, MediaFormat, MediaListQuery, MediaPeaks, MediaUploadReply, Paged, TtsRequest } from '../../../../schemas/src/index.js';
import { AppError, badRequest } from '../../errors.js';
import { secretMatches } from '../../secrets.js';
import type { Services } from '../../services.js';
import { who } from '../app.js';

/** Upload limit (bytes); a 60-minute phone recording is far below it. */
export const MAX_UPLOAD_BYTES = 200 * 1024 * 1024;

export async function mediaRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  await app.register(fastifyMultipart, { limits: { fileSize: MAX_UPLOAD_BYTES, files: 1, fields: 10, fieldSize: 4096 } });
  const params = z.object({ id: z.string().min(1).max(64) });

  app.post('/media', { schema: { tags: ['media'], consumes: ['multipart/form-data'], response: { 200: MediaUploadReply, 201: MediaUploadReply } } }, async (req, reply) => {
    const p = who(req);
    if (!req.isMultipart()) throw badRequest('NOT_MULTIPART', 'upload as multipart/form-data with the audio in the field `file`');
    const data = await req.file();
    if (!data || data.fieldname !== 'file') throw badRequest('NO_FILE', 'no file in the upload: send the audio in the multipart field `file`');
    const tmp = svc.media.tmpPath();
    try {
      await pipeline(data.file, fs.createWriteStream(tmp));
      if (data.file.truncated) throw new AppError(413, 'TOO_LARGE', `upload exceeds the limit of ${MAX_UPLOAD_BYTES} bytes`);
      const receivedAt = performance.now();
      const titleField = data.fields.title;
      const title = titleField && 'value' in titleField && typeof titleField.value === 'string' && titleField.value.trim() ? titleField.value.trim().slice(0, 200) : (data.filename || 'upload');
      const r = await svc.media.ingest(p.communeId, p.username, tmp, { kind: 'upload', title, originalName: data.filename || null });
      // Server-side timing: last upload byte → committed row (the media bench reads it).
      reply.header('server-timing', `ingest;dur=${(performance.now() - receivedAt).toFixed(1)}`);
      return reply.code(r.duplicate ? 200 : 201).send({ ...r.media, duplicate: r.duplicate });
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  });

  app.post('/media/tts', { schema: { tags: ['media'], body: TtsRequest, response: { 200: MediaUploadReply, 201: MediaUploadReply } } }, async (req, reply) => {
    const p = who(req);
    const r = await svc.media.tts(p.communeId, p.username, req.body);
    return reply.code(r.duplicate ? 200 : 201).send({ ...r.media, duplicate: r.duplicate });
  });
  app.get('/media/voices', { schema: { tags: ['media'], response: { 200: z.array(z.object({ id: z.string(), name: z.string(), language: z.string(), engine: z.string() })) } } }, async () => svc.media.voices());

  app.get('/media', { schema: { tags: ['media'], querystring: MediaListQuery, response: { 200: Paged(Media) } } }, async (req) => svc.media.list(who(req).communeId, req.query));
  app.get('/media/:id', { schema: { tags: ['media'], params, response: { 200: Media } } }, async (req) => svc.media.get(who(req).communeId, req.params.id));
  app.get('/media/:id/peaks', { schema: { tags: ['media'], params, response: { 200: MediaPeaks } } }, async (req) => svc.media.peaks(who(req).communeId, req.params.id));
  app.delete('/media/:id', { schema: { tags: ['media'], params } }, async (req, reply) => {
    const p = who(req);
    svc.media.remove(p.communeId, req.params.id, p.username);
    return reply.code(204).send();
  });

  // Distribution file. Users (Bearer) and nodes (HTTP Basic with their MQTT credentials) may fetch it;
  // Range requests and a strong ETag (the file's sha256) let agents resume and verify downloads.
  app.get('/media/:id/audio', {
    config: { public: true },
    schema: { tags: ['media'], params, querystring: z.object({ format: MediaFormat.default('opus') }) },
  }, async (req, reply) => {
    const communeId = downloaderCommune(req, svc);
    const f = svc.media.file(req.params.id, req.query.format, null);
    if (f.communeId !== communeId) throw new AppError(404, 'MEDIA_NOT_FOUND', `media '${req.params.id}' does not exist`);
    return sendFileWithRange(req, reply, f);
  });
}

/** The commune of whoever asks: a user's bearer token or a node's Basic credentials. */
function downloaderCommune(req: FastifyRequest, svc: Services): string {
  const h = req.headers.authorization ?? '';
  if (h.startsWith('Bearer ')) {
    const p = svc.auth.verifyToken(h.slice(7));
    if (p) return p.communeId;
  } else if (h.startsWith('Basic ')) {
    const [user, ...rest] = Buffer.from(h.slice(6), 'base64').toString('utf8').split(':');
    const row = user ? svc.store.db.prepare<[string], { secret_hash: string; commune_id: string }>(`SELECT secret_hash, commune_id FROM nodes WHERE id = ?`).get(user) : undefined;
    if (row && secretMatches(rest.join(':'), row.secret_hash)) return row.commune_id;
  }
  throw new AppError(401, 'UNAUTHENTICATED', 'media downloads need a bearer token or the node credentials (HTTP Basic)');
}

/** RFC 9110 §14: single byte ranges, If-Range with the strong ETag, If-None-Match. */
function sendFileWithRange(req: FastifyRequest, reply: FastifyReply, f: { path: string; mime: string; sha256: string; size: number }) {
  const etag = `"${f.sha256}"`;
  reply.header('etag', etag).header('accept-ranges', 'bytes').header('content-type', f.mime).header('cache-control', 'private, max-age=31536000, immutable');
  if (req.headers['if-none-match'] === etag) return reply.code(304).send();
  const range = req.headers.range;
  const ifRange = req.headers['if-range'];
  if (range && (!ifRange || ifRange === etag)) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    let start: number; let end: number;
    if (m && (m[1] || m[2])) {
      if (m[1]) { start = Number(m[1]); end = m[2] ? Math.min(Number(m[2]), f.size - 1) : f.size - 1; }
      else { const n = Number(m[2]); start = Math.max(0, f.size - n); end = f.size - 1; }
      if (start <= end && start < f.size) {
        reply.code(206).header('content-range', `bytes ${start}-${end}/${f.size}`).header('content-length', end - start + 1);
        return reply.send(fs.createReadStream(f.path, { start, end }));
      }
    }
    return reply.code(416).header('content-range', `bytes */${f.size}`).header('content-type', 'application/json; charset=utf-8').send({ code: 'RANGE_NOT_SATISFIABLE', message: `range '${range}' is outside 0-${f.size - 1}`, statusCode: 416 });
  }
  reply.header('content-length', f.size);
  return reply.send(fs.createReadStream(f.path));
}
