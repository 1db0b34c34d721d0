/**
 * Live-audio primitives: CPU of the codec and the presentation-time buffer, and the delay budget that
 * sizes D (the per-session playout delay), measured on real UDP.
 *
 * `npm run bench -- live-primitives`
 *
 * 1. CPU: Opus encode and decode per 20 ms frame (default encoder: CELT low-delay 32 kb/s), and the
 *    jitter buffer's read path (cubic resampling at +100 ppm) per second of audio → streams per core.
 * 2. Delay budget per network profile: a live source (10 ms chunks in real time, like a microphone) →
 *    sender → (impairment proxy) → receiver endpoint → jitter buffer (D = 600 ms, so nothing is late) →
 *    virtual DAC on a +100 ppm clock. Measured:
 *      capture→arrival (controller time; includes the 20 ms framing wait, pacing and network),
 *      DAC lead (how long before it sounds a block is asked for).
 *    D must cover p99.9(capture→arrival) + 20 ms (so the next packet's RED copy can still help) +
 *    p99.9(lead) + a small safety; printed as the recommendation.
 * 3. Check: loopback again at the recommended D, 2 % loss: late, concealed and recovered frames.
 */
import dgram from 'node:dgram';
import os from 'node:os';
import {
  classifyPacket,
  createJitterBuffer,
  createLiveReceiverEndpoint,
  createOpusDecoder,
  createOpusEncoder,
  createSessionSender,
  helloToken,
  parseRtcp,
  type JitterBuffer,
  type JitterBufferStats,
} from '../audio-pipeline/src/live/index.js';
import { chirpTrack, speechLike } from '../audio-pipeline/src/live/test-signals.js';
import { createUdpProxy, type ImpairmentProxy } from '../firmware-sim/src/impairment-proxy.js';
import { createSimClock, trueClock } from '../firmware-sim/src/sim-clock.js';
import { createVirtualDac } from '../firmware-sim/src/virtual-dac.js';
import { percentile, printMachine } from './lib.js';

const N = 960;

async function cpuBench(): Promise<{ encodeMs: number; decodeMs: number; readCpuPct: number }> {
  const pcm = speechLike(20, 4);
  const enc = createOpusEncoder();
  const packets: Uint8Array[] = [];
  for (let i = 0; i + N <= 48_000; i += N) enc.encode(pcm.subarray(i, i + N)); // warm-up
  let t = performance.now();
  for (let i = 0; i + N <= pcm.length; i += N) packets.push(enc.encode(pcm.subarray(i, i + N)));
  const encodeMs = (performance.now() - t) / packets.length;
  enc.close();
  const dec = await createOpusDecoder();
  for (const p of packets.slice(0, 50)) dec.decode(p);
  const dec2 = await createOpusDecoder();
  t = performance.now();
  for (const p of packets) dec2.decode(p);
  const decodeMs = (performance.now() - t) / packets.length;
  dec.close();
  dec2.close();
  // Read path: raw PCM frames (decode excluded), +100 ppm clock, 10 ms reads.
  const raw = { samplesOf: (p: Uint8Array) => p.length / 4, decode: (p: Uint8Array) => new Float32Array(p.slice().buffer), conceal: (n: number) => new Float32Array(n), reset: () => undefined, close: () => undefined };
  const base = 1_700_000_000_000;
  const jb = createJitterBuffer({ timing: { baseTimestamp: 0, baseControllerMs: base, codecDelaySamples: 0 }, delayMs: 100, clock: { toController: (l) => base + (l - base) / 1.0001 }, payloadType: 111, decoder: raw });
  const seconds = 60;
  const frame = new Uint8Array(new Float32Array(N).fill(0.1).buffer);
  const out = new Float32Array(480);
  let next = 0;
  t = performance.now();
  for (let b = 0; b < seconds * 100; b++) {
    while (next * 20 < b * 10 + 300) {
      jb.push({ version: 2, padding: false, marker: false, payloadType: 111, sequenceNumber: next & 0xffff, timestamp: (next * N) >>> 0, ssrc: 1, csrcs: [], extension: null, payload: frame });
      next++;
    }
    jb.read(out, base + 100 + b * 10);
  }
  const readCpuPct = ((performance.now() - t) / (seconds * 1000)) * 100;
  return { encodeMs, decodeMs, readCpuPct };
}

interface ProfileResult {
  name: string;
  arrival: number[];
  lead: number[];
  stats: JitterBufferStats;
  lost: number;
}

async function runProfile(name: string, seconds: number, delayMs: number, impair: { delayMs: number; jitterMs: number; lossPct: number } | null): Promise<ProfileResult> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  const sender = createSessionSender({ socket, clock: trueClock, mode: 'live' });
  socket.on('message', (msg, rinfo) => {
    if (classifyPacket(msg) !== 'rtcp') return;
    for (const p of parseRtcp(msg)) if (helloToken(p)?.token === 'bench') sender.addDestination({ address: rinfo.address, port: rinfo.port });
  });
  sender.start();
  const desc = sender.description();
  let proxy: ImpairmentProxy | null = null;
  let target = { host: '127.0.0.1', port: socket.address().port };
  if (impair) {
    proxy = await createUdpProxy({ target, down: impair, seed: 3 });
    target = { host: '127.0.0.1', port: proxy.port };
  }
  const hw = createSimClock({ offsetMs: 1500, driftPpm: 100 });
  const jb: JitterBuffer = createJitterBuffer({ decoder: await createOpusDecoder(), timing: desc.timing, delayMs, clock: { toController: (l) => hw.toTrue(l) }, payloadType: desc.payloadType, redPayloadType: desc.redPayloadType });
  const arrival: number[] = [];
  const ep = createLiveReceiverEndpoint({
    controller: target, token: 'bench', ssrc: desc.ssrc, payloadTypes: [desc.payloadType, desc.redPayloadType!], clock: hw, bindAddress: '127.0.0.1',
    onPacket: (p, at) => {
      const pos = (p.timestamp - desc.timing.baseTimestamp) >>> 0;
      // Capture time of the frame's first input sample (timeline) → arrival, controller (= true) time.
      arrival.push(hw.toTrue(at) - (desc.timing.baseControllerMs + (pos * 1000) / 48_000));
      jb.push(p, at);
    },
    onBye: () => jb.end(),
  });
  const lead: number[] = [];
  const dac = createVirtualDac({ clock: hw, latencyMs: 20 });
  dac.attach({ read: (out, pt) => { lead.push(pt - hw.now()); return jb.read(out, pt); } });
  dac.start();
  await ep.start();
  const track = chirpTrack(seconds, { seed: 5 });
  while (sender.destinations().length === 0) await new Promise((r) => setTimeout(r, 10));
  const padded0 = sender.stats().paddedFrames;
  // A microphone: 10 ms chunks as real time passes (timer jitter included, as a real capture has).
  const t0 = trueClock.now();
  let written = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(track.signal.length, Math.floor(((trueClock.now() - t0) * 48) / 480) * 480);
      if (due > written) {
        sender.write(track.signal.subarray(written, due));
        written = due;
      }
      if (written >= track.signal.length) {
        clearInterval(timer);
        // What the source's timing cost while it played (afterwards the timeline pads with silence).
        padded = sender.stats().paddedFrames - padded0;
        resolve();
      }
    }, 5);
  });
  await new Promise((r) => setTimeout(r, delayMs + 100));
  sender.stop();
  await new Promise((r) => setTimeout(r, 100));
  const lost = ep.stats().reception.cumulativeLost;
  dropped = sender.stats().droppedSamples;
  dac.stop();
  await ep.stop();
  await proxy?.close();
  const stats = jb.stats();
  jb.close();
  await new Promise<void>((r) => socket.close(() => r()));
  return { name, arrival: arrival.slice(10), lead: lead.slice(10), stats, lost };
}

let padded = 0;
let dropped = 0;
const q = (xs: number[], p: number): number => percentile([...xs].sort((a, b) => a - b), p);
const f1 = (x: number): string => x.toFixed(1);

export async function run(): Promise<void> {
  printMachine();
  console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const cpu = await cpuBench();
  const perStreamPct = ((cpu.decodeMs * 50) / 1000) * 100 + cpu.readCpuPct;
  console.log(`Opus encode ${cpu.encodeMs.toFixed(3)} ms/frame (${((cpu.encodeMs * 50) / 10).toFixed(2)} % of a core per session)`);
  console.log(`Opus decode ${cpu.decodeMs.toFixed(3)} ms/frame; jitter-buffer read+resample ${cpu.readCpuPct.toFixed(3)} % of a core; per agent stream ${perStreamPct.toFixed(2)} % → ~${Math.floor(100 / perStreamPct)} streams per core`);

  const profiles: [string, { delayMs: number; jitterMs: number; lossPct: number } | null][] = [
    ['loopback', null],
    ['lan (5 ± 2 ms)', { delayMs: 5, jitterMs: 2, lossPct: 0 }],
    ['4g (40 ± 20 ms, 2 % loss)', { delayMs: 40, jitterMs: 20, lossPct: 2 }],
  ];
  const recs: Record<string, number> = {};
  const recsP99: Record<string, number> = {};
  console.log('\nprofile                      capture→arrival p50/p99/p99.9/max ms   DAC lead p99.9   recommended D');
  for (const [name, imp] of profiles) {
    const r = await runProfile(name, 10, 600, imp);
    const a999 = q(r.arrival, 99.9);
    const l999 = q(r.lead, 99.9);
    const rec = Math.ceil((a999 + 20 + l999 + 5) / 5) * 5;
    recs[name] = rec;
    if (padded > 1 || dropped > 0) console.log(`  (sender padded ${padded} frames, dropped ${dropped} input samples: the source was late/early)`);
    console.log(`${name.padEnd(28)} ${f1(q(r.arrival, 50))} / ${f1(q(r.arrival, 99))} / ${f1(a999)} / ${f1(Math.max(...r.arrival))}`.padEnd(68) + `${f1(l999)}`.padEnd(17) + `${rec} ms`);
    recsP99[name] = Math.ceil((q(r.arrival, 99) + 20 + q(r.lead, 99) + 5) / 5) * 5;
  }
  console.log(`(from p99 instead of p99.9: ${Object.entries(recsP99).map(([k, v]) => `${k} ${v} ms`).join(', ')}; p99.9 of 500 packets is the worst one, and on a loaded 2-core box it is a scheduling stall)`);
  const dLoop = recs['loopback']!;
  const check = await runProfile('check', 10, dLoop, { delayMs: 0, jitterMs: 0, lossPct: 2 });
  const s = check.stats;
  console.log(`\ncheck at D = ${dLoop} ms, loopback + 2 % loss: lost ${check.lost}, recovered by RED ${s.recoveredByRed}, concealed ${s.concealedFrames}, late ${s.late}, silent ${s.silentFrames}, margin p05 ${f1(s.arrivalMargin?.p05Ms ?? NaN)} ms`);
  console.log(JSON.stringify({
    bench: 'live-primitives',
    encodeMsPerFrame: +cpu.encodeMs.toFixed(3),
    decodeMsPerFrame: +cpu.decodeMs.toFixed(3),
    readCpuPct: +cpu.readCpuPct.toFixed(3),
    recommendedDLoopbackMs: dLoop,
    recommendedDLanMs: recs['lan (5 ± 2 ms)'],
    recommendedD4gMs: recs['4g (40 ± 20 ms, 2 % loss)'],
    checkLate: s.late,
    checkConcealed: s.concealedFrames,
    checkRecovered: s.recoveredByRed,
  }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run();
  process.exit(0);
}
