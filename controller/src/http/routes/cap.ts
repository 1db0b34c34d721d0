import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  CapAlertQuery, CapAlertRecord, CapAlertResult, CapSender, CapSenderCreate, CapSenderCreated, CapSenderUpdate, CapSettings, Id,
} from '../../../../schemas/src/index.js';
import { createCapService } from '../../cap/cap-service.js';
import { createCapStore } from '../../cap/cap-store.js';
import { CAP_MAX_BYTES } from '../../cap/parse.js';
import { AppError, notFound } from '../../errors.js';
import { hashSecret, newId, newSecret } from '../../secrets.js';
import type { Services } from '../../services.js';
import { who } from '../app.js';

const XML_TYPES = ['application/xml', 'application/cap+xml', 'text/xml'];

function requireAdmin(req: FastifyRequest) {
  const p = who(req);
  if (p.role !== 'admin') throw new AppError(403, 'FORBIDDEN', 'only an admin may manage CAP senders and settings');
  return p;
}

/**
 * OASIS CAP 1.2 ingest. Senders (machines) post XML with their own bearer token, which is not a user
 * token: that route is public to the user-auth hook and checks the sender token itself. Everything else
 * here is for the console (admin for senders and settings).
 */
export async function capRoutes(root: FastifyInstance, svc: Services) {
  // Own encapsulated scope: the XML body parser and the 413 mapping apply to these routes only.
  await root.register(async (scope) => {
    const app = scope.withTypeProvider<ZodTypeProvider>();
    const capStore = createCapStore(svc.store.db);
    const cap = createCapService({ store: svc.store, capStore, live: () => svc.live, now: svc.now, log: svc.log.child({ component: 'cap' }) });
    const senders = new WeakMap<FastifyRequest, CapSender>();

    // As a string, never parsed here: parseCap refuses DTDs and checks well-formedness before parsing.
    app.addContentTypeParser(XML_TYPES, { parseAs: 'string', bodyLimit: CAP_MAX_BYTES }, (_req, body, done) => done(null, body));
    app.setErrorHandler((err: FastifyError) => {
      if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') throw new AppError(413, 'CAP_TOO_LARGE', `CAP message larger than ${CAP_MAX_BYTES} bytes`);
      throw err; // the app's error handler formats everything else
    });

    app.post('/cap/alerts', {
      config: { public: true },
      bodyLimit: CAP_MAX_BYTES,
      schema: { tags: ['cap'], description: 'Post one OASIS CAP 1.2 alert (XML) with a CAP sender token.', response: { 200: CapAlertResult, 201: CapAlertResult } },
      // Before the body is read: an unknown sender does not get to upload anything.
      onRequest: async (req) => {
        const h = req.headers.authorization;
        const token = h?.startsWith('Bearer ') ? h.slice(7).trim() : undefined;
        if (!token) throw new AppError(401, 'CAP_SENDER_UNAUTHENTICATED', 'missing bearer token: a CAP sender token is required');
        const s = capStore.senderByTokenHash(hashSecret(token));
        if (!s) throw new AppError(401, 'CAP_SENDER_UNKNOWN', 'unknown CAP sender token');
        if (!s.enabled) {
          svc.store.audit(s.communeId, svc.now(), `cap:${s.id}`, 'cap.rejected', null, { code: 'CAP_SENDER_DISABLED' });
          throw new AppError(403, 'CAP_SENDER_DISABLED', `CAP sender '${s.name}' is disabled`);
        }
        senders.set(req, s);
      },
    }, async (req, reply) => {
      const sender = senders.get(req);
      if (!sender) throw new AppError(401, 'CAP_SENDER_UNAUTHENTICATED', 'not authenticated');
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (!XML_TYPES.includes(type) || typeof req.body !== 'string') {
        throw new AppError(415, 'CAP_CONTENT_TYPE', `a CAP alert is XML: send it as application/xml or application/cap+xml (got '${type || 'none'}')`);
      }
      const r = await cap.ingest(sender, req.body);
      return reply.code(r.statusCode).send(r.result);
    });

    app.get('/cap/alerts', { schema: { tags: ['cap'], querystring: CapAlertQuery, response: { 200: z.array(CapAlertRecord) } } }, async (req) =>
      capStore.listAlerts(who(req).communeId, req.query));

    app.get('/cap/alerts/:id/xml', { schema: { tags: ['cap'], params: z.object({ id: z.coerce.number().int() }) } }, async (req, reply) => {
      const row = capStore.getAlert(who(req).communeId, req.params.id);
      if (!row) throw notFound('cap alert', String(req.params.id));
      return reply.type('application/xml; charset=utf-8').send(row.raw_xml);
    });

    app.get('/cap/senders', { schema: { tags: ['cap'], response: { 200: z.array(CapSender) } } }, async (req) => capStore.listSenders(requireAdmin(req).communeId));

    app.post('/cap/senders', { schema: { tags: ['cap'], body: CapSenderCreate, response: { 201: CapSenderCreated } } }, async (req, reply) => {
      const p = requireAdmin(req);
      const token = newSecret();
      const id = newId('cap');
      capStore.insertSender({ id, communeId: p.communeId, name: req.body.name, capSender: req.body.capSender, tokenHash: hashSecret(token), createdAt: svc.now(), createdBy: p.username });
      svc.store.audit(p.communeId, svc.now(), p.username, 'cap.sender.create', id, { name: req.body.name, capSender: req.body.capSender });
      // The token is shown once; only its hash is stored.
      return reply.code(201).send({ sender: capStore.getSender(p.communeId, id)!, token });
    });

    app.patch('/cap/senders/:id', { schema: { tags: ['cap'], params: z.object({ id: Id }), body: CapSenderUpdate, response: { 200: CapSender } } }, async (req) => {
      const p = requireAdmin(req);
      const s = capStore.getSender(p.communeId, req.params.id);
      if (!s) throw notFound('cap sender', req.params.id);
      capStore.setSenderEnabled(s.id, req.body.enabled);
      svc.store.audit(p.communeId, svc.now(), p.username, req.body.enabled ? 'cap.sender.enable' : 'cap.sender.disable', s.id);
      return capStore.getSender(p.communeId, s.id)!;
    });

    app.get('/cap/settings', { schema: { tags: ['cap'], response: { 200: CapSettings } } }, async (req) => capStore.getSettings(who(req).communeId));

    app.put('/cap/settings', { schema: { tags: ['cap'], body: CapSettings, response: { 200: CapSettings } } }, async (req) => {
      const p = requireAdmin(req);
      for (const [code, zones] of Object.entries(req.body.geocodeZones)) {
        for (const z of zones) if (!svc.store.getZone(p.communeId, z)) throw notFound('zone', `${z}' (geocodeZones '${code}`);
      }
      capStore.putSettings(p.communeId, req.body, svc.now(), p.username);
      svc.store.audit(p.communeId, svc.now(), p.username, 'cap.settings', null, req.body);
      return capStore.getSettings(p.communeId);
    });
  });
}
