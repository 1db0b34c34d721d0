import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services.js';

export async function mediaRoutes(_app: FastifyInstance, _svc: Services) {}
