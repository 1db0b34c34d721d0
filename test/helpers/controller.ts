import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { createController, type Controller, type ControllerOptions } from '../../controller/src/controller.js';

export interface TestController {
  ctl: Controller;
  dir: string;
  token: string;
  base: string;
  /** JSON API call with the admin token; returns status and parsed body. */
  api<T = any>(method: string, p: string, body?: unknown): Promise<{ status: number; body: T }>;
  stop(): Promise<void>;
}

/** A real controller (embedded aedes, SQLite in a temp dir, HTTP on a free port), logged in as admin. */
export async function startTestController(opts: ControllerOptions & { dir?: string } = {}): Promise<TestController> {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'radio-ctl-'));
  const ctl = await createController({
    log: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    alarmPolicy: { raiseAfterMs: 0, clearAfterMs: 0 },
    ...opts,
    env: { RADIO_DATA_DIR: dir, RADIO_HTTP_PORT: 0, RADIO_MQTT_PORT: 0, RADIO_RTP_PORT: 0, RADIO_HTTP_HOST: '127.0.0.1', RADIO_ADMIN_PASSWORD: 'test-password', ...(opts.env ?? {}) },
  });
  await ctl.start();
  const base = `http://127.0.0.1:${ctl.httpPort()}`;
  const login = await ctl.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'admin', password: 'test-password' } });
  const token = (login.json() as { token: string }).token;
  return {
    ctl, dir, token, base,
    async api(method, p, body) {
      const r = await ctl.app.inject({ method: method as 'GET', url: p, headers: { authorization: `Bearer ${token}` }, ...(body !== undefined ? { payload: body as object } : {}) });
      return { status: r.statusCode, body: (r.body ? r.json() : undefined) as never };
    },
    async stop() {
      await ctl.stop();
      if (!opts.dir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
