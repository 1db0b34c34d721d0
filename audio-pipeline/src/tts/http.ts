/**
 * HTTP adapter for a commercial (neural) Vietnamese TTS service.
 *
 * Contract (kept deliberately plain so a thin proxy can adapt any vendor):
 *   POST <url>  Content-Type: application/json  <apiKeyHeader>: <apiKey>
 *   body {"text": "...", "voice": "..."}  →  2xx with the audio bytes (audio/wav, audio/mpeg …).
 * Non-2xx, a non-audio Content-Type, an empty body or a timeout → TTS_FAILED (502).
 */
import { randomUUID } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MediaError, isMediaError } from '../errors.js';
import type { SynthesizeOptions, SynthesizeResult, TtsEngine, TtsVoice } from './engine.js';

export interface HttpTtsConfig {
  url: string;
  apiKey?: string;
  /** Header carrying the key (default 'Authorization', sent as `Bearer <key>`). */
  apiKeyHeader?: string;
  /** Voice used when the caller names none. */
  voice: string;
  /** Voices offered in the console (default: just `voice`). */
  voices?: TtsVoice[];
  /** Engine id (default 'http'). */
  id?: string;
  timeoutMs?: number;
  /** Largest response accepted (default 50 MiB). */
  maxBytes?: number;
  tmpDir?: string;
  fetch?: typeof fetch;
}

const EXT: Record<string, string> = {
  'audio/wav': 'wav',
  'audio/x-wav': 'wav',
  'audio/wave': 'wav',
  'audio/mpeg': 'mp3',
  'audio/mp3': 'mp3',
  'audio/ogg': 'ogg',
  'audio/opus': 'opus',
  'audio/aac': 'aac',
  'audio/mp4': 'm4a',
  'audio/webm': 'webm',
  'audio/flac': 'flac',
};

export function createHttpTtsEngine(cfg: HttpTtsConfig): TtsEngine {
  const id = cfg.id ?? 'http';
  const voices: TtsVoice[] = cfg.voices ?? [{ id: cfg.voice, name: cfg.voice, language: 'vi-VN' }];
  const doFetch = cfg.fetch ?? fetch;
  const maxBytes = cfg.maxBytes ?? 50 * 1024 * 1024;
  return {
    id,
    voices: () => Promise.resolve([...voices]),
    async synthesize(text: string, o: SynthesizeOptions = {}): Promise<SynthesizeResult> {
      const voice = o.voice ?? cfg.voice;
      if (!voices.some((v) => v.id === voice)) {
        throw new MediaError('VOICE_UNKNOWN', `TTS service '${id}' has no voice '${voice}'`);
      }
      const clean = text.trim();
      if (clean === '') throw new MediaError('TEXT_INVALID', 'nothing to say: the text is empty');
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'audio/*' };
      if (cfg.apiKey) {
        const h = cfg.apiKeyHeader ?? 'Authorization';
        headers[h.toLowerCase()] = h.toLowerCase() === 'authorization' ? `Bearer ${cfg.apiKey}` : cfg.apiKey;
      }
      const timeout = AbortSignal.timeout(cfg.timeoutMs ?? 30_000);
      const signal = o.signal ? AbortSignal.any([o.signal, timeout]) : timeout;
      let path: string | undefined;
      try {
        const res = await doFetch(cfg.url, { method: 'POST', headers, body: JSON.stringify({ text: clean, voice }), signal });
        if (!res.ok) {
          const body = (await res.text().catch(() => '')).slice(0, 200);
          throw new MediaError('TTS_FAILED', `TTS service answered ${res.status}${body ? `: ${body}` : ''}`, { details: { status: res.status } });
        }
        const mimeType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
        if (!mimeType.startsWith('audio/') && mimeType !== 'application/octet-stream') {
          throw new MediaError('TTS_FAILED', `TTS service returned ${mimeType || 'no content type'}, not audio`);
        }
        const declared = Number(res.headers.get('content-length') ?? '0');
        if (declared > maxBytes) throw new MediaError('TTS_FAILED', `TTS response of ${declared} bytes exceeds ${maxBytes}`);
        const bytes = Buffer.from(await res.arrayBuffer());
        if (bytes.length === 0) throw new MediaError('TTS_FAILED', 'TTS service returned an empty body');
        if (bytes.length > maxBytes) throw new MediaError('TTS_FAILED', `TTS response of ${bytes.length} bytes exceeds ${maxBytes}`);
        path = join(o.outDir ?? cfg.tmpDir ?? tmpdir(), `tts-${randomUUID()}.${EXT[mimeType] ?? 'bin'}`);
        await writeFile(path, bytes);
        return { wavPath: path, mimeType, voice, engine: id };
      } catch (err) {
        if (path) await rm(path, { force: true });
        if (isMediaError(err)) throw err;
        if (o.signal?.aborted) throw new MediaError('ABORTED', 'TTS request cancelled', { cause: err });
        if (timeout.aborted) throw new MediaError('TTS_FAILED', `TTS service did not answer within ${cfg.timeoutMs ?? 30_000} ms`, { cause: err });
        throw new MediaError('TTS_FAILED', `TTS service unreachable: ${(err as Error).message}`, { cause: err });
      }
    },
  };
}
