/**
 * `npm run fleet -- --count N [--villages V] [--url http://127.0.0.1:8080] [--user admin] [--password P]
 *                  [--workers K] [--prefix sim] [--telemetry-ms 15000]`
 * Provisions N clusters through the controller's API and runs them on simulated hardware, across K
 * worker processes (default: one per 500 agents). Ctrl-C stops them cleanly (retained `offline`).
 */
import { parseArgs } from 'node:util';
import { login, provisionFleet } from './fleet.js';
import { startFleetProcesses } from './fleet-procs.js';

const { values: a } = parseArgs({
  options: {
    count: { type: 'string', default: '12' }, villages: { type: 'string', default: '3' },
    url: { type: 'string', default: `http://127.0.0.1:${process.env.RADIO_HTTP_PORT ?? 8080}` },
    user: { type: 'string', default: 'admin' }, password: { type: 'string', default: process.env.RADIO_ADMIN_PASSWORD },
    workers: { type: 'string' }, prefix: { type: 'string', default: 'sim' }, 'telemetry-ms': { type: 'string', default: '15000' },
  },
});
if (!a.password) {
  console.error('fleet: give the admin password with --password or RADIO_ADMIN_PASSWORD');
  process.exit(2);
}
const count = Number(a.count);
if (!Number.isInteger(count) || count < 1) { console.error(`fleet: --count must be a positive integer, got ${a.count}`); process.exit(2); }
const token = await login(a.url, a.user, a.password);
const t0 = Date.now();
const specs = await provisionFleet({ base: a.url, token, count, villages: Number(a.villages), prefix: a.prefix, reuse: true });
console.log(`provisioned ${specs.length} clusters in ${Date.now() - t0} ms`);
const fleet = await startFleetProcesses(specs, { workers: Number(a.workers ?? Math.ceil(count / 500)), telemetryIntervalMs: Number(a['telemetry-ms']) });
console.log(`${specs.length} agents connected; Ctrl-C to stop`);
const stop = async () => { await fleet.stop(); process.exit(0); };
process.once('SIGINT', () => { void stop(); });
process.once('SIGTERM', () => { void stop(); });
