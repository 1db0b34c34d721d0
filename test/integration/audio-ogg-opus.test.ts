/**
 * In-process Ogg/Opus decoding (wasm libopus + our Ogg demuxer) of the pipeline's own output,
 * checked against ffmpeg's libopus decode and the loudness the pipeline reported.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSupervisor,
  decodeOggOpus,
  ingestAudio,
  oggCrc,
  OggOpusStreamDecoder,
  PcmMeter,
  summarize,
  type IngestResult,
  type Supervisor,
} from '../../audio-pipeline/src/index.js';
import { makeAudioFixtures, type AudioFixtures } from '../helpers/audio-fixtures.js';

const run = promisify(execFile);
let fx: AudioFixtures;
let sup: Supervisor;
let outDir: string;
let media: IngestResult;
let opusBytes: Buffer;

beforeAll(async () => {
  fx = await makeAudioFixtures('all');
  sup = createSupervisor({});
  outDir = await mkdtemp(join(tmpdir(), 'radio-oggopus-'));
  media = await ingestAudio(fx.speechWav, { outDir, supervisor: sup });
  opusBytes = await readFile(media.files.opus);
});
afterAll(async () => {
  await sup?.stop();
  await fx?.cleanup();
  if (outDir) await rm(outDir, { recursive: true, force: true });
});

async function ffmpegLibopusDecode(path: string): Promise<Float32Array> {
  const { stdout } = await run('ffmpeg', ['-v', 'error', '-c:a', 'libopus', '-i', path, '-f', 'f32le', 'pipe:1'], { encoding: 'buffer', maxBuffer: 1 << 28 });
  const copy = new Uint8Array(stdout.length);
  copy.set(stdout);
  return new Float32Array(copy.buffer);
}

function loudness(x: Float32Array): ReturnType<typeof summarize> {
  const m = new PcmMeter({ expectedSamples: x.length });
  m.push(x);
  return summarize(m.finish());
}

describe('decodeOggOpus', () => {
  it('decodes the pipeline output to the right length, matching ffmpeg+libopus sample for sample', async () => {
    const d = await decodeOggOpus(opusBytes);
    expect(d.sampleRate).toBe(48000);
    expect(d.head).toMatchObject({ channels: 1, inputSampleRate: 48000, outputGainDb: 0 });
    expect(d.head.preSkip).toBeGreaterThan(0);
    expect(Math.abs(d.samples.length / 48 - media.durationMs)).toBeLessThanOrEqual(1);
    expect(Number(d.granule) - d.head.preSkip).toBe(d.samples.length);
    const ref = await ffmpegLibopusDecode(media.files.opus);
    expect(d.samples.length).toBe(ref.length);
    let maxDiff = 0;
    for (let i = 0; i < ref.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ref[i]! - d.samples[i]!));
    expect(maxDiff).toBeLessThan(1e-3);
  });

  it('gives the loudness the pipeline reported', async () => {
    const d = await decodeOggOpus(opusBytes);
    const s = loudness(d.samples);
    expect(Math.abs(s.integratedLufs - media.output.lufs)).toBeLessThanOrEqual(0.2);
    expect(Math.abs(s.integratedLufs - -16)).toBeLessThanOrEqual(1);
    expect(s.truePeakDbtp).toBeLessThanOrEqual(-1.5);
  });

  it('streams: any chunking gives the same samples', async () => {
    const whole = (await decodeOggOpus(opusBytes)).samples;
    const dec = new OggOpusStreamDecoder();
    const parts: Float32Array[] = [];
    let seed = 7;
    for (let i = 0; i < opusBytes.length; ) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const n = 1 + (seed % 700);
      parts.push(...(await dec.push(opusBytes.subarray(i, i + n))));
      i += n;
    }
    const info = dec.finish();
    expect(info.samples).toBe(whole.length);
    const joined = new Float32Array(whole.length);
    let o = 0;
    for (const p of parts) {
      joined.set(p, o);
      o += p.length;
    }
    expect(joined).toEqual(whole);
  });

  it('applies the OpusHead output gain (RFC 7845 §5.1)', async () => {
    const patched = Buffer.from(opusBytes);
    // First page: 27-byte header + 1 lacing byte, then OpusHead; gain is at offset 16 of OpusHead.
    const headAt = 27 + patched[26]!;
    patched.writeInt16LE(-6 * 256, headAt + 16);
    const firstPageLen = 27 + patched[26]! + patched[27]!;
    patched.writeUInt32LE(oggCrc(patched.subarray(0, firstPageLen)), 22);
    const plain = (await decodeOggOpus(opusBytes)).samples;
    const quiet = await decodeOggOpus(patched);
    expect(quiet.head.outputGainDb).toBe(-6);
    const i = plain.findIndex((v) => Math.abs(v) > 0.1);
    expect(quiet.samples[i]! / plain[i]!).toBeCloseTo(10 ** (-6 / 20), 4);
  });

  it('detects a damaged page (CRC) and a truncated file', async () => {
    const damaged = Buffer.from(opusBytes);
    const at = Math.floor(damaged.length / 2);
    damaged[at] = damaged[at]! ^ 0x40;
    await expect(decodeOggOpus(damaged)).rejects.toMatchObject({ code: 'CORRUPT' });
    await expect(decodeOggOpus(opusBytes.subarray(0, Math.floor(opusBytes.length * 0.6)))).rejects.toMatchObject({ code: 'CORRUPT' });
  });

  it('refuses an Ogg stream that is not Opus', async () => {
    await expect(decodeOggOpus(await readFile(fx.oggVorbis))).rejects.toMatchObject({ code: 'NOT_AUDIO' });
  });
});
