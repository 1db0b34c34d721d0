import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, FastifyTypeProvider, RawReplyDefaultExpression,
  RawRequestDefaultExpression, RawServerDefault,
} from 'fastify';
import type { Services } from '../../services.js';

/** controller/web, next to controller/src. */
export const DEFAULT_WEB_DIR = fileURLToPath(new URL('../../../web/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * The console is a handful of same-origin files: no inline script, no third-party origin. The
 * WebSocket is same-origin too; `ws:`/`wss:` are listed because CSP2 browsers do not let 'self' cover them.
 */
const CSP = [
  "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
  "connect-src 'self' ws: wss:", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'",
].join('; ');

interface Cached { body: Buffer; etag: string; mtimeMs: number; size: number }

/**
 * The web console: `GET /` answers index.html, `GET /web/<file>` the assets under `dir`. Mounted on the
 * root app (not under /api/v1), so it registers absolute paths and is public: the console's own
 * login form obtains the token the API needs.
 *
 * File names carry no content hash (no build step), so nothing may be cached blindly: every response
 * says `no-cache` and carries a strong ETag, and a revalidation costs a 304 (RFC 9111 §5.2.2.4,
 * RFC 9110 §13.1.2).
 */
export async function webRoutes<L extends FastifyBaseLogger, P extends FastifyTypeProvider>(
  instance: FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, L, P>,
  _svc: Services,
  opts: { dir?: string } = {},
) {
  // The root app is typed with its pino logger and the zod type provider; these routes use neither,
  // so they are declared on the plain instance type.
  const app = instance as unknown as FastifyInstance;
  const root = path.resolve(opts.dir ?? DEFAULT_WEB_DIR);
  const cache = new Map<string, Cached>();

  /** Resolve a request path under `root`; undefined when it would leave `root` or is not a plain file name. */
  function resolveInside(rel: string): string | undefined {
    if (rel.length === 0 || rel.length > 256 || rel.includes('\0') || rel.includes('\\')) return undefined;
    const abs = path.resolve(root, rel);
    if (!abs.startsWith(root + path.sep)) return undefined;
    // Dot files (editor swap files, .DS_Store…) are not part of the console.
    if (path.relative(root, abs).split(path.sep).some((seg) => seg.startsWith('.'))) return undefined;
    return abs;
  }

  async function load(abs: string): Promise<Cached | undefined> {
    let st;
    try { st = await fs.stat(abs); } catch { return undefined; }
    if (!st.isFile()) return undefined;
    const hit = cache.get(abs);
    // Re-read when the file changed on disk, so editing the console needs no restart.
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit;
    const body = await fs.readFile(abs);
    const entry = { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`, mtimeMs: st.mtimeMs, size: st.size };
    cache.set(abs, entry);
    return entry;
  }

  async function send(req: FastifyRequest, reply: FastifyReply, abs: string | undefined) {
    const f = abs ? await load(abs) : undefined;
    if (!abs || !f) return reply.code(404).send({ code: 'NOT_FOUND', message: `no such file ${req.url.split('?')[0]}`, statusCode: 404 });
    const type = TYPES[path.extname(abs).toLowerCase()] ?? 'application/octet-stream';
    reply
      .header('content-type', type)
      .header('cache-control', 'no-cache')
      .header('etag', f.etag)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer');
    if (type.startsWith('text/html')) reply.header('content-security-policy', CSP).header('x-frame-options', 'DENY');
    const inm = req.headers['if-none-match'];
    if (inm && inm.split(',').some((t) => t.trim() === f.etag || t.trim() === '*')) return reply.code(304).send();
    return reply.send(f.body);
  }

  const schema = { hide: true };
  app.get('/', { schema }, (req, reply) => send(req, reply, resolveInside('index.html')));
  app.get('/index.html', { schema }, (_req, reply) => reply.redirect('/', 301));
  app.get('/favicon.ico', { schema }, (req, reply) => send(req, reply, resolveInside('icon.svg')));
  app.get('/web/*', { schema }, (req, reply) => {
    const rel = (req.params as { '*'?: string })['*'] ?? '';
    return send(req, reply, resolveInside(rel));
  });
}
