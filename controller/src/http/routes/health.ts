import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Services } from '../../services.js';

export async function healthRoutes(app: FastifyInstance, svc: Services) {
  app.get('/health', {
    config: { public: true },
    schema: { response: { 200: z.object({ status: z.literal('ok'), mqtt: z.boolean(), nodes: z.number().int(), online: z.number().int(), counters: z.object({ received: z.number(), invalid: z.number(), unknownNode: z.number(), telemetry: z.number(), telemetryStored: z.number() }) }), 503: z.object({ status: z.literal('starting'), mqtt: z.boolean() }) } },
  }, async (_req, reply) => {
    const mqtt = (() => { try { return svc.link.connected(); } catch { return false; } })();
    if (!mqtt) return reply.code(503).send({ status: 'starting' as const, mqtt });
    let online = 0;
    for (const n of svc.nodes.values()) if (n.status === 'online') online++;
    return { status: 'ok' as const, mqtt, nodes: svc.nodes.size, online, counters: { ...svc.link.counters } };
  });
}
