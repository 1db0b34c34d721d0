import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { LoginBody, LoginReply } from '../../../../schemas/src/index.js';
import type { Services } from '../../services.js';

export async function authRoutes(root: FastifyInstance, svc: Services) {
  const app = root.withTypeProvider<ZodTypeProvider>();
  app.post('/auth/login', { config: { public: true }, schema: { tags: ['auth'], body: LoginBody, response: { 200: LoginReply } } }, async (req) => {
    const r = svc.auth.login(req.body.username, req.body.password);
    return { token: r.token, expiresAt: r.expiresAt, username: r.principal.username, role: r.principal.role };
  });
  app.post('/auth/logout', { schema: { tags: ['auth'] } }, async (req, reply) => {
    const h = req.headers.authorization;
    if (h?.startsWith('Bearer ')) svc.auth.logout(h.slice(7));
    return reply.code(204).send();
  });
}
