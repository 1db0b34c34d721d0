import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Id, ZoneStreamInfo } from '../../../../schemas/src/index.js';
import { AppError, notFound } from '../../errors.js';
import { secretMatches } from '../../secrets.js';
import type { Services } from '../../services.js';
import { STREAM_CONTENT_TYPE, STREAM_FORMATS, StreamRefused } from '../../streams/zone-stream.js';
import { who } from '../app.js';

/**
 * Pull streams per zone (Ogg/Opus, MP3) for IP speakers and VLC. Players cannot send a Bearer header,
 * so the stream URLs also accept the user's bearer token as `?token=` and a node's HTTP Basic
 * credentials (as the media download does).
 */
export async function streamRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const params = z.object({ zoneId: Id });

  // Open streams would keep app.close() waiting for ever: end them first.
  app.addHook('preClose', async () => { await svc.streams.stop(); });

  app.get('/zones/:zoneId/stream', { schema: { tags: ['zones'], params, response: { 200: ZoneStreamInfo } } }, async (req) => {
    const p = who(req);
    const zone = svc.store.getZone(p.communeId, req.params.zoneId);
    if (!zone) throw notFound('zone', req.params.zoneId);
    const st = svc.streams.status(p.communeId, zone.id);
    const opts = svc.streams.options();
    return {
      ...st,
      formats: STREAM_FORMATS.map((f) => {
        const path = `/api/v1/zones/${encodeURIComponent(zone.id)}/stream.${f}`;
        return { format: f, contentType: STREAM_CONTENT_TYPE[f], path, url: `${svc.httpBase()}${path}`, bitrateKbps: f === 'ogg' ? opts.opusBitrateKbps : opts.mp3BitrateKbps };
      }),
    };
  });

  for (const format of STREAM_FORMATS) {
    app.get(`/zones/:zoneId/stream.${format}`, {
      config: { public: true },
      schema: {
        tags: ['zones'], params, querystring: z.object({ token: z.string().max(2000).optional() }),
        description: `The zone's audio as ${format === 'ogg' ? 'Ogg/Opus' : 'MP3'}, live (no length). Authenticate with a bearer token (header or \`?token=\`) or a node's HTTP Basic credentials.`,
      },
    }, async (req, reply) => {
      let communeId: string;
      try {
        communeId = listenerCommune(req, svc, req.query.token);
      } catch (e) {
        // Players (VLC, ffmpeg, IP speakers) send URL credentials only after a Basic challenge (RFC 7617).
        reply.header('www-authenticate', 'Basic realm="commune radio", charset="UTF-8"');
        throw e;
      }
      const zone = svc.store.getZone(communeId, req.params.zoneId);
      if (!zone) throw notFound('zone', req.params.zoneId);
      if (req.method === 'HEAD') {
        return reply.header('content-type', STREAM_CONTENT_TYPE[format]).header('cache-control', 'no-store, no-cache').code(200).send();
      }
      reply.hijack();
      try {
        await svc.streams.attach(communeId, zone.id, format, reply.raw, { zoneName: zone.name });
      } catch (e) {
        const r = e instanceof StreamRefused ? e : new StreamRefused(500, 'INTERNAL', 'internal error');
        if (!(e instanceof StreamRefused)) req.log.error({ err: e }, 'zone stream failed');
        if (!reply.raw.headersSent) {
          reply.raw.writeHead(r.statusCode, { 'content-type': 'application/json; charset=utf-8' });
          reply.raw.end(JSON.stringify({ code: r.code, message: r.message, statusCode: r.statusCode }));
        } else {
          reply.raw.destroy();
        }
      }
    });
  }
}

/** The commune of whoever listens: a bearer token (header or `?token=`) or a node's HTTP Basic credentials. */
function listenerCommune(req: FastifyRequest, svc: Services, queryToken: string | undefined): string {
  const h = req.headers.authorization ?? '';
  const bearer = h.startsWith('Bearer ') ? h.slice(7) : queryToken;
  if (bearer) {
    const p = svc.auth.verifyToken(bearer);
    if (p) return p.communeId;
    throw new AppError(401, 'UNAUTHENTICATED', 'invalid or expired token');
  }
  if (h.startsWith('Basic ')) {
    const [user, ...rest] = Buffer.from(h.slice(6), 'base64').toString('utf8').split(':');
    const row = user ? svc.store.db.prepare<[string], { secret_hash: string; commune_id: string }>(`SELECT secret_hash, commune_id FROM nodes WHERE id = ?`).get(user) : undefined;
    if (row && secretMatches(rest.join(':'), row.secret_hash)) return row.commune_id;
    throw new AppError(401, 'UNAUTHENTICATED', 'invalid node credentials');
  }
  throw new AppError(401, 'UNAUTHENTICATED', 'zone streams need a bearer token (Authorization header or ?token=) or the node credentials (HTTP Basic)');
}
