/**
 * Every bad input is refused with its own stable code, and leaves nothing behind in outDir.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSupervisor, ingestAudio, MediaError, type IngestOptions, type MediaErrorCode, type Supervisor } from '../../audio-pipeline/src/index.js';
import { makeAudioFixtures, type AudioFixtures } from '../helpers/audio-fixtures.js';

let fx: AudioFixtures;
let sup: Supervisor;
let outRoot: string;

beforeAll(async () => {
  fx = await makeAudioFixtures('all');
  sup = createSupervisor({ concurrency: 1 });
  sup.start();
  outRoot = await mkdtemp(join(tmpdir(), 'radio-rejects-'));
});

afterAll(async () => {
  await sup?.stop();
  await fx?.cleanup();
  if (outRoot) await rm(outRoot, { recursive: true, force: true });
});

let n = 0;
async function expectRejected(
  input: string,
  code: MediaErrorCode,
  opts: Partial<IngestOptions> = {},
): Promise<MediaError> {
  const outDir = await mkdtemp(join(outRoot, `case-${n++}-`));
  let caught: unknown;
  try {
    await ingestAudio(input, { outDir, supervisor: opts.supervisor ?? sup, ...opts });
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(MediaError);
  const err = caught as MediaError;
  expect(err.code).toBe(code);
  expect(err.message.length).toBeGreaterThan(10);
  // No temp file (or half-published output) remains.
  expect(await readdir(outDir)).toEqual([]);
  return err;
}

describe('ingestAudio rejects bad input with a stable code and no leftovers', () => {
  it('a text file renamed .mp3 → NOT_AUDIO (415)', async () => {
    const err = await expectRejected(fx.textAsMp3, 'NOT_AUDIO');
    expect(err.httpStatus).toBe(415);
    expect(err.message).toMatch(/not an audio file/);
  });

  it('a PNG image renamed .wav → NOT_AUDIO', async () => {
    const err = await expectRejected(fx.pngAsWav, 'NOT_AUDIO');
    expect(err.message).toMatch(/PNG/);
  });

  it('a truncated MP3 (Xing header declares the full length) → CORRUPT (422)', async () => {
    const err = await expectRejected(fx.truncatedMp3, 'CORRUPT');
    expect(err.httpStatus).toBe(422);
    expect(err.message).toMatch(/truncated/);
  });

  it('a truncated WAV (data chunk cut short) → CORRUPT', async () => {
    await expectRejected(fx.truncatedWav, 'CORRUPT');
  });

  it('zero bytes → EMPTY', async () => {
    await expectRejected(fx.zeroBytes, 'EMPTY');
  });

  it('a media file without an audio stream → EMPTY', async () => {
    const err = await expectRejected(fx.videoOnly, 'EMPTY');
    expect(err.message).toMatch(/no audio stream/);
  });

  it('all digital silence → SILENT', async () => {
    await expectRejected(fx.silenceWav, 'SILENT');
  });

  it('longer than maxDurationMs (declared duration) → TOO_LONG, before decoding', async () => {
    const err = await expectRejected(fx.speechWav, 'TOO_LONG', { maxDurationMs: 2000 });
    expect(err.details.maxDurationMs).toBe(2000);
  });

  it('longer than maxDurationMs with no declared duration (recorder WebM) → TOO_LONG while decoding', async () => {
    await expectRejected(fx.webmNoDuration, 'TOO_LONG', { maxDurationMs: 2000 });
  });

  it('larger than maxBytes → TOO_LARGE (413)', async () => {
    const err = await expectRejected(fx.speechWav, 'TOO_LARGE', { maxBytes: 10_000 });
    expect(err.httpStatus).toBe(413);
  });

  it('near-silent noise needing more than +30 dB → GAIN_TOO_HIGH', async () => {
    const err = await expectRejected(fx.quietNoise, 'GAIN_TOO_HIGH');
    expect(err.message).toMatch(/too quiet/);
  });

  it('cancelled through its AbortSignal while encoding → ABORTED', async () => {
    const ac = new AbortController();
    const outDir = await mkdtemp(join(outRoot, 'abort-'));
    const p = ingestAudio(fx.speechWav, {
      outDir,
      supervisor: sup,
      signal: ac.signal,
      onProgress: (pr) => {
        if (pr.stage === 'encode') ac.abort(new Error('operator cancelled'));
      },
    });
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    expect(await readdir(outDir)).toEqual([]);
  });

  it('a watchdog kill (hung ffmpeg) → TIMEOUT, temp files removed', async () => {
    // A 1 ms watchdog kills every child at its first silent millisecond: a stand-in for a hang.
    const hasty = createSupervisor({ watchdogMs: 1 });
    try {
      await expectRejected(fx.speechWav, 'TIMEOUT', { supervisor: hasty });
    } finally {
      await hasty.stop();
    }
  });

  it('the same supervisor still ingests good audio after all of the above', async () => {
    const outDir = await mkdtemp(join(outRoot, 'after-'));
    const res = await ingestAudio(fx.webmNoDuration, { outDir, supervisor: sup });
    expect(res.durationMs).toBeGreaterThan(5000);
    expect((await readdir(outDir)).sort()).toEqual([`${res.mediaKey}.mp3`, `${res.mediaKey}.opus`]);
  });
});
