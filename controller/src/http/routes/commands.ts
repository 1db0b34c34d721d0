import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CommandRequest, CommandResult, Id, type CommandBody } from '../../../../schemas/src/index.js';
import { notFound } from '../../errors.js';
import type { Services } from '../../services.js';
import { who } from '../app.js';

export async function commandRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const params = z.object({ id: Id });
  const split = (b: z.infer<typeof CommandRequest>) => {
    const { waitMs, ...body } = b;
    return { waitMs, body: body as CommandBody };
  };

  app.post('/nodes/:id/commands', { schema: { tags: ['commands'], params, body: CommandRequest, response: { 200: CommandResult } } }, async (req) => {
    const p = who(req);
    const n = svc.store.getNode(p.communeId, req.params.id);
    if (!n) throw notFound('node', req.params.id);
    const { waitMs, body } = split(req.body);
    const online = svc.nodes.get(n.id)?.status === 'online';
    const r = await svc.commands.send({ communeId: p.communeId, actor: p.username, scope: 'node', scopeId: n.id, targets: [{ id: n.id, online }], body, waitMs });
    return { ...r, target: { scope: 'node' as const, id: n.id }, name: body.name };
  });

  app.post('/zones/:id/commands', { schema: { tags: ['commands'], params, body: CommandRequest, response: { 200: CommandResult } } }, async (req) => {
    const p = who(req);
    const zone = svc.store.getZone(p.communeId, req.params.id);
    if (!zone) throw notFound('zone', req.params.id);
    const { waitMs, body } = split(req.body);
    const targets = svc.store.listNodes(p.communeId, zone.id).map((n) => ({ id: n.id, online: svc.nodes.get(n.id)?.status === 'online' }));
    const r = await svc.commands.send({ communeId: p.communeId, actor: p.username, scope: 'zone', scopeId: zone.id, targets, body, waitMs });
    return { ...r, target: { scope: 'zone' as const, id: zone.id }, name: body.name };
  });

  app.post('/commands', { schema: { tags: ['commands'], body: CommandRequest, response: { 200: CommandResult } } }, async (req) => {
    const p = who(req);
    const { waitMs, body } = split(req.body);
    const targets = svc.store.listNodes(p.communeId).map((n) => ({ id: n.id, online: svc.nodes.get(n.id)?.status === 'online' }));
    const r = await svc.commands.send({ communeId: p.communeId, actor: p.username, scope: 'commune', scopeId: p.communeId, targets, body, waitMs });
    return { ...r, target: { scope: 'commune' as const, id: p.communeId }, name: body.name };
  });

  app.get('/commands/:transaction', { schema: { tags: ['commands'], params: z.object({ transaction: z.string().max(64) }), response: { 200: CommandResult } } }, async (req) => {
    const r = svc.commands.get(req.params.transaction, who(req).communeId);
    if (!r) throw notFound('command', req.params.transaction);
    return r;
  });
}
