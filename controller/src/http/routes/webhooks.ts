import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Webhook, WebhookCreate } from '../../../../schemas/src/index.js';
import { notFound } from '../../errors.js';
import type { Services } from '../../services.js';
import { who } from '../app.js';

export async function webhookRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  app.get('/webhooks', { schema: { tags: ['webhooks'], response: { 200: z.array(Webhook) } } }, async (req) => svc.webhooks.list(who(req).communeId));
  app.post('/webhooks', { schema: { tags: ['webhooks'], body: WebhookCreate, response: { 201: Webhook } } }, async (req, reply) => {
    const p = who(req);
    const h = svc.webhooks.add(p.communeId, req.body.url, req.body.secret, req.body.events, svc.now());
    svc.store.audit(p.communeId, svc.now(), p.username, 'webhook.create', String(h.id), { url: h.url, events: h.events });
    return reply.code(201).send(h);
  });
  app.delete('/webhooks/:id', { schema: { tags: ['webhooks'], params: z.object({ id: z.coerce.number().int() }) } }, async (req, reply) => {
    const p = who(req);
    if (!svc.webhooks.remove(p.communeId, req.params.id)) throw notFound('webhook', String(req.params.id));
    svc.store.audit(p.communeId, svc.now(), p.username, 'webhook.delete', String(req.params.id));
    return reply.code(204).send();
  });
}
