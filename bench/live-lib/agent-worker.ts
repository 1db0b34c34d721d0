/**
 * A child process running a share of the bench fleet (the live bench's own worker: firmware-sim's
 * fleet-worker cannot swap the sink). Per agent: simulated hardware (offset clock, drift) and one of
 *  - 'pipe': a paced pcm-pipe sink (firmware-sim) writing 48 kHz s16le to the reader's Unix socket, paced
 *    by the agent's own clock: the MEASURED sinks;
 *  - 'dac': the amplifier-gated virtual DAC (onsets in true time), the full playout path;
 *  - 'onset': a cheap sink for the agents nobody listens to. Paced by the agent's clock like a DAC (shared
 *    10 ms ticker), it pulls from the player (jitter buffer: decode, resample) until the first non-silent
 *    sample has left with the amplifier on, records that instant in true time (its DAC slot, or the
 *    moment it was computed if that was later: a stalled worker is not given credit for audio it produced
 *    too late), and then only advances its
 *    frame count without pulling. It exists because 2 cores cannot decode 200–1,000 Opus streams in real
 *    time; each real cluster has its own CPU. Such an agent still joins, says hello, receives and buffers
 *    every packet (the controller's fan-out and the network load are unchanged), reports its states, and
 *    its first sound is checked; it just does not decode what follows;
 *  - 'null': never pulls (the emergency run's unmeasured majority: 1,000 agents cannot even decode the
 *    session's silent lead-in on 2 cores). It joins, says hello and receives and buffers every packet, so
 *    the controller's fan-out and readiness wait are real; it reports `ready`, never `playing`.
 *
 * Loss: random loss on the RTP path is applied HERE, in-process at the receiver: every datagram that
 * arrives on a UDP socket of this process and is RTP (not RTCP) is dropped with probability lossPct,
 * from a seeded generator, before the agent's receiver sees it.
 *
 * "Warm" amplifiers (emergency run): the agent may switch its amplifier on but never off, as an
 * amplifier that is held warm, so no warm-up and no attention chime sit in front of the audio.
 *
 * IPC: parent → {type:'start', agents} → {type:'started'}; {type:'loss', pct}; {type:'query', id, since}
 *      → {type:'result', id, nodes, dropped, lag}; {type:'stop'} → exits.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { Session } from 'node:inspector/promises';
import fs from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import { createAgent, type Agent } from '../../edge-agent/src/agent.js';
import type { Clock } from '../../edge-agent/src/clock.js';
import type { AudioSink, PcmSource } from '../../edge-agent/src/hardware.js';
import { createPcmPipeSink, type PcmPipeSink } from '../../firmware-sim/src/pcm-pipe-sink.js';
import { createSeededRandom, trueClock } from '../../firmware-sim/src/sim-clock.js';
import { createSimHardware, type SimHardware } from '../../firmware-sim/src/sim-hardware.js';
import { createFramePacer, createTicker, type FramePacer, type Ticker } from '../../firmware-sim/src/virtual-dac.js';
import type { ProvisionedNode } from '../../firmware-sim/src/fleet.js';

export interface BenchAgentSpec {
  spec: ProvisionedNode;
  offsetMs: number;
  driftPpm: number;
  /** See the header. 'pipe' needs `pipe`. */
  sink: 'pipe' | 'dac' | 'onset' | 'null';
  /** Reader socket + label for a pcm-pipe sink. */
  pipe?: { path: string; label: string };
  warm?: boolean;
  /** Time-sync period once synced; undefined = the agent's default (16 s). */
  syncIntervalMs?: number;
}

export interface BenchNodeState {
  nodeId: string;
  connected: boolean;
  synced: boolean;
  samples: number;
  onsets: number[];
  live: ReturnType<Agent['live']['stats']> | null;
  /** Playout diagnostics of the emergency's measured agents (onset sinks). */
  diag?: ReturnType<Agent['live']['diagnostics']> | null;
  sink: { underruns: number; underrunFrames: number; backpressured: number; skippedFrames: number } | null;
  /** The agent's idea of controller time minus true time (the controller runs on the machine clock), ms. */
  syncErrorMs: number;
  /** True time at which each live session's announcement reached the agent, by session id. */
  announcedAt: Record<string, number>;
}

/** A worker's joins of one session: how many, and its CPU (all of it) and wall time from the first announcement to the last join's end. */
export interface WorkerJoins { joins: number; cpuMs: number; wallMs: number }
const joins: Record<string, WorkerJoins & { t0: number; cpu0: NodeJS.CpuUsage }> = {};

/** Event-loop delay of a worker since the last reset, ms (perf_hooks histogram, 10 ms resolution). */
export interface WorkerLag { p50: number; p99: number; max: number }

/**
 * The cheap sink of the header: pulls until the first sound, records it, then only keeps time. Like the
 * virtual DAC (and ALSA), frame 0 leaves `leadMs` after start() and each block is asked for `leadMs`
 * before it leaves, so the jitter buffer has the same deadline as on the DAC.
 */
/** Index of the first sample at or beyond ±threshold from `from`, or −1. */
function firstAbove(buf: Float32Array, threshold: number, from: number): number {
  for (let i = from; i < buf.length; i++) {
    const x = buf[i]!;
    if (x >= threshold || x <= -threshold) return i;
  }
  return -1;
}

/**
 * The instrument must not slow what it measures. The onset sinks run first when the first emergency
 * starts; cold, their per-sample scan and the frame pacer ran in V8's interpreter and took about 0.5 s of
 * the measured worker's CPU in that call's first 2.5 s (a CPU profile: 489 ms against 58 ms in the second
 * call), which delayed the measured agents' own packets. Run both hot before any agent starts.
 */
function warmInstrument(): void {
  const z = new Float32Array(480);
  let n = 0;
  for (let k = 0; k < 5000; k++) n += firstAbove(z, 0.01, 0);
  const p = createFramePacer({ now: () => 0, rate: () => 1 } as Clock, 48_000);
  p.anchor(0, 0);
  for (let k = 0; k < 5000; k++) { p.update(k); n += p.playhead(k + 20) + p.hwTimeOfFrame(k * 480, k, k) + p.trueTimeOfFrame(k * 480); }
  if (Number.isNaN(n)) throw new Error('instrument warm-up: NaN');
}
warmInstrument();

function createOnsetSink(clock: Clock, ticker: Ticker, audible: () => boolean, settled: () => boolean, threshold = 0.01, leadMs = 20): AudioSink & { onsets(): number[]; pulledFrames(): number } {
  const rate = 48_000;
  const period = 480;
  const buf = new Float32Array(period);
  const onsetList: number[] = [];
  let pacer: FramePacer | null = null;
  let source: PcmSource | null = null;
  let unsub: (() => void) | null = null;
  let frames = 0;
  let pulled = 0;
  let heard = false;
  let done = false;
  let running = false;
  const tick = () => {
    if (!pacer) return;
    const t = trueClock.now();
    pacer.update(t);
    const due = pacer.playhead(t + leadMs);
    // Done once it has sounded AND the stream itself plays (a cold amplifier's chime sounds first):
    // leave the ticker, the frame count is brought up to date on stop().
    if (heard && !done && settled()) { done = true; unsub?.(); unsub = null; }
    if (done || !source) { frames = Math.max(frames, Math.floor(due / period) * period); return; }
    const hwNow = clock.now();
    // Stop pulling as soon as it has sounded and the stream plays (a stalled worker catching up must
    // not decode the whole stall's worth of blocks first).
    while (frames <= due && !done && !(heard && settled())) {
      buf.fill(0);
      source.read(buf, pacer.hwTimeOfFrame(frames, t, hwNow));
      pulled += period;
      // The amplifier's state is one snapshot for the whole block: asked once, and only when the block
      // sounds. (Asked per loud sample, a cold amplifier's 300 ms warm-up cost 480 status reads per block
      // per agent: stalls of 0.7–2.4 s in the worker of 190 onset agents, found in a CPU profile.)
      const i = heard ? -1 : firstAbove(buf, threshold, 0);
      if (i >= 0 && audible()) {
        // Not before it was computed: a worker whose event loop stalled computes blocks after their
        // slot, and a real DAC would have underrun (so the sample sounds no earlier than now).
        onsetList.push(Math.max(pacer.trueTimeOfFrame(frames + i), trueClock.now()));
        heard = true;
      }
      frames += period;
    }
  };
  return {
    sampleRate: rate,
    attach(s) { source = s; },
    start() {
      if (running) return;
      running = true;
      if (!pacer) pacer = createFramePacer(clock, rate);
      pacer.anchor(frames, trueClock.now() + leadMs);
      heard = false;
      done = false;
      unsub = ticker.add(tick);
    },
    stop() {
      if (!running) return;
      running = false;
      unsub?.();
      unsub = null;
      if (pacer) frames = Math.max(frames, Math.floor(pacer.playhead(trueClock.now() + leadMs) / period) * period);
    },
    stats: () => ({ framesPlayed: frames, underruns: 0, underrunFrames: 0 }),
    onsets: () => onsetList,
    pulledFrames: () => pulled,
  };
}

let lossPct = 0;
let dropped = 0;
/** UDP datagrams this process sent (hellos, receiver reports) and received (RTP + RTCP), and the wall time its agents' handlers took, for the trace. */
const udp = { sent: 0, received: 0, handlerMs: 0 };
const origSend = dgram.Socket.prototype.send;
(dgram.Socket.prototype as any).send = function (this: dgram.Socket, ...args: unknown[]): void {
  udp.sent++;
  (origSend as (...a: unknown[]) => void).apply(this, args);
};
const rnd = createSeededRandom(20250505);
const origEmit = dgram.Socket.prototype.emit as (this: dgram.Socket, ev: string | symbol, a?: unknown, b?: unknown) => boolean;
// Fixed arity (dgram emits at most two arguments): this runs for every datagram of 1,000 agents, and a
// rest/spread wrapper allocated per call (measurement overhead that ate the agents' CPU).
(dgram.Socket.prototype as any).emit = function (this: dgram.Socket, ev: string | symbol, a?: unknown, b?: unknown): boolean {
  if (ev === 'message') {
    udp.received++;
    if (lossPct > 0) {
      const m = a as Buffer;
      if (m.length >= 12 && m[0]! >> 6 === 2) {
        const pt = m[1]! & 0x7f;
        const rtcp = pt >= 72 && pt <= 76; // RTCP PT 200–204 with the marker bit's place (RFC 5761 §4)
        if (!rtcp && rnd() < lossPct / 100) { dropped++; return true; }
      }
    }
    // Wall time inside the agents' handlers (printed in the emergency timeline).
    const t = performance.now();
    const r = origEmit.call(this, ev, a, b);
    udp.handlerMs += performance.now() - t;
    return r;
  }
  return origEmit.call(this, ev, a, b);
};

const log = pino({ level: process.env.RADIO_LOG_LEVEL ?? 'error' });
const ticker = createTicker(10);
const lagH = monitorEventLoopDelay({ resolution: 10 });
lagH.enable();
interface Running { b: BenchAgentSpec; agent: Agent; hw: SimHardware; pipe: PcmPipeSink | null; onset: ReturnType<typeof createOnsetSink> | null; sock: net.Socket | null; announcedAt: Record<string, number> }
let running: Running[] = [];

function build(b: BenchAgentSpec): Running {
  const hw = createSimHardware({ nodeId: b.spec.nodeId, seed: b.spec.nodeId, offsetMs: b.offsetMs, driftPpm: b.driftPpm, warmupMs: b.warm ? 0 : 300, volume: 80, dac: { ticker }, log });
  let sock: net.Socket | null = null;
  let pipe: PcmPipeSink | null = null;
  let onset: ReturnType<typeof createOnsetSink> | null = null;
  if (b.sink === 'pipe') {
    if (!b.pipe) throw new Error('a pipe sink needs the reader socket');
    sock = net.connect(b.pipe.path);
    sock.setNoDelay(true);
    sock.write(`${b.pipe.label}\n`);
    pipe = createPcmPipeSink({ output: sock, clock: hw.clock, log });
  } else if (b.sink === 'onset') {
    onset = createOnsetSink(hw.clock, ticker, () => { const st = hw.status(); return st.amplifier.state === 'on' && !st.mute && st.volume > 0; },
      () => agent.live.stats()?.state === 'playing');
  }
  const nullSink: AudioSink | null = b.sink === 'null' ? { sampleRate: 48_000, attach: () => {}, start: () => {}, stop: () => {}, stats: () => ({ framesPlayed: 0, underruns: 0, underrunFrames: 0 }) } : null;
  const swap: AudioSink | null = pipe ?? onset ?? nullSink;
  const warm = b.warm === true;
  const wrapped = new Proxy(hw, {
    get(t, p) {
      if (p === 'sink' && swap) return swap;
      if (p === 'setAmplifier' && warm) return (on: boolean) => (on ? t.setAmplifier(true) : Promise.resolve());
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
  const agent: Agent = createAgent({
    nodeId: b.spec.nodeId, credentials: { username: b.spec.username, password: b.spec.password }, brokerUrl: b.spec.mqttUrl,
    hardware: wrapped, log, keepaliveS: 8, ...(b.syncIntervalMs !== undefined ? { syncIntervalMs: b.syncIntervalMs } : {}), liveBindAddress: '127.0.0.1', rehearseLive: process.env.BENCH_LIVE_REHEARSAL !== '0',
    onReboot: () => { void agent.stop().then(() => agent.start()); },
  });
  // Held warm: on from power-up, never switched off (see the header).
  if (warm) void hw.setAmplifier(true).catch(() => {});
  const announcedAt: Record<string, number> = {};
  agent.on('live', (a) => {
    if (a.state !== 'active' || announcedAt[a.sessionId] !== undefined) return;
    announcedAt[a.sessionId] = trueClock.now();
    // This process's CPU from its first agent's announcement until the joins it started have run (they
    // run in the microtasks after the announcement; setImmediate comes after them).
    const j = (joins[a.sessionId] ??= { joins: 0, cpuMs: 0, wallMs: 0, t0: performance.now(), cpu0: process.cpuUsage() });
    j.joins++;
    setImmediate(() => {
      const c = process.cpuUsage(j.cpu0);
      j.cpuMs = (c.user + c.system) / 1000;
      j.wallMs = performance.now() - j.t0;
    });
  });
  return { b, agent, hw, pipe, onset, sock, announcedAt };
}

const send = (m: unknown) => process.send?.(m);

/** CPU profile of a window (BENCH_LIVE_PROFILE): the emergency run brackets its API call and first sounds. */
let profiler: Session | null = null;

process.on('message', (m: { type: string; id?: number; agents?: BenchAgentSpec[]; pct?: number; since?: number; resetLag?: boolean; file?: string }) => {
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
        case 'profStart':
          profiler = new Session();
          profiler.connect();
          await profiler.post('Profiler.enable');
          await profiler.post('Profiler.start');
          send({ type: 'result', id: m.id });
          return;
        case 'profStop': {
          if (profiler) {
            const { profile } = await profiler.post('Profiler.stop');
            fs.writeFileSync(m.file!, JSON.stringify(profile));
            profiler.disconnect();
            profiler = null;
          }
          send({ type: 'result', id: m.id });
          return;
        }
        case 'query': {
          const since = m.since ?? Infinity;
          const nodes: BenchNodeState[] = running.map((r) => {
            const e = r.agent.clockSource.estimate();
            const st = r.pipe ? r.pipe.stats() : null;
            return {
              nodeId: r.b.spec.nodeId, connected: r.agent.connected(), synced: e.synced, samples: e.samples,
              syncErrorMs: r.agent.clockSource.toController(r.hw.clock.now()) - trueClock.now(),
              onsets: r.pipe || r.b.sink === 'null' ? [] : r.onset ? r.onset.onsets().filter((x) => x >= since) : r.hw.sink.onsets().filter((x) => x.trueMs >= since).map((x) => x.trueMs),
              live: r.agent.live.stats() ?? null,
              ...(r.b.sink === 'onset' ? { diag: r.agent.live.diagnostics() ?? null } : {}),
              sink: st ? { underruns: st.underruns, underrunFrames: st.underrunFrames, backpressured: st.backpressured, skippedFrames: st.skippedFrames } : null,
              announcedAt: r.announcedAt,
            };
          });
          const lag: WorkerLag = { p50: lagH.percentile(50) / 1e6, p99: lagH.percentile(99) / 1e6, max: lagH.max / 1e6 };
          if (m.resetLag) lagH.reset();
          const joinStats: Record<string, WorkerJoins> = {};
          for (const [k, j] of Object.entries(joins)) joinStats[k] = { joins: j.joins, cpuMs: j.cpuMs, wallMs: j.wallMs };
          send({ type: 'result', id: m.id, nodes, dropped, lag, udp, joins: joinStats });
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
