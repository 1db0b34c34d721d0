/**
 * Typed errors of the audio pipeline. Every failure a caller can act on carries a stable `code`
 * (part of the HTTP contract: the controller answers `{code, message}`) and an `httpStatus` hint:
 * 4xx when the input is at fault, 5xx when we (or a binary/engine we run) are.
 */

export const MEDIA_ERROR_STATUS = {
  /** The bytes are not audio at all (text, image, document renamed .mp3/.wav). */
  NOT_AUDIO: 415,
  /** Audio container/codec recognised but the data is damaged or truncated. */
  CORRUPT: 422,
  /** Zero bytes, no audio stream, or zero duration. */
  EMPTY: 422,
  /** All digital silence: nothing to normalise. */
  SILENT: 422,
  /** Longer than the configured maximum duration. */
  TOO_LONG: 422,
  /** Larger than the configured byte limit. */
  TOO_LARGE: 413,
  /** Reaching the loudness target would need more gain than allowed (near-silent noise). */
  GAIN_TOO_HIGH: 422,
  /** TTS text empty or unusable after normalisation. */
  TEXT_INVALID: 400,
  /** The TTS voice is not offered by the engine. */
  VOICE_UNKNOWN: 400,
  /** The TTS engine (espeak-ng or the HTTP service) failed. */
  TTS_FAILED: 502,
  /** A supervised process went silent longer than its watchdog allows and was killed. */
  TIMEOUT: 504,
  /** ffmpeg / ffprobe / espeak-ng is not installed or not executable. */
  BINARY_MISSING: 500,
  /** A supervised process exited with an error we could not attribute to the input. */
  PROCESS_FAILED: 500,
  /** Our own output failed verification (loudness/true peak out of spec after retries). */
  OUTPUT_OUT_OF_SPEC: 500,
  /** The caller cancelled (AbortSignal). nginx's 499 "client closed request". */
  ABORTED: 499,
  /** The supervisor was stopped while the job was queued or running. */
  STOPPED: 503,
} as const;

export type MediaErrorCode = keyof typeof MEDIA_ERROR_STATUS;

export class MediaError extends Error {
  readonly code: MediaErrorCode;
  /** Suggested HTTP status: 4xx = bad input, 5xx = our side. */
  readonly httpStatus: number;
  /** Extra facts for logs and the API body (measured duration, limit, exit code, stderr tail …). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: MediaErrorCode, message: string, opts: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'MediaError';
    this.code = code;
    this.httpStatus = MEDIA_ERROR_STATUS[code];
    this.details = opts.details ?? {};
  }

  /** True when the input (not the server) is at fault. */
  get isClientError(): boolean {
    return this.httpStatus >= 400 && this.httpStatus < 500;
  }

  toJSON(): { code: MediaErrorCode; message: string; statusCode: number } {
    return { code: this.code, message: this.message, statusCode: this.httpStatus };
  }
}

export function isMediaError(err: unknown): err is MediaError {
  return err instanceof MediaError;
}
