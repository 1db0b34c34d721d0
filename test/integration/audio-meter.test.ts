/**
 * The pipeline's streaming meter (meter.ts) against ffmpeg's ebur128 on the same 48 kHz mono PCM:
 * the hot path may skip ebur128 only because these agree.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSupervisor, measureLoudness, PcmMeter, summarize, type Supervisor } from '../../audio-pipeline/src/index.js';
import { decodeMono48k, makeAudioFixtures, sh, type AudioFixtures } from '../helpers/audio-fixtures.js';

let fx: AudioFixtures;
let sup: Supervisor;
let dir: string;

beforeAll(async () => {
  fx = await makeAudioFixtures('all');
  sup = createSupervisor({});
  dir = await mkdtemp(join(tmpdir(), 'radio-meter-'));
});
afterAll(async () => {
  await sup?.stop();
  await fx?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('PcmMeter agrees with ffmpeg ebur128', () => {
  const cases = ['speechWav', 'toneQuiet', 'toneLoud', 'speechPeak0', 'stereo44k', 'mp3', 'oggOpus'] as const;
  for (const key of cases) {
    it(`${key}: integrated ±0.05 LU, true peak ±0.1 dB, LRA ±0.2 LU`, async () => {
      const pcm = await decodeMono48k(fx[key]);
      // The same PCM as a float WAV, for ffmpeg.
      const wav = join(dir, `${key}.wav`);
      await sh('ffmpeg', ['-v', 'error', '-y', '-i', fx[key], '-af', 'aresample=48000,aformat=channel_layouts=mono', '-c:a', 'pcm_f32le', wav]);
      const ref = await measureLoudness(wav, { supervisor: sup });
      const meter = new PcmMeter({ expectedSamples: pcm.length });
      // Feed in odd-sized chunks to exercise block and history boundaries.
      for (let i = 0; i < pcm.length; i += 4093) meter.push(pcm.subarray(i, Math.min(pcm.length, i + 4093)));
      const mine = summarize(meter.finish());
      expect(Math.abs(mine.integratedLufs - ref.integratedLufs)).toBeLessThanOrEqual(0.05);
      expect(Math.abs(mine.truePeakDbtp - ref.truePeakDbtp!)).toBeLessThanOrEqual(0.1);
      expect(Math.abs(mine.samplePeakDbfs - ref.samplePeakDbfs!)).toBeLessThanOrEqual(0.05);
      expect(Math.abs(mine.lra - ref.lra)).toBeLessThanOrEqual(0.2);
    });
  }
});
