/**
 * Upload (or TTS output) → checked, loudness-normalised, distribution-ready media.
 *
 * probe → hash → analyse (decode check, loudness, silence) → plan gain → render Opus + MP3 (with
 * streamed verification of the decoded Opus) → when the decoded Opus misses (lossy coding moves
 * peaks by up to ~3–4 dB and loudness by tenths of a LU): a true-peak excess of up to 1 dB is
 * taken off with the OpusHead output gain (no re-encode) when loudness stays within ±0.9 LU;
 * otherwise plan again with more headroom and the aim corrected by what the codec did, and render
 * again → atomic rename into `outDir` under the content address. Every temp file made here is
 * removed on every failure path.
 *
 * Why global headroom and not a local repair: libopus is stateful (SILK/CELT prediction), so
 * changing the input at one spot reshuffles the overshoots everywhere after it; measured on 10 min
 * of speech, per-block ceiling cuts did not converge while a global step does in one retry.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { MediaError } from './errors.js';
import { findTrim, modelLoudness, planGainAsync, SAMPLE_RATE, type GainPlan } from './limiter.js';
import { analyseAudio, renderAudio, type RenderResult } from './normalize.js';
import { mediaKeyOf, profileIdOf, resolveProfile, type ProcessingProfile, type ProfileOverrides } from './profile.js';
import { setOpusOutputGain } from './ogg-opus.js';
import { probeAudio } from './probe.js';
import type { Lane, Supervisor } from './supervisor.js';

export type IngestStage = 'probe' | 'analyse' | 'encode' | 'done';

export interface IngestProgress {
  stage: IngestStage;
  /** Overall 0..100. */
  percent: number;
}

export interface IngestOptions {
  /** Processing profile (defaults: -16 LUFS, -1.5 dBTP, Opus 32k voip + MP3 64k). */
  profile?: ProcessingProfile | ProfileOverrides;
  /** Directory that receives `<mediaKey>.opus` and `<mediaKey>.mp3` (temp files are made here too). */
  outDir: string;
  supervisor: Supervisor;
  /** Refuse longer inputs (TOO_LONG). */
  maxDurationMs?: number;
  /** Refuse larger files (TOO_LARGE). */
  maxBytes?: number;
  /** Run on the urgent lane (emergency TTS). */
  urgent?: boolean;
  onProgress?: (p: IngestProgress) => void;
  /** Id of this ingest on the supervisor's progress bus (kind 'ingest'); default random. */
  jobId?: string;
  signal?: AbortSignal;
}

export interface IngestResult {
  /** sha256 of the input bytes, hex. */
  sha256: string;
  profileId: string;
  /** Content address: sha256(`${sha256}:${profileId}`). */
  mediaKey: string;
  /** Duration of the output (after trimming silence). */
  durationMs: number;
  input: {
    lufs: number;
    truePeakDb: number;
    lra: number;
    codec: string;
    formatName: string;
    sampleRate: number;
    channels: number;
    durationMs: number;
    sizeBytes: number;
  };
  /** Measured on the decoded Opus file. */
  output: { lufs: number; truePeakDb: number; lra: number };
  files: { opus: string; mp3: string };
  peaks: number[];
  processing: {
    gainDb: number;
    limiterMaxReductionDb: number;
    ceilingDbfs: number;
    /** OpusHead output gain set to trim a small codec true-peak overshoot (0 = none). */
    opusOutputGainDb: number;
    trimStartMs: number;
    trimEndMs: number;
    attempts: number;
  };
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

const round = (x: number, d = 2): number => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);

export async function ingestAudio(inputPath: string, opts: IngestOptions): Promise<IngestResult> {
  const profile = resolveProfile(opts.profile ?? {});
  const profileId = profileIdOf(profile);
  const lane: Lane = opts.urgent ? 'urgent' : 'normal';
  const { supervisor, signal } = opts;
  const jobId = opts.jobId ?? randomUUID();
  const tmpBase = join(opts.outDir, `.tmp-${randomUUID()}`);
  const tmp = { opus: `${tmpBase}.opus`, mp3: `${tmpBase}.mp3` };
  const finals: string[] = [];
  let lastPct = -1;
  const progress = (stage: IngestStage, percent: number): void => {
    const pct = Math.max(lastPct, Math.min(100, Math.round(percent)));
    if (pct === lastPct && stage !== 'done') return;
    lastPct = pct;
    opts.onProgress?.({ stage, percent: pct });
    supervisor.publish({ jobId, kind: 'ingest', percent: pct, state: stage === 'done' ? 'done' : 'running', lane });
  };

  try {
    progress('probe', 0);
    const hashP = sha256File(inputPath);
    hashP.catch(() => undefined);
    const probe = await probeAudio(inputPath, { supervisor, maxDurationMs: opts.maxDurationMs, maxBytes: opts.maxBytes, lane, signal });
    progress('analyse', 2);

    const an = await analyseAudio(inputPath, probe, {
      supervisor,
      lane,
      signal,
      maxDurationMs: opts.maxDurationMs,
      onProgress: (f) => progress('analyse', 2 + f * 28),
    });
    if (an.decodedSamples === 0) throw new MediaError('EMPTY', 'the file decodes to no audio at all');
    if (probe.durationMs !== null) {
      // Truncated MP3/AAC often probe fine (the Xing/moov header still states the full length).
      const missing = probe.durationMs - an.decodedMs;
      const slack = probe.durationEstimated ? Math.max(1000, probe.durationMs * 0.1) : Math.max(250, probe.durationMs * 0.02);
      if (missing > slack) {
        throw new MediaError('CORRUPT', `the file is truncated: it decodes to ${round(an.decodedMs / 1000, 1)} s of the ${round(probe.durationMs / 1000, 1)} s it declares`, {
          details: { declaredMs: probe.durationMs, decodedMs: Math.round(an.decodedMs) },
        });
      }
    }
    if (an.envelope.maxAbs === 0) throw new MediaError('SILENT', 'the recording is pure digital silence');
    const inputLufs = an.input.integratedLufs;
    // BS.1770 gating needs 400 ms; below that the meter falls back to the plain mean.
    const neededGain = profile.targetLufs - inputLufs;
    if (inputLufs <= -70 || neededGain > profile.maxGainDb) {
      throw new MediaError(
        'GAIN_TOO_HIGH',
        `the recording is too quiet (${round(inputLufs, 1)} LUFS): reaching ${profile.targetLufs} LUFS would need +${round(neededGain, 1)} dB, more than the allowed +${profile.maxGainDb} dB`,
        { details: { inputLufs, neededGainDb: neededGain, maxGainDb: profile.maxGainDb } },
      );
    }
    const range = profile.trim.enabled ? findTrim(an.envelope, profile.trim.thresholdDbfs) : { startSample: 0, endSample: an.envelope.samples };
    if (range === null || range.endSample <= range.startSample) {
      throw new MediaError('SILENT', `nothing in the recording rises above ${profile.trim.thresholdDbfs} dBFS`);
    }
    if (modelLoudness(an.envelope, range) <= -70) {
      throw new MediaError('GAIN_TOO_HIGH', 'the recording is too quiet to normalise');
    }

    const sha256 = await hashP;
    const mediaKey = mediaKeyOf(sha256, profileId);

    // Plan, render, verify; on a miss, repair where the codec overshot and correct the aim.
    const tpLimit = profile.truePeakDbtp - profile.verify.truePeakMarginDb;
    let aim = profile.targetLufs + profile.opus.expectedLossLu;
    let headroom = profile.codecHeadroomDb;
    let attempts = 0;
    let plan: GainPlan;
    let render: RenderResult;
    let output: IngestResult['output'] | undefined;
    let outputGainDb = 0;
    for (;;) {
      attempts++;
      plan = await planGainAsync(an.envelope, range, aim, {
        ceilingDbfs: profile.truePeakDbtp - headroom,
        maxGainDb: profile.maxGainDb,
        attackMs: profile.limiter.attackMs,
        releaseMs: profile.limiter.releaseMs,
      });
      const span = 68 / (profile.verify.maxRetries + 1);
      const base = 30 + (attempts - 1) * span;
      render = await renderAudio(inputPath, probe, plan, profile, { opusPath: tmp.opus, mp3Path: tmp.mp3 }, {
        supervisor,
        lane,
        signal,
        onProgress: (f) => progress('encode', base + f * span),
      });
      const out = render.opus;
      const lufsMiss = out.integratedLufs - profile.targetLufs;
      const tpExcess = out.truePeakDbtp - tpLimit;
      supervisor.log.debug(
        { jobId, attempts, gainDb: plan.gainDb, maxReductionDb: plan.maxReductionDb, headroom, aim, predicted: plan.predictedLufs, out },
        'ingest verify',
      );
      if (Math.abs(lufsMiss) <= profile.verify.toleranceLu && tpExcess <= 0) {
        output = { lufs: out.integratedLufs, truePeakDb: out.truePeakDbtp, lra: out.lra };
        break;
      }
      // Small true-peak excess: lower the Opus output gain (RFC 7845 §5.1) instead of re-encoding,
      // as long as the loudness stays within the spec's ±1 LU (0.1 LU kept in reserve).
      if (tpExcess > 0 && tpExcess <= profile.verify.headerGainFixMaxDb) {
        const want = -(tpExcess + 0.05);
        if (Math.abs(out.integratedLufs + want - profile.targetLufs) <= 0.9) {
          const stored = await setOpusOutputGain(tmp.opus, want);
          outputGainDb = stored;
          output = { lufs: out.integratedLufs + stored, truePeakDb: out.truePeakDbtp + stored, lra: out.lra };
          break;
        }
      }
      if (attempts > profile.verify.maxRetries) {
        // Out of retries: still inside the specification (±1 LU, under the true-peak limit)?
        if (tpExcess <= 0 && Math.abs(lufsMiss) <= 0.9) {
          supervisor.log.warn({ jobId, attempts, out }, 'ingest: output within spec but outside the verify tolerance');
          output = { lufs: out.integratedLufs, truePeakDb: out.truePeakDbtp, lra: out.lra };
          break;
        }
        throw new MediaError('OUTPUT_OUT_OF_SPEC', `normalised output missed the target after ${attempts} attempts: ${round(out.integratedLufs, 1)} LUFS, ${round(out.truePeakDbtp, 1)} dBTP`, {
          details: { output: out, targetLufs: profile.targetLufs, truePeakDbtp: profile.truePeakDbtp },
        });
      }
      // More headroom for a codec overshoot, within reason: an isolated codec glitch is not fixed
      // by crushing the whole programme.
      if (tpExcess > 0) headroom = Math.min(profile.codecHeadroomDb + 3, headroom + tpExcess + 0.3);
      // The codec shifts loudness by a few tenths of a LU: aim off by what it did last time.
      aim = profile.targetLufs - (out.integratedLufs - plan.predictedLufs);
      aim = Math.max(profile.targetLufs - 2, Math.min(profile.targetLufs + 2, aim));
    }

    const files = { opus: join(opts.outDir, `${mediaKey}.opus`), mp3: join(opts.outDir, `${mediaKey}.mp3`) };
    // Atomic publish: rename within one directory. Same key = same content; overwriting is fine.
    for (const kind of ['opus', 'mp3'] as const) {
      const existed = await stat(files[kind]).then(
        () => true,
        () => false,
      );
      await rename(tmp[kind], files[kind]);
      if (!existed) finals.push(files[kind]);
    }
    progress('done', 100);
    return {
      sha256,
      profileId,
      mediaKey,
      durationMs: Math.round((render.outputSamples / SAMPLE_RATE) * 1000),
      input: {
        lufs: round(inputLufs, 2),
        truePeakDb: round(an.input.truePeakDbtp, 2),
        lra: round(an.input.lra, 2),
        codec: probe.codec,
        formatName: probe.formatName,
        sampleRate: probe.sampleRate,
        channels: probe.channels,
        durationMs: Math.round(an.decodedMs),
        sizeBytes: probe.sizeBytes,
      },
      output: { lufs: round(output.lufs, 2), truePeakDb: round(output.truePeakDb, 2), lra: round(output.lra, 2) },
      files,
      peaks: render.peaks,
      processing: {
        gainDb: round(plan.gainDb, 2),
        limiterMaxReductionDb: round(plan.maxReductionDb, 2),
        ceilingDbfs: round(plan.ceilingDbfs, 2),
        opusOutputGainDb: outputGainDb,
        trimStartMs: Math.round((range.startSample / SAMPLE_RATE) * 1000),
        trimEndMs: Math.round((range.endSample / SAMPLE_RATE) * 1000),
        attempts,
      },
    };
  } catch (err) {
    await Promise.all([...Object.values(tmp), ...finals].map((p) => rm(p, { force: true }).catch(() => undefined)));
    supervisor.publish({ jobId, kind: 'ingest', percent: null, state: signal?.aborted ? 'cancelled' : 'failed', lane });
    throw err;
  }
}
