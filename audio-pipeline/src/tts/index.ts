/**
 * The TTS front: normalises Vietnamese text so it is read as a person would, then hands it to the
 * chosen engine. The normalised text is returned so the console can show it beside the audio.
 */
import { MediaError } from '../errors.js';
import type { Lane, Supervisor } from '../supervisor.js';
import { normalizeVietnamese } from '../text/vi-normalize.js';
import type { TtsEngine, TtsVoice } from './engine.js';
import { createEspeakEngine, type EspeakOptions } from './espeak.js';
import { createHttpTtsEngine, type HttpTtsConfig } from './http.js';

export type { SynthesizeOptions, SynthesizeResult, TtsEngine, TtsVoice } from './engine.js';
export { createEspeakEngine, ESPEAK_VOICES, type EspeakOptions } from './espeak.js';
export { createHttpTtsEngine, type HttpTtsConfig } from './http.js';

export interface TtsConfig {
  supervisor: Supervisor;
  /** espeak-ng settings; `false` disables the embedded engine. */
  espeak?: Omit<EspeakOptions, 'supervisor'> | false;
  /** Optional HTTP engine (commercial neural TTS). */
  http?: HttpTtsConfig;
  /** Extra engines (tests, future backends). */
  engines?: TtsEngine[];
  /** Engine used when the caller names none (default: http if configured, else espeak-ng). */
  defaultEngine?: string;
  /** Skip Vietnamese text normalisation (e.g. for SSML-aware engines). Default false. */
  rawText?: boolean;
}

export interface SpeakOptions {
  engine?: string;
  voice?: string;
  /** Emergency announcements: the urgent lane of the supervisor. */
  urgent?: boolean;
  outDir?: string;
  signal?: AbortSignal;
}

export interface SpeakResult {
  wavPath: string;
  mimeType: string;
  engine: string;
  voice: string;
  /** The text actually spoken (after normalisation): show it beside the audio. */
  normalizedText: string;
}

export interface Tts {
  engines(): TtsEngine[];
  /** Every voice of every engine, tagged with its engine id. */
  voices(): Promise<(TtsVoice & { engine: string })[]>;
  speak(text: string, opts?: SpeakOptions): Promise<SpeakResult>;
}

export function createTts(config: TtsConfig): Tts {
  const engines: TtsEngine[] = [...(config.engines ?? [])];
  if (config.http) engines.push(createHttpTtsEngine(config.http));
  if (config.espeak !== false) engines.push(createEspeakEngine({ supervisor: config.supervisor, ...(config.espeak ?? {}) }));
  if (engines.length === 0) throw new RangeError('createTts: no TTS engine configured');
  const defaultId = config.defaultEngine ?? (config.http ? (config.http.id ?? 'http') : engines[0]!.id);
  const byId = (id: string): TtsEngine => {
    const e = engines.find((x) => x.id === id);
    if (!e) throw new MediaError('VOICE_UNKNOWN', `no TTS engine '${id}' (have ${engines.map((x) => x.id).join(', ')})`);
    return e;
  };
  byId(defaultId);
  return {
    engines: () => [...engines],
    async voices() {
      const lists = await Promise.all(engines.map(async (e) => (await e.voices()).map((v) => ({ ...v, engine: e.id }))));
      return lists.flat();
    },
    async speak(text, opts = {}) {
      const engine = byId(opts.engine ?? defaultId);
      const normalizedText = config.rawText ? text.trim() : normalizeVietnamese(text);
      if (normalizedText.trim() === '') throw new MediaError('TEXT_INVALID', 'nothing to say: the text is empty');
      const lane: Lane = opts.urgent ? 'urgent' : 'normal';
      const r = await engine.synthesize(normalizedText, { voice: opts.voice, outDir: opts.outDir, lane, signal: opts.signal });
      return { wavPath: r.wavPath, mimeType: r.mimeType, engine: r.engine, voice: r.voice, normalizedText };
    },
  };
}
