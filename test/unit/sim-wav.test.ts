import { mkdtemp, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeWav, encodeWav, floatToS16, readWav, WavFormatError, writeWav } from '../../firmware-sim/src/wav.js';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sim-wav-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('wav', () => {
  it('round-trips s16 mono 48 kHz within one LSB and clips', () => {
    const x = new Float32Array([0, 0.5, -0.5, 1, -1, 1.7, -3, 1e-5]);
    const w = decodeWav(encodeWav(x));
    expect(w.sampleRate).toBe(48_000);
    expect(w.channels).toBe(1);
    expect(w.bitsPerSample).toBe(16);
    expect(w.samples.length).toBe(x.length);
    for (let i = 0; i < 5; i++) expect(Math.abs(w.samples[i]! - x[i]!)).toBeLessThan(1 / 16384);
    expect(w.samples[5]).toBeCloseTo(32767 / 32768, 6);
    expect(w.samples[6]).toBe(-1);
    expect(floatToS16(1)).toBe(32767);
    expect(floatToS16(-1)).toBe(-32768);
  });

  it('reads stereo float and streamed (size 0xFFFFFFFF) files, mixing to mono', () => {
    // Hand-built: 2 channels, IEEE float, data size left as 0xFFFFFFFF like a pipe writer does.
    const frames = 3;
    const buf = Buffer.alloc(44 + frames * 8);
    buf.write('RIFF', 0, 'ascii');
    buf.writeUInt32LE(0xffffffff, 4);
    buf.write('WAVEfmt ', 8, 'ascii');
    buf.writeUInt32LE(16, 16);
    buf.writeUInt16LE(3, 20);
    buf.writeUInt16LE(2, 22);
    buf.writeUInt32LE(22_050, 24);
    buf.writeUInt32LE(22_050 * 8, 28);
    buf.writeUInt16LE(8, 32);
    buf.writeUInt16LE(32, 34);
    buf.write('data', 36, 'ascii');
    buf.writeUInt32LE(0xffffffff, 40);
    const lr = [0.2, 0.4, -1, 0, 0.5, 0.5];
    lr.forEach((v, i) => buf.writeFloatLE(v, 44 + i * 4));
    const w = decodeWav(buf);
    expect(w.sampleRate).toBe(22_050);
    expect(w.channels).toBe(2);
    expect(Array.from(w.samples).map((v) => Math.round(v * 1000) / 1000)).toEqual([0.3, -0.5, 0.5]);
  });

  it('rejects what is not a WAV', () => {
    expect(() => decodeWav(Buffer.from('hello world, not a wav'))).toThrow(WavFormatError);
  });

  it('writes a file that sox reads back as 48 kHz s16 mono', async () => {
    const p = join(dir, 't.wav');
    await writeWav(p, new Float32Array(4800).fill(0.25));
    const info = execFileSync('soxi', [p], { encoding: 'utf8' });
    expect(info).toMatch(/Sample Rate\s*:\s*48000/);
    expect(info).toMatch(/Channels\s*:\s*1/);
    expect(info).toMatch(/16-bit/);
    expect((await readWav(p)).samples.length).toBe(4800);
  });
});
