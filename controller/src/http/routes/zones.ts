import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Id, Zone, ZoneCreate, ZoneUpdate } from '../../../../schemas/src/index.js';
import { conflict, notFound } from '../../errors.js';
import { newId } from '../../secrets.js';
import type { Services } from '../../services.js';
import { who } from '../app.js';

export async function zoneRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const params = z.object({ id: Id });
  app.get('/zones', { schema: { tags: ['zones'], response: { 200: z.array(Zone) } } }, async (req) => svc.store.listZones(who(req).communeId));
  app.get('/zones/:id', { schema: { tags: ['zones'], params, response: { 200: Zone } } }, async (req) => {
    const z = svc.store.getZone(who(req).communeId, req.params.id);
    if (!z) throw notFound('zone', req.params.id);
    return z;
  });
  app.post('/zones', { schema: { tags: ['zones'], body: ZoneCreate, response: { 201: Zone } } }, async (req, reply) => {
    const p = who(req);
    const id = req.body.id ?? newId('z');
    if (svc.store.zoneExistsAnywhere(id)) throw conflict('ZONE_EXISTS', `zone '${id}' already exists`);
    svc.store.insertZone({ id, communeId: p.communeId, name: req.body.name, description: req.body.description ?? null, createdAt: svc.now() });
    svc.store.audit(p.communeId, svc.now(), p.username, 'zone.create', id, req.body);
    return reply.code(201).send(svc.store.getZone(p.communeId, id)!);
  });
  app.patch('/zones/:id', { schema: { tags: ['zones'], params, body: ZoneUpdate, response: { 200: Zone } } }, async (req) => {
    const p = who(req);
    if (!svc.store.updateZone(p.communeId, req.params.id, req.body)) throw notFound('zone', req.params.id);
    svc.store.audit(p.communeId, svc.now(), p.username, 'zone.update', req.params.id, req.body);
    return svc.store.getZone(p.communeId, req.params.id)!;
  });
  app.delete('/zones/:id', { schema: { tags: ['zones'], params } }, async (req, reply) => {
    const p = who(req);
    const z = svc.store.getZone(p.communeId, req.params.id);
    if (!z) throw notFound('zone', req.params.id);
    if (z.nodeCount > 0) throw conflict('ZONE_NOT_EMPTY', `zone '${z.id}' still has ${z.nodeCount} node(s); move or delete them first`);
    const used = svc.scheduling.schedulesTargetingZone(p.communeId, z.id);
    if (used.length > 0) throw conflict('ZONE_IN_USE', `zone '${z.id}' is targeted by schedule(s) ${used.join(', ')}; change their targets first`);
    svc.store.deleteZone(p.communeId, z.id);
    svc.store.audit(p.communeId, svc.now(), p.username, 'zone.delete', z.id);
    return reply.code(204).send();
  });
}
