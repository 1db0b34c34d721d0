/**
 * audio-pipeline public API. Audio work as a library: no knowledge of nodes, schedules or HTTP.
 * See ../README.md.
 */
export { BINARIES, BinaryMissingError, createBinaryResolver, resolveBinary, type BinaryName, type BinaryResolver } from './binaries.js';
export { MEDIA_ERROR_STATUS, MediaError, isMediaError, type MediaErrorCode } from './errors.js';
export {
  assertExitOk,
  createSupervisor,
  type JobState,
  type Lane,
  type ProcessHandle,
  type ProcessResult,
  type ProcessSpec,
  type ProgressEvent,
  type Slot,
  type Supervisor,
  type SupervisorOptions,
} from './supervisor.js';
export { probeAudio, type ProbeOptions, type ProbeResult } from './probe.js';
export { EBUR128_FILTER, measureLoudness, parseEbur128Summary, type LoudnessSummary } from './loudness.js';
export { PcmMeter, summarize, type Envelope, type MeterSummary } from './meter.js';
export { findTrim, planGain, planGainAsync, GainApplier, type GainPlan, type LimiterSettings, type TrimRange } from './limiter.js';
export { analyseAudio, renderAudio, type AnalyseResult, type RenderResult } from './normalize.js';
export { PeaksBuilder, computePeaks } from './peaks.js';
export {
  DEFAULT_PROFILE,
  PIPELINE_VERSION,
  canonicalJson,
  mediaKeyOf,
  profileIdOf,
  resolveProfile,
  type ProcessingProfile,
  type ProfileOverrides,
} from './profile.js';
export { ingestAudio, sha256File, type IngestOptions, type IngestProgress, type IngestResult, type IngestStage } from './ingest.js';
export {
  createEspeakEngine,
  createHttpTtsEngine,
  createTts,
  ESPEAK_VOICES,
  type EspeakOptions,
  type HttpTtsConfig,
  type SpeakOptions,
  type SpeakResult,
  type SynthesizeOptions,
  type SynthesizeResult,
  type Tts,
  type TtsConfig,
  type TtsEngine,
  type TtsVoice,
} from './tts/index.js';
export { normalizeVietnamese, readDigits, readInteger, readNumber, type ViNormalizeOptions } from './text/vi-normalize.js';
export { decodeOggOpus, OggDemuxer, oggCrc, OggOpusStreamDecoder, parseOpusHead, type DecodedOpus, type OggPage, type OpusHead } from './ogg-opus.js';
