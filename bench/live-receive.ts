/**
 * `npm run bench -- live-receive`: CPU per received RTP datagram on the agents' live receive path, the
 * path every simulated cluster of the emergency bench runs 50 times a second. K receivers (the agent's
 * receive socket, endpoint and jitter buffer with a real Opus decoder, never pulled, like the
 * emergency run's unmeasured agents) live in this process; the controller's real paced session sender
 * (Opus + RED) runs in a child process and sends to all of them over loopback UDP. After a warm-up, the
 * process's CPU time (user + system, so the kernel's receive work is in it) is divided by the datagrams
 * received, per window.
 *
 * Settings (env): BENCH_RX_RECEIVERS (225, as many as one emergency worker held before), BENCH_RX_WINDOWS
 * (10), BENCH_RX_WINDOW_S (2). Last line: {"bench":"live-receive","receivers":…,"datagramsPerS":…,
 * "cpuUsPerDatagramP50":…,"cpuUsPerDatagramP95":…,"cpuUsPerDatagramP99":…}
 */
import { fork } from 'node:child_process';
import path from 'node:path';
import { createJitterBuffer, createLiveReceiveSocket, createLiveReceiverEndpoint, createOpusDecoder, type SessionDescription } from '../audio-pipeline/src/live/index.js';
import { ROOT, TS_REGISTER, fmt, printMachine, summary } from './lib.js';

const K = Number(process.env.BENCH_RX_RECEIVERS ?? 225);
const WINDOWS = Number(process.env.BENCH_RX_WINDOWS ?? 10);
const WINDOW_S = Number(process.env.BENCH_RX_WINDOW_S ?? 2);

export async function run(): Promise<void> {
  printMachine();
  const child = fork(path.join(ROOT, 'bench/live-lib/receive-sender.ts'), [], { execArgv: ['--import', TS_REGISTER] });
  try {
    const { port } = await new Promise<{ port: number }>((r) => child.once('message', (m) => r(m as { port: number })));
    const sockets = await Promise.all(Array.from({ length: K }, async () => {
      const s = createLiveReceiveSocket({ bindAddress: '127.0.0.1' });
      await s.bound;
      return s;
    }));
    child.send({ ports: sockets.map((s) => s.socket.address().port) });
    const { desc } = await new Promise<{ desc: SessionDescription }>((r) => child.once('message', (m) => r(m as { desc: SessionDescription })));
    let received = 0;
    const clock = { now: () => Date.now() };
    const endpoints = [];
    for (const s of sockets) {
      const jb = createJitterBuffer({
        decoder: await createOpusDecoder(), timing: desc.timing, delayMs: 200, clock: { toController: (l: number) => l },
        payloadType: desc.payloadType, redPayloadType: desc.redPayloadType,
      });
      const ep = createLiveReceiverEndpoint({
        controller: { host: '127.0.0.1', port }, token: 'bench-receive-token-0000000000000', ssrc: desc.ssrc,
        payloadTypes: [desc.payloadType, ...(desc.redPayloadType !== null ? [desc.redPayloadType] : [])], clock, shared: s,
        onPacket: (p, at) => { received++; jb.push(p, at); },
      });
      await ep.start();
      endpoints.push(ep);
    }
    // Warm-up: V8 optimises the path, the sender settles.
    await new Promise((r) => setTimeout(r, 2000));
    const perDatagram: number[] = [];
    let rates = 0;
    for (let w = 0; w < WINDOWS; w++) {
      const c0 = process.cpuUsage();
      const r0 = received;
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
      const c = process.cpuUsage(c0);
      const n = received - r0;
      rates += n / ((performance.now() - t0) / 1000);
      if (n > 0) perDatagram.push((c.user + c.system) / n);
    }
    const s = summary(perDatagram);
    const rate = rates / WINDOWS;
    console.log(`receivers=${K}  datagrams/s=${fmt(rate, 0)} (RTP with RED, 20 ms Opus frames, 50 per receiver per second)  ` +
      `CPU per datagram median/p95/p99 = ${fmt(s.median, 1)}/${fmt(s.p95, 1)}/${fmt(s.p99, 1)} µs over ${s.n} windows of ${WINDOW_S} s ` +
      `(this process's user + system time: the agents' JS, Node's dgram and the kernel's receive)`);
    for (const ep of endpoints) await ep.stop();
    for (const sk of sockets) await sk.close();
    console.log(JSON.stringify({ bench: 'live-receive', receivers: K, datagramsPerS: Math.round(rate), cpuUsPerDatagramP50: +s.median.toFixed(1), cpuUsPerDatagramP95: +s.p95.toFixed(1), cpuUsPerDatagramP99: +s.p99.toFixed(1) }));
  } finally {
    child.send({ stop: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await run();
  process.exit(0);
}
