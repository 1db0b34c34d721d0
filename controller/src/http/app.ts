import fastifySwagger from '@fastify/swagger';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify';
import {
  hasZodFastifySchemaValidationErrors, isResponseSerializationError, jsonSchemaTransform,
  serializerCompiler, validatorCompiler, type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Principal } from '../auth.js';
import { DynsecError } from '../broker/mosquitto-accounts.js';
import { AppError } from '../errors.js';
import type { Services } from '../services.js';
import { alarmRoutes } from './routes/alarms.js';
import { auditRoutes } from './routes/audit.js';
import { authRoutes } from './routes/auth.js';
import { commandRoutes } from './routes/commands.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { nodeRoutes } from './routes/nodes.js';
import { webhookRoutes } from './routes/webhooks.js';
import { webRoutes } from './routes/web.js';
import { schedulingRoutes } from './routes/scheduling.js';
import { mediaRoutes } from './routes/media.js';
import { liveRoutes } from './routes/live.js';
import { capRoutes } from './routes/cap.js';
import { zoneRoutes } from './routes/zones.js';
import { streamRoutes } from './routes/streams.js';

declare module 'fastify' {
  interface FastifyRequest { principal?: Principal }
  interface FastifyContextConfig { public?: boolean }
}

export type App = FastifyInstance;
export const API = '/api/v1';

/** Build the HTTP app without listening (tests use app.inject). One plugin per domain. */
export async function buildApp(svc: Services, extraPlugins: ((app: FastifyInstance, svc: Services) => Promise<void>)[] = []) {
  const app = Fastify({
    loggerInstance: svc.log.child({ component: 'http' }),
    // Per-request lines would drown the log under a fleet; errors are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // Zone audio streams and media downloads never end by themselves, and a client may leave a spare
    // keep-alive socket behind: stop() closes every connection rather than waiting for them.
    forceCloseConnections: true,
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (hasZodFastifySchemaValidationErrors(err)) {
      const issues = err.validation.map((v) => {
        const field = v.instancePath ? v.instancePath.replace(/^\//, '').replaceAll('/', '.') : (v.params as { issue?: { path?: unknown[] } })?.issue?.path?.join('.') ?? '';
        return field ? `${field}: ${v.message}` : (v.message ?? 'invalid');
      });
      return reply.code(400).send({ code: 'VALIDATION_ERROR', message: `invalid ${err.validationContext ?? 'request'}: ${issues.join('; ')}`, statusCode: 400 });
    }
    if (err instanceof AppError) return reply.code(err.statusCode).send({ code: err.code, message: err.message, statusCode: err.statusCode });
    if (err instanceof DynsecError) {
      req.log.error({ err, url: req.url }, 'external broker refused an account change');
      return reply.code(502).send({ code: 'BROKER_ACCOUNT_FAILED', message: `the MQTT broker did not accept the account change: ${err.message}`, statusCode: 502 });
    }
    if (isResponseSerializationError(err)) {
      req.log.error({ err, url: req.url }, 'response failed its schema');
      return reply.code(500).send({ code: 'INTERNAL', message: 'internal error', statusCode: 500 });
    }
    const status = err.statusCode ?? 500;
    if (status < 500) {
      return reply.code(status).send({ code: err.code ?? 'BAD_REQUEST', message: err.message, statusCode: status });
    }
    req.log.error({ err, method: req.method, url: req.url }, 'request failed');
    return reply.code(500).send({ code: 'INTERNAL', message: 'internal error', statusCode: 500 });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ code: 'ROUTE_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}`, statusCode: 404 }));

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Commune radio controller API', version: '1.0.0', description: 'Generated from the zod schemas in schemas/.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(fastifyWebsocket, { options: { maxPayload: 1024 * 1024 } });

  // Nothing is anonymous except health, login and the API description.
  app.addHook('onRequest', async (req) => {
    if (!req.url.startsWith(API) || req.routeOptions.config?.public) return;
    const h = req.headers.authorization;
    let token = h?.startsWith('Bearer ') ? h.slice(7) : undefined;
    if (!token && req.headers.upgrade === 'websocket') token = new URL(req.url, 'http://x').searchParams.get('token') ?? undefined;
    if (!token) throw new AppError(401, 'UNAUTHENTICATED', 'missing bearer token: POST /api/v1/auth/login first');
    const p = svc.auth.verifyToken(token);
    if (!p) throw new AppError(401, 'UNAUTHENTICATED', 'invalid or expired token');
    req.principal = p;
  });

  app.get(`${API}/openapi.json`, { config: { public: true }, schema: { hide: true } }, async () => app.swagger());

  await app.register(async (api) => {
    await healthRoutes(api, svc);
    await authRoutes(api, svc);
    await zoneRoutes(api, svc);
    await nodeRoutes(api, svc);
    await commandRoutes(api, svc);
    await alarmRoutes(api, svc);
    await eventRoutes(api, svc);
    await auditRoutes(api, svc);
    await webhookRoutes(api, svc);
    await mediaRoutes(api, svc);
    await schedulingRoutes(api, svc);
    await liveRoutes(api, svc);
    await capRoutes(api, svc);
    await streamRoutes(api, svc);
    for (const p of extraPlugins) await p(api, svc);
  }, { prefix: API });
  await webRoutes(app, svc);

  return app;
}

/** The authenticated principal (the onRequest hook guarantees one on non-public routes). */
export function who(req: { principal?: Principal }): Principal {
  if (!req.principal) throw new AppError(401, 'UNAUTHENTICATED', 'not authenticated');
  return req.principal;
}
