import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  Id, Node, NodeCreate, NodeDetail, NodeStatus, NodeUpdate, ProvisionReply, Telemetry, TelemetryPoint, TelemetryQuery,
} from '../../../../schemas/src/index.js';
import { badRequest, conflict, notFound } from '../../errors.js';
import { hashSecret, newId, newSecret } from '../../secrets.js';
import type { Services } from '../../services.js';
import { who } from '../app.js';

export async function nodeRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const params = z.object({ id: Id });
  const { store } = svc;

  function credentials(nodeId: string, password: string) {
    return { username: nodeId, password, mqttUrl: svc.mqttUrlForAgents(), httpBase: svc.httpBase() };
  }

  app.get('/nodes', {
    schema: { tags: ['nodes'], querystring: z.object({ zoneId: Id.optional(), status: NodeStatus.optional() }), response: { 200: z.array(Node) } },
  }, async (req) => {
    const p = who(req);
    if (req.query.zoneId && !store.getZone(p.communeId, req.query.zoneId)) throw notFound('zone', req.query.zoneId);
    const list = store.listNodes(p.communeId, req.query.zoneId);
    return req.query.status ? list.filter((n) => n.status === req.query.status) : list;
  });

  app.post('/nodes', { schema: { tags: ['nodes'], body: NodeCreate, response: { 201: ProvisionReply } } }, async (req, reply) => {
    const p = who(req);
    const b = req.body;
    if (!store.getZone(p.communeId, b.zoneId)) throw notFound('zone', b.zoneId);
    const id = b.id ?? newId('n');
    if (store.nodeExistsAnywhere(id)) throw conflict('NODE_EXISTS', `node '${id}' already exists`);
    const secret = newSecret();
    // Broker account first: if it cannot be written (external broker down) nothing is half-created.
    await svc.accounts.upsertNode({ nodeId: id, communeId: p.communeId, zoneId: b.zoneId, password: secret });
    store.insertNode({
      id, communeId: p.communeId, zoneId: b.zoneId, name: b.name, lat: b.position?.lat ?? null, lon: b.position?.lon ?? null,
      hardware: JSON.stringify(b.hardware ?? {}), secretHash: hashSecret(secret), actualOnly: b.actualOnly ?? false, createdAt: svc.now(),
    });
    svc.refreshNode(id);
    svc.publishNodeConfig(id);
    svc.scheduling.onNodeChanged(id);
    store.audit(p.communeId, svc.now(), p.username, 'node.provision', id, { zoneId: b.zoneId, name: b.name });
    return reply.code(201).send({ node: store.getNode(p.communeId, id)!, credentials: credentials(id, secret) });
  });

  app.get('/nodes/:id', { schema: { tags: ['nodes'], params, response: { 200: NodeDetail } } }, async (req) => {
    const p = who(req);
    const n = store.getNode(p.communeId, req.params.id);
    if (!n) throw notFound('node', req.params.id);
    const t = store.latestTelemetry(n.id);
    const parsed = t ? Telemetry.safeParse(JSON.parse(t.json)) : undefined;
    return { ...n, telemetry: t && parsed?.success ? { ts: t.ts, data: parsed.data } : null, alarms: svc.alarms.activeFor(n.id) };
  });

  app.patch('/nodes/:id', { schema: { tags: ['nodes'], params, body: NodeUpdate, response: { 200: Node } } }, async (req) => {
    const p = who(req);
    const cur = store.getNode(p.communeId, req.params.id);
    if (!cur) throw notFound('node', req.params.id);
    const b = req.body;
    if (b.zoneId && !store.getZone(p.communeId, b.zoneId)) throw notFound('zone', b.zoneId);
    const pos = b.position === undefined ? cur.position : b.position;
    const zoneId = b.zoneId ?? cur.zoneId;
    store.updateNode(cur.id, {
      name: b.name ?? cur.name, zoneId, lat: pos?.lat ?? null, lon: pos?.lon ?? null,
      hardware: JSON.stringify(b.hardware ?? cur.hardware), maintenance: b.maintenance ?? cur.maintenance, actualOnly: b.actualOnly ?? cur.actualOnly,
    });
    svc.refreshNode(cur.id);
    // On a zone move: new ACL first, then the new retained config, then drop the connection so the
    // agent reconnects and resubscribes under the new ACL.
    if (zoneId !== cur.zoneId) await svc.accounts.upsertNode({ nodeId: cur.id, communeId: p.communeId, zoneId });
    svc.publishNodeConfig(cur.id);
    if (zoneId !== cur.zoneId) await svc.accounts.disconnectNode(cur.id);
    svc.scheduling.onNodeChanged(cur.id);
    store.audit(p.communeId, svc.now(), p.username, 'node.update', cur.id, b);
    return store.getNode(p.communeId, cur.id)!;
  });

  app.post('/nodes/:id/credentials', { schema: { tags: ['nodes'], params, response: { 200: ProvisionReply } } }, async (req) => {
    const p = who(req);
    const n = store.getNode(p.communeId, req.params.id);
    if (!n) throw notFound('node', req.params.id);
    const secret = newSecret();
    await svc.accounts.upsertNode({ nodeId: n.id, communeId: n.communeId, zoneId: n.zoneId, password: secret });
    store.setNodeSecret(n.id, hashSecret(secret));
    await svc.accounts.disconnectNode(n.id);
    store.audit(p.communeId, svc.now(), p.username, 'node.rotate_credentials', n.id);
    return { node: n, credentials: credentials(n.id, secret) };
  });

  app.delete('/nodes/:id', { schema: { tags: ['nodes'], params } }, async (req, reply) => {
    const p = who(req);
    const n = store.getNode(p.communeId, req.params.id);
    if (!n) throw notFound('node', req.params.id);
    await svc.accounts.removeNode(n.id);
    store.deleteNode(n.id);
    svc.clearNodeConfig(n.id);
    svc.refreshNode(n.id);
    svc.alarms.forget(n.id);
    svc.scheduling.onNodeChanged(n.id);
    store.audit(p.communeId, svc.now(), p.username, 'node.delete', n.id);
    return reply.code(204).send();
  });

  app.get('/nodes/:id/telemetry', {
    schema: { tags: ['nodes'], params, querystring: TelemetryQuery, response: { 200: z.object({ raw: z.array(TelemetryPoint), rollup: z.array(TelemetryPoint) }) } },
  }, async (req) => {
    const p = who(req);
    const n = store.getNode(p.communeId, req.params.id);
    if (!n) throw notFound('node', req.params.id);
    const to = req.query.to ?? svc.now();
    const from = req.query.from ?? to - 24 * 3600_000;
    if (from > to) throw badRequest('BAD_RANGE', '`from` must not be after `to`');
    const raw = store.telemetryRaw(n.id, from, to, req.query.limit).map((r) => {
      const t = JSON.parse(r.data) as Telemetry;
      return {
        ts: r.ts, n: 1, temperatureC: t.temperatureC, batteryV: t.power.batteryV, mainsV: t.power.mainsV, rssiDbm: t.modem.rssiDbm, volume: t.volume, clockOffsetMs: t.clock.offsetMs,
        ...(t.live ? { liveLossPct: t.live.lossPct, liveJitterMs: t.live.jitterMs } : {}),
      };
    });
    const rollup = store.telemetryRollup(n.id, from, to, req.query.limit).map((r) => ({
      ts: r.bucket_ts, n: r.n, temperatureC: r.temperature_c, batteryV: r.battery_v, mainsV: r.mains_v, rssiDbm: r.rssi_dbm, volume: r.volume, clockOffsetMs: r.clock_offset_ms,
      ...(r.live_loss_pct !== null ? { liveLossPct: r.live_loss_pct } : {}), ...(r.live_jitter_ms !== null ? { liveJitterMs: r.live_jitter_ms } : {}),
    }));
    return { raw, rollup };
  });

  app.get('/nodes/:id/events', {
    schema: { tags: ['nodes'], params, querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }) },
  }, async (req) => {
    const p = who(req);
    if (!store.getNode(p.communeId, req.params.id)) throw notFound('node', req.params.id);
    return store.listEvents(p.communeId, req.params.id, req.query.limit);
  });
}
