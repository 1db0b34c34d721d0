import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessionSender, ipLiteralLookup, type SessionSender } from '../../audio-pipeline/src/live/index.js';
import { OggOpusError, opusStreamDecoderStats } from '../../audio-pipeline/src/opus-stream.js';
import { startOpusFileSource } from '../../controller/src/live/opus-file-source.js';
import { makeToneOpus, type MediaFile } from '../helpers/agent-playout.js';

/*
 * A library file played live without ffmpeg (controller/src/live/opus-file-source.ts): a real Ogg/Opus
 * file made by ffmpeg's libopus, a real paced session sender on a real UDP socket sending to a local
 * receiver. What goes into the sender is recorded by wrapping its write(), as the controller's PCM taps do.
 */
let dir: string;
let tone: MediaFile;
let rx: dgram.Socket;
let socket: dgram.Socket;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'opus-file-source-'));
  tone = await makeToneOpus(dir, 'tone', { seconds: 1, hz: 440, amplitude: 0.5 });
  rx = dgram.createSocket('udp4');
  await new Promise<void>((r) => rx.bind(0, '127.0.0.1', r));
  socket = dgram.createSocket({ type: 'udp4', lookup: ipLiteralLookup });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
});
afterAll(() => {
  rx.close();
  socket.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function tapped(): { sender: SessionSender; writes: Float32Array[]; maxQueuedMs: () => number } {
  const sender = createSessionSender({ socket, clock: { now: () => Date.now() }, mode: 'paced', agc: false, redPayloadType: null });
  sender.addDestination({ address: '127.0.0.1', port: (rx.address() as { port: number }).port });
  const writes: Float32Array[] = [];
  let maxQ = 0;
  const write = sender.write.bind(sender);
  sender.write = (pcm) => {
    writes.push(pcm.slice());
    const ok = write(pcm);
    maxQ = Math.max(maxQ, sender.stats().queuedMs);
    return ok;
  };
  return { sender, writes, maxQueuedMs: () => maxQ };
}

const total = (ws: Float32Array[]) => ws.reduce((n, w) => n + w.length, 0);
const rms = (ws: Float32Array[]) => {
  let s = 0;
  let n = 0;
  for (const w of ws) for (const v of w) { s += v * v; n++; }
  return Math.sqrt(s / n);
};

describe('live file source decoded in-process', () => {
  it('holds its PCM until the gate opens, then plays the file `repeat` times at the sender\'s pace', async () => {
    const { sender, writes, maxQueuedMs } = tapped();
    sender.start(Date.now());
    let open!: () => void;
    const gate = new Promise<void>((r) => { open = r; });
    const src = await startOpusFileSource({ sender, path: tone.file, repeat: 2, gate });
    // The file is open and its first blocks decoded, and nothing went to the sender.
    await new Promise((r) => setImmediate(r));
    expect(writes.length).toBe(0);
    open();
    await src.done;
    sender.stop('test');
    // Twice the file, to the sample (Opus pre-skip and end trimming, RFC 7845), in 20 ms blocks.
    expect(total(writes)).toBe(2 * 48_000);
    expect(writes.every((w) => w.length <= 960)).toBe(true);
    // A 0.5-amplitude sine has an RMS of 0.354; the codec keeps it within a few per cent.
    expect(rms(writes)).toBeGreaterThan(0.3);
    expect(rms(writes)).toBeLessThan(0.4);
    // Back-pressure: the paced sender's queue (200 ms) never held more than one block beyond it.
    expect(maxQueuedMs()).toBeLessThanOrEqual(220);
  });

  it('stops at durationMs across repeats, and stop() ends it early', async () => {
    const a = tapped();
    a.sender.start(Date.now());
    const bounded = await startOpusFileSource({ sender: a.sender, path: tone.file, repeat: 3, durationMs: 1500 });
    await bounded.done;
    a.sender.stop('test');
    expect(total(a.writes)).toBe(72_000);

    const b = tapped();
    b.sender.start(Date.now());
    const stopped = await startOpusFileSource({ sender: b.sender, path: tone.file, repeat: 10 });
    // Stop once some audio went out: done resolves, and nothing more is written.
    while (total(b.writes) < 48_000 / 2) await new Promise<void>((r) => b.sender.once('drain', () => r()));
    stopped.stop();
    await stopped.done;
    const n = total(b.writes);
    // The sender's next 'drain' is what a running source writes on: none follows it.
    await new Promise<void>((r) => b.sender.once('drain', () => r()));
    expect(total(b.writes)).toBe(n);
    expect(n).toBeLessThan(48_000);
    b.sender.stop('test');

    // Stopped while its gate is still closed (and never opens): it ends, and sends nothing.
    const c = tapped();
    c.sender.start(Date.now());
    const gated = await startOpusFileSource({ sender: c.sender, path: tone.file, gate: new Promise<void>(() => {}) });
    gated.stop();
    await gated.done;
    expect(c.writes.length).toBe(0);
    c.sender.stop('test');
  });

  it('plays a file again sample for sample (reused index and decoder), and a file replaced at the same path anew', async () => {
    const play = async (file: string) => {
      const t = tapped();
      t.sender.start(Date.now());
      const src = await startOpusFileSource({ sender: t.sender, path: file });
      await src.done;
      t.sender.stop('test');
      const out = new Float32Array(total(t.writes));
      let at = 0;
      for (const w of t.writes) { out.set(w, at); at += w.length; }
      return out;
    };
    const file = path.join(dir, 'replaced.opus');
    fs.copyFileSync(tone.file, file);
    const first = await play(file);
    const before = opusStreamDecoderStats().instantiated;
    const again = await play(file);
    // The second play made no new wasm decoder (the first one's was reset and kept) and decodes the same.
    expect(opusStreamDecoderStats().instantiated).toBe(before);
    expect(again.length).toBe(48_000);
    expect(again).toEqual(first);
    // Replaced by a half-second clip (other size, other mtime): indexed anew, not the cached index.
    const short = await makeToneOpus(dir, 'short', { seconds: 0.5, hz: 440, amplitude: 0.5 });
    fs.copyFileSync(short.file, file);
    expect((await play(file)).length).toBe(24_000);
  });

  it('refuses a file that is not Ogg/Opus, or a damaged one, with the demuxer\'s reason and nothing sent', async () => {
    const { sender, writes } = tapped();
    const junk = path.join(dir, 'junk.opus');
    fs.writeFileSync(junk, 'this is not an Ogg stream at all');
    await expect(startOpusFileSource({ sender, path: junk })).rejects.toBeInstanceOf(OggOpusError);
    // One flipped byte in the middle of the file breaks a page CRC.
    const bad = Buffer.from(tone.bytes);
    bad[Math.floor(bad.length / 2)]! ^= 0xff;
    const damaged = path.join(dir, 'damaged.opus');
    fs.writeFileSync(damaged, bad);
    await expect(startOpusFileSource({ sender, path: damaged })).rejects.toThrow(/crc/i);
    await expect(startOpusFileSource({ sender, path: path.join(dir, 'missing.opus') })).rejects.toThrow(/ENOENT/);
    expect(writes.length).toBe(0);
  });
});
