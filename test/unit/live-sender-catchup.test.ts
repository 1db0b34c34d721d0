import type dgram from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createSessionSender } from '../../audio-pipeline/src/live/index.js';

/*
 * Latency recovery in the sender's live mode: a microphone that stalls and then delivers its backlog
 * must not leave every later word late for the rest of the session, and the recovery must never cut
 * speech (only quiet blocks go). Fake timers drive the sender's pacing; the socket records datagrams.
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
    const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'live', slackMs: 40, maxQueueMs: 300, agc: false, redPayloadType: null });
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
    const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'live', slackMs: 40, maxQueueMs: 300, agc: false, redPayloadType: null });
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
    const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'live', slackMs: 40, maxQueueMs: 300, agc: false, redPayloadType: null, quietDropRelative: 0 });
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
