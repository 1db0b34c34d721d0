import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Id, LiveStartRequest, Volume } from '../../../../schemas/src/index.js';
import type { Services } from '../../services.js';
import { who } from '../app.js';

/** One-press emergency: a recorded clip or a text spoken by TTS, priority emergency, forced volume. */
const EmergencyRequest = z.object({
  title: z.string().trim().min(1).max(200).default('Emergency'),
  mediaId: z.string().max(64).optional(),
  text: z.string().trim().min(1).max(5000).optional(),
  voice: z.string().max(64).optional(),
  targets: z.object({
    commune: z.boolean().default(false),
    zones: z.array(Id).max(500).default([]),
    nodes: z.array(Id).max(5000).default([]),
  }).default({ commune: true, zones: [], nodes: [] })
    .refine((t) => t.commune || t.zones.length > 0 || t.nodes.length > 0, 'choose at least one target: the commune, a zone or a node'),
  repeat: z.number().int().min(1).max(10).default(2),
  forcedVolume: Volume.default(100),
  delayMs: z.number().int().min(40).max(5000).optional(),
}).refine((r) => r.mediaId !== undefined || r.text !== undefined, { message: 'give `mediaId` (a recorded clip) or `text` (spoken by TTS)', path: ['text'] });

/**
 * Live sessions, the console microphone WebSocket and the one-press emergency.
 *
 * Microphone: `GET /api/v1/live/sessions/:id/mic?token=<bearer token>&format=s16le|f32le`, a WebSocket
 * of binary frames of 48 kHz mono PCM, little-endian signed 16-bit (default) or float32 (an
 * AudioWorklet's output as is); 10–40 ms per frame is typical. The controller applies AGC and the
 * limiter before encoding. A text frame `end` ends the session. Close codes: 4404 no such active
 * session, 4400 not a voice session, 4409 a microphone is already connected, 4408 the microphone
 * stalled (the session ends), 4429 audio faster than real time (the excess was dropped, then closed),
 * 1000 the session ended.
 */
export async function liveRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const params = z.object({ id: z.string().min(1).max(64) });

  app.post('/live/sessions', { schema: { tags: ['live'], body: LiveStartRequest } }, async (req, reply) => {
    const p = who(req);
    const s = await svc.live.startSession(p.communeId, p.username, req.body);
    return reply.code(201).send(svc.live.get(p.communeId, s.sessionId));
  });

  app.post('/live/emergency', { schema: { tags: ['live'], body: EmergencyRequest } }, async (req, reply) => {
    const p = who(req);
    const b = req.body;
    const s = await svc.live.startSession(p.communeId, p.username, {
      kind: 'emergency', priority: 'emergency', title: b.title, targets: b.targets, repeat: b.repeat, forcedVolume: b.forcedVolume,
      ...(b.mediaId !== undefined ? { mediaId: b.mediaId } : {}), ...(b.text !== undefined ? { text: b.text } : {}),
      ...(b.voice !== undefined ? { voice: b.voice } : {}), ...(b.delayMs !== undefined ? { delayMs: b.delayMs } : {}),
    });
    return reply.code(201).send(svc.live.get(p.communeId, s.sessionId));
  });

  app.get('/live/sessions', { schema: { tags: ['live'], querystring: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) }) } },
    async (req) => svc.live.list(who(req).communeId, req.query.limit));

  app.get('/live/sessions/:id', { schema: { tags: ['live'], params } }, async (req) => svc.live.get(who(req).communeId, req.params.id));

  app.get('/live/sessions/:id/receipts', { schema: { tags: ['live'], params } }, async (req) => svc.live.receipts(who(req).communeId, req.params.id));

  app.post('/live/sessions/:id/stop', { schema: { tags: ['live'], params } }, async (req) => {
    const p = who(req);
    await svc.live.stopSession(p.communeId, p.username, req.params.id);
    return svc.live.get(p.communeId, req.params.id);
  });

  app.get('/live/sessions/:id/mic', {
    websocket: true,
    schema: { tags: ['live'], params, querystring: z.object({ token: z.string().optional(), format: z.enum(['s16le', 'f32le']).default('s16le') }) },
  }, (socket, req) => {
    const p = who(req);
    const { id } = req.params as { id: string };
    const { format } = req.query as { format: 's16le' | 'f32le' };
    const r = svc.live.attachMic(p.communeId, id, format, (code, reason) => { if (socket.readyState === socket.OPEN) socket.close(code, reason); });
    if (!r.ok) { socket.close(r.code, r.reason); return; }
    socket.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      if (!isBinary) {
        if (data.toString().trim() === 'end') r.onEnd();
        return;
      }
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      r.onFrame(buf);
    });
    socket.on('close', () => r.onClose());
    socket.on('error', () => r.onClose());
  });
}
