import type { FastifyInstance } from 'fastify';
import type { Services } from '../../services.js';

/** Live sessions, microphone WebSocket, emergency and CAP routes (placeholder until the live work lands). */
export async function liveRoutes(_app: FastifyInstance, _svc: Services) {}
