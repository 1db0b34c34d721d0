import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  AiringsQuery, AiringsReply, AiringRow, AiringSummary, Id, NodePlanStatus, PreviewQuery, PreviewReply, Programme, ProgrammeCreate,
  ProgrammeUpdate, QuietHoursSetting, QuietHoursUpdate, ReceiptRow, ReceiptsQuery, Schedule, ScheduleConflict, ScheduleCreate,
  ScheduleListQuery, ScheduleReorder, ScheduleSaveReply, ScheduleUpdate,
} from '../../../../schemas/src/index.js';
import type { Services } from '../../services.js';
import { who } from '../app.js';

/**
 * Programmes, schedules, quiet hours, preview, node plans, airings and receipts. Thin: validation of
 * shapes here (zod from schemas/), every rule in controller/src/scheduling; all commune-scoped.
 */
export async function schedulingRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const sch = svc.scheduling;
  const params = z.object({ id: Id });
  const actor = (req: Parameters<typeof who>[0]) => { const p = who(req); return { communeId: p.communeId, username: p.username }; };

  // --- programmes
  app.get('/programmes', { schema: { tags: ['scheduling'], response: { 200: z.array(Programme) } } }, async (req) => sch.listProgrammes(who(req).communeId));
  app.post('/programmes', { schema: { tags: ['scheduling'], body: ProgrammeCreate, response: { 201: Programme } } }, async (req, reply) =>
    reply.code(201).send(await sch.createProgramme(actor(req), req.body)));
  app.get('/programmes/:id', { schema: { tags: ['scheduling'], params, response: { 200: Programme } } }, async (req) => sch.getProgramme(who(req).communeId, req.params.id));
  app.patch('/programmes/:id', { schema: { tags: ['scheduling'], params, body: ProgrammeUpdate, response: { 200: Programme } } }, async (req) =>
    sch.updateProgramme(actor(req), req.params.id, req.body));
  app.delete('/programmes/:id', { schema: { tags: ['scheduling'], params } }, async (req, reply) => {
    sch.deleteProgramme(actor(req), req.params.id);
    return reply.code(204).send();
  });

  // --- schedules
  app.get('/schedules', { schema: { tags: ['scheduling'], querystring: ScheduleListQuery, response: { 200: z.array(Schedule) } } }, async (req) =>
    sch.listSchedules(who(req).communeId, { programmeId: req.query.programmeId, enabled: req.query.enabled === undefined ? undefined : req.query.enabled === 'true' }));
  app.post('/schedules', { schema: { tags: ['scheduling'], body: ScheduleCreate, response: { 201: ScheduleSaveReply } } }, async (req, reply) =>
    reply.code(201).send(sch.createSchedule(actor(req), req.body)));
  app.post('/schedules/reorder', { schema: { tags: ['scheduling'], body: ScheduleReorder, response: { 200: z.array(Schedule) } } }, async (req) =>
    sch.reorderSchedules(actor(req), req.body.ids));
  app.get('/schedules/:id', { schema: { tags: ['scheduling'], params, response: { 200: Schedule } } }, async (req) => sch.getSchedule(who(req).communeId, req.params.id));
  app.get('/schedules/:id/conflicts', {
    schema: { tags: ['scheduling'], params, response: { 200: z.object({ conflicts: z.array(ScheduleConflict), conflictsTruncated: z.number().int(), conflictHorizonDays: z.number().int() }) } },
  }, async (req) => sch.scheduleConflicts(who(req).communeId, req.params.id));
  app.patch('/schedules/:id', { schema: { tags: ['scheduling'], params, body: ScheduleUpdate, response: { 200: ScheduleSaveReply } } }, async (req) =>
    sch.updateSchedule(actor(req), req.params.id, req.body));
  app.delete('/schedules/:id', { schema: { tags: ['scheduling'], params } }, async (req, reply) => {
    sch.deleteSchedule(actor(req), req.params.id);
    return reply.code(204).send();
  });

  // --- quiet hours (per commune)
  app.get('/settings/quiet-hours', { schema: { tags: ['scheduling'], response: { 200: QuietHoursSetting } } }, async (req) => sch.getQuietHours(who(req).communeId));
  app.put('/settings/quiet-hours', { schema: { tags: ['scheduling'], body: QuietHoursUpdate, response: { 200: QuietHoursSetting } } }, async (req) =>
    sch.setQuietHours(actor(req), req.body));

  // --- preview: what plays where (per node and per zone), from the expansion that feeds the plans
  app.get('/preview', { schema: { tags: ['scheduling'], querystring: PreviewQuery, response: { 200: PreviewReply } } }, async (req) =>
    sch.preview(who(req).communeId, req.query));

  // --- plans, airings, receipts
  app.get('/nodes/:id/plan', { schema: { tags: ['scheduling'], params, response: { 200: NodePlanStatus } } }, async (req) => sch.nodePlan(who(req).communeId, req.params.id));
  app.get('/airings', { schema: { tags: ['scheduling'], querystring: AiringsQuery, response: { 200: AiringsReply } } }, async (req) => sch.airings(who(req).communeId, req.query));
  app.get('/airings/:id', {
    schema: { tags: ['scheduling'], params: z.object({ id: z.string().min(1).max(80) }), response: { 200: z.object({ summary: AiringSummary, items: z.array(AiringRow) }) } },
  }, async (req) => sch.airing(who(req).communeId, req.params.id));
  app.get('/receipts', { schema: { tags: ['scheduling'], querystring: ReceiptsQuery, response: { 200: z.array(ReceiptRow) } } }, async (req) => sch.receipts(who(req).communeId, req.query));
}
