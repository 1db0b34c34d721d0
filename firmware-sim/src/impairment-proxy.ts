import dgram from 'node:dgram';
import net from 'node:net';
import { pino, type Logger } from 'pino';
import { createSeededRandom, trueClock } from './sim-clock.js';

/*
 * A user-space network impairment proxy for tests and benches: it sits between agents and the controller
 * and makes the path look like a rural 4G link. `up` = client → target (agent → controller), `down` =
 * target → client. Every knob can change at runtime, so a test can make the path asymmetric (which puts a
 * floor of |up − down| / 2 under any NTP-style offset estimate), add jitter or loss, or cut the link.
 *
 * Delays are per packet (UDP) or per chunk (TCP) with setTimeout, so they are "at least" figures: a busy
 * event loop adds to them, never subtracts. Jitter follows netem: delay ± jitter, uniform, clamped at 0.
 */

export interface Impairment {
  /** One-way delay added in this direction, ms. */
  delayMs: number;
  /** Uniform ± jitter around delayMs, ms (never below 0 delay). TCP keeps byte order regardless. */
  jitterMs: number;
  /** Random loss, percent (UDP only; TCP cannot lose bytes, use blackhole). */
  lossPct: number;
  /** Drop (UDP) or hold (TCP) everything in this direction. */
  blackhole: boolean;
}

export const NO_IMPAIRMENT: Readonly<Impairment> = Object.freeze({ delayMs: 0, jitterMs: 0, lossPct: 0, blackhole: false });

export interface DirectionStats {
  /** Datagrams (UDP) or chunks (TCP) received from the sender. */
  packets: number;
  bytes: number;
  forwarded: number;
  forwardedBytes: number;
  /** UDP: lost to lossPct. */
  dropped: number;
  /** UDP: dropped by the black-hole (including those in flight when it started). */
  blackholed: number;
  /** Waiting in the delay line (TCP: also held by a black-hole). */
  queued: number;
}

export interface ProxyStats {
  up: DirectionStats;
  down: DirectionStats;
  /** UDP: client mappings alive; TCP: open connections. */
  active: number;
  /** UDP: mappings ever made; TCP: connections ever accepted. */
  total: number;
  /** UDP: datagrams from a source other than the target, dropped (a symmetric NAT does the same). */
  strangers: number;
}

export interface ProxyOptions {
  /** Default 0 (any free port). */
  listenPort?: number;
  /** Default 127.0.0.1. */
  listenHost?: string;
  target: { host: string; port: number };
  up?: Partial<Impairment>;
  down?: Partial<Impairment>;
  /** Seed of the loss and jitter PRNG; default 1. */
  seed?: number | string;
  log?: Logger;
}

export interface UdpProxyOptions extends ProxyOptions {
  /** Idle time after which a client mapping (and its upstream socket) is dropped, like a NAT; default 120 s. */
  mappingTimeoutMs?: number;
}

export interface ImpairmentProxy {
  /** The port clients connect/send to. */
  readonly port: number;
  readonly host: string;
  /** Change impairments from now on (partial: unspecified fields keep their value). */
  set(i: { up?: Partial<Impairment>; down?: Partial<Impairment> }): void;
  impairment(): { up: Impairment; down: Impairment };
  stats(): ProxyStats;
  close(): Promise<void>;
}

export interface TcpProxy extends ImpairmentProxy {
  /** Destroy every open connection (both sides see a reset/close): a modem reboot. */
  destroyConnections(): void;
}

function emptyDir(): DirectionStats {
  return { packets: 0, bytes: 0, forwarded: 0, forwardedBytes: 0, dropped: 0, blackholed: 0, queued: 0 };
}

function merge(cur: Impairment, patch: Partial<Impairment> | undefined): Impairment {
  const next = { ...cur, ...patch };
  for (const k of ['delayMs', 'jitterMs', 'lossPct'] as const) {
    if (!Number.isFinite(next[k]) || next[k] < 0) throw new RangeError(`impairment ${k} must be a number ≥ 0, got ${next[k]}`);
  }
  if (next.lossPct > 100) throw new RangeError(`lossPct must be ≤ 100, got ${next.lossPct}`);
  return next;
}

/** Shared knobs and counters of one proxy. */
class Knobs {
  up: Impairment;
  down: Impairment;
  readonly rand: () => number;
  readonly st = { up: emptyDir(), down: emptyDir(), active: 0, total: 0, strangers: 0 };
  constructor(o: ProxyOptions) {
    this.up = merge(NO_IMPAIRMENT, o.up);
    this.down = merge(NO_IMPAIRMENT, o.down);
    this.rand = createSeededRandom(o.seed ?? 1);
  }
  set(i: { up?: Partial<Impairment>; down?: Partial<Impairment> }): void {
    // Validate both before applying either, so a bad call changes nothing.
    const up = merge(this.up, i.up);
    const down = merge(this.down, i.down);
    this.up = up;
    this.down = down;
  }
  delay(imp: Impairment): number {
    if (imp.jitterMs === 0) return imp.delayMs;
    return Math.max(0, imp.delayMs + (this.rand() * 2 - 1) * imp.jitterMs);
  }
  lost(imp: Impairment): boolean {
    return imp.lossPct > 0 && this.rand() * 100 < imp.lossPct;
  }
  stats(): ProxyStats {
    return { up: { ...this.st.up }, down: { ...this.st.down }, active: this.st.active, total: this.st.total, strangers: this.st.strangers };
  }
}

// ----------------------------------------------------------------------------------------------- UDP

interface Mapping {
  key: string;
  clientAddr: string;
  clientPort: number;
  upstream: dgram.Socket;
  lastSeen: number;
}

/**
 * UDP proxy. Each client source (addr:port) gets its own upstream socket, so replies from the target
 * route back to the right client, and the target sees a distinct source per client — a symmetric NAT.
 * Only datagrams from the target's address and port are let back in.
 */
export async function createUdpProxy(o: UdpProxyOptions): Promise<ImpairmentProxy> {
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'udp-proxy' });
  const knobs = new Knobs(o);
  const host = o.listenHost ?? '127.0.0.1';
  const mappingTimeoutMs = o.mappingTimeoutMs ?? 120_000;
  const mappings = new Map<string, Mapping>();
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const listen = dgram.createSocket('udp4');
  listen.on('error', (err) => log.warn({ err }, 'listen socket error'));

  /** Apply one direction's impairment and deliver with `send` (checked again for black-hole on delivery). */
  const pass = (dir: 'up' | 'down', msg: Buffer, send: (m: Buffer) => void): void => {
    const imp = knobs[dir];
    const s = knobs.st[dir];
    s.packets++;
    s.bytes += msg.length;
    if (imp.blackhole) {
      s.blackholed++;
      return;
    }
    if (knobs.lost(imp)) {
      s.dropped++;
      return;
    }
    const d = knobs.delay(imp);
    const deliver = (): void => {
      if (closed) return;
      // A link that died while this datagram was in flight loses it.
      if (knobs[dir].blackhole) {
        s.blackholed++;
        return;
      }
      s.forwarded++;
      s.forwardedBytes += msg.length;
      try {
        send(msg);
      } catch (err) {
        // The mapping expired while this datagram was in flight: lost, like behind a real NAT.
        log.debug({ err }, 'udp send after mapping closed');
      }
    };
    if (d <= 0) {
      deliver();
      return;
    }
    s.queued++;
    const t = setTimeout(() => {
      timers.delete(t);
      s.queued--;
      deliver();
    }, d);
    timers.add(t);
  };

  const dropMapping = (m: Mapping): void => {
    mappings.delete(m.key);
    knobs.st.active--;
    m.upstream.close();
  };

  const mappingFor = (addr: string, port: number): Mapping => {
    const key = `${addr}:${port}`;
    let m = mappings.get(key);
    if (m) return m;
    const upstream = dgram.createSocket('udp4');
    const mapping: Mapping = { key, clientAddr: addr, clientPort: port, upstream, lastSeen: trueClock.now() };
    m = mapping;
    upstream.on('error', (err) => log.warn({ err, client: key }, 'upstream socket error'));
    upstream.on('message', (msg, rinfo) => {
      if (rinfo.port !== o.target.port || !sameHost(rinfo.address, o.target.host)) {
        knobs.st.strangers++;
        return;
      }
      mapping.lastSeen = trueClock.now();
      pass('down', msg, (b) => listen.send(b, mapping.clientPort, mapping.clientAddr));
    });
    upstream.bind(0, host);
    mappings.set(key, m);
    knobs.st.active++;
    knobs.st.total++;
    return m;
  };

  listen.on('message', (msg, rinfo) => {
    const m = mappingFor(rinfo.address, rinfo.port);
    m.lastSeen = trueClock.now();
    pass('up', msg, (b) => m.upstream.send(b, o.target.port, o.target.host));
  });

  await new Promise<void>((resolve, reject) => {
    listen.once('error', reject);
    listen.bind(o.listenPort ?? 0, host, () => {
      listen.off('error', reject);
      resolve();
    });
  });
  const port = listen.address().port;

  const sweeper = setInterval(() => {
    const now = trueClock.now();
    for (const m of [...mappings.values()]) if (now - m.lastSeen > mappingTimeoutMs) dropMapping(m);
  }, Math.max(1000, Math.min(mappingTimeoutMs / 4, 10_000)));
  sweeper.unref();

  log.debug({ port, target: o.target }, 'udp proxy listening');
  return {
    port,
    host,
    set: (i) => knobs.set(i),
    impairment: () => ({ up: { ...knobs.up }, down: { ...knobs.down } }),
    stats: () => knobs.stats(),
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sweeper);
      for (const t of timers) clearTimeout(t);
      timers.clear();
      knobs.st.up.queued = knobs.st.down.queued = 0;
      for (const m of [...mappings.values()]) dropMapping(m);
      await new Promise<void>((resolve) => listen.close(() => resolve()));
    },
  };
}

function sameHost(a: string, b: string): boolean {
  if (a === b) return true;
  const norm = (h: string): string => (h === 'localhost' ? '127.0.0.1' : h.replace(/^::ffff:/, ''));
  return norm(a) === norm(b);
}

// ----------------------------------------------------------------------------------------------- TCP

/** Held bytes per direction above which the proxy stops reading (TCP back-pressure reaches the sender). */
const HIGH_WATER_BYTES = 1 << 20;

/**
 * One direction of one TCP connection: an ordered delay line. Release times never decrease, so jitter
 * cannot reorder the byte stream (as on a real TCP path, a late segment holds back the ones after it).
 */
class DelayLine {
  private readonly q: { data: Buffer | null; at: number }[] = [];
  /** Chunks held by a black-hole, released (with fresh delays) when it lifts. */
  private readonly held: (Buffer | null)[] = [];
  private lastAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private queuedBytes = 0;
  private done = false;

  constructor(
    private readonly dir: 'up' | 'down',
    private readonly knobs: Knobs,
    private readonly from: net.Socket,
    private readonly to: net.Socket,
  ) {}

  /** data === null marks the sender's FIN: end `to` once everything before it is delivered. */
  push(data: Buffer | null): void {
    if (this.done) return;
    const s = this.knobs.st[this.dir];
    if (data) {
      s.packets++;
      s.bytes += data.length;
      this.queuedBytes += data.length;
    }
    s.queued++;
    if (this.knobs[this.dir].blackhole || this.held.length > 0) this.held.push(data);
    else this.enqueue(data);
    this.backpressure();
  }

  /** Called when the impairment may have changed. */
  poke(): void {
    if (this.done) return;
    if (!this.knobs[this.dir].blackhole && this.held.length > 0) {
      for (const d of this.held.splice(0)) this.enqueue(d);
    }
    this.schedule();
  }

  close(): void {
    this.done = true;
    clearTimeout(this.timer);
    const s = this.knobs.st[this.dir];
    s.queued -= this.q.length + this.held.length;
    this.q.length = 0;
    this.held.length = 0;
  }

  private enqueue(data: Buffer | null): void {
    const at = Math.max(trueClock.now() + this.knobs.delay(this.knobs[this.dir]), this.lastAt);
    this.lastAt = at;
    this.q.push({ data, at });
    this.schedule();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.done || this.knobs[this.dir].blackhole) return;
    const head = this.q[0];
    if (!head) return;
    const wait = head.at - trueClock.now();
    if (wait <= 0) {
      this.flush();
      return;
    }
    this.timer = setTimeout(() => this.flush(), Math.ceil(wait));
  }

  private flush(): void {
    this.timer = undefined;
    const s = this.knobs.st[this.dir];
    const now = trueClock.now();
    // A black-hole that started after these bytes were queued holds them too (the link is dead now).
    while (!this.knobs[this.dir].blackhole && this.q.length > 0 && this.q[0]!.at <= now + 0.5) {
      const { data } = this.q.shift()!;
      s.queued--;
      if (data === null) {
        this.to.end();
        continue;
      }
      this.queuedBytes -= data.length;
      s.forwarded++;
      s.forwardedBytes += data.length;
      if (!this.to.destroyed) this.to.write(data);
    }
    this.backpressure();
    this.schedule();
  }

  private backpressure(): void {
    if (this.queuedBytes > HIGH_WATER_BYTES) {
      if (!this.from.isPaused()) this.from.pause();
    } else if (this.from.isPaused()) this.from.resume();
  }
}

/**
 * TCP proxy (MQTT, HTTP). Delay and jitter per direction keep byte order; a black-hole stops forwarding
 * in both directions while both sockets stay open — what a dead 4G link looks like to each end, so
 * keepalive and last-will detection are what notice it. Bytes held during the black-hole are delivered,
 * in order, when it lifts (TCP retransmission after the link recovers).
 */
export async function createTcpProxy(o: ProxyOptions): Promise<TcpProxy> {
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'tcp-proxy' });
  const knobs = new Knobs(o);
  const host = o.listenHost ?? '127.0.0.1';
  const conns = new Set<{ client: net.Socket; upstream: net.Socket; up: DelayLine; down: DelayLine }>();
  let closed = false;

  // allowHalfOpen: a FIN from one side must travel through the delay line (after the bytes before it),
  // not be answered at once by Node closing our side.
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    if (closed) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: o.target.host, port: o.target.port, allowHalfOpen: true });
    const up = new DelayLine('up', knobs, client, upstream);
    const down = new DelayLine('down', knobs, upstream, client);
    const conn = { client, upstream, up, down };
    conns.add(conn);
    knobs.st.active++;
    knobs.st.total++;
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let ended = false;
    const teardown = (why: string, err?: Error): void => {
      if (ended) return;
      ended = true;
      if (err) log.debug({ err, why }, 'tcp connection closed');
      up.close();
      down.close();
      client.destroy();
      upstream.destroy();
      conns.delete(conn);
      knobs.st.active--;
    };
    client.on('data', (d: Buffer) => up.push(d));
    upstream.on('data', (d: Buffer) => down.push(d));
    client.on('end', () => up.push(null));
    upstream.on('end', () => down.push(null));
    client.on('error', (e) => teardown('client error', e));
    upstream.on('error', (e) => teardown('upstream error', e));
    // Both halves closed → done. A half-close is forwarded through the delay line as a FIN.
    let closes = 0;
    const onClose = (): void => {
      if (++closes === 2) teardown('closed');
    };
    client.on('close', onClose);
    upstream.on('close', onClose);
    upstream.on('connect', () => client.resume());
  });
  server.on('error', (err) => log.warn({ err }, 'tcp proxy server error'));

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listenPort ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  log.debug({ port, target: o.target }, 'tcp proxy listening');

  const destroyConnections = (): void => {
    for (const c of [...conns]) {
      c.client.destroy();
      c.upstream.destroy();
    }
  };

  return {
    port,
    host,
    set(i) {
      knobs.set(i);
      for (const c of conns) {
        c.up.poke();
        c.down.poke();
      }
    },
    impairment: () => ({ up: { ...knobs.up }, down: { ...knobs.down } }),
    stats: () => knobs.stats(),
    destroyConnections,
    async close() {
      if (closed) return;
      closed = true;
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      destroyConnections();
      await done;
    },
  };
}
