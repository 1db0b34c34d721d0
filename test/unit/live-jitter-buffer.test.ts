import { describe, expect, it } from 'vitest';
import {
  createJitterBuffer,
  createOpusDecoder,
  createPacketizer,
  encodeRed,
  encodeRtp,
  parseRtp,
  type FrameDecoder,
  type JitterBuffer,
  type RtpPacket,
} from '../../audio-pipeline/src/live/index.js';
import { bestLag, chirpTrack } from '../../audio-pipeline/src/live/test-signals.js';

/*
 * Timing tests use a raw-PCM "codec" (payload = float32 samples) so that every output sample says
 * exactly which stream position it came from: the source is a ramp whose value is its own position.
 */

const N = 960;
const PT = 111;
const RED = 112;
const SSRC = 0x1234;
const BASE_TS = 0xffff_f000; // wraps after ~4 frames: every test crosses the 32-bit timestamp wrap
const BASE_MS = 1_700_000_000_000;
const WRAP = 1 << 20; // ramp values stay exact in float32

function rawDecoder(): FrameDecoder & { concealed: number } {
  const d = {
    concealed: 0,
    samplesOf: (p: Uint8Array) => {
      if (p.length === 0 || p.length % 4) throw new Error('bad raw payload');
      return p.length / 4;
    },
    decode: (p: Uint8Array) => new Float32Array(p.slice().buffer),
    conceal: (n: number) => {
      d.concealed++;
      return new Float32Array(n).fill(-1); // marks concealed samples
    },
    reset: () => undefined,
    close: () => undefined,
  };
  return d;
}

function rampFrame(k: number): Uint8Array {
  const f = new Float32Array(N);
  for (let i = 0; i < N; i++) f[i] = (k * N + i) % WRAP;
  return new Uint8Array(f.buffer);
}

function rampFrameOf(k: number, n: number): Uint8Array {
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = (k * n + i) % WRAP;
  return new Uint8Array(f.buffer);
}

/** Frame k as an RTP packet; RED packets use 5 ms frames (raw PCM must fit RED's 1023-byte blocks). */
function packet(k: number, red = false): RtpPacket {
  const n = red ? 240 : N;
  const ts = (BASE_TS + k * n) >>> 0;
  const payload = red
    ? encodeRed({ payloadType: PT, data: rampFrameOf(k, n) }, k > 0 ? [{ payloadType: PT, timestampOffset: n, data: rampFrameOf(k - 1, n) }] : [])
    : rampFrame(k);
  return parseRtp(encodeRtp({ payloadType: red ? RED : PT, sequenceNumber: (k + 65530) & 0xffff, timestamp: ts, ssrc: SSRC, payload }));
}

/** A local clock = controller + offset, running at (1 + ppm) against it. */
function driftingClock(offsetMs: number, ppm: number) {
  const r = 1 + ppm * 1e-6;
  return {
    toController: (local: number) => BASE_MS + (local - BASE_MS - offsetMs) / r,
    toLocal: (ctrl: number) => BASE_MS + offsetMs + (ctrl - BASE_MS) * r,
  };
}

function buffer(opts: { ppm?: number; offsetMs?: number; delayMs?: number; red?: boolean; decoder?: FrameDecoder; maxSlewPpm?: number } = {}) {
  const clock = driftingClock(opts.offsetMs ?? 1500, opts.ppm ?? 0);
  const decoder = opts.decoder ?? rawDecoder();
  const jb = createJitterBuffer({
    timing: { baseTimestamp: BASE_TS, baseControllerMs: BASE_MS, codecDelaySamples: 0 },
    delayMs: opts.delayMs ?? 100,
    clock,
    payloadType: PT,
    redPayloadType: opts.red ? RED : null,
    decoder,
    ...(opts.maxSlewPpm !== undefined ? { maxSlewPpm: opts.maxSlewPpm } : {}),
  });
  return { jb, clock, decoder };
}

/** Pull like a DAC: 480-sample blocks; block b sounds at local time t0 + b·10 ms (the DAC's crystal). */
function pull(jb: JitterBuffer, t0Local: number, blocks: number, from = 0): Float32Array {
  const out = new Float32Array(blocks * 480);
  for (let b = 0; b < blocks; b++) {
    const got = jb.read(out.subarray(b * 480, (b + 1) * 480), t0Local + (from + b) * 10);
    expect(got).toBe(480);
  }
  return out;
}

describe('jitter buffer: placement by presentation time', () => {
  it('plays stream position s at baseControllerMs + s/48 + D, whatever the local clock offset', () => {
    const { jb, clock } = buffer({ offsetMs: 2000 });
    for (let k = 0; k < 20; k++) jb.push(packet(k));
    // The DAC asks for what sounds at controller time BASE + D + 50 ms: position 2400 exactly.
    const t0 = clock.toLocal(BASE_MS + 100 + 50);
    const out = pull(jb, t0, 20);
    for (let i = 0; i < out.length; i++) expect(out[i]).toBe(2400 + i);
    expect(jb.presentationOf(2400)).toBe(BASE_MS + 150);
    // Frames 2..12 were needed (positions 2399 .. 12002 with the interpolator's neighbours); 0 and 1 were
    // due before the DAC first asked and are skipped, not counted as lost.
    expect(jb.stats()).toMatchObject({ state: 'playing', framesDecoded: 11, concealedFrames: 0, lostFrames: 0, resyncs: 0 });
  });

  it('drops frames more than twice maxAheadMs behind the newest when nothing pulls (bounded memory)', () => {
    const make = () => createJitterBuffer({ timing: { baseTimestamp: BASE_TS, baseControllerMs: BASE_MS, codecDelaySamples: 0 }, delayMs: 100, clock: driftingClock(0, 0), payloadType: PT, decoder: rawDecoder(), maxAheadMs: 500 });
    // The DAC's first block sounds 10 ms into the stream: position 480.
    const firstSample = (jb: JitterBuffer) => pull(jb, BASE_MS + 100 + 10, 1)[0];
    // 0.8 s arrived with no pull: all of it kept, position 480 plays.
    const kept = make();
    for (let k = 0; k < 40; k++) kept.push(packet(k));
    expect(firstSample(kept)).toBe(480);
    // 3 s arrived with no pull: what lies more than 1 s behind the newest is gone (silence there).
    const pruned = make();
    for (let k = 0; k < 150; k++) pruned.push(packet(k));
    expect(firstSample(pruned)).toBe(0);
    expect(pruned.stats().lostFrames).toBe(0);
  });

  it('plays silence before the session starts and returns full blocks (not underruns)', () => {
    const { jb, clock } = buffer();
    for (let k = 0; k < 5; k++) jb.push(packet(k));
    const out = pull(jb, clock.toLocal(BASE_MS + 100 - 30), 6); // starts 30 ms before position 0
    for (let i = 0; i < 1440; i++) expect(out[i]).toBe(0);
    for (let i = 1440; i < out.length; i++) expect(out[i]).toBe(i - 1440);
    expect(jb.stats().lostFrames).toBe(0);
  });

  it('reorders out-of-order packets, drops duplicates, counts late ones and conceals what never came', () => {
    const { jb, clock, decoder } = buffer();
    const order = [0, 2, 1, 1, 3, 5, 4, 4, 6, 8, 9, 10];
    const results = order.map((k) => jb.push(packet(k), clock.toLocal(BASE_MS + k * 20 + 30)));
    expect(results).toEqual(['accepted', 'accepted', 'accepted', 'duplicate', 'accepted', 'accepted', 'accepted', 'duplicate', 'accepted', 'accepted', 'accepted', 'accepted']);
    const t0 = clock.toLocal(BASE_MS + 100);
    const out = pull(jb, t0, 20); // positions 0 .. 9599 = frames 0..9
    for (let i = 0; i < 7 * N; i++) expect(out[i]).toBe(i); // frames 0..6 in order
    for (let i = 7 * N; i < 8 * N; i++) expect(out[i]).toBe(-1); // frame 7 never came: concealed
    for (let i = 8 * N; i < 10 * N; i++) expect(out[i]).toBe(i);
    // Frame 7 arrives after its playout decision: late, dropped.
    expect(jb.push(packet(7))).toBe('late');
    // Frame 3 again, long after it played: a duplicate, not a late packet.
    expect(jb.push(packet(3))).toBe('duplicate');
    expect((decoder as ReturnType<typeof rawDecoder>).concealed).toBe(1);
    const s = jb.stats();
    expect(s).toMatchObject({ duplicates: 3, outOfOrder: 2, late: 1, concealedFrames: 1, lostFrames: 1, framesDecoded: 10 });
    expect(s.arrivalMargin!.count).toBe(order.length - 2);
    expect(s.arrivalMargin!.minMs).toBeCloseTo(70, 6); // P(k) − arrival = (100 + 20k) − (20k + 30)
  });

  it('recovers a lost frame from the RED copy in the next packet, and prefers a late-arriving primary', () => {
    const { jb, clock } = buffer({ red: true });
    // 5 ms frames: 2 lost; 5 arrives after 6 (whose RED copy of 5 came first); then 7..12.
    for (const k of [0, 1, 3, 4, 6, 5, 7, 8, 9, 10, 11, 12]) jb.push(packet(k, true));
    const out = pull(jb, clock.toLocal(BASE_MS + 100), 6); // 60 ms = frames 0..11
    for (let i = 0; i < 12 * 240; i++) expect(out[i]).toBe(i);
    expect(jb.stats()).toMatchObject({ recoveredByRed: 1, concealedFrames: 0, framesDecoded: 12, duplicates: 0 });
  });

  it('refuses packets of another payload type, garbage payloads and timestamps far outside the window', () => {
    const { jb } = buffer({ red: true });
    jb.push(packet(0, true));
    const other = parseRtp(encodeRtp({ payloadType: 0, sequenceNumber: 1, timestamp: BASE_TS, ssrc: SSRC, payload: new Uint8Array(4) }));
    expect(jb.push(other)).toBe('ignored-payload-type');
    const badRed = parseRtp(encodeRtp({ payloadType: RED, sequenceNumber: 2, timestamp: BASE_TS, ssrc: SSRC, payload: new Uint8Array([0x80 | PT, 0]) }));
    expect(jb.push(badRed)).toBe('bad-payload');
    const odd = parseRtp(encodeRtp({ payloadType: PT, sequenceNumber: 3, timestamp: BASE_TS + N, ssrc: SSRC, payload: new Uint8Array(3) }));
    expect(jb.push(odd)).toBe('bad-payload');
    const far = parseRtp(encodeRtp({ payloadType: PT, sequenceNumber: 4, timestamp: (BASE_TS + 48_000 * 60) >>> 0, ssrc: SSRC, payload: rampFrame(0) }));
    expect(jb.push(far)).toBe('out-of-window');
    expect(jb.stats()).toMatchObject({ ignoredPayloadType: 1, badPayload: 2, outOfWindow: 1, framesReceived: 1 });
  });

  it('after end() plays out what is buffered, then returns short reads', () => {
    const { jb, clock } = buffer();
    for (let k = 0; k < 3; k++) jb.push(packet(k));
    jb.end();
    const out = new Float32Array(480);
    const t0 = clock.toLocal(BASE_MS + 100);
    let total = 0;
    for (let b = 0; b < 8; b++) total += jb.read(out, t0 + b * 10);
    expect(total).toBe(3 * N);
    expect(jb.stats().state).toBe('ended');
    jb.close();
    expect(jb.read(out, t0)).toBe(0);
    expect(jb.push(packet(3))).toBe('closed');
  });

  it('conceals with PLC up to maxConcealMs, then plays silence through an outage', () => {
    const { jb, clock } = buffer();
    for (let k = 0; k < 3; k++) jb.push(packet(k));
    const out = pull(jb, clock.toLocal(BASE_MS + 100), 40); // 400 ms; only 60 ms of audio arrived
    const s = jb.stats();
    // Positions 2880 .. 19202 are missing: 18 frames, the first 6 (120 ms) concealed, the rest silent.
    expect(s.concealedFrames).toBe(6);
    expect(s.silentFrames).toBe(18 - 6);
    expect(out[3 * N]).toBe(-1);
    expect(out[3 * N + 6 * N]).toBe(0);
  });
});

describe('jitter buffer: clock drift and steps', () => {
  /**
   * Simulate `seconds` of playout at `ppm` without real time: the DAC runs on the local crystal, so
   * block b sounds at local time t0 + b·10 ms. Packets arrive 40 ms after capture (controller time).
   * Returns the worst alignment error (ms) after `settleS`.
   */
  function simulate(ppm: number, seconds: number, settleS = 3, maxSlewPpm?: number): { maxErrMs: number; jb: JitterBuffer } {
    const { jb, clock } = buffer({ ppm, offsetMs: 1500, ...(maxSlewPpm !== undefined ? { maxSlewPpm } : {}) });
    const blocks = seconds * 100;
    const t0 = clock.toLocal(BASE_MS + 100);
    const out = new Float32Array(480);
    let next = 0;
    let maxErr = 0;
    for (let b = 0; b < blocks; b++) {
      const pt = t0 + b * 10;
      const ctrl = clock.toController(pt);
      // Deliver every frame captured up to 40 ms ago (network + sender delay) by controller time.
      while (BASE_MS + next * 20 + 40 <= ctrl - 100 + 60) jb.push(packet(next++));
      expect(jb.read(out, pt)).toBe(480);
      if (b < settleS * 100) continue;
      const ideal = (ctrl - BASE_MS - 100) * 48; // stream position that should sound at out[0]
      const got = out[0]!;
      const expectMod = ideal % WRAP;
      if (expectMod < 8 || expectMod > WRAP - 8) continue; // interpolation across the ramp's wrap
      maxErr = Math.max(maxErr, Math.abs(got - expectMod) / 48);
    }
    return { maxErrMs: maxErr, jb };
  }

  it('+100 ppm for 10 simulated minutes: alignment stays within 1 ms (no accumulated skew)', () => {
    const { maxErrMs, jb } = simulate(100, 600);
    expect(maxErrMs).toBeLessThan(1);
    expect(maxErrMs).toBeLessThan(0.1); // P-controller residual: 100 ppm × 0.5 s = 0.05 ms
    const s = jb.stats();
    expect(s.resyncs).toBe(0);
    expect(s.lostFrames).toBe(0);
    expect(s.rateAdjustPpm).toBeCloseTo(-100, 0);
  });

  it('−100 ppm for 10 simulated minutes: alignment stays within 1 ms', () => {
    const { maxErrMs, jb } = simulate(-100, 600);
    expect(maxErrMs).toBeLessThan(0.1);
    expect(jb.stats().rateAdjustPpm).toBeCloseTo(100, 0);
  });

  it('with resampling disabled the same drift accumulates (so the measurement can fail)', () => {
    // 100 ppm × 60 s = 6 ms of skew: what sample-counting playout accumulates.
    const { maxErrMs } = simulate(100, 60, 3, 0);
    expect(maxErrMs).toBeGreaterThan(5);
  });

  it('jumps to the target when the clock estimate steps by more than resyncThresholdMs', () => {
    let offset = 1500;
    const clock = { toController: (l: number) => l - offset };
    const jb = createJitterBuffer({ timing: { baseTimestamp: BASE_TS, baseControllerMs: BASE_MS, codecDelaySamples: 0 }, delayMs: 100, clock, payloadType: PT, decoder: rawDecoder() });
    for (let k = 0; k < 320; k++) jb.push(packet(k));
    const t0 = BASE_MS + 1500 + 100;
    const out = new Float32Array(480);
    jb.read(out, t0);
    expect(out[0]).toBe(0);
    offset = 1500 - 50; // estimate stepped: controller time is now 50 ms later for the same local time
    jb.read(out, t0 + 10);
    expect(out[0]).toBe(480 + 50 * 48);
    expect(jb.stats().resyncs).toBe(1);
    // A small step (5 ms) is slewed (≤ 2000 ppm, then proportionally), not jumped.
    offset -= 5;
    jb.read(out, t0 + 20);
    expect(jb.stats().positionErrorMs).toBeCloseTo(5, 3);
    for (let b = 3; b < 600; b++) jb.read(out, t0 + b * 10);
    expect(jb.stats().resyncs).toBe(1);
    expect(Math.abs(out[0]! - (599 * 480 + 55 * 48))).toBeLessThan(1);
  });
});

describe('jitter buffer: a clock estimate that ran ahead, then came back', () => {
  it('plays the frames that arrive after the estimate came back (they are not judged late)', () => {
    let offset = 1500;
    const clock = { toController: (l: number) => l - offset };
    const jb = createJitterBuffer({ timing: { baseTimestamp: BASE_TS, baseControllerMs: BASE_MS, codecDelaySamples: 0 }, delayMs: 100, clock, payloadType: PT, decoder: rawDecoder() });
    const out = new Float32Array(480);
    const t0 = BASE_MS + 1500 + 100; // local time at which stream position 0 sounds (true offset)
    // The estimate runs 3 s ahead while the session starts: the cursor goes to position 3 s, in silence.
    offset = 1500 - 3000;
    jb.read(out, t0);
    // The estimate comes back before the first frame's slot (the cursor jumps back at the next read);
    // frames 1… arrive in time for their true slots.
    offset = 1500;
    jb.read(out, t0 - 10);
    expect(jb.stats().resyncs).toBe(1);
    for (let k = 1; k < 10; k++) expect(jb.push(packet(k))).toBe('accepted');
    const got = pull(jb, t0, 38);
    // Block b holds stream samples from b·480 on: silence for frame 0 (never sent), then the ramp.
    expect(got[0]).toBe(0);
    expect(got[960]).toBe(960);
    expect(got[960 + 479]).toBe(1439);
    expect(jb.stats()).toMatchObject({ state: 'playing', late: 0, resyncs: 1 });
    expect(jb.stats().framesDecoded).toBe(9);
  });
});

describe('jitter buffer with the real Opus codec', () => {
  it('compensates the codec delay: a chirp plays at capture + D to the sample', async () => {
    const { signal, chirpAt, chirp } = chirpTrack(2, { periodMs: 250, firstMs: 100 });
    const pz = createPacketizer({ payloadType: PT, redPayloadType: RED, ssrc: SSRC, initialTimestamp: BASE_TS, initialSequence: 0 });
    const clock = driftingClock(-700, 0);
    const jb = createJitterBuffer({ decoder: await createOpusDecoder(), timing: pz.timing(BASE_MS), delayMs: 80, clock, payloadType: PT, redPayloadType: RED });
    for (let i = 0; i + N <= signal.length; i += N) jb.push(parseRtp(pz.packetize(signal.subarray(i, i + N)).bytes));
    // Read from controller time BASE + 80 (position 0) on.
    const out = new Float32Array(signal.length - N);
    const t0 = clock.toLocal(BASE_MS + 80);
    for (let b = 0; b * 480 < out.length; b++) jb.read(out.subarray(b * 480, (b + 1) * 480), t0 + b * 10);
    for (const at of chirpAt.slice(0, -1)) {
      const { lag, score } = bestLag(out, chirp, at - 200, at + 200);
      expect(score).toBeGreaterThan(0.9);
      expect(Math.abs(lag - at)).toBeLessThan(3); // < 0.06 ms
    }
    jb.close();
    pz.close();
  });
});
