import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { ServerEvent } from '../../schemas/src/index.js';
import type { EventBus } from './event-bus.js';
import type { Store } from './store/store.js';

interface HookRow { id: number; commune_id: string; url: string; secret: string | null; events: string; enabled: number; created_at: number }

/**
 * Outbound notification webhooks: each event (alarms by default) is POSTed as JSON, signed with
 * HMAC-SHA256 of the body in `X-Radio-Signature: sha256=<hex>` when the hook has a secret, retried with
 * backoff. Delivery never blocks the event loop path that raised the event.
 */
export function createWebhooks({ store, bus, log, retryDelaysMs = [1000, 5000, 20_000] }: { store: Store; bus: EventBus; log: Logger; retryDelaysMs?: number[] }) {
  const db = store.db;
  let off: (() => void) | undefined;
  const inflight = new Set<AbortController>();

  async function deliver(hook: HookRow, body: string) {
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'commune-radio-webhook/1' };
    if (hook.secret) headers['x-radio-signature'] = `sha256=${crypto.createHmac('sha256', hook.secret).update(body).digest('hex')}`;
    for (let attempt = 0; attempt <= retryDelaysMs.length; attempt++) {
      const ac = new AbortController();
      inflight.add(ac);
      const timer = setTimeout(() => ac.abort(), 5000);
      try {
        const res = await fetch(hook.url, { method: 'POST', headers, body, signal: ac.signal });
        if (res.ok) return;
        log.warn({ hook: hook.id, status: res.status, attempt }, 'webhook answered with an error status');
      } catch (e) {
        if (off === undefined) return; // stopped
        log.warn({ hook: hook.id, err: (e as Error).message, attempt }, 'webhook delivery failed');
      } finally {
        clearTimeout(timer);
        inflight.delete(ac);
      }
      const d = retryDelaysMs[attempt];
      if (d === undefined || off === undefined) return;
      await new Promise((r) => setTimeout(r, d).unref());
    }
  }

  // Hooks per commune, cached: every bus event (thousands in a reconnect storm) looks them up.
  const cache = new Map<string, HookRow[]>();
  const hooksOf = (communeId: string) => {
    let h = cache.get(communeId);
    if (!h) { h = db.prepare<[string], HookRow>(`SELECT * FROM webhooks WHERE commune_id = ? AND enabled = 1`).all(communeId); cache.set(communeId, h); }
    return h;
  };

  function onEvent(communeId: string, ev: ServerEvent) {
    if (ev.type === 'hello' || ev.type === 'job.progress') return;
    const hooks = hooksOf(communeId);
    if (hooks.length === 0) return;
    for (const h of hooks) {
      const filter = JSON.parse(h.events) as string[];
      const wanted = filter.length === 0 ? ev.type.startsWith('alarm.') : filter.includes(ev.type);
      if (!wanted) continue;
      void deliver(h, JSON.stringify({ communeId, event: ev }));
    }
  }

  return {
    start() { off ??= bus.on(onEvent); },
    stop() { off?.(); off = undefined; for (const ac of inflight) ac.abort(); },
    list(communeId: string) {
      return db.prepare<[string], HookRow>(`SELECT * FROM webhooks WHERE commune_id = ? ORDER BY id`).all(communeId)
        .map((h) => ({ id: h.id, url: h.url, events: JSON.parse(h.events) as string[], enabled: h.enabled === 1, createdAt: h.created_at }));
    },
    add(communeId: string, url: string, secret: string | undefined, events: string[], ts: number) {
      const info = db.prepare(`INSERT INTO webhooks (commune_id, url, secret, events, created_at) VALUES (?, ?, ?, ?, ?)`).run(communeId, url, secret ?? null, JSON.stringify(events), ts);
      cache.delete(communeId);
      return { id: Number(info.lastInsertRowid), url, events, enabled: true, createdAt: ts };
    },
    remove(communeId: string, id: number) {
      cache.delete(communeId);
      return db.prepare(`DELETE FROM webhooks WHERE id = ? AND commune_id = ?`).run(id, communeId).changes > 0;
    },
  };
}
export type Webhooks = ReturnType<typeof createWebhooks>;
