import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import {
  buildBye,
  buildHello,
  buildSenderReport,
  compoundRtcp,
  createLiveReceiveSocket,
  createLiveReceiverEndpoint,
  createRtpReceiver,
  createSessionSender,
  encodeRtp,
  parseRed,
  parseRtcp,
  parseRtp,
  type RtpPacket,
  type SenderTimers,
  type SessionSender,
} from '../../audio-pipeline/src/live/index.js';

/*
 * Sender and receiver helpers on real loopback sockets. The sender's pacing runs on an injected clock
 * and timers, so frame timing is driven step by step (no sleeps, no wall-clock assertions); datagrams
 * are awaited as events.
 */

/** A manual clock with one-shot timers that fire when the clock is advanced past them. */
function manualTime(start = 1_700_000_000_000) {
  let now = start;
  let seq = 0;
  const pending = new Map<number, { at: number; fn: () => void }>();
  const timers: SenderTimers = {
    setTimeout(fn, ms) {
      const id = ++seq;
      pending.set(id, { at: now + ms, fn });
      return id as unknown as NodeJS.Timeout;
    },
    clearTimeout(t) {
      if (t !== undefined) pending.delete(t as unknown as number);
    },
  };
  return {
    clock: { now: () => now },
    timers,
    /** Advance to `to`, firing due timers in order. */
    advanceTo(to: number) {
      for (;;) {
        let next: [number, { at: number; fn: () => void }] | null = null;
        for (const e of pending) if (e[1].at <= to && (!next || e[1].at < next[1].at)) next = e;
        if (!next) break;
        pending.delete(next[0]);
        now = Math.max(now, next[1].at);
        next[1].fn();
      }
      now = to;
    },
    get now() {
      return now;
    },
  };
}

async function udp(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

/** Collect datagrams on a socket; `until(n)` resolves when n have arrived. */
function collect(s: dgram.Socket) {
  const got: Buffer[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  s.on('message', (m) => {
    got.push(m);
    for (const w of waiters.splice(0)) {
      if (got.length >= w.n) w.resolve();
      else waiters.push(w);
    }
  });
  return {
    got,
    until: (n: number, timeoutMs = 5000) =>
      new Promise<void>((resolve, reject) => {
        if (got.length >= n) return resolve();
        const t = setTimeout(() => reject(new Error(`only ${got.length} of ${n} datagrams arrived`)), timeoutMs);
        waiters.push({ n, resolve: () => { clearTimeout(t); resolve(); } });
      }),
  };
}

const sockets: dgram.Socket[] = [];
const senders: SessionSender[] = [];
afterEach(async () => {
  for (const s of senders.splice(0)) s.stop();
  await Promise.all(sockets.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

async function setup(opts: Partial<Parameters<typeof createSessionSender>[0]> = {}) {
  const t = manualTime();
  const ctl = await udp();
  const a = await udp();
  const b = await udp();
  sockets.push(ctl, a, b);
  const sender = createSessionSender({ socket: ctl, clock: t.clock, timers: t.timers, ssrc: 0xabc, initialSequence: 65535, initialTimestamp: 1000, senderReportIntervalMs: 0, ...opts });
  senders.push(sender);
  return { t, ctl, a, b, sender };
}

const isRtp = (m: Buffer): boolean => m[1]! < 192 || m[1]! > 223;

describe('session sender', () => {
  it('encodes once and sends the same bytes to every destination from one socket, paced by the clock', async () => {
    const { t, ctl, a, b, sender } = await setup({ mode: 'paced' });
    const ca = collect(a);
    const cb = collect(b);
    expect(sender.addDestination({ address: '127.0.0.1', port: a.address().port })).toBe(true);
    expect(sender.addDestination({ address: '127.0.0.1', port: a.address().port })).toBe(false);
    sender.addDestination({ address: '127.0.0.1', port: b.address().port });
    sender.start(t.now);
    sender.write(new Float32Array(960 * 5).fill(0.1));
    // Frame 0 may leave at once (its window has begun); frame 1 only when the clock reaches base + 20 ms.
    await ca.until(1);
    expect(sender.stats().framesSent).toBe(1);
    t.advanceTo(t.now + 20);
    t.advanceTo(t.now + 20);
    await ca.until(3);
    await cb.until(3);
    expect(ca.got.map((m) => m.toString('hex'))).toEqual(cb.got.map((m) => m.toString('hex')));
    const ps = ca.got.map((m) => parseRtp(m));
    expect(ps.map((p) => p.sequenceNumber)).toEqual([65535, 0, 1]);
    expect(ps.map((p) => p.timestamp)).toEqual([1000, 1960, 2920]);
    expect(ps.map((p) => p.marker)).toEqual([true, false, false]);
    expect(new Set(ps.map((p) => p.ssrc))).toEqual(new Set([0xabc]));
    expect(parseRed(ps[1]!.payload, ps[1]!.timestamp).redundant[0]!.timestamp).toBe(1000);
    const d = sender.description();
    expect(d).toMatchObject({ ssrc: 0xabc, payloadType: 111, redPayloadType: 112, clockRate: 48_000, frameSamples: 960 });
    expect(d.timing).toEqual({ baseTimestamp: 1000, baseControllerMs: 1_700_000_000_000, codecDelaySamples: 120, clockRate: 48_000 });
    expect(ctl.address().port).toBeGreaterThan(0);
  });

  it('pads a late frame with silence and keeps the timeline; drops the oldest input when a live source floods', async () => {
    const { t, a, sender } = await setup({ mode: 'live', maxQueueMs: 60, slackMs: 10 });
    const ca = collect(a);
    sender.addDestination({ address: '127.0.0.1', port: a.address().port });
    const base = t.now;
    sender.start(base);
    // Frame 0 leaves as soon as its samples are there (before any input nothing leaves: lead-in DTX).
    sender.write(new Float32Array(960).fill(0.1));
    await ca.until(1);
    // No more input: frame 1 must still leave at base + 40 + slack, padded.
    t.advanceTo(base + 49);
    expect(sender.stats().framesSent).toBe(1);
    t.advanceTo(base + 50);
    await ca.until(2);
    expect(sender.stats()).toMatchObject({ framesSent: 2, paddedFrames: 1, paddedSamples: 960 });
    // A flood of 500 ms arrives at once: only maxQueueMs of it is kept (bounded latency).
    sender.write(new Float32Array(24_000).fill(0.2));
    const s = sender.stats();
    expect(s.queuedMs).toBeLessThanOrEqual(60);
    expect(s.droppedSamples).toBeGreaterThan(24_000 - 960 * 2 - 2880 - 1);
  });

  it('paced mode pushes back through write() and emits drain; a silent source emits stall once', async () => {
    const { t, sender } = await setup({ mode: 'paced', maxQueueMs: 100, stallTimeoutMs: 200 });
    let drains = 0;
    let stalls = 0;
    sender.on('drain', () => drains++);
    sender.on('stall', () => stalls++);
    sender.start(t.now);
    expect(sender.write(new Float32Array(960 * 10))).toBe(false); // 200 ms > 100 ms high water
    for (let i = 0; i < 6; i++) t.advanceTo(t.now + 20);
    expect(drains).toBe(1);
    t.advanceTo(t.now + 1000);
    expect(stalls).toBe(1);
    t.advanceTo(t.now + 1000);
    expect(stalls).toBe(1);
    sender.write(new Float32Array(960));
    t.advanceTo(t.now + 1000);
    expect(stalls).toBe(2);
    expect(sender.stats().stalls).toBe(2);
  });

  it('sends an SR to a joining destination and SR + BYE on stop; a start in the future holds frames back', async () => {
    const { t, a, sender } = await setup({ mode: 'paced', senderReportIntervalMs: 5000 });
    const ca = collect(a);
    sender.start(t.now + 100);
    sender.write(new Float32Array(960 * 3).fill(0.1));
    sender.addDestination({ address: '127.0.0.1', port: a.address().port });
    await ca.until(1);
    expect(parseRtcp(ca.got[0]!)[0]!.type).toBe('sr');
    t.advanceTo(t.now + 99);
    expect(sender.stats().framesSent).toBe(0);
    t.advanceTo(t.now + 1);
    await ca.until(2);
    expect(isRtp(ca.got[1]!)).toBe(true);
    sender.stop('bye now');
    sender.stop();
    await ca.until(3 + 1);
    const last = parseRtcp(ca.got.at(-1)!);
    expect(last.map((p) => p.type)).toEqual(['sr', 'bye']);
    expect(last[1]).toMatchObject({ ssrcs: [0xabc], reason: 'bye now' });
    expect(sender.write(new Float32Array(960))).toBe(false);
  });
});

describe('RTP receiver validation', () => {
  const from = { address: '127.0.0.1', port: 5004 };
  const pkt = (seq: number, o: { ssrc?: number; pt?: number } = {}) =>
    encodeRtp({ payloadType: o.pt ?? 111, sequenceNumber: seq & 0xffff, timestamp: (seq * 960) >>> 0, ssrc: o.ssrc ?? 42, payload: new Uint8Array([0xf8, 1, 2]) });

  it('drops wrong source, wrong SSRC, wrong payload type, malformed and duplicate packets, counting each', () => {
    const accepted: RtpPacket[] = [];
    let byes = 0;
    const r = createRtpReceiver({ ssrc: 42, payloadTypes: [111, 112], source: from, onPacket: (p) => accepted.push(p), onBye: () => byes++ });
    expect(r.handle(pkt(65534), from, 0)).toBe('accepted');
    expect(r.handle(pkt(65535), { address: '127.0.0.2', port: 5004 }, 1)).toBe('wrong-source');
    expect(r.handle(pkt(65535), { address: '127.0.0.1', port: 5005 }, 1)).toBe('wrong-source');
    expect(r.handle(pkt(65535), { address: '::ffff:127.0.0.1', port: 5004 }, 2)).toBe('accepted');
    expect(r.handle(pkt(1), from, 3)).toBe('accepted');
    expect(r.handle(pkt(0), from, 4)).toBe('accepted'); // reordered across the wrap
    expect(r.handle(pkt(0), from, 5)).toBe('duplicate');
    expect(r.handle(pkt(2, { ssrc: 43 }), from, 6)).toBe('wrong-ssrc');
    expect(r.handle(pkt(2, { pt: 0 }), from, 6)).toBe('wrong-payload-type');
    expect(r.handle(new Uint8Array([0x80, 111, 0]), from, 6)).toBe('malformed');
    expect(r.handle(new Uint8Array([0x40, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), from, 6)).toBe('malformed');
    expect(r.handle(compoundRtcp(buildSenderReport(42, { ntpMs: 1e12, rtpTimestamp: 0, packetCount: 1, octetCount: 1 })), from, 7)).toBe('rtcp');
    expect(r.handle(buildBye([7]), from, 8)).toBe('rtcp'); // someone else's BYE
    expect(r.handle(buildBye([42]), from, 9)).toBe('bye');
    expect(accepted.map((p) => p.sequenceNumber)).toEqual([65534, 65535, 1, 0]);
    expect(byes).toBe(1);
    const s = r.stats();
    expect(s).toMatchObject({ accepted: 4, duplicates: 1, outOfOrder: 1, wrongSource: 2, wrongSsrc: 1, wrongPayloadType: 1, malformed: 2, rtcp: 3, bye: true });
    expect(s.reception).toMatchObject({ expected: 4, received: 4, cumulativeLost: 0, extendedHighestSeq: 65536 + 1 });
    const block = r.report(10);
    expect(block.ssrc).toBe(42);
    expect(block.lastSr).not.toBe(0);
  });
});

describe('receiver endpoint (symmetric RTP)', () => {
  it('says hello with its token from the socket it listens on, accepts only the controller, and reports', async () => {
    const ctl = await udp();
    const stranger = await udp();
    sockets.push(ctl, stranger);
    const hellos = collect(ctl);
    const got: RtpPacket[] = [];
    let now = 5000;
    const ep = createLiveReceiverEndpoint({
      controller: { host: 'localhost', port: ctl.address().port },
      token: 'sesame',
      ssrc: 42,
      payloadTypes: [111],
      clock: { now: () => now },
      bindAddress: '127.0.0.1',
      helloIntervalMs: 60_000,
      onPacket: (p) => got.push(p),
    });
    await ep.start();
    await hellos.until(1);
    const first = parseRtcp(hellos.got[0]!);
    expect(first[0]).toMatchObject({ type: 'rr', reports: [] });
    expect(first[1]).toMatchObject({ type: 'app', name: 'RDIO' });
    const port = ep.address().port;
    // The controller answers to the hello's source; a stranger's packet is dropped.
    const rtp = encodeRtp({ payloadType: 111, sequenceNumber: 1, timestamp: 960, ssrc: 42, payload: new Uint8Array([0xf8]) });
    stranger.send(rtp, port, '127.0.0.1');
    ctl.send(rtp, port, '127.0.0.1');
    const deadline = Date.now() + 5000;
    while (ep.stats().accepted + ep.stats().wrongSource < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(ep.stats()).toMatchObject({ accepted: 1, wrongSource: 1 });
    expect(got).toHaveLength(1);
    now += 20;
    ep.hello();
    await hellos.until(2);
    const second = parseRtcp(hellos.got[1]!);
    expect(second[0]!.type === 'rr' && second[0]!.reports[0]!.ssrc).toBe(42);
    await ep.stop();
    await ep.stop();
    // A hello built by hand carries the same token.
    expect(parseRtcp(buildHello({ ssrc: 1, token: 'sesame' })).length).toBe(2);
  });

  it('sessions one after another on a standing socket: same port, each sees only its own stream, the socket outlives them', async () => {
    const ctl = await udp();
    sockets.push(ctl);
    const hellos = collect(ctl);
    const rs = createLiveReceiveSocket({ bindAddress: '127.0.0.1' });
    await rs.bound;
    const session = (token: string, ssrc: number) => {
      const got: RtpPacket[] = [];
      let arrived: (() => void) | null = null;
      const ep = createLiveReceiverEndpoint({
        controller: { host: '127.0.0.1', port: ctl.address().port }, token, ssrc, payloadTypes: [111], clock: { now: () => 0 },
        helloIntervalMs: 60_000, shared: rs, onPacket: (p) => { got.push(p); arrived?.(); },
      });
      return { ep, got, next: () => new Promise<void>((r) => { arrived = r; }) };
    };
    const rtp = (ssrc: number, seq: number) => encodeRtp({ payloadType: 111, sequenceNumber: seq, timestamp: seq * 960, ssrc, payload: new Uint8Array([0xf8]) });
    const port = rs.socket.address().port;

    const one = session('first-session-token', 1);
    await one.ep.start();
    await hellos.until(1);
    expect(one.ep.address().port).toBe(port);
    const p1 = one.next();
    ctl.send(rtp(1, 1), port, '127.0.0.1');
    await p1;
    await one.ep.stop();
    expect(rs.closed()).toBe(false);

    const two = session('second-session-token', 2);
    await two.ep.start();
    await hellos.until(2);
    expect(two.ep.address().port).toBe(port);
    expect(parseRtcp(hellos.got[1]!)[1]).toMatchObject({ type: 'app', name: 'RDIO' });
    // A straggler of the first session, then the second's own packet (datagrams keep their order on loopback).
    const p2 = two.next();
    ctl.send(rtp(1, 2), port, '127.0.0.1');
    ctl.send(rtp(2, 1), port, '127.0.0.1');
    await p2;
    expect(two.got.map((p) => p.ssrc)).toEqual([2]);
    expect(two.ep.stats()).toMatchObject({ accepted: 1, wrongSsrc: 1 });
    expect(one.got.map((p) => p.ssrc)).toEqual([1]);
    await two.ep.stop();
    await rs.close();
    expect(rs.closed()).toBe(true);
  });
});
