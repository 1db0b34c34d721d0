import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTcpProxy, createUdpProxy, type ImpairmentProxy } from '../../firmware-sim/src/impairment-proxy.js';
import { trueClock } from '../../firmware-sim/src/sim-clock.js';

/** Poll `cond` until true or the deadline passes (no blind sleeps). */
async function waitFor(cond: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const proxies: ImpairmentProxy[] = [];
const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const p of proxies.splice(0)) await p.close();
  for (const c of cleanups.splice(0)) c();
});

// ------------------------------------------------------------------------------------------------ UDP

let echo: dgram.Socket;
let echoPort = 0;
/** Source ports the echo server has seen (one per proxy mapping). */
const echoSources = new Set<number>();

beforeAll(async () => {
  echo = dgram.createSocket('udp4');
  echo.on('message', (msg, rinfo) => {
    echoSources.add(rinfo.port);
    echo.send(msg, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => echo.bind(0, '127.0.0.1', () => r()));
  echoPort = echo.address().port;
});
afterAll(() => echo.close());

interface UdpClient {
  sock: dgram.Socket;
  replies: Buffer[];
  send(b: Buffer): void;
  /** Send a probe and wait for its echo: with zero delay on loopback, everything sent earlier has arrived by then. */
  probe(): Promise<void>;
}

async function udpClient(proxyPort: number): Promise<UdpClient> {
  const sock = dgram.createSocket('udp4');
  const replies: Buffer[] = [];
  const waiters = new Map<string, () => void>();
  sock.on('message', (m) => {
    const w = waiters.get(m.toString());
    if (w) {
      waiters.delete(m.toString());
      w();
      return;
    }
    replies.push(m);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  cleanups.push(() => sock.close());
  let probes = 0;
  return {
    sock,
    replies,
    send: (b) => sock.send(b, proxyPort, '127.0.0.1'),
    probe() {
      const tag = `probe-${++probes}`;
      const p = new Promise<void>((resolve) => waiters.set(tag, resolve));
      sock.send(Buffer.from(tag), proxyPort, '127.0.0.1');
      return p;
    },
  };
}

async function rtt(c: UdpClient): Promise<number> {
  const t0 = trueClock.now();
  await c.probe();
  return trueClock.now() - t0;
}

describe('UDP impairment proxy', () => {
  it('adds the configured one-way delay, asymmetrically', async () => {
    const p = await createUdpProxy({ target: { host: '127.0.0.1', port: echoPort }, up: { delayMs: 150 } });
    proxies.push(p);
    const c = await udpClient(p.port);
    // Lower bounds only: a busy machine may add delay, never remove it.
    expect(await rtt(c)).toBeGreaterThanOrEqual(149);
    p.set({ up: { delayMs: 0 }, down: { delayMs: 120 } });
    expect(await rtt(c)).toBeGreaterThanOrEqual(119);
    p.set({ down: { delayMs: 0 } });
    expect(p.impairment()).toEqual({
      up: { delayMs: 0, jitterMs: 0, lossPct: 0, blackhole: false },
      down: { delayMs: 0, jitterMs: 0, lossPct: 0, blackhole: false },
    });
    expect(() => p.set({ up: { lossPct: 101 } })).toThrow(RangeError);
    expect(() => p.set({ up: { delayMs: 5 }, down: { jitterMs: -1 } })).toThrow(RangeError);
    expect(p.impairment().up.delayMs).toBe(0); // a rejected set changes nothing
  });

  it('gives each client its own upstream socket (symmetric-NAT-like) and routes replies back', async () => {
    const p = await createUdpProxy({ target: { host: '127.0.0.1', port: echoPort } });
    proxies.push(p);
    echoSources.clear();
    const a = await udpClient(p.port);
    const b = await udpClient(p.port);
    a.send(Buffer.from('from-a'));
    b.send(Buffer.from('from-b'));
    await waitFor(() => a.replies.length === 1 && b.replies.length === 1, 5000, 'both echoes');
    expect(a.replies[0]!.toString()).toBe('from-a');
    expect(b.replies[0]!.toString()).toBe('from-b');
    expect(echoSources.size).toBe(2);
    expect(p.stats()).toMatchObject({ active: 2, total: 2 });
    // Someone other than the target writing to a mapping's port is dropped.
    const stranger = dgram.createSocket('udp4');
    cleanups.push(() => stranger.close());
    for (const port of echoSources) stranger.send(Buffer.from('spoof'), port, '127.0.0.1');
    await waitFor(() => p.stats().strangers === 2, 5000, 'strangers counted');
    await a.probe();
    await b.probe();
    expect(a.replies).toHaveLength(1);
    expect(b.replies).toHaveLength(1);
  });

  it('100 % loss drops everything; seeded 50 % drops about half, reproducibly', async () => {
    const p = await createUdpProxy({ target: { host: '127.0.0.1', port: echoPort }, up: { lossPct: 100 } });
    proxies.push(p);
    const c = await udpClient(p.port);
    for (let i = 0; i < 20; i++) c.send(Buffer.from(`x${i}`));
    await waitFor(() => p.stats().up.packets === 20, 5000, '20 seen');
    expect(p.stats().up.dropped).toBe(20);
    p.set({ up: { lossPct: 0 } });
    await c.probe();
    expect(c.replies).toHaveLength(0);

    const dropsFor = async (seed: number): Promise<number> => {
      const q = await createUdpProxy({ target: { host: '127.0.0.1', port: echoPort }, down: { lossPct: 50 }, seed });
      proxies.push(q);
      const d = await udpClient(q.port);
      // Batches of 20, so loopback socket buffers never overflow (a kernel drop would skew the count).
      for (let i = 0; i < 400; i += 20) {
        for (let j = i; j < i + 20; j++) d.send(Buffer.from(`y${j}`));
        await waitFor(() => q.stats().down.packets === i + 20, 10_000, 'batch echoed into the proxy');
      }
      const dropped = q.stats().down.dropped;
      await waitFor(() => d.replies.length === 400 - dropped, 5000, 'survivors delivered');
      return dropped;
    };
    const d1 = await dropsFor(7);
    expect(d1).toBeGreaterThan(150);
    expect(d1).toBeLessThan(250);
    expect(await dropsFor(7)).toBe(d1);
  });

  it('black-hole drops everything, including datagrams in flight, and resumes', async () => {
    const p = await createUdpProxy({ target: { host: '127.0.0.1', port: echoPort }, down: { delayMs: 300 } });
    proxies.push(p);
    const c = await udpClient(p.port);
    c.send(Buffer.from('in-flight'));
    await waitFor(() => p.stats().down.queued === 1, 5000, 'reply queued in the delay line');
    p.set({ up: { blackhole: true }, down: { blackhole: true } });
    for (let i = 0; i < 10; i++) c.send(Buffer.from(`z${i}`));
    await waitFor(() => p.stats().up.blackholed === 10 && p.stats().down.queued === 0, 5000, 'black-holed');
    expect(p.stats().down.blackholed).toBe(1);
    p.set({ up: { blackhole: false }, down: { blackhole: false, delayMs: 0 } });
    await c.probe();
    expect(c.replies).toHaveLength(0);
  });
});

// ------------------------------------------------------------------------------------------------ TCP

let tcpEcho: net.Server;
let tcpEchoPort = 0;
const serverSockets = new Set<net.Socket>();
let serverBytes = 0;

beforeAll(async () => {
  tcpEcho = net.createServer((s) => {
    serverSockets.add(s);
    s.on('data', (d: Buffer) => {
      serverBytes += d.length;
    });
    s.on('close', () => serverSockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => tcpEcho.listen(0, '127.0.0.1', () => r()));
  const a = tcpEcho.address();
  tcpEchoPort = typeof a === 'object' && a ? a.port : 0;
});
afterAll(async () => {
  for (const s of serverSockets) s.destroy();
  await new Promise<void>((r) => tcpEcho.close(() => r()));
});

async function tcpClient(port: number): Promise<{ sock: net.Socket; received: () => Buffer; closed: () => boolean; ended: Promise<void> }> {
  const sock = net.connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  let closed = false;
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.on('close', () => {
    closed = true;
  });
  sock.on('error', () => undefined);
  const ended = new Promise<void>((r) => sock.on('end', () => r()));
  await new Promise<void>((r) => sock.once('connect', () => r()));
  cleanups.push(() => sock.destroy());
  return { sock, received: () => Buffer.concat(chunks), closed: () => closed, ended };
}

describe('TCP impairment proxy', () => {
  it('keeps every byte in order under delay and heavy jitter, and forwards half-close', async () => {
    const p = await createTcpProxy({
      target: { host: '127.0.0.1', port: tcpEchoPort },
      up: { delayMs: 20, jitterMs: 20 },
      down: { delayMs: 5, jitterMs: 30 },
      seed: 3,
    });
    proxies.push(p);
    const c = await tcpClient(p.port);
    const data = randomBytes(300_000);
    // Many separate writes so the delay line sees many chunks with different jitter draws.
    for (let off = 0; off < data.length; off += 1500) {
      c.sock.write(data.subarray(off, off + 1500));
      await new Promise((r) => setImmediate(r));
    }
    c.sock.end();
    await c.ended; // the echo server's FIN came back through both delay lines
    expect(c.received().equals(data)).toBe(true);
    const st = p.stats();
    expect(st.up.forwardedBytes).toBe(data.length);
    expect(st.down.forwardedBytes).toBe(data.length);
    expect(st.up.packets).toBeGreaterThan(20);
  });

  it('black-hole holds bytes both ways without closing, then delivers them in order', async () => {
    const p = await createTcpProxy({ target: { host: '127.0.0.1', port: tcpEchoPort } });
    proxies.push(p);
    const c = await tcpClient(p.port);
    c.sock.write('hello');
    await waitFor(() => c.received().toString() === 'hello', 5000, 'first echo');
    p.set({ up: { blackhole: true }, down: { blackhole: true } });
    const before = serverBytes;
    c.sock.write('during-');
    c.sock.write('outage');
    await waitFor(() => p.stats().up.queued >= 1, 5000, 'bytes held by the black-hole');
    // Held, not forwarded, and nobody was disconnected.
    expect(p.stats().up.forwardedBytes).toBe(5);
    expect(serverBytes).toBe(before);
    expect(c.received().toString()).toBe('hello');
    expect(c.closed()).toBe(false);
    expect(p.stats().active).toBe(1);
    p.set({ up: { blackhole: false }, down: { blackhole: false } });
    await waitFor(() => c.received().toString() === 'helloduring-outage', 5000, 'held bytes delivered');
    expect(c.closed()).toBe(false);
  });

  it('a black-holed reply is held too; destroyConnections closes both ends', async () => {
    const p = await createTcpProxy({ target: { host: '127.0.0.1', port: tcpEchoPort } });
    proxies.push(p);
    const c = await tcpClient(p.port);
    p.set({ down: { blackhole: true } });
    const before = serverBytes;
    c.sock.write('ping');
    await waitFor(() => serverBytes === before + 4, 5000, 'request reached the server');
    await waitFor(() => p.stats().down.queued === 1, 5000, 'reply held');
    expect(c.received().length).toBe(0);
    p.destroyConnections();
    await waitFor(() => c.closed() && p.stats().active === 0, 5000, 'connections closed');
  });
});
