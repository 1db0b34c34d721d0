import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AuditEntry } from '../../../../schemas/src/index.js';
import type { Services } from '../../services.js';
import { who } from '../app.js';

export async function auditRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  app.get('/audit', {
    schema: { tags: ['audit'], querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100), offset: z.coerce.number().int().min(0).default(0) }), response: { 200: z.array(AuditEntry) } },
  }, async (req) => svc.store.listAudit(who(req).communeId, req.query.limit, req.query.offset));
}
