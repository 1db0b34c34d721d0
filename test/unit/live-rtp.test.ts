import { describe, expect, it } from 'vitest';
import {
  buildApp,
  buildBye,
  buildHello,
  buildReceiverReport,
  buildSenderReport,
  buildTimePing,
  buildTimePong,
  parseTimeSync,
  classifyPacket,
  compoundRtcp,
  createReceptionStats,
  encodeRed,
  encodeRtp,
  helloToken,
  ntpMiddle32,
  opusPacketSamples,
  parseRed,
  parseRtcp,
  parseRtp,
  roundTripMs,
  scanRed,
  RtpError,
  seqDiff,
  tsDiff,
  unwrapSeq,
  unwrapTimestamp,
} from '../../audio-pipeline/src/live/index.js';
import { seededRandom } from '../../audio-pipeline/src/live/test-signals.js';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof RtpError) return e.code;
    throw e;
  }
  throw new Error('did not throw');
}

const rng = seededRandom;

describe('RTP header (RFC 3550 §5.1)', () => {
  it('round-trips every header field, CSRCs, extension and padding', () => {
    const payload = new Uint8Array([1, 2, 3, 4, 5]);
    const bytes = encodeRtp({
      marker: true,
      payloadType: 111,
      sequenceNumber: 65535,
      timestamp: 0xffff_fff0,
      ssrc: 0xdeadbeef,
      csrcs: [1, 0xffff_ffff],
      extension: { profile: 0xbede, data: new Uint8Array([9, 8, 7, 6]) },
      payload,
      padTo: 4,
    });
    expect(bytes.length % 4).toBe(0);
    expect(bytes[0]! >> 6).toBe(2);
    const p = parseRtp(bytes);
    expect(p).toMatchObject({ version: 2, padding: true, marker: true, payloadType: 111, sequenceNumber: 65535, timestamp: 0xffff_fff0, ssrc: 0xdeadbeef, csrcs: [1, 0xffff_ffff] });
    expect(p.extension?.profile).toBe(0xbede);
    expect([...p.extension!.data]).toEqual([9, 8, 7, 6]);
    expect([...p.payload]).toEqual([1, 2, 3, 4, 5]);
  });

  it('gives the payload as a view into the datagram, not a copy, and a frozen empty CSRC list', () => {
    const wire = Buffer.from(encodeRtp({ payloadType: 111, sequenceNumber: 1, timestamp: 0xfffffff0, ssrc: 0x89abcdef, payload: new Uint8Array([1, 2, 3]) }));
    const p = parseRtp(wire);
    expect([p.timestamp, p.ssrc]).toEqual([0xfffffff0, 0x89abcdef]);
    wire[wire.length - 1] = 9;
    expect([...p.payload]).toEqual([1, 2, 9]);
    expect(p.payload.buffer).toBe(wire.buffer);
    expect(p.csrcs).toEqual([]);
    expect(Object.isFrozen(p.csrcs)).toBe(true);
  });

  it('a minimal packet has a 12-byte header and the payload right after it', () => {
    const b = encodeRtp({ payloadType: 0, sequenceNumber: 1, timestamp: 2, ssrc: 3, payload: new Uint8Array([0xaa]) });
    expect(b.length).toBe(13);
    expect([...b.subarray(0, 12)]).toEqual([0x80, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
    expect(parseRtp(b).marker).toBe(false);
  });

  it('refuses out-of-range fields on encode', () => {
    expect(codeOf(() => encodeRtp({ payloadType: 128, sequenceNumber: 0, timestamp: 0, ssrc: 0, payload: new Uint8Array(0) }))).toBe('BAD_FIELD');
    expect(codeOf(() => encodeRtp({ payloadType: 1, sequenceNumber: 70000, timestamp: 0, ssrc: 0, payload: new Uint8Array(0) }))).toBe('BAD_FIELD');
    expect(codeOf(() => encodeRtp({ payloadType: 1, sequenceNumber: 0, timestamp: 0, ssrc: 0, payload: new Uint8Array(0), extension: { profile: 1, data: new Uint8Array(3) } }))).toBe('BAD_EXTENSION');
  });

  it('rejects short, garbled and wrong-version packets with a clear code', () => {
    const good = encodeRtp({ payloadType: 111, sequenceNumber: 1, timestamp: 2, ssrc: 3, payload: new Uint8Array([1, 2, 3]) });
    expect(codeOf(() => parseRtp(new Uint8Array(11)))).toBe('TOO_SHORT');
    const v1 = good.slice();
    v1[0] = (1 << 6) | (v1[0]! & 0x3f);
    expect(codeOf(() => parseRtp(v1))).toBe('BAD_VERSION');
    expect(() => parseRtp(v1)).toThrow(/version 1, expected 2/);
    const cc = good.slice();
    cc[0] = 0x80 | 5; // announces 5 CSRCs in a 15-byte packet
    expect(codeOf(() => parseRtp(cc))).toBe('TRUNCATED');
    const ext = good.slice();
    ext[0] = 0x90; // X set, but only 3 bytes follow
    expect(codeOf(() => parseRtp(ext))).toBe('BAD_EXTENSION');
    const pad0 = good.slice();
    pad0[0] = 0xa0;
    pad0[pad0.length - 1] = 0;
    expect(codeOf(() => parseRtp(pad0))).toBe('BAD_PADDING');
    const padBig = good.slice();
    padBig[0] = 0xa0;
    padBig[padBig.length - 1] = 200;
    expect(codeOf(() => parseRtp(padBig))).toBe('BAD_PADDING');
    const rtcp = buildReceiverReport(1);
    expect(codeOf(() => parseRtp(compoundRtcp(rtcp, rtcp)))).toBe('NOT_RTP');
    // Random garbage never crashes: it parses or throws RtpError.
    const r = rng(5);
    for (let i = 0; i < 2000; i++) {
      const b = new Uint8Array(Math.floor(r() * 40));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(r() * 256);
      try {
        parseRtp(b);
      } catch (e) {
        expect(e).toBeInstanceOf(RtpError);
      }
      try {
        parseRtcp(b);
      } catch (e) {
        expect(e).toBeInstanceOf(RtpError);
      }
    }
  });

  it('demultiplexes RTP and RTCP on one port (RFC 5761 §4)', () => {
    expect(classifyPacket(encodeRtp({ payloadType: 111, sequenceNumber: 1, timestamp: 1, ssrc: 1, payload: new Uint8Array(1) }))).toBe('rtp');
    expect(classifyPacket(buildReceiverReport(7))).toBe('rtcp');
    expect(classifyPacket(new Uint8Array([0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).toBe('invalid');
    expect(classifyPacket(new Uint8Array(3))).toBe('invalid');
  });
});

describe('sequence and timestamp wraparound', () => {
  it('signed differences modulo 2^16 and 2^32', () => {
    expect(seqDiff(0, 65535)).toBe(1);
    expect(seqDiff(65535, 0)).toBe(-1);
    expect(seqDiff(100, 100)).toBe(0);
    expect(tsDiff(5, 0xffff_fffb)).toBe(10);
    expect(tsDiff(0xffff_fffb, 5)).toBe(-10);
  });

  it('unwraps sequence numbers and timestamps across the wrap, in and out of order', () => {
    let ext = 65530;
    const seen: number[] = [];
    for (const s of [65531, 65533, 65532, 65535, 0, 2, 1, 3]) {
      const e = unwrapSeq(s, ext);
      seen.push(e);
      ext = Math.max(ext, e);
    }
    expect(seen).toEqual([65531, 65533, 65532, 65535, 65536, 65538, 65537, 65539]);
    const ref = 0xffff_ff00;
    expect(unwrapTimestamp(0x100, ref)).toBe(0x1_0000_0100);
    expect(unwrapTimestamp(0xffff_fe00, 0x1_0000_0100)).toBe(0xffff_fe00);
  });
});

describe('reception statistics (RFC 3550 A.1, A.3)', () => {
  it('counts extended highest sequence, expected and lost across a wrap, with duplicates and reordering', () => {
    const s = createReceptionStats();
    const seqs = [65530, 65531, 65533, 65532, 65535, 1, 1, 2, 3]; // 65534 and 0 lost, 1 duplicated
    seqs.forEach((q, i) => expect(s.update(q, q * 960, i * 20)).toBe(true));
    const snap = s.snapshot();
    expect(snap.extendedHighestSeq).toBe(65536 + 3);
    expect(snap.expected).toBe(10);
    expect(snap.received).toBe(9); // A.1 counts the duplicate
    expect(snap.cumulativeLost).toBe(1);
    const block = s.report(42, 1000);
    expect(block).toMatchObject({ ssrc: 42, extendedHighestSeq: 65539, cumulativeLost: 1 });
    expect(block.fractionLost).toBeCloseTo(Math.floor((1 * 256) / 10) / 256);
    // Next interval: 4, 6, 8, 10, 12 → highest moves 3 → 12: 9 expected, 5 received, 4 lost.
    for (let q = 4; q < 14; q += 2) s.update(q, q * 960, 1000 + q * 20);
    const b2 = s.report(42, 2000);
    expect(b2.fractionLost).toBeCloseTo(Math.floor((4 * 256) / 9) / 256, 6);
    expect(b2.cumulativeLost).toBe(1 + 4);
  });

  it('resynchronises after a sender restart (two packets after a large jump), ignores one wild packet', () => {
    const s = createReceptionStats();
    for (let q = 100; q < 110; q++) s.update(q, q, q);
    expect(s.update(40_000, 0, 200)).toBe(false); // one wild packet: ignored
    expect(s.update(110, 0, 201)).toBe(true);
    expect(s.update(20_000, 0, 300)).toBe(false);
    expect(s.update(20_001, 0, 301)).toBe(true); // the sequel confirms a restart
    expect(s.snapshot().restarts).toBe(1);
    expect(s.snapshot().expected).toBe(1);
  });

  it('honours probation (A.1 MIN_SEQUENTIAL)', () => {
    const s = createReceptionStats({ probation: 2 });
    expect(s.update(10, 0, 0)).toBe(false);
    expect(s.update(11, 0, 20)).toBe(true);
    expect(s.update(12, 0, 40)).toBe(true);
    expect(s.snapshot().expected).toBe(2);
  });
});

describe('interarrival jitter (RFC 3550 A.8)', () => {
  /** The RFC's own integer arithmetic, independent of the implementation under test. */
  function rfcJitter(arrivalsTs: number[], rtpTs: number[]): number {
    let jitter = 0;
    let transit: number | null = null;
    for (let i = 0; i < arrivalsTs.length; i++) {
      const t = arrivalsTs[i]! - rtpTs[i]!;
      if (transit !== null) {
        let d = t - transit;
        if (d < 0) d = -d;
        jitter += d - ((jitter + 8) >> 4);
      }
      transit = t;
    }
    return jitter >> 4;
  }

  it('is zero for constant transit and converges to J for transit alternating by J', () => {
    const a = createReceptionStats();
    for (let i = 0; i < 200; i++) a.update(i, (i * 960) >>> 0, 1000 + i * 20 + 7);
    expect(a.snapshot().jitter).toBeCloseTo(0, 9);
    const b = createReceptionStats();
    // Transit alternates 0 / 10 ms: |D| = 10 ms = 480 ticks every packet, J → 480.
    for (let i = 0; i < 400; i++) b.update(i, i * 960, i * 20 + (i % 2) * 10);
    expect(b.snapshot().jitter).toBeCloseTo(480, 3);
    expect(b.snapshot().jitterMs).toBeCloseTo(10, 3);
  });

  it('matches the RFC integer algorithm on a seeded random arrival series, across a timestamp wrap', () => {
    const r = rng(99);
    const s = createReceptionStats();
    const arrivals: number[] = [];
    const stamps: number[] = [];
    const ts0 = 0xffff_0000; // wraps after ~70 packets
    for (let i = 0; i < 3000; i++) {
      const ts = (ts0 + i * 960) >>> 0;
      const arrivalMs = 5000 + i * 20 + r() * 30; // up to 30 ms of queueing jitter
      s.update(i & 0xffff, ts, arrivalMs);
      arrivals.push(Math.floor(arrivalMs * 48));
      stamps.push(ts0 + i * 960); // unwrapped for the reference
    }
    const ref = rfcJitter(arrivals, stamps);
    expect(ref).toBeGreaterThan(100);
    expect(Math.abs(s.report(1, 0).jitter - ref)).toBeLessThanOrEqual(2);
  });
});

describe('RTCP (RFC 3550 §6)', () => {
  it('builds and parses a receiver report with fraction, negative cumulative loss and LSR/DLSR', () => {
    const rr = buildReceiverReport(0x11111111, [
      { ssrc: 0x22222222, fractionLost: 0.25, cumulativeLost: -3, extendedHighestSeq: 0x0001_0005, jitter: 480, lastSr: 0xabcd1234, delaySinceLastSr: 65536 },
    ]);
    expect(rr.length).toBe(32);
    const [p] = parseRtcp(rr);
    expect(p).toEqual({
      type: 'rr',
      ssrc: 0x11111111,
      reports: [{ ssrc: 0x22222222, fractionLost: 0.25, cumulativeLost: -3, extendedHighestSeq: 0x0001_0005, jitter: 480, lastSr: 0xabcd1234, delaySinceLastSr: 65536 }],
    });
  });

  it('clamps cumulative loss to 24 bits signed', () => {
    const rr = buildReceiverReport(1, [{ ssrc: 2, fractionLost: 0, cumulativeLost: 1e9, extendedHighestSeq: 0, jitter: 0, lastSr: 0, delaySinceLastSr: 0 }]);
    const p = parseRtcp(rr)[0]!;
    expect(p.type === 'rr' && p.reports[0]!.cumulativeLost).toBe(0x7f_ffff);
  });

  it('parses a compound SR + BYE with reason and an APP packet', () => {
    const sr = buildSenderReport(5, { ntpMs: 1_700_000_000_123.5, rtpTimestamp: 42, packetCount: 7, octetCount: 700 });
    const bye = buildBye([5], 'session over');
    const app = buildApp(5, 'RDIO', 3, new Uint8Array([1, 2, 3, 4]));
    const ps = parseRtcp(compoundRtcp(sr, bye, app));
    expect(ps.map((p) => p.type)).toEqual(['sr', 'bye', 'app']);
    const s = ps[0]!;
    if (s.type !== 'sr') throw new Error('expected SR');
    expect(s.sender.ntpMs).toBeCloseTo(1_700_000_000_123.5, 3);
    expect(s.sender).toMatchObject({ rtpTimestamp: 42, packetCount: 7, octetCount: 700, ntpMiddle: ntpMiddle32(1_700_000_000_123.5) });
    expect(ps[1]).toEqual({ type: 'bye', ssrcs: [5], reason: 'session over' });
    expect(ps[2]).toMatchObject({ type: 'app', ssrc: 5, subtype: 3, name: 'RDIO' });
  });

  it('round-trips the hello token (RR + APP) and ignores other APP packets', () => {
    const h = buildHello({ ssrc: 77, token: 'tôken-ü' });
    const ps = parseRtcp(h);
    expect(ps[0]!.type).toBe('rr');
    expect(helloToken(ps[1]!)).toEqual({ ssrc: 77, token: 'tôken-ü' });
    expect(helloToken(parseRtcp(buildApp(1, 'XXXX', 1))[0]!)).toBeNull();
  });

  it('carries a clock-offset ping/pong (NTP-style t0..t2) in APP packets', () => {
    const ping = parseTimeSync(parseRtcp(buildTimePing(9, 1_700_000_000_123.456))[0]!);
    expect(ping).toEqual({ kind: 'ping', ssrc: 9, t0: 1_700_000_000_123.456 });
    const pong = parseTimeSync(parseRtcp(compoundRtcp(buildReceiverReport(1), buildTimePong(1, { t0: 1.5, t1: 2.25, t2: 3.125 })))[1]!);
    expect(pong).toEqual({ kind: 'pong', ssrc: 1, t0: 1.5, t1: 2.25, t2: 3.125 });
    expect(parseTimeSync(parseRtcp(buildHello({ ssrc: 1, token: 'x' }))[1]!)).toBeNull();
  });

  it('rejects truncated and garbled RTCP', () => {
    const rr = buildReceiverReport(1, [{ ssrc: 2, fractionLost: 0, cumulativeLost: 0, extendedHighestSeq: 0, jitter: 0, lastSr: 0, delaySinceLastSr: 0 }]);
    expect(codeOf(() => parseRtcp(rr.subarray(0, 20)))).toBe('TRUNCATED');
    const v = rr.slice();
    v[0] = 0x40 | 1;
    expect(codeOf(() => parseRtcp(v))).toBe('BAD_VERSION');
    const cnt = rr.slice();
    cnt[0] = 0x80 | 3; // claims 3 blocks, has room for 1
    expect(codeOf(() => parseRtcp(cnt))).toBe('BAD_RTCP');
    expect(codeOf(() => parseRtcp(new Uint8Array(2)))).toBe('TOO_SHORT');
  });

  it('computes round-trip time from LSR/DLSR (§6.4.1)', () => {
    const srAt = 1_700_000_000_000;
    const block = { ssrc: 1, fractionLost: 0, cumulativeLost: 0, extendedHighestSeq: 0, jitter: 0, lastSr: ntpMiddle32(srAt), delaySinceLastSr: Math.round(0.5 * 65536) };
    // Receiver held the SR 500 ms, the network took 2 × 40 ms.
    expect(roundTripMs(block, srAt + 580)!).toBeCloseTo(80, 0);
    expect(roundTripMs({ ...block, lastSr: 0 }, srAt)).toBeNull();
  });
});

describe('Opus payload (RFC 7587) and RED (RFC 2198)', () => {
  it('reads packet durations from the TOC byte', () => {
    expect(opusPacketSamples(new Uint8Array([(1 << 3) | 0]))).toBe(960); // SILK WB... config 1 = 20 ms
    expect(opusPacketSamples(new Uint8Array([(27 << 3) | 0]))).toBe(960); // CELT FB 20 ms
    expect(opusPacketSamples(new Uint8Array([(16 << 3) | 1]))).toBe(240); // 2 × 2.5 ms
    expect(opusPacketSamples(new Uint8Array([(3 << 3) | 3, 2]))).toBe(5760); // 2 × 60 ms
    expect(codeOf(() => opusPacketSamples(new Uint8Array([(3 << 3) | 3, 3])))).toBe('BAD_OPUS'); // 180 ms
    expect(codeOf(() => opusPacketSamples(new Uint8Array(0)))).toBe('BAD_OPUS');
    expect(codeOf(() => opusPacketSamples(new Uint8Array([(3 << 3) | 3])))).toBe('BAD_OPUS');
  });

  it('round-trips RED with one redundant generation and a primary-only RED packet', () => {
    const prev = new Uint8Array([1, 2, 3]);
    const cur = new Uint8Array([4, 5, 6, 7]);
    const red = encodeRed({ payloadType: 111, data: cur }, [{ payloadType: 111, timestampOffset: 960, data: prev }]);
    expect(red.length).toBe(4 + 1 + 3 + 4);
    const r = parseRed(red, 500);
    expect(r.redundant).toHaveLength(1);
    expect(r.redundant[0]!.timestamp).toBe((500 - 960) >>> 0);
    expect([...r.redundant[0]!.data]).toEqual([1, 2, 3]);
    expect(r.primary.payloadType).toBe(111);
    expect([...r.primary.data]).toEqual([4, 5, 6, 7]);
    const only = parseRed(encodeRed({ payloadType: 111, data: cur }), 9);
    expect(only.redundant).toHaveLength(0);
    expect([...only.primary.data]).toEqual([4, 5, 6, 7]);
  });

  it('scans RED blocks without building them: the primary first, then redundant blocks oldest first; a bad payload before any block', () => {
    const g2 = new Uint8Array([1, 2]);
    const g1 = new Uint8Array([3, 4, 5]);
    const cur = new Uint8Array([6, 7, 8, 9]);
    const red = encodeRed({ payloadType: 111, data: cur }, [{ payloadType: 111, timestampOffset: 1920, data: g2 }, { payloadType: 110, timestampOffset: 960, data: g1 }]);
    const seen: [number, number, number[], boolean][] = [];
    scanRed(red, 5000, (pt, ts, from, to, primary) => seen.push([pt, ts, [...red.subarray(from, to)], primary]));
    expect(seen).toEqual([
      [111, 5000, [6, 7, 8, 9], true],
      [111, 5000 - 1920, [1, 2], false],
      [110, 5000 - 960, [3, 4, 5], false],
    ]);
    // parseRed is the same scan, in wire order.
    const r = parseRed(red, 5000);
    expect(r.redundant.map((b) => [b.payloadType, b.timestamp, [...b.data]])).toEqual([[111, 3080, [1, 2]], [110, 4040, [3, 4, 5]]]);
    // The second block's length runs past the end: refused before the first call.
    const bad = red.slice(0, red.length - 6);
    let calls = 0;
    expect(codeOf(() => scanRed(bad, 0, () => { calls++; }))).toBe('BAD_RED');
    expect(calls).toBe(0);
  });

  it('rejects malformed RED', () => {
    expect(codeOf(() => parseRed(new Uint8Array([0x80 | 111, 0]), 0))).toBe('BAD_RED');
    expect(codeOf(() => parseRed(new Uint8Array([0x80 | 111, 0, 0, 50, 111, 1, 2]), 0))).toBe('BAD_RED');
    expect(codeOf(() => parseRed(new Uint8Array(0), 0))).toBe('BAD_RED');
    expect(codeOf(() => encodeRed({ payloadType: 111, data: new Uint8Array(1) }, [{ payloadType: 111, timestampOffset: 20000, data: new Uint8Array(1) }]))).toBe('BAD_FIELD');
    expect(codeOf(() => encodeRed({ payloadType: 111, data: new Uint8Array(1) }, [{ payloadType: 111, timestampOffset: 960, data: new Uint8Array(1024) }]))).toBe('BAD_RED');
  });
});
