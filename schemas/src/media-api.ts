import { z } from 'zod';
import { EpochMs } from './envelope.js';

export const MediaFormat = z.enum(['opus', 'mp3']);
export type MediaFormat = z.infer<typeof MediaFormat>;

const FileInfo = z.object({ sha256: z.string(), sizeBytes: z.number().int(), mime: z.string(), url: z.string() });

/** A media library item: measured before/after loudness, distribution files, who uploaded it, when. */
export const Media = z.object({
  id: z.string(),
  communeId: z.string(),
  kind: z.enum(['upload', 'tts']),
  title: z.string(),
  originalName: z.string().nullable(),
  durationMs: z.number().int(),
  /** sha256 of the uploaded bytes (identity, with the processing profile). */
  sha256: z.string(),
  mediaKey: z.string(),
  profileId: z.string(),
  input: z.object({
    lufs: z.number(), truePeakDb: z.number(), lra: z.number(), codec: z.string(), formatName: z.string(),
    sampleRate: z.number(), channels: z.number(), durationMs: z.number(), sizeBytes: z.number(),
  }),
  output: z.object({ lufs: z.number(), truePeakDb: z.number(), lra: z.number() }),
  processing: z.record(z.string(), z.unknown()),
  formats: z.object({ opus: FileInfo, mp3: FileInfo }),
  text: z.string().nullable(),
  normalizedText: z.string().nullable(),
  voice: z.string().nullable(),
  uploadedBy: z.string(),
  createdAt: EpochMs,
});
export type Media = z.infer<typeof Media>;

export const MediaUploadReply = Media.extend({
  /** True when an identical upload (same bytes, same processing profile) already existed. */
  duplicate: z.boolean(),
});

export const MediaListQuery = z.object({
  q: z.string().max(200).optional(),
  kind: z.enum(['upload', 'tts']).optional(),
  offset: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

export const TtsRequest = z.object({
  text: z.string().trim().min(1, 'text must not be empty').max(20_000),
  voice: z.string().max(64).optional(),
  title: z.string().trim().min(1).max(200).optional(),
});

export const MediaPeaks = z.object({ id: z.string(), durationMs: z.number().int(), peaks: z.array(z.number()) });
