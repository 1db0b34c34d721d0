/**
 * A child process that runs a share of a simulated fleet (spread over processes when N is large, so one
 * event loop does not carry thousands of MQTT sessions). Talks to its parent over IPC:
 *   parent → { type: 'start', specs, options }   child → { type: 'started', count } | { type: 'error', message }
 *   parent → { type: 'stop' }                    child → { type: 'stopped' }, then exits
 *   parent → { type: 'inject', nodeId, fault }   (demo/tests: a hardware fault on one cluster)
 *   parent → { type: 'query', id, ctlOffsetMs?, edgesSince? }  child → { type: 'result', id, nodes: NodeSnapshot[] }
 *   parent → { type: 'clock', id, deltaMs, drift? }            child → { type: 'result', id }
 * (benches: clock state, estimates and DAC sound edges of every cluster; hours emulated by stepping clocks)
 */
import { pino } from 'pino';
import type { AgentOptions } from '../../edge-agent/src/agent.js';
import { trueClock } from './sim-clock.js';
import { runFleet, type ProvisionedNode, type RunningFleet } from './fleet.js';
import type { FaultInjection, SimHardwareOptions } from './sim-hardware.js';

/** Per-node hardware overrides that cross the IPC boundary (plain numbers). */
export type WorkerHardware = Pick<SimHardwareOptions, 'offsetMs' | 'driftPpm' | 'warmupMs' | 'volume'>;
/** Per-node agent overrides that cross the IPC boundary (plain numbers). */
export type WorkerAgent = Pick<AgentOptions, 'prepareLeadMs' | 'ampHoldMs' | 'lateStartToleranceMs' | 'receiptResendMs' | 'reconnectBaseMs' | 'reconnectMaxMs'>;

export interface WorkerStartOptions {
  telemetryIntervalMs?: number;
  keepaliveS?: number;
  syncIntervalMs?: number;
  batch?: number;
  /** Broker URL for every agent (e.g. an impairment proxy in front of the broker). */
  mqttUrl?: string;
  faults?: Record<string, FaultInjection[]>;
  hardware?: Record<string, WorkerHardware>;
  agent?: Record<string, WorkerAgent>;
}

/** One cluster as a bench sees it; times in ms, TRUE time where it says so. */
export interface NodeSnapshot {
  nodeId: string;
  connected: boolean;
  synced: boolean;
  /** The agent's estimate: controller − local offset and drift. */
  offsetMs: number;
  driftPpm: number;
  /** agent's controller time − (true time + ctlOffsetMs), when the query gave ctlOffsetMs. */
  ctlErrMs?: number;
  /** Injected: hardware clock − true time, and its drift. */
  trueOffsetMs: number;
  trueDriftPpm: number;
  /** TRUE times of the DAC's sound onsets/offsets at or after edgesSince (when asked). */
  onsets?: number[];
  offsets?: number[];
  dac: { lateReads: number; maxLateMs: number; skippedFrames: number; underruns: number };
  pendingReceipts: number;
  cacheItems: number;
  /** The programme on the speakers and, for an airing, what its drift correction has done so far. */
  playing?: { id: string; drift?: Record<string, number> };
}

type Msg =
  | { type: 'start'; specs: ProvisionedNode[]; options: WorkerStartOptions }
  | { type: 'stop' }
  | { type: 'inject'; nodeId: string; fault: FaultInjection }
  | { type: 'query'; id: number; ctlOffsetMs?: number; edgesSince?: number }
  | { type: 'clock'; id: number; deltaMs: number; drift?: boolean };

let fleet: RunningFleet | undefined;
const send = (m: unknown) => process.send?.(m);

function snapshot(f: RunningFleet['agents'][number], q: { ctlOffsetMs?: number; edgesSince?: number }): NodeSnapshot {
  const e = f.agent.clockSource.estimate();
  const sim = f.hardware.simClock;
  const st = f.hardware.sink.stats();
  const since = q.edgesSince;
  const prog = f.agent.player.playing()?.program as ({ id: string; drift?: () => Record<string, number> } | undefined);
  return {
    nodeId: f.spec.nodeId, connected: f.agent.connected(), synced: e.synced, offsetMs: e.offsetMs, driftPpm: e.driftPpm,
    ...(q.ctlOffsetMs !== undefined ? { ctlErrMs: f.agent.controllerNow() - (trueClock.now() + q.ctlOffsetMs) } : {}),
    trueOffsetMs: sim?.offsetMs() ?? 0, trueDriftPpm: sim?.driftPpm() ?? 0,
    ...(since !== undefined ? {
      onsets: f.hardware.sink.onsets().filter((x) => x.trueMs >= since).map((x) => x.trueMs),
      offsets: f.hardware.sink.offsets().filter((x) => x.trueMs >= since).map((x) => x.trueMs),
    } : {}),
    dac: { lateReads: st.lateReads, maxLateMs: st.maxLateMs, skippedFrames: st.skippedFrames, underruns: st.underruns },
    pendingReceipts: f.agent.receipts.pending().length,
    cacheItems: f.agent.cache.state().items,
    ...(prog ? { playing: { id: prog.id, ...(typeof prog.drift === 'function' ? { drift: prog.drift() } : {}) } } : {}),
  };
}

process.on('message', (m: Msg) => {
  void (async () => {
    try {
      switch (m.type) {
        case 'start': {
          const o = m.options;
          const faults = o.faults ?? {};
          fleet = await runFleet(m.specs, {
            log: pino({ level: process.env.RADIO_LOG_LEVEL ?? 'warn' }),
            telemetryIntervalMs: o.telemetryIntervalMs, keepaliveS: o.keepaliveS, batch: o.batch, syncIntervalMs: o.syncIntervalMs,
            ...(o.mqttUrl ? { mqttUrl: o.mqttUrl } : {}),
            hardware: (s) => ({ faults: faults[s.nodeId] ?? [], ...(o.hardware?.[s.nodeId] ?? {}) }),
            agent: (s) => o.agent?.[s.nodeId] ?? {},
          });
          send({ type: 'started', count: fleet.agents.length });
          return;
        }
        case 'inject':
          fleet?.byId(m.nodeId)?.hardware.inject(m.fault);
          return;
        case 'query':
          send({ type: 'result', id: m.id, nodes: (fleet?.agents ?? []).map((f) => snapshot(f, m)) });
          return;
        case 'clock':
          // Time passes in an instant: each hardware clock jumps by deltaMs, plus (drift) what its crystal
          // gains or loses meanwhile; the agents' playout recomputes its wake-up (its timer is real-time).
          for (const f of fleet?.agents ?? []) {
            const sim = f.hardware.simClock;
            sim?.step(m.deltaMs + (m.drift ? m.deltaMs * sim.driftPpm() * 1e-6 : 0));
          }
          for (const f of fleet?.agents ?? []) f.agent.playout.clockChanged();
          send({ type: 'result', id: m.id });
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
