/**
 * Ingest of every accepted input kind with real ffmpeg/espeak-ng, checked by an independent
 * measurement (ffmpeg ebur128 on the decoded output), not by the pipeline's own figures.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSupervisor, ingestAudio, profileIdOf, resolveProfile, type IngestProgress, type ProgressEvent, type Supervisor } from '../../audio-pipeline/src/index.js';
import { decodeMono48k, makeAudioFixtures, measureIndependently, nonSilentSpanMs, type AudioFixtures } from '../helpers/audio-fixtures.js';

const TARGET = -16;
const TP_LIMIT = -1.5;

let fx: AudioFixtures;
let sup: Supervisor;
let outRoot: string;

beforeAll(async () => {
  fx = await makeAudioFixtures('all');
  sup = createSupervisor({ concurrency: 1 });
  sup.start();
  outRoot = await mkdtemp(join(tmpdir(), 'radio-ingest-'));
});

afterAll(async () => {
  await sup?.stop();
  await fx?.cleanup();
  if (outRoot) await rm(outRoot, { recursive: true, force: true });
});

let n = 0;
async function freshDir(): Promise<string> {
  const d = await mkdtemp(join(outRoot, `case-${n++}-`));
  return d;
}

async function ingestAndCheck(input: string): Promise<Awaited<ReturnType<typeof ingestAudio>>> {
  const outDir = await freshDir();
  const progress: IngestProgress[] = [];
  const res = await ingestAudio(input, { outDir, supervisor: sup, onProgress: (p) => progress.push(p) });

  // Files: exactly the two content-addressed outputs, no temp leftovers.
  expect((await readdir(outDir)).sort()).toEqual([`${res.mediaKey}.mp3`, `${res.mediaKey}.opus`]);
  expect(basename(res.files.opus)).toBe(`${res.mediaKey}.opus`);

  // Distribution format, measured independently (the reference decoder too: what edge agents
  // and browsers run), and the trimmed input span computed here (first to last sample > -60 dBFS).
  const [opus, opusRef, mp3, inputPcm, decodedOut] = await Promise.all([
    measureIndependently(res.files.opus),
    measureIndependently(res.files.opus, 'libopus'),
    measureIndependently(res.files.mp3),
    decodeMono48k(input),
    decodeMono48k(res.files.opus),
  ]);
  expect(opus.codec).toBe('opus');
  expect(opus.sampleRate).toBe(48000);
  expect(opus.channels).toBe(1);
  expect(Math.abs(opus.integratedLufs - TARGET)).toBeLessThanOrEqual(1);
  expect(opus.truePeakDbtp).toBeLessThanOrEqual(TP_LIMIT);
  expect(opusRef.truePeakDbtp).toBeLessThanOrEqual(TP_LIMIT);

  expect(mp3.codec).toBe('mp3');
  expect(mp3.channels).toBe(1);
  expect(Math.abs(mp3.integratedLufs - TARGET)).toBeLessThanOrEqual(1);
  expect(mp3.truePeakDbtp).toBeLessThanOrEqual(TP_LIMIT);

  // Duration: the trimmed input within 50 ms, in the result and in the decoded file.
  const trimmedMs = nonSilentSpanMs(inputPcm, -60);
  expect(Math.abs(res.durationMs - trimmedMs)).toBeLessThanOrEqual(50);
  expect(Math.abs((decodedOut.length / 48000) * 1000 - trimmedMs)).toBeLessThanOrEqual(50);

  // Reported figures agree with the independent measurement.
  expect(Math.abs(res.output.lufs - opus.integratedLufs)).toBeLessThanOrEqual(0.3);
  expect(res.sha256).toBe(createHash('sha256').update(await readFile(input)).digest('hex'));
  expect(res.peaks).toHaveLength(800);
  expect(Math.max(...res.peaks)).toBeGreaterThan(0.15); // a -16 LUFS sine peaks at 0.22
  expect(Math.max(...res.peaks)).toBeLessThanOrEqual(1);

  // Progress: monotonic, ends at 100.
  const pcts = progress.map((p) => p.percent);
  for (let i = 1; i < pcts.length; i++) expect(pcts[i]!).toBeGreaterThanOrEqual(pcts[i - 1]!);
  expect(progress.at(-1)).toEqual({ stage: 'done', percent: 100 });
  return res;
}

describe('ingestAudio: accepted inputs reach -16 LUFS / -1.5 dBTP, Opus 48 kHz mono + MP3', () => {
  it('espeak-ng Vietnamese speech (WAV 22.05 kHz)', async () => {
    const res = await ingestAndCheck(fx.speechWav);
    const ref = await measureIndependently(fx.speechWav);
    expect(Math.abs(res.input.lufs - ref.integratedLufs)).toBeLessThanOrEqual(0.2);
    expect(Math.abs(res.input.truePeakDb - ref.truePeakDbtp)).toBeLessThanOrEqual(0.3);
    expect(res.input).toMatchObject({ codec: 'pcm_s16le', sampleRate: 22050, channels: 1 });
  });

  it('trims leading/trailing silence (1 s of digital silence each side)', async () => {
    const res = await ingestAndCheck(fx.speechPaddedWav);
    expect(res.processing.trimStartMs).toBeGreaterThanOrEqual(1000);
    const plain = nonSilentSpanMs(await decodeMono48k(fx.speechWav), -60);
    expect(Math.abs(res.durationMs - plain)).toBeLessThanOrEqual(50);
  });

  it('quiet tone at -35 LUFS is raised (+19 dB)', async () => {
    const res = await ingestAndCheck(fx.toneQuiet);
    expect(res.input.lufs).toBeCloseTo(-35, 0);
    expect(res.processing.gainDb).toBeGreaterThan(15);
  });

  it('loud tone at -6 LUFS is lowered', async () => {
    const res = await ingestAndCheck(fx.toneLoud);
    expect(res.input.lufs).toBeCloseTo(-6, 0);
    expect(res.processing.gainDb).toBeLessThan(-5);
  });

  it('speech already peaking at 0 dBFS (clipped phone recording)', async () => {
    const res = await ingestAndCheck(fx.speechPeak0);
    expect(res.input.truePeakDb).toBeGreaterThanOrEqual(-0.1);
  });

  it('stereo 44.1 kHz is downmixed to mono', async () => {
    const res = await ingestAndCheck(fx.stereo44k);
    expect(res.input).toMatchObject({ channels: 2, sampleRate: 44100 });
  });

  it('8 kHz AMR-NB phone recording (12.2 kbps, with background noise)', async (ctx) => {
    if (!fx.amrPhone) return ctx.skip();
    const res = await ingestAndCheck(fx.amrPhone);
    expect(res.input).toMatchObject({ codec: 'amr_nb', sampleRate: 8000 });
  });

  it('AMR-NB with DTX/SID frames (which ffmpeg 5.1 cannot decode) is accepted, not called corrupt', async (ctx) => {
    if (!fx.amrDtx) return ctx.skip();
    const res = await ingestAndCheck(fx.amrDtx);
    expect(res.input.codec).toBe('amr_nb');
  });

  for (const [name, key, codec] of [
    ['MP3', 'mp3', 'mp3'],
    ['M4A/AAC', 'm4a', 'aac'],
    ['Ogg/Opus', 'oggOpus', 'opus'],
    ['Ogg/Vorbis', 'oggVorbis', 'vorbis'],
    ['FLAC', 'flac', 'flac'],
    ['WebM/Opus', 'webm', 'opus'],
  ] as const) {
    it(`${name} input`, async () => {
      const res = await ingestAndCheck(fx[key]);
      expect(res.input.codec).toBe(codec);
    });
  }
});

describe('ingestAudio: identity and lanes', () => {
  it('same bytes + same profile = same mediaKey; another profile = another key', async () => {
    const a = await ingestAudio(fx.speechWav, { outDir: await freshDir(), supervisor: sup });
    const b = await ingestAudio(fx.speechWav, { outDir: await freshDir(), supervisor: sup });
    expect(b.mediaKey).toBe(a.mediaKey);
    expect(b.profileId).toBe(profileIdOf(resolveProfile()));
    const c = await ingestAudio(fx.speechWav, { outDir: await freshDir(), supervisor: sup, profile: { targetLufs: -18 } });
    expect(c.profileId).not.toBe(a.profileId);
    expect(c.mediaKey).not.toBe(a.mediaKey);
    expect(c.sha256).toBe(a.sha256);
    const m = await measureIndependently(c.files.opus);
    expect(Math.abs(m.integratedLufs - -18)).toBeLessThanOrEqual(1);
  });

  it('publishes ingest progress on the supervisor bus and runs urgent jobs on the urgent lane', async () => {
    const events: ProgressEvent[] = [];
    const off = sup.onProgress((e) => events.push(e));
    try {
      await ingestAudio(fx.toneLoud, { outDir: await freshDir(), supervisor: sup, urgent: true, jobId: 'ingest-42' });
    } finally {
      off();
    }
    const mine = events.filter((e) => e.jobId === 'ingest-42');
    expect(mine.at(-1)).toMatchObject({ kind: 'ingest', state: 'done', percent: 100, lane: 'urgent' });
    const pcts = mine.map((e) => e.percent ?? 0);
    for (let i = 1; i < pcts.length; i++) expect(pcts[i]!).toBeGreaterThanOrEqual(pcts[i - 1]!);
    // Its ffmpeg children ran on the urgent lane too.
    expect(events.some((e) => e.kind === 'encode-opus' && e.lane === 'urgent')).toBe(true);
  });
});
