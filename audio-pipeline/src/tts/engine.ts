/**
 * Text-to-speech engines behind one small interface (STYLE.md §7): espeak-ng is the embedded
 * default; an HTTP adapter lets a commune plug in a commercial Vietnamese neural TTS service.
 * Engines receive text that is already normalised (text/vi-normalize.ts; see tts/index.ts).
 */
import type { Lane } from '../supervisor.js';

export interface TtsVoice {
  /** Id passed back to `synthesize` ('vi', 'vi-vn-x-south', a vendor's voice name …). */
  id: string;
  /** Human label for the console. */
  name: string;
  /** BCP 47 language tag. */
  language: string;
}

export interface SynthesizeOptions {
  voice?: string;
  /** Directory for the audio file (default: the engine's configured tmp dir). */
  outDir?: string;
  /** Emergency announcements go on the supervisor's urgent lane. */
  lane?: Lane;
  signal?: AbortSignal;
}

export interface SynthesizeResult {
  /**
   * The synthesized audio file; the caller owns it (ingest it, then delete it). espeak-ng writes
   * WAV; the HTTP engine stores whatever the service returns (WAV, MP3 …, extension from its
   * Content-Type) — ingestAudio accepts any of them.
   */
  wavPath: string;
  mimeType: string;
  voice: string;
  engine: string;
}

export interface TtsEngine {
  readonly id: string;
  voices(): Promise<TtsVoice[]>;
  synthesize(text: string, opts?: SynthesizeOptions): Promise<SynthesizeResult>;
}
