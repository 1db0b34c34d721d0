/**
 * A child process running a share of the bench fleet (the live bench's own worker: firmware-sim's
 * fleet-worker cannot swap the sink). Per agent: simulated hardware (offset clock, drift), and EITHER
 * the amplifier-gated virtual DAC (onsets in true time) OR a paced pcm-pipe sink (firmware-sim) writing
 * 48 kHz s16le to the reader's Unix socket, paced by the agent's own clock.
 *
 * Loss: random loss on the RTP path is applied HERE, in-process at the receiver: every datagram that
 * arrives on a UDP socket of this process and is RTP (not RTCP) is dropped with probability lossPct,
 * from a seeded generator, before the agent's receiver sees it.
 *
 * "Warm" amplifiers (emergency run): the agent may switch its amplifier on but never off, as an
 * amplifier that is held warm, so no warm-up and no attention chime sit in front of the audio.
 *
 * IPC: parent → {type:'start', agents} → {type:'started'}; {type:'loss', pct}; {type:'query', id, since}
 *      → {type:'result', id, nodes}; {type:'stop'} → exits.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { pino } from 'pino';
import { createAgent, type Agent } from '../../edge-agent/src/agent.js';
import { createPcmPipeSink, type PcmPipeSink } from '../../firmware-sim/src/pcm-pipe-sink.js';
import { createSeededRandom } from '../../firmware-sim/src/sim-clock.js';
import { createSimHardware, type SimHardware } from '../../firmware-sim/src/sim-hardware.js';
import { createTicker } from '../../firmware-sim/src/virtual-dac.js';
import type { ProvisionedNode } from '../../firmware-sim/src/fleet.js';

export interface BenchAgentSpec {
  spec: ProvisionedNode;
  offsetMs: number;
  driftPpm: number;
  /** Reader socket + label: this agent plays into a pcm-pipe sink. */
  pipe?: { path: string; label: string };
  warm?: boolean;
  syncIntervalMs: number;
}

export interface BenchNodeState {
  nodeId: string;
  connected: boolean;
  synced: boolean;
  samples: number;
  onsets: number[];
  live: ReturnType<Agent['live']['stats']> | null;
  sink: { underruns: number; underrunFrames: number } | null;
}

let lossPct = 0;
let dropped = 0;
const rnd = createSeededRandom(20250505);
const origEmit = dgram.Socket.prototype.emit;
(dgram.Socket.prototype as any).emit = function (this: dgram.Socket, ev: string | symbol, ...args: unknown[]): boolean {
  if (ev === 'message' && lossPct > 0) {
    const m = args[0] as Buffer;
    if (m.length >= 12 && m[0]! >> 6 === 2) {
      const pt = m[1]! & 0x7f;
      const rtcp = pt >= 72 && pt <= 76; // RTCP PT 200–204 with the marker bit's place (RFC 5761 §4)
      if (!rtcp && rnd() < lossPct / 100) { dropped++; return true; }
    }
  }
  return (origEmit as (...a: unknown[]) => boolean).call(this, ev, ...args);
};

const log = pino({ level: process.env.RADIO_LOG_LEVEL ?? 'error' });
const ticker = createTicker(10);
interface Running { b: BenchAgentSpec; agent: Agent; hw: SimHardware; pipe: PcmPipeSink | null; sock: net.Socket | null }
let running: Running[] = [];

function build(b: BenchAgentSpec): Running {
  const hw = createSimHardware({ nodeId: b.spec.nodeId, seed: b.spec.nodeId, offsetMs: b.offsetMs, driftPpm: b.driftPpm, warmupMs: b.warm ? 0 : 300, volume: 80, dac: { ticker }, log });
  let sock: net.Socket | null = null;
  let pipe: PcmPipeSink | null = null;
  if (b.pipe) {
    sock = net.connect(b.pipe.path);
    sock.setNoDelay(true);
    sock.write(`${b.pipe.label}\n`);
    pipe = createPcmPipeSink({ output: sock, clock: hw.clock, log });
  }
  const warm = b.warm === true;
  const wrapped = new Proxy(hw, {
    get(t, p) {
      if (p === 'sink' && pipe) return pipe;
      if (p === 'setAmplifier' && warm) return (on: boolean) => (on ? t.setAmplifier(true) : Promise.resolve());
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
  const agent: Agent = createAgent({
    nodeId: b.spec.nodeId, credentials: { username: b.spec.username, password: b.spec.password }, brokerUrl: b.spec.mqttUrl,
    hardware: wrapped, log, telemetryIntervalMs: 10_000, keepaliveS: 8, syncIntervalMs: b.syncIntervalMs, liveBindAddress: '127.0.0.1',
    onReboot: () => { void agent.stop().then(() => agent.start()); },
  });
  // Held warm: on from power-up, never switched off (see the header).
  if (warm) void hw.setAmplifier(true).catch(() => {});
  return { b, agent, hw, pipe, sock };
}

const send = (m: unknown) => process.send?.(m);

process.on('message', (m: { type: string; id?: number; agents?: BenchAgentSpec[]; pct?: number; since?: number }) => {
  void (async () => {
    try {
      switch (m.type) {
        case 'start': {
          const list = m.agents!.map(build);
          running.push(...list);
          const connected: Promise<void>[] = [];
          for (let i = 0; i < list.length; i += 100) {
            for (const r of list.slice(i, i + 100)) {
              connected.push(new Promise<void>((resolve, reject) => {
                const timer = setTimeout(() => reject(new Error(`agent ${r.b.spec.nodeId} did not connect in 60 s`)), 60_000);
                const off = r.agent.on('connected', () => { clearTimeout(timer); off(); resolve(); });
                void r.agent.start();
              }));
            }
            await new Promise((res) => setImmediate(res));
          }
          await Promise.all(connected);
          send({ type: 'started', count: list.length });
          return;
        }
        case 'loss':
          lossPct = m.pct ?? 0;
          return;
        case 'query': {
          const since = m.since ?? Infinity;
          const nodes: BenchNodeState[] = running.map((r) => {
            const e = r.agent.clockSource.estimate();
            const st = r.pipe ? r.pipe.stats() : null;
            return {
              nodeId: r.b.spec.nodeId, connected: r.agent.connected(), synced: e.synced, samples: e.samples,
              onsets: r.pipe ? [] : r.hw.sink.onsets().filter((x) => x.trueMs >= since).map((x) => x.trueMs),
              live: r.agent.live.stats() ?? null,
              sink: st ? { underruns: st.underruns, underrunFrames: st.underrunFrames } : null,
            };
          });
          send({ type: 'result', id: m.id, nodes, dropped });
          return;
        }
        case 'stop':
          await Promise.all(running.map(async (r) => { await r.agent.stop(); r.agent.dispose(); r.pipe?.stop(); r.sock?.destroy(); await r.hw.close(); }));
          running = [];
          ticker.stop();
          process.exit(0);
      }
    } catch (e) {
      send({ type: 'error', message: (e as Error).message });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
