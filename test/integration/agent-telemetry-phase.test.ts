import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionFleet, runFleet, type RunningFleet } from '../../firmware-sim/src/fleet.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { waitFor } from '../helpers/wait.js';

/*
 * A fleet that starts together (power back after an outage, a broker restart) must not report telemetry
 * in lockstep for ever: each agent reports at its own random phase of the period. Twelve agents started
 * in the same tick on a real controller; the instants of their first periodic telemetry points (after the
 * one each sends on connect), read back through the API, spread over the period. In lockstep (one fixed interval from start) they would all fall
 * within a few ms of one another; 12 uniform phases over 3 s all within 0.5 s has a probability of
 * about 12·(1/6)^11 ≈ 3·10⁻⁸.
 */
const PERIOD_MS = 3000;
let t: TestController;
let fleet: RunningFleet;

beforeAll(async () => {
  t = await startTestController();
}, 30_000);

afterAll(async () => {
  await fleet?.stop();
  await t?.stop();
});

describe('agent telemetry phase', () => {
  it('spreads the first telemetry of a fleet started together over the period', async () => {
    const specs = await provisionFleet({ base: t.base, token: t.token, count: 12, villages: 2, prefix: 'tp' });
    const from = Math.floor(t.ctl.now()) - 60_000;
    fleet = await runFleet(specs, { telemetryIntervalMs: PERIOD_MS, keepaliveS: 4 });
    const firsts = await waitFor(async () => {
      const all = await Promise.all(specs.map(async (s) => {
        const r = await t.api('GET', `/api/v1/nodes/${s.nodeId}/telemetry?from=${from}`);
        const raw = (r.body as { raw: { ts: number }[] }).raw;
        // The first point is the one sent on connect; the second is the first of the period.
        const ts = raw.map((p) => p.ts).sort((a, b) => a - b);
        return ts.length >= 2 ? ts[1] : undefined;
      }));
      return all.every((x) => x !== undefined) ? (all as number[]) : undefined;
    }, { what: 'a periodic telemetry point from every agent', timeoutMs: 4 * PERIOD_MS });
    const spread = Math.max(...firsts) - Math.min(...firsts);
    expect(spread).toBeGreaterThan(PERIOD_MS / 6);
    expect(spread).toBeLessThan(PERIOD_MS + 1000);
  }, 30_000);
});
