import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services.js';

/** Programmes, schedules, preview, airings and receipts API (placeholder until the scheduling work lands). */
export async function schedulingRoutes(_app: FastifyInstance, _svc: Services) {}
