import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Alarm, Id } from '../../../../schemas/src/index.js';
import { notFound } from '../../errors.js';
import type { Services } from '../../services.js';
import { who } from '../app.js';

export async function alarmRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  app.get('/alarms', {
    schema: { tags: ['alarms'], querystring: z.object({ state: z.enum(['active', 'cleared']).optional(), nodeId: Id.optional(), limit: z.coerce.number().int().min(1).max(1000).default(200) }), response: { 200: z.array(Alarm) } },
  }, async (req) => svc.store.listAlarms(who(req).communeId, req.query));
  app.post('/alarms/:id/ack', { schema: { tags: ['alarms'], params: z.object({ id: z.coerce.number().int() }), response: { 200: Alarm } } }, async (req) => {
    const p = who(req);
    const a = svc.store.getAlarm(req.params.id);
    if (!a || a.communeId !== p.communeId) throw notFound('alarm', String(req.params.id));
    const acked = svc.alarms.ack(a.id, p.username)!;
    svc.store.audit(p.communeId, svc.now(), p.username, 'alarm.ack', String(a.id));
    return acked;
  });
}
