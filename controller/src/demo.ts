/**
 * `npm run demo`: the controller on its embedded defaults plus a simulated fleet — 3 villages × 4
 * clusters, one of them with an open speaker line — so a newcomer sees nodes, telemetry and an alarm
 * through the API (http://localhost:8080/api/v1) and the WebSocket (/api/v1/events).
 */
import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { login, provisionFleet, runFleet } from '../../firmware-sim/src/fleet.js';
import { createController } from './controller.js';

const log = pino({
  level: process.env.RADIO_LOG_LEVEL ?? 'info',
  ...(process.stdout.isTTY ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l' } } } : {}),
});
const password = process.env.RADIO_ADMIN_PASSWORD ?? 'demo-admin';
const villages = Number(process.env.DEMO_VILLAGES ?? 3);
const perVillage = Number(process.env.DEMO_CLUSTERS_PER_VILLAGE ?? 4);

try {
  const ctl = await createController({
    log, env: { RADIO_ADMIN_PASSWORD: password },
    // Demo: alarms show up within seconds instead of the production flap damping.
    alarmPolicy: { raiseAfterMs: 3000, clearAfterMs: 5000 },
  });
  await ctl.start();
  const base = `http://127.0.0.1:${ctl.httpPort()}`;
  const token = await login(base, 'admin', password);
  const specs = await provisionFleet({ base, token, count: villages * perVillage, villages, prefix: 'demo', reuse: true });
  const broken = specs[specs.length - 1]!.nodeId;
  const fleet = await runFleet(specs, {
    log: log.child({ component: 'sim-fleet' }),
    telemetryIntervalMs: 5000,
    hardware: (s) => (s.nodeId === broken ? { faults: [{ kind: 'line_open', detail: 'dây loa bị đứt (demo)' }] } : {}),
  });
  process.stdout.write([
    '',
    `  Demo running: ${specs.length} clusters in ${villages} villages; ${broken} has an open speaker line.`,
    `  API:        ${base}/api/v1   (login: admin / ${password})`,
    `  OpenAPI:    ${base}/api/v1/openapi.json`,
    `  Try:        TOKEN=$(curl -s -XPOST ${base}/api/v1/auth/login -H 'content-type: application/json' -d '{"username":"admin","password":"${password}"}' | sed 's/.*"token":"\\([^"]*\\)".*/\\1/')`,
    `              curl -s -H "authorization: Bearer $TOKEN" ${base}/api/v1/nodes`,
    `              curl -s -H "authorization: Bearer $TOKEN" ${base}/api/v1/alarms`,
    '',
  ].join('\n') + '\n');
  closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
    if (err) log.error({ err }, 'fatal error, shutting down');
    else log.info({ signal }, 'shutting down');
    await fleet.stop();
    await ctl.stop();
  });
} catch (e) {
  log.fatal({ err: e }, (e as Error).message);
  process.exit(1);
}
