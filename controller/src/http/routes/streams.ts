import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Id, ZoneStreamInfo, ZoneStreamKeyRotated, ZoneStreamQuery } from '../../../../schemas/src/index.js';
import type { Principal } from '../../auth.js';
import { AppError, notFound } from '../../errors.js';
import { secretMatches } from '../../secrets.js';
import type { Services } from '../../services.js';
import { STREAM_CONTENT_TYPE, STREAM_FORMATS, StreamRefused, type StreamFormat } from '../../streams/zone-stream.js';
import { who } from '../app.js';

/** Roles that may see, hand out and rotate the zones' listen keys. */
const KEY_ROLES: ReadonlySet<string> = new Set(['admin', 'operator']);

function requireKeyRole(req: FastifyRequest): Principal {
  const p = who(req);
  if (!KEY_ROLES.has(p.role)) throw new AppError(403, 'FORBIDDEN', 'only an admin or an operator may manage the listen keys of zone streams');
  return p;
}

/**
 * Pull streams per zone (Ogg/Opus, MP3) for IP speakers and VLC. Players cannot send a Bearer header,
 * so the stream URLs accept the zone's listen key as `?key=` (the URL to give a speaker: it grants
 * listening to that zone and nothing else, streams/listen-keys.ts), the user's bearer token as
 * `?token=`, and a node's HTTP Basic credentials (as the media download does).
 */
export async function streamRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const params = z.object({ zoneId: Id });
  const streamPath = (zoneId: string, f: StreamFormat) => `/api/v1/zones/${encodeURIComponent(zoneId)}/stream.${f}`;
  const listenUrl = (zoneId: string, f: StreamFormat, key: string) => `${svc.httpBase()}${streamPath(zoneId, f)}?key=${encodeURIComponent(key)}`;

  // Open streams would keep app.close() waiting for ever: end them first.
  app.addHook('preClose', async () => { await svc.streams.stop(); });

  app.get('/zones/:zoneId/stream', {
    schema: {
      tags: ['zones'], params, response: { 200: ZoneStreamInfo },
      description: 'The zone\'s stream URLs, listeners and what is on air. For admins and operators, also the zone\'s listen key (created on the first look) and the URLs carrying it.',
    },
  }, async (req) => {
    const p = who(req);
    const zone = svc.store.getZone(p.communeId, req.params.zoneId);
    if (!zone) throw notFound('zone', req.params.zoneId);
    let listenKey: { key: string | null; createdAt: number; rotatedAt: number } | null = null;
    if (KEY_ROLES.has(p.role)) {
      const k = svc.streams.keys.ensure(p.communeId, zone.id);
      if (k.created) svc.store.audit(p.communeId, svc.now(), p.username, 'zone.stream_key.create', zone.id);
      listenKey = { key: k.key, createdAt: k.createdAt, rotatedAt: k.rotatedAt };
    }
    const st = svc.streams.status(p.communeId, zone.id);
    const opts = svc.streams.options();
    return {
      ...st,
      formats: STREAM_FORMATS.map((f) => {
        const path = streamPath(zone.id, f);
        return {
          format: f, contentType: STREAM_CONTENT_TYPE[f], path, url: `${svc.httpBase()}${path}`,
          listenUrl: listenKey?.key ? listenUrl(zone.id, f, listenKey.key) : null,
          bitrateKbps: f === 'ogg' ? opts.opusBitrateKbps : opts.mp3BitrateKbps,
        };
      }),
      listenKey,
    };
  });

  app.post('/zones/:zoneId/stream/key', {
    schema: {
      tags: ['zones'], params, response: { 200: ZoneStreamKeyRotated },
      description: 'A new listen key for the zone (admin, operator), returned in full. URLs with the old key stop working at once and players on it are disconnected. Audited.',
    },
  }, async (req) => {
    const p = requireKeyRole(req);
    const zone = svc.store.getZone(p.communeId, req.params.zoneId);
    if (!zone) throw notFound('zone', req.params.zoneId);
    const r = svc.streams.rotateKey(p.communeId, zone.id);
    svc.store.audit(p.communeId, svc.now(), p.username, 'zone.stream_key.rotate', zone.id, { disconnected: r.disconnected });
    return {
      zoneId: zone.id, key: r.key, createdAt: r.createdAt, rotatedAt: r.rotatedAt, disconnected: r.disconnected,
      formats: STREAM_FORMATS.map((f) => ({ format: f, listenUrl: listenUrl(zone.id, f, r.key) })),
    };
  });

  for (const format of STREAM_FORMATS) {
    app.get(`/zones/:zoneId/stream.${format}`, {
      config: { public: true },
      schema: {
        tags: ['zones'], params, querystring: ZoneStreamQuery,
        description: `The zone's audio as ${format === 'ogg' ? 'Ogg/Opus' : 'MP3'}, live (no length). Authenticate with the zone's listen key (\`?key=\`), a bearer token (header or \`?token=\`) or a node's HTTP Basic credentials.`,
      },
    }, async (req, reply) => {
      let auth: { communeId: string; viaKey: boolean };
      try {
        auth = listener(req, svc, req.params.zoneId, req.query);
      } catch (e) {
        // Players (VLC, ffmpeg, IP speakers) send URL credentials only after a Basic challenge (RFC 7617).
        reply.header('www-authenticate', 'Basic realm="commune radio", charset="UTF-8"');
        throw e;
      }
      const zone = svc.store.getZone(auth.communeId, req.params.zoneId);
      if (!zone) throw notFound('zone', req.params.zoneId);
      if (req.method === 'HEAD') {
        return reply.header('content-type', STREAM_CONTENT_TYPE[format]).header('cache-control', 'no-store, no-cache').code(200).send();
      }
      reply.hijack();
      // From the credential check to here nothing awaits: a key rotated meanwhile cannot slip in (rotateKey
      // disconnects the listeners it admitted, and attach registers this one before its first await).
      try {
        await svc.streams.attach(auth.communeId, zone.id, format, reply.raw, { zoneName: zone.name, viaKey: auth.viaKey });
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

/**
 * Who listens: the zone's listen key (`?key=`: this zone only), a bearer token (header or `?token=`) or a
 * node's HTTP Basic credentials. A key is judged alone: a wrong key is refused even if a token is given too.
 */
function listener(req: FastifyRequest, svc: Services, zoneId: string, query: ZoneStreamQuery): { communeId: string; viaKey: boolean } {
  if (query.key !== undefined) {
    const k = svc.streams.keys.verify(zoneId, query.key);
    if (k) return { communeId: k.communeId, viaKey: true };
    throw new AppError(401, 'UNAUTHENTICATED', 'invalid listen key for this zone (rotated, or the key of another zone)');
  }
  const h = req.headers.authorization ?? '';
  const bearer = h.startsWith('Bearer ') ? h.slice(7) : query.token;
  if (bearer) {
    const p = svc.auth.verifyToken(bearer);
    if (p) return { communeId: p.communeId, viaKey: false };
    throw new AppError(401, 'UNAUTHENTICATED', 'invalid or expired token');
  }
  if (h.startsWith('Basic ')) {
    const [user, ...rest] = Buffer.from(h.slice(6), 'base64').toString('utf8').split(':');
    const row = user ? svc.store.db.prepare<[string], { secret_hash: string; commune_id: string }>(`SELECT secret_hash, commune_id FROM nodes WHERE id = ?`).get(user) : undefined;
    if (row && secretMatches(rest.join(':'), row.secret_hash)) return { communeId: row.commune_id, viaKey: false };
    throw new AppError(401, 'UNAUTHENTICATED', 'invalid node credentials');
  }
  throw new AppError(401, 'UNAUTHENTICATED', 'zone streams need the zone\'s listen key (?key=), a bearer token (Authorization header or ?token=) or the node credentials (HTTP Basic)');
}
