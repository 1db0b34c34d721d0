/** Binary lookup (env var, then PATH) and the error taxonomy. */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BinaryMissingError, createBinaryResolver, MEDIA_ERROR_STATUS, MediaError, resolveBinary } from '../../audio-pipeline/src/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'radio-bin-'));
  await writeFile(join(dir, 'espeak-ng'), '#!/bin/sh\nexit 0\n');
  await chmod(join(dir, 'espeak-ng'), 0o755);
  await writeFile(join(dir, 'ffprobe'), 'not executable');
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('resolveBinary', () => {
  it('prefers the env variable', () => {
    expect(resolveBinary('espeak-ng', { RADIO_ESPEAK_PATH: join(dir, 'espeak-ng'), PATH: '' })).toBe(join(dir, 'espeak-ng'));
  });

  it('falls back to PATH, skipping non-executable files', () => {
    expect(resolveBinary('espeak-ng', { PATH: `/nonexistent:${dir}` })).toBe(join(dir, 'espeak-ng'));
    expect(() => resolveBinary('ffprobe', { PATH: dir })).toThrow(BinaryMissingError);
  });

  it('names the env variable and the Debian package when missing', () => {
    const err = (() => {
      try {
        resolveBinary('ffmpeg', { PATH: '/nonexistent' });
      } catch (e) {
        return e as BinaryMissingError;
      }
      throw new Error('expected a throw');
    })();
    expect(err.code).toBe('BINARY_MISSING');
    expect(err.message).toMatch(/apt-get install ffmpeg/);
    expect(err.message).toMatch(/RADIO_FFMPEG_PATH/);
    expect(() => resolveBinary('espeak-ng', { PATH: '' })).toThrow(/apt-get install espeak-ng/);
    expect(() => resolveBinary('ffmpeg', { RADIO_FFMPEG_PATH: '/nope/ffmpeg', PATH: '/usr/bin' })).toThrow(/RADIO_FFMPEG_PATH=\/nope\/ffmpeg/);
  });

  it('caches per resolver, not globally', () => {
    const r = createBinaryResolver({ PATH: dir });
    expect(r.path('espeak-ng')).toBe(join(dir, 'espeak-ng'));
    expect(() => createBinaryResolver({ PATH: '' }).path('espeak-ng')).toThrow(BinaryMissingError);
  });
});

describe('MediaError', () => {
  it('maps bad input to 4xx and our failures to 5xx', () => {
    for (const c of ['NOT_AUDIO', 'CORRUPT', 'EMPTY', 'SILENT', 'TOO_LONG', 'TOO_LARGE', 'GAIN_TOO_HIGH', 'TEXT_INVALID', 'VOICE_UNKNOWN'] as const) {
      expect(new MediaError(c, 'x').isClientError).toBe(true);
    }
    for (const c of ['TTS_FAILED', 'TIMEOUT', 'BINARY_MISSING', 'PROCESS_FAILED', 'OUTPUT_OUT_OF_SPEC', 'STOPPED'] as const) {
      expect(MEDIA_ERROR_STATUS[c]).toBeGreaterThanOrEqual(500);
    }
    const e = new MediaError('TOO_LARGE', 'too big', { details: { maxBytes: 1 } });
    expect(e.toJSON()).toEqual({ code: 'TOO_LARGE', message: 'too big', statusCode: 413 });
    expect(e).toBeInstanceOf(Error);
  });
});
