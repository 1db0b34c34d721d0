import type dgram from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { classifyPacket, createJitterBuffer, createOpusDecoder, createSessionSender, parseRed, parseRtp } from '../../audio-pipeline/src/live/index.js';

/*
 * Lead-in DTX (session-sender.ts): before the source's first samples, the sender leaves most silent
 * frames out instead of sending 50 a second to every destination (at 1,000 clusters that padding was the
 * controller's largest cost while an emergency waited for its targets). Receivers must see no loss, and
 * audio that follows must sound where its timeline puts it. Fake timers drive the pacing; the socket
 * records datagrams; a real decoder and jitter buffer play them.
 */
const T0 = 1_700_000_000_000;

describe('session sender: lead-in DTX', () => {
  beforeEach(() => { vi.useFakeTimers({ now: T0 }); });
  afterEach(() => { vi.useRealTimers(); });

  it('sends no frame before the first input (the SR tells a receiver its path works), then every frame with no sequence gap; the audio plays at its place', async () => {
    const sent: { at: number; b: Uint8Array }[] = [];
    const socket = { send: (b: Uint8Array, _p: number, _a: string, cb?: (e: Error | null) => void) => { sent.push({ at: Date.now(), b: Uint8Array.from(b) }); cb?.(null); } } as unknown as dgram.Socket;
    const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'paced', agc: false, senderReportIntervalMs: 0 });
    sender.start(T0);
    sender.addDestination({ address: '127.0.0.1', port: 9 });
    // The SR that answers a new destination comes first: the agent's sign that its path works.
    expect(classifyPacket(sent[0]!.b)).toBe('rtcp');
    vi.advanceTimersByTime(1000); // 1 s with no input yet (targets joining, ffmpeg starting)
    expect(sent.filter((x) => classifyPacket(x.b) === 'rtp')).toHaveLength(0);
    expect(sender.stats().leadInSkippedFrames).toBeGreaterThanOrEqual(49);
    // 200 ms of a 1 kHz tone, written at T0 + 1000: paced input fills the frame still open (its window
    // began at T0 + 980 and it may leave until its end + 10 ms of slack), frame 49.
    const tone = new Float32Array(9600);
    for (let i = 0; i < tone.length; i++) tone[i] = 0.5 * Math.sin((2 * Math.PI * 1000 * i) / 48_000);
    sender.write(tone);
    vi.advanceTimersByTime(400);
    sender.stop();
    const rtp = sent.filter((x) => classifyPacket(x.b) === 'rtp').map((x) => parseRtp(x.b));
    const after = rtp;
    expect(after.length).toBeGreaterThanOrEqual(20); // every frame once the source delivers
    // Sequence numbers run on without a gap: receivers count no loss for the frames left out.
    for (let i = 1; i < rtp.length; i++) expect(rtp[i]!.sequenceNumber).toBe((rtp[i - 1]!.sequenceNumber + 1) & 0xffff);
    // The timestamp jumped over the frames left out; the first packet is a talkspurt start without a
    // RED copy of a frame that was never sent.
    const firstAudio = after[0]!;
    expect(firstAudio.marker).toBe(true);
    expect(parseRed(firstAudio.payload, firstAudio.timestamp).redundant).toHaveLength(0);
    expect(parseRed(after[1]!.payload, after[1]!.timestamp).redundant).toHaveLength(1);
    const desc = sender.description();
    expect(((firstAudio.timestamp - desc.timing.baseTimestamp) >>> 0) / 960).toBe(49);

    // Played through a jitter buffer (D = 100 ms, receiver clock = controller clock): silence, then the
    // tone from T0 + 980 + D on (the encoder's lookahead is taken out by codecDelaySamples).
    const jb = createJitterBuffer({ decoder: await createOpusDecoder(), timing: desc.timing, delayMs: 100, clock: { toController: (l) => l }, payloadType: desc.payloadType, redPayloadType: desc.redPayloadType });
    for (const p of rtp) expect(jb.push(p, T0)).toBe('accepted');
    const out = new Float32Array(48 * 1300); // up to the last frame sent
    jb.read(out, T0 + 100);
    const firstLoud = out.findIndex((v) => Math.abs(v) > 0.05);
    expect(Math.abs(firstLoud / 48 - 980)).toBeLessThan(2);
    expect(jb.stats().concealedFrames).toBe(0);
    expect(jb.stats().lostFrames).toBe(0);
    jb.close();
  });

  it('sendLeadIn sends every lead-in frame', () => {
    let rtp = 0;
    const socket = { send: (b: Uint8Array, _p: number, _a: string, cb?: (e: Error | null) => void) => { if (classifyPacket(b) === 'rtp') rtp++; cb?.(null); } } as unknown as dgram.Socket;
    const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'paced', agc: false, sendLeadIn: true });
    sender.start(T0);
    sender.addDestination({ address: '127.0.0.1', port: 9 });
    vi.advanceTimersByTime(1000);
    expect(rtp).toBeGreaterThanOrEqual(49);
    expect(sender.stats().leadInSkippedFrames).toBe(0);
    sender.stop();
  });
});

describe('session sender: send delay', () => {
  beforeEach(() => { vi.useFakeTimers({ now: T0 }); });
  afterEach(() => { vi.useRealTimers(); });

  it('counts frames that leave long after their capture instant (a blocked event loop), not those that leave on time', () => {
    const socket = { send: (_b: Uint8Array, _p: number, _a: string, cb?: (e: Error | null) => void) => { cb?.(null); } } as unknown as dgram.Socket;
    const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'paced', agc: false, senderReportIntervalMs: 0 });
    sender.start(T0);
    sender.addDestination({ address: '127.0.0.1', port: 9 });
    const tone = new Float32Array(48 * 150);
    for (let i = 0; i < tone.length; i++) tone[i] = 0.3 * Math.sin((2 * Math.PI * 440 * i) / 48_000);
    sender.write(tone);
    vi.advanceTimersByTime(60); // on time: frames 0..3 leave at their capture instants
    const onTime = sender.stats();
    expect(onTime.framesSent).toBeGreaterThanOrEqual(3);
    expect(onTime.sendDelayMaxMs).toBeLessThan(5);
    expect(onTime.lateFrames).toBe(0);
    // The event loop is blocked for 250 ms: the clock moves, no timer fires (the fake timers keep their
    // own time); then the pump's next timer (frame 4, captured at T0 + 80) runs, 250 ms late.
    vi.setSystemTime(T0 + 60 + 250);
    vi.advanceTimersByTime(20);
    const late = sender.stats();
    expect(late.sendDelayMaxMs).toBeGreaterThanOrEqual(240);
    // The rest of the input (frames 4–6) leaves at once, each well over 100 ms after its capture.
    expect(late.lateFrames).toBeGreaterThanOrEqual(3);
    expect(late.framesSent - onTime.framesSent).toBeGreaterThanOrEqual(late.lateFrames);
    sender.stop();
  });
});
