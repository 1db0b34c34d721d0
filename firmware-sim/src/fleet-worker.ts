/**
 * A child process that runs a share of a simulated fleet (spread over processes when N is large, so one
 * event loop does not carry thousands of MQTT sessions). Talks to its parent over IPC:
 *   parent → { type: 'start', specs, options }   child → { type: 'started', count } | { type: 'error', message }
 *   parent → { type: 'stop' }                    child → { type: 'stopped' }, then exits
 *   parent → { type: 'inject', nodeId, fault }   (demo/tests: a hardware fault on one cluster)
 */
import { pino } from 'pino';
import { runFleet, type ProvisionedNode, type RunningFleet } from './fleet.js';
import type { FaultInjection } from './sim-hardware.js';

type Msg =
  | { type: 'start'; specs: ProvisionedNode[]; options: { telemetryIntervalMs?: number; keepaliveS?: number; batch?: number; faults?: Record<string, FaultInjection[]> } }
  | { type: 'stop' }
  | { type: 'inject'; nodeId: string; fault: FaultInjection };

let fleet: RunningFleet | undefined;
const send = (m: unknown) => process.send?.(m);

process.on('message', (m: Msg) => {
  void (async () => {
    try {
      switch (m.type) {
        case 'start': {
          const faults = m.options.faults ?? {};
          fleet = await runFleet(m.specs, {
            log: pino({ level: process.env.RADIO_LOG_LEVEL ?? 'warn' }),
            telemetryIntervalMs: m.options.telemetryIntervalMs, keepaliveS: m.options.keepaliveS, batch: m.options.batch,
            hardware: (s) => ({ faults: faults[s.nodeId] ?? [] }),
          });
          send({ type: 'started', count: fleet.agents.length });
          return;
        }
        case 'inject':
          fleet?.byId(m.nodeId)?.hardware.inject(m.fault);
          return;
        case 'stop':
          await fleet?.stop();
          send({ type: 'stopped' });
          process.exit(0);
      }
    } catch (e) {
      send({ type: 'error', message: (e as Error).message });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
// Imports are done: the parent may now time the start without our module loading in it.
send({ type: 'ready' });
