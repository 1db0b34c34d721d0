import type dgram from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createOpusDecoder, createSessionSender, parseRtp, seededRandom, DEFAULT_OPUS_PAYLOAD_TYPE, type SessionSenderOptions } from '../../audio-pipeline/src/live/index.js';

/*
 * Latency recovery in the sender's live mode: a microphone that stalls and then delivers its backlog
 * must not leave every later word late for the rest of the session, and the recovery must never cut
 * speech (only quiet blocks go, or whole pitch periods where the signal repeats itself). Fake timers
 * drive the sender's pacing; the socket records datagrams. The quiet-block tests turn accelerate off to
 * see that rule alone; the last block tests accelerate and expand.
 */
const RATE = 48_000;
const CHUNK = 480; // 10 ms, as the console's worklet sends

function chunk(loud: boolean, phase: { n: number }): Float32Array {
  const out = new Float32Array(CHUNK);
  for (let i = 0; i < CHUNK; i++, phase.n++) out[i] = loud ? 0.5 * Math.sin((2 * Math.PI * 440 * phase.n) / RATE) : 0;
  return out;
}

describe('session sender live mode: latency recovery after a microphone stall', () => {
  beforeEach(() => { vi.useFakeTimers({ now: 1_700_000_000_000 }); });
  afterEach(() => { vi.useRealTimers(); });

  it('keeps the backlog through speech, then drops it in the next pause; nothing audible is dropped', () => {
    const sent: Uint8Array[] = [];
    const socket = { send: (b: Uint8Array, _p: number, _a: string, cb?: (e: Error | null) => void) => { sent.push(b); cb?.(null); } } as unknown as dgram.Socket;
    const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'live', slackMs: 40, maxQueueMs: 300, agc: false, redPayloadType: null, accelerate: false });
    sender.addDestination({ address: '127.0.0.1', port: 9 });
    sender.start(Date.now());
    const phase = { n: 0 };
    const feed = (ms: number, loud: boolean) => {
      for (let t = 0; t < ms; t += 10) { sender.write(chunk(loud, phase)); vi.advanceTimersByTime(10); }
    };
    feed(300, true); // on time
    const before = sender.stats();
    expect(before.queuedMs).toBeLessThanOrEqual(60);
    vi.advanceTimersByTime(150); // the microphone stalls for 150 ms...
    for (let i = 0; i < 15; i++) sender.write(chunk(true, phase)); // ...then its backlog arrives at once
    feed(500, true); // speech goes on: the backlog must stay (dropping would cut words)
    const duringSpeech = sender.stats();
    expect(duringSpeech.catchUpSamples).toBe(0);
    expect(duringSpeech.queuedMs).toBeGreaterThan(80);
    feed(400, false); // a pause between sentences
    feed(200, true);
    const after = sender.stats();
    expect(after.queuedMs).toBeLessThanOrEqual(70); // a frame + slack stays queued
    expect(after.catchUpSamples).toBeGreaterThanOrEqual(0.03 * RATE);
    expect(after.queuedMs).toBeLessThan(duringSpeech.queuedMs - 25);
    expect(after.droppedSamples).toBe(0);
    expect(sent.length).toBeGreaterThan(50);
    sender.stop();
  });

  it('wins the backlog back over a steady background above the absolute quiet level, never in the voice', () => {
    const socket = { send: (_b: Uint8Array, _p: number, _a: string, cb?: (e: Error | null) => void) => { cb?.(null); } } as unknown as dgram.Socket;
    const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'live', slackMs: 40, maxQueueMs: 300, agc: false, redPayloadType: null, accelerate: false });
    sender.addDestination({ address: '127.0.0.1', port: 9 });
    sender.start(Date.now());
    // A 200 Hz hum at 0.05 (−26 dBFS: above the absolute level 0.02) under the voice, and alone between words.
    let n = 0;
    const block = (voice: boolean): Float32Array => {
      const out = new Float32Array(CHUNK);
      for (let i = 0; i < CHUNK; i++, n++) out[i] = 0.05 * Math.sin((2 * Math.PI * 200 * n) / RATE) + (voice ? 0.5 * Math.sin((2 * Math.PI * 440 * n) / RATE) : 0);
      return out;
    };
    const feed = (ms: number, voice: boolean) => { for (let t = 0; t < ms; t += 10) { sender.write(block(voice)); vi.advanceTimersByTime(10); } };
    feed(300, true);
    vi.advanceTimersByTime(150); // a stall...
    for (let i = 0; i < 15; i++) sender.write(block(true)); // ...and its backlog
    feed(300, true);
    const duringVoice = sender.stats();
    expect(duringVoice.catchUpSamples).toBe(0);
    expect(duringVoice.queuedMs).toBeGreaterThan(80);
    feed(400, false); // the hum alone: a pause, though not silent
    const after = sender.stats();
    expect(after.catchUpSamples).toBeGreaterThanOrEqual(0.03 * RATE);
    expect(after.queuedMs).toBeLessThan(duringVoice.queuedMs - 25);
    expect(after.droppedSamples).toBe(0);
    sender.stop();
  });

  it('with the relative level off, the same hum keeps the backlog (only the absolute level counts)', () => {
    const socket = { send: (_b: Uint8Array, _p: number, _a: string, cb?: (e: Error | null) => void) => { cb?.(null); } } as unknown as dgram.Socket;
    const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'live', slackMs: 40, maxQueueMs: 300, agc: false, redPayloadType: null, accelerate: false, quietDropRelative: 0 });
    sender.start(Date.now());
    let n = 0;
    const hum = (): Float32Array => { const out = new Float32Array(CHUNK); for (let i = 0; i < CHUNK; i++, n++) out[i] = 0.05 * Math.sin((2 * Math.PI * 200 * n) / RATE); return out; };
    for (let t = 0; t < 300; t += 10) { sender.write(hum()); vi.advanceTimersByTime(10); }
    vi.advanceTimersByTime(150);
    for (let i = 0; i < 15; i++) sender.write(hum());
    for (let t = 0; t < 400; t += 10) { sender.write(hum()); vi.advanceTimersByTime(10); }
    expect(sender.stats().catchUpSamples).toBe(0);
    sender.stop();
  });

  it('paced mode never drops quiet input (a file keeps its silences)', () => {
    const socket = { send: (_b: Uint8Array, _p: number, _a: string, cb?: (e: Error | null) => void) => { cb?.(null); } } as unknown as dgram.Socket;
    const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'paced', agc: false, redPayloadType: null });
    sender.start(Date.now());
    const phase = { n: 0 };
    for (let i = 0; i < 15; i++) sender.write(chunk(false, phase)); // 150 ms of silence queued ahead
    vi.advanceTimersByTime(100);
    expect(sender.stats().catchUpSamples).toBe(0);
    expect(sender.stats().framesSent).toBeGreaterThanOrEqual(5);
    sender.stop();
  });
});

describe('session sender: a late source is expanded, and the backlog it leaves is accelerated away', () => {
  beforeEach(() => { vi.useFakeTimers({ now: 1_700_000_000_000 }); });
  afterEach(() => { vi.useRealTimers(); });

  /**
   * A 200 Hz bed at 0.1 with a 440 Hz voice at 0.3 in 250 ms of every 500 (the bench's kind of track:
   * never a pause; the bed is only 12 dB under the voice, so the quiet-block rule never takes it).
   */
  function bedAndVoice(): (n0: number) => Float32Array {
    return (n0) => {
      const out = new Float32Array(CHUNK);
      for (let i = 0; i < CHUNK; i++) {
        const n = n0 + i;
        const voice = n % 24_000 < 12_000;
        out[i] = 0.1 * Math.sin((2 * Math.PI * 200 * n) / RATE) + (voice ? 0.3 * Math.sin((2 * Math.PI * 440 * n) / RATE) : 0);
      }
      return out;
    };
  }
  function loudNoise(): (n0: number) => Float32Array {
    const r = seededRandom(7);
    return () => { const out = new Float32Array(CHUNK); for (let i = 0; i < CHUNK; i++) out[i] = 0.3 * (2 * r() - 1); return out; };
  }

  /** 300 ms on time, a stall of stallMs, its backlog at once, then `afterMs` on time again. */
  function run(opts: Partial<SessionSenderOptions>, source: (n0: number) => Float32Array, stallMs: number, afterMs: number) {
    const sent: Uint8Array[] = [];
    const socket = { send: (b: Uint8Array) => { sent.push(b.slice()); } } as unknown as dgram.Socket;
    const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'live', agc: false, redPayloadType: null, ...opts });
    sender.addDestination({ address: '127.0.0.1', port: 9 });
    sender.start(Date.now());
    let n = 0;
    const next = () => { const c = source(n); n += CHUNK; return c; };
    const feed = (ms: number) => { for (let t = 0; t < ms; t += 10) { sender.write(next()); vi.advanceTimersByTime(10); } };
    feed(300);
    vi.advanceTimersByTime(stallMs);
    for (let t = 0; t < stallMs; t += 10) sender.write(next());
    const afterStall = sender.stats();
    feed(afterMs);
    const end = sender.stats();
    sender.stop();
    return { sent: sent.filter((b) => b.length > 12 && (b[1]! & 0x7f) === DEFAULT_OPUS_PAYLOAD_TYPE), afterStall, end };
  }

  /** Decode what went out; the quietest 5 ms (RMS) after the first 100 ms, relative to the bed's RMS (0.1/√2): a hole is near 0. */
  async function quietestVsBed(packets: Uint8Array[]): Promise<number> {
    const dec = await createOpusDecoder();
    const parts = packets.map((p) => dec.decode(parseRtp(p)!.payload).slice());
    dec.close();
    const x = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    parts.reduce((off, p) => { x.set(p, off); return off + p.length; }, 0);
    const W = 240;
    let least = Infinity;
    for (let i = 4800; i + W <= x.length - 960; i += 48) {
      let e = 0;
      for (let j = 0; j < W; j++) e += x[i + j]! * x[i + j]!;
      least = Math.min(least, Math.sqrt(e / W));
    }
    return least / (0.1 / Math.SQRT2);
  }

  it('a 30 ms hiccup of the source leaves no hole in what goes out (it does without expand)', async () => {
    const withExpand = run({}, bedAndVoice(), 30, 200);
    expect(withExpand.afterStall.paddedFrames).toBeGreaterThan(0);
    expect(withExpand.afterStall.expandedSamples).toBeGreaterThan(0.005 * RATE);
    expect(await quietestVsBed(withExpand.sent)).toBeGreaterThan(0.5);
    const without = run({ expand: false }, bedAndVoice(), 30, 200);
    expect(without.afterStall.paddedFrames).toBeGreaterThan(0);
    expect(without.afterStall.expandedSamples).toBe(0);
    expect(await quietestVsBed(without.sent)).toBeLessThan(0.1);
  });

  it('wins back the backlog of a stall on a track with no pause, in periodic stretches only', () => {
    const acc = run({}, bedAndVoice(), 60, 3000);
    expect(acc.afterStall.queuedMs).toBeGreaterThanOrEqual(35);
    expect(acc.end.acceleratedSamples).toBeGreaterThan(0.025 * RATE);
    expect(acc.end.queuedMs).toBeLessThan(acc.afterStall.queuedMs - 20);
    expect(acc.end.catchUpSamples + acc.end.droppedSamples).toBe(0); // it was not the quiet rule, nor the queue bound
    expect(acc.end.headroomMs).toBeLessThan(8); // back near the 5 ms the sender holds
    const off = run({ accelerate: false }, bedAndVoice(), 60, 3000);
    expect(off.end.queuedMs).toBeGreaterThanOrEqual(35);
    const noise = run({}, loudNoise(), 60, 3000); // no period to remove: the backlog stays
    expect(noise.end.acceleratedSamples).toBe(0);
    expect(noise.end.queuedMs).toBeGreaterThanOrEqual(35);
  });

  it('holds 5 ms of headroom whatever the phase of the input against the frames (it wanders by the phase without)', () => {
    const headroom = (opts: Partial<SessionSenderOptions>, phaseMs: number): number => {
      const socket = { send: () => {} } as unknown as dgram.Socket;
      const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'live', agc: false, redPayloadType: null, ...opts });
      sender.addDestination({ address: '127.0.0.1', port: 9 });
      sender.start(Date.now());
      vi.advanceTimersByTime(60 + phaseMs); // the microphone connects a while after the start
      const src = bedAndVoice();
      for (let t = 0, n = 0; t < 1000; t += 10, n += CHUNK) { sender.write(src(n)); vi.advanceTimersByTime(10); }
      const st = sender.stats();
      sender.stop();
      expect(st.paddedFrames).toBeLessThanOrEqual(4); // the lead-in only
      return st.headroomMs;
    };
    const held = [3, 13, 18].map((ph) => headroom({}, ph));
    for (const h of held) {
      expect(h).toBeGreaterThanOrEqual(4.5);
      expect(h).toBeLessThan(8);
    }
    const free = [3, 13, 18].map((ph) => headroom({ accelerate: false }, ph));
    expect(Math.max(...free) - Math.min(...free)).toBeGreaterThanOrEqual(10);
  });
});
