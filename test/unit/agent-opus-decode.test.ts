import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareAiringProgram } from '../../audio-pipeline/src/airing-program.js';
import { indexOggOpus, openOpusStream, OggOpusError, opusPacketSamples } from '../../audio-pipeline/src/opus-stream.js';
import { makeToneOpus, type MediaFile } from '../helpers/agent-playout.js';

const run = promisify(execFile);
let dir: string;
let tone: MediaFile;
let stereo: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-opus-'));
  tone = await makeToneOpus(dir, 'tone', { seconds: 1, hz: 440, amplitude: 0.5 });
  stereo = path.join(dir, 'stereo.opus');
  await run('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'aevalsrc=0.4*sin(2*PI*300*t)|0.4*sin(2*PI*300*t):s=48000:d=0.5',
    '-c:a', 'libopus', '-b:a', '64k', stereo]);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function decodeAll(buf: Uint8Array, startFrame = 0): Promise<Float32Array> {
  const s = await openOpusStream(indexOggOpus(buf), { startFrame });
  const parts: Float32Array[] = [];
  const out = new Float32Array(480);
  for (;;) {
    const n = s.read(out);
    if (n) parts.push(out.slice(0, n));
    if (s.ended() || n === 0) break;
  }
  s.close();
  const all = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { all.set(p, o); o += p.length; }
  return all;
}

describe('in-process Ogg/Opus decoding (no ffmpeg per airing)', () => {
  it('decodes an ffmpeg Ogg/Opus file to exactly its length, with pre-skip and end trimming', async () => {
    const pcm = await decodeAll(tone.bytes);
    expect(pcm.length).toBe(48_000);
    const mid = pcm.subarray(4800, 43_200);
    const rms = Math.sqrt(mid.reduce((a, x) => a + x * x, 0) / mid.length);
    expect(rms).toBeGreaterThan(0.5 / Math.SQRT2 * 0.9);
    expect(rms).toBeLessThan(0.5 / Math.SQRT2 * 1.1);
    let crossings = 0;
    for (let i = 1; i < mid.length; i++) if ((mid[i - 1]! < 0) !== (mid[i]! < 0)) crossings++;
    const hz = crossings / 2 / (mid.length / 48_000);
    expect(Math.abs(hz - 440)).toBeLessThan(5);
  });

  it('seeks (resume) without decoding from the start, matching the full decode after the pre-roll', async () => {
    const full = await decodeAll(tone.bytes);
    const tail = await decodeAll(tone.bytes, 24_000);
    expect(tail.length).toBe(24_000);
    let maxDiff = 0;
    for (let i = 0; i < tail.length; i++) maxDiff = Math.max(maxDiff, Math.abs(tail[i]! - full[24_000 + i]!));
    expect(maxDiff).toBeLessThan(0.005);
  });

  it('mixes a stereo file to mono', async () => {
    const pcm = await decodeAll(fs.readFileSync(stereo));
    expect(pcm.length).toBe(24_000);
    const peak = pcm.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    expect(peak).toBeGreaterThan(0.3);
    expect(peak).toBeLessThan(0.5);
  });

  it('refuses a damaged file (Ogg CRC) instead of playing noise', () => {
    const bad = Buffer.from(tone.bytes);
    bad[Math.floor(bad.length / 2)] = bad[Math.floor(bad.length / 2)]! ^ 0x55;
    expect(() => indexOggOpus(bad)).toThrow(OggOpusError);
    expect(() => indexOggOpus(Buffer.from('not an ogg file at all, just text'))).toThrow(OggOpusError);
  });

  it('reads packet durations from the TOC byte (RFC 6716 §3.1)', () => {
    expect(opusPacketSamples(Uint8Array.of((31 << 3) | 0))).toBe(960); // CELT 20 ms, one frame
    expect(opusPacketSamples(Uint8Array.of((1 << 3) | 1))).toBe(1920); // SILK 20 ms, two frames
    expect(opusPacketSamples(Uint8Array.of((3 << 3) | 3, 2))).toBe(2 * 2880); // SILK 60 ms × 2 (120 ms, the most a packet may hold)
    expect(() => opusPacketSamples(Uint8Array.of((3 << 3) | 3, 3))).toThrow(/exceeds 120 ms/); // RFC 6716 §3.2.5 R5
  });

  it('plays an airing as chime + silence + media in order, and resumes part-way', async () => {
    const media = { pathOf: (sha: string) => (sha === tone.sha256 ? tone.file : undefined) };
    const items = [
      { kind: 'chime' as const, chime: 'attention' as const, durationMs: 500 },
      { kind: 'silence' as const, durationMs: 250 },
      { kind: 'media' as const, mediaId: 'm1', sha256: tone.sha256, sizeBytes: tone.sizeBytes, durationMs: 1000, path: '/x' },
    ];
    const count = async (startOffsetMs?: number) => {
      const p = await prepareAiringProgram({ id: 'a1', items, media, ...(startOffsetMs !== undefined ? { startOffsetMs } : {}) });
      const out = new Float32Array(480);
      let n = 0;
      let loudAt = -1;
      while (!p.ended()) {
        const k = p.read(out, 0);
        for (let i = 0; i < k && loudAt < 0; i++) if (Math.abs(out[i]!) > 0.01) loudAt = n + i;
        n += k;
        if (k === 0) await new Promise<void>((r) => setImmediate(r)); // next item still opening
      }
      p.close();
      return { n, loudAt, positionMs: p.positionMs(), failed: p.failedItems() };
    };
    const whole = await count();
    expect(whole.n).toBe(24_000 + 12_000 + 48_000);
    expect(whole.loudAt).toBeLessThan(480); // the chime starts at once
    expect(whole.positionMs).toBeCloseTo(1750, 6);
    expect(whole.failed).toEqual([]);
    const resumed = await count(1000);
    expect(resumed.n).toBe(84_000 - 48_000);
    expect(resumed.positionMs).toBeCloseTo(1750, 6);
    // Missing media plays as silence of its planned length (the items after it keep their places).
    const missing = await prepareAiringProgram({ id: 'a2', items, media: { pathOf: () => undefined } });
    expect(missing.failedItems()).toEqual([]);
    const out = new Float32Array(48_000 * 2);
    let n = 0;
    while (!missing.ended()) { const k = missing.read(out.subarray(n), 0); n += k; if (k === 0) await new Promise<void>((r) => setImmediate(r)); }
    expect(n).toBe(84_000);
    expect(missing.failedItems()).toEqual(['m1']);
  });
});
