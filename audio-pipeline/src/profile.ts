/**
 * The processing profile: every knob that changes the distribution audio. Its canonical hash is the
 * `profileId`; a media item's identity is sha256(input bytes) + profileId (content addressing), so
 * changing a knob (or PIPELINE_VERSION, when the algorithm changes) yields new media, never a silent
 * rewrite of old files.
 */
import { createHash } from 'node:crypto';

/** Bump when the processing algorithm changes in a way that changes output for the same profile. */
export const PIPELINE_VERSION = 1;

export interface ProcessingProfile {
  /** Integrated loudness target, LUFS (EBU R128 / ITU-R BS.1770-4). */
  targetLufs: number;
  /** True-peak limit of the distribution files, dBTP, measured on the decoded Opus. */
  truePeakDbtp: number;
  /** Refuse inputs needing more than this much gain (near-silent noise is not a bulletin). */
  maxGainDb: number;
  /**
   * Room left between the limiter's ceiling and `truePeakDbtp` for codec overshoot: lossy coding at
   * 32 kbps reshapes the waveform. On limited espeak-ng speech the decoded Opus peaked, per 10 ms,
   * up to 2.4 dB (10 min) / 4.4 dB (60 min) above the pre-encode ceiling with CELT, 2.7 / 7.2 dB
   * with SILK complexity 5. The tail is handled by verification (OpusHead gain trim or re-render).
   */
  codecHeadroomDb: number;
  limiter: { attackMs: number; releaseMs: number };
  /** Leading/trailing silence below `thresholdDbfs` (sample peak) is cut. */
  trim: { enabled: boolean; thresholdDbfs: number };
  opus: {
    bitrateKbps: number;
    vbr: 'on' | 'off' | 'constrained';
    /**
     * libopus application. Default 'audio' (at 32 kb/s mono and complexity < 7 that is CELT-only),
     * not 'voip' (SILK): on limited espeak-ng speech SILK at complexity 5 produced 10 ms clicks
     * 7–15 dB above the surrounding audio (one per few minutes; also in libopus' own decoder), and
     * complexity 10 avoids them only at 5× the CPU of CELT (12 s vs 2.3 s per 10 min here).
     */
    application: 'voip' | 'audio' | 'lowdelay';
    /** libopus complexity 0..10. */
    complexity: number;
    frameMs: 20 | 40 | 60;
    /**
     * Loudness the encoder is expected to lose (LU), aimed above the target so that the first
     * attempt usually verifies: measured 0.1–0.5 LU for SILK at 32 kbps on speech, ~0.05–0.1 for CELT.
     */
    expectedLossLu: number;
  };
  mp3: { bitrateKbps: number; sampleRate: 48000 | 44100 | 24000 | 22050; quality: number };
  verify: {
    /** Re-encode when the decoded Opus misses the target by more than this (LU). */
    toleranceLu: number;
    /** Verified true peak must stay this far under `truePeakDbtp` (meter vs. other meters' interpolators). */
    truePeakMarginDb: number;
    /**
     * A decoded-Opus true-peak excess up to this many dB is removed with the OpusHead output gain
     * (RFC 7845 §5.1; decoders apply it) instead of a re-encode, if loudness stays within ±0.9 LU.
     */
    headerGainFixMaxDb: number;
    maxRetries: number;
  };
  peaksBuckets: number;
}

export const DEFAULT_PROFILE: Readonly<ProcessingProfile> = Object.freeze({
  targetLufs: -16,
  truePeakDbtp: -1.5,
  maxGainDb: 30,
  codecHeadroomDb: 3.0,
  limiter: { attackMs: 5, releaseMs: 60 },
  trim: { enabled: true, thresholdDbfs: -60 },
  opus: { bitrateKbps: 32, vbr: 'constrained', application: 'audio', complexity: 5, frameMs: 20, expectedLossLu: 0.1 },
  mp3: { bitrateKbps: 64, sampleRate: 48000, quality: 7 },
  verify: { toleranceLu: 0.5, truePeakMarginDb: 0.1, headerGainFixMaxDb: 1, maxRetries: 3 },
  peaksBuckets: 800,
} satisfies ProcessingProfile);

export type ProfileOverrides = {
  [K in keyof ProcessingProfile]?: ProcessingProfile[K] extends object ? Partial<ProcessingProfile[K]> : ProcessingProfile[K];
};

/** Defaults merged with overrides (one level deep), validated. */
export function resolveProfile(overrides: ProfileOverrides = {}): ProcessingProfile {
  const d = DEFAULT_PROFILE;
  const p: ProcessingProfile = {
    targetLufs: overrides.targetLufs ?? d.targetLufs,
    truePeakDbtp: overrides.truePeakDbtp ?? d.truePeakDbtp,
    maxGainDb: overrides.maxGainDb ?? d.maxGainDb,
    codecHeadroomDb: overrides.codecHeadroomDb ?? d.codecHeadroomDb,
    limiter: { ...d.limiter, ...overrides.limiter },
    trim: { ...d.trim, ...overrides.trim },
    opus: { ...d.opus, ...overrides.opus },
    mp3: { ...d.mp3, ...overrides.mp3 },
    verify: { ...d.verify, ...overrides.verify },
    peaksBuckets: overrides.peaksBuckets ?? d.peaksBuckets,
  };
  const bad = (why: string): never => {
    throw new RangeError(`invalid processing profile: ${why}`);
  };
  if (!(p.targetLufs <= -5 && p.targetLufs >= -40)) bad('targetLufs must be within -40..-5');
  if (!(p.truePeakDbtp <= 0 && p.truePeakDbtp >= -12)) bad('truePeakDbtp must be within -12..0');
  if (!(p.maxGainDb > 0 && p.maxGainDb <= 60)) bad('maxGainDb must be within 0..60');
  if (!(p.codecHeadroomDb >= 0 && p.codecHeadroomDb <= 10)) bad('codecHeadroomDb must be within 0..10');
  if (!(p.limiter.attackMs >= 1 && p.limiter.attackMs <= 50)) bad('limiter.attackMs must be within 1..50');
  if (!(p.limiter.releaseMs >= 1 && p.limiter.releaseMs <= 2000)) bad('limiter.releaseMs must be within 1..2000');
  if (!(p.opus.bitrateKbps >= 6 && p.opus.bitrateKbps <= 256)) bad('opus.bitrateKbps must be within 6..256');
  if (!(Number.isInteger(p.opus.complexity) && p.opus.complexity >= 0 && p.opus.complexity <= 10)) bad('opus.complexity must be 0..10');
  if (!(p.opus.expectedLossLu >= -1 && p.opus.expectedLossLu <= 1)) bad('opus.expectedLossLu must be within -1..1');
  if (!(p.mp3.bitrateKbps >= 8 && p.mp3.bitrateKbps <= 320)) bad('mp3.bitrateKbps must be within 8..320');
  if (!(Number.isInteger(p.mp3.quality) && p.mp3.quality >= 0 && p.mp3.quality <= 9)) bad('mp3.quality must be 0..9');
  if (!(Number.isInteger(p.peaksBuckets) && p.peaksBuckets >= 1 && p.peaksBuckets <= 100_000)) bad('peaksBuckets must be 1..100000');
  if (!(p.verify.toleranceLu > 0 && p.verify.toleranceLu <= 1)) bad('verify.toleranceLu must be within 0..1');
  if (!(p.verify.truePeakMarginDb >= 0 && p.verify.truePeakMarginDb <= 2)) bad('verify.truePeakMarginDb must be within 0..2');
  if (!(p.verify.headerGainFixMaxDb >= 0 && p.verify.headerGainFixMaxDb <= 3)) bad('verify.headerGainFixMaxDb must be within 0..3');
  if (!(Number.isInteger(p.verify.maxRetries) && p.verify.maxRetries >= 0 && p.verify.maxRetries <= 5)) bad('verify.maxRetries must be 0..5');
  return p;
}

/** JSON with object keys sorted at every level: the canonical form that is hashed. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** Stable id of a profile: `ap<version>-` + 16 hex of sha256(canonical JSON). */
export function profileIdOf(profile: ProcessingProfile): string {
  const h = createHash('sha256').update(canonicalJson({ pipeline: PIPELINE_VERSION, profile })).digest('hex');
  return `ap${PIPELINE_VERSION}-${h.slice(0, 16)}`;
}

/** Content address of a media item: sha256(`${inputSha256}:${profileId}`), hex. */
export function mediaKeyOf(inputSha256: string, profileId: string): string {
  return createHash('sha256').update(`${inputSha256}:${profileId}`).digest('hex');
}
