import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProvisionedNode } from './fleet.js';
import type { FaultInjection } from './sim-hardware.js';
import type { NodeSnapshot, WorkerAgent, WorkerHardware } from './fleet-worker.js';

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fleet-worker.ts');
/** How the worker runs TypeScript (see deploy/ts-register.mjs). */
const TS_REGISTER = fileURLToPath(new URL('../../deploy/ts-register.mjs', import.meta.url));

export interface WorkerHandle { proc: ChildProcess; specs: ProvisionedNode[] }

/** Start `specs` split over `workers` child processes; resolves when every agent has connected once. */
export async function startFleetProcesses(specs: ProvisionedNode[], o: {
  workers: number; telemetryIntervalMs?: number; keepaliveS?: number; batch?: number; faults?: Record<string, FaultInjection[]>; onReady?: () => void;
  syncIntervalMs?: number;
  /** Broker URL for every agent instead of its provisioned one (an impairment proxy). */
  mqttUrl?: string;
  /** Per-node clock offset/drift and other sim-hardware numbers. */
  hardware?: Record<string, WorkerHardware>;
  /** Per-node agent numbers (lead times, backoff). */
  agent?: Record<string, WorkerAgent>;
}) {
  const n = Math.max(1, Math.min(o.workers, specs.length));
  const shares: ProvisionedNode[][] = Array.from({ length: n }, () => []);
  specs.forEach((s, i) => shares[i % n]!.push(s));
  const handles: WorkerHandle[] = shares.map((share) => ({
    proc: fork(WORKER, [], { execArgv: [...(process.env.FLEET_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean), '--import', TS_REGISTER], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
    specs: share,
  }));
  await Promise.all(handles.map((h) => new Promise<void>((resolve, reject) => {
    h.proc.once('exit', (code) => reject(new Error(`fleet worker exited with ${code}`)));
    h.proc.on('message', (m: { type: string }) => { if (m.type === 'ready') resolve(); });
  })));
  o.onReady?.();
  await Promise.all(handles.map((h) => new Promise<void>((resolve, reject) => {
    h.proc.once('exit', (code) => reject(new Error(`fleet worker exited with ${code}`)));
    h.proc.on('message', (m: { type: string; message?: string }) => {
      if (m.type === 'started') resolve();
      if (m.type === 'error') reject(new Error(`fleet worker: ${m.message}`));
    });
    const mine = <T>(m: Record<string, T> | undefined) => (m ? Object.fromEntries(h.specs.filter((sp) => m[sp.nodeId]).map((sp) => [sp.nodeId, m[sp.nodeId]!])) : undefined);
    h.proc.send({
      type: 'start', specs: h.specs,
      options: { telemetryIntervalMs: o.telemetryIntervalMs, keepaliveS: o.keepaliveS, batch: o.batch, faults: o.faults, syncIntervalMs: o.syncIntervalMs, mqttUrl: o.mqttUrl, hardware: mine(o.hardware), agent: mine(o.agent) },
    });
  })));
  let reqId = 0;
  /** One request to every worker; resolves with their answers. */
  const ask = <T>(msg: Record<string, unknown>) => Promise.all(handles.map((h) => new Promise<T>((resolve, reject) => {
    const id = ++reqId;
    const onMsg = (m: { type: string; id?: number; message?: string }) => {
      if (m.type === 'result' && m.id === id) { h.proc.off('message', onMsg); resolve(m as T); }
      if (m.type === 'error') { h.proc.off('message', onMsg); reject(new Error(`fleet worker: ${m.message}`)); }
    };
    h.proc.on('message', onMsg);
    h.proc.send({ ...msg, id });
  })));
  return {
    handles,
    /** Every cluster's clock state and estimate; DAC sound edges at or after TRUE time `edgesSince`. */
    async query(q: { ctlOffsetMs?: number; edgesSince?: number } = {}): Promise<NodeSnapshot[]> {
      return (await ask<{ nodes: NodeSnapshot[] }>({ type: 'query', ...q })).flatMap((r) => r.nodes);
    },
    /** Jump every hardware clock by deltaMs (+ its drift over deltaMs when `drift`): hours pass in an instant. */
    async stepClocks(deltaMs: number, so: { drift?: boolean } = {}): Promise<void> {
      await ask({ type: 'clock', deltaMs, drift: so.drift ?? false });
    },
    inject(nodeId: string, fault: FaultInjection) {
      handles.find((h) => h.specs.some((s) => s.nodeId === nodeId))?.proc.send({ type: 'inject', nodeId, fault });
    },
    async stop() {
      await Promise.all(handles.map((h) => new Promise<void>((resolve) => {
        if (h.proc.exitCode !== null || h.proc.signalCode !== null) return resolve();
        const t = setTimeout(() => { h.proc.kill('SIGKILL'); }, 10_000);
        h.proc.once('exit', () => { clearTimeout(t); resolve(); });
        h.proc.send({ type: 'stop' });
      })));
    },
  };
}
export type FleetProcesses = Awaited<ReturnType<typeof startFleetProcesses>>;
