/**
 * The two passes of loudness normalisation (EBU R128 two-pass: measure, then apply).
 *
 * analyseAudio — one ffmpeg decode of the input to 48 kHz mono float, streamed into Node, where
 *   PcmMeter (meter.ts) measures it (BS.1770-4 loudness, LRA, true peak) and keeps the 1 ms
 *   envelope the limiter is planned on; the sample count exposes truncation and excess length.
 *   `-xerror` makes any decode error fatal (CORRUPT).
 * renderAudio — one slot, four processes: ffmpeg decodes again → Node applies the planned gain
 *   curve and computes the waveform peaks → libopus and libmp3lame encode in parallel (one core
 *   each; ffmpeg 5.1 encodes the outputs of one process one after the other) → the Ogg/Opus bytes
 *   are teed to the file and to a second ffmpeg that decodes them back, so the output is measured
 *   (loudness, true peak, per-block peaks for the repair loop) while it is being written.
 *
 * ffmpeg's own ebur128 (loudness.ts `measureLoudness`) stays the reference the tests hold this
 * meter to; it is not in the hot path because its true-peak mode resamples everything to 192 kHz.
 */
import { createWriteStream } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { MediaError, isMediaError } from './errors.js';
import { GainApplier, type GainPlan } from './limiter.js';
import { PcmMeter, SAMPLE_RATE, summarize, type Envelope, type MeterSummary } from './meter.js';
import { PeaksBuilder } from './peaks.js';
import type { ProcessingProfile } from './profile.js';
import { fmtDuration, type ProbeResult } from './probe.js';
import type { Lane, ProcessHandle, ProcessResult, Supervisor } from './supervisor.js';
import { lastLines } from './supervisor.js';

/** Filter chain that turns any input into the 48 kHz mono float stream both passes see. */
const TO_48K_MONO = `aresample=${SAMPLE_RATE},aformat=channel_layouts=mono`;

export interface AnalyseResult {
  /** Loudness of the input, after the mono downmix the output is made from. */
  input: MeterSummary;
  envelope: Envelope;
  decodedSamples: number;
  decodedMs: number;
}

export interface PassOptions {
  supervisor: Supervisor;
  lane?: Lane;
  signal?: AbortSignal;
  /** 0..1 within this pass. */
  onProgress?: (fraction: number) => void;
}

/** Reassembles 32-bit float samples from byte chunks of any size/alignment. */
export class F32Reader {
  private carry = Buffer.alloc(0);
  read(chunk: Buffer): Float32Array {
    let buf = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    const usable = buf.length - (buf.length % 4);
    this.carry = Buffer.from(buf.subarray(usable));
    buf = buf.subarray(0, usable);
    // Own, aligned copy: the applier scales in place and the bytes go on to other pipes.
    const out = new Float32Array(usable / 4);
    new Uint8Array(out.buffer).set(buf);
    return out;
  }
}

export async function analyseAudio(path: string, probe: ProbeResult, opts: PassOptions & { maxDurationMs?: number }): Promise<AnalyseResult> {
  const expected = probe.durationMs !== null ? Math.ceil((probe.durationMs / 1000) * SAMPLE_RATE) : SAMPLE_RATE * 60;
  const maxSamples = opts.maxDurationMs !== undefined ? Math.ceil((opts.maxDurationMs / 1000) * SAMPLE_RATE) : Infinity;
  const env = new PcmMeter({ expectedSamples: expected });
  const reader = new F32Reader();

  return opts.supervisor.withSlot({ lane: opts.lane, signal: opts.signal }, async (slot) => {
    // Any decode error is fatal (CORRUPT) — except for AMR: phone recorders write DTX/SID and
    // NO_DATA frames that ffmpeg 5.1's amrnb/amrwb decoders reject ("dtx mode is not implemented")
    // although the file is fine; there truncation is still caught by the duration check.
    const strict = !probe.codec.startsWith('amr');
    const dec = slot.spawn({
      kind: 'analyse',
      command: 'ffmpeg',
      args: [
        '-hide_banner', '-nostdin', '-nostats', '-v', 'error', ...(strict ? ['-xerror'] : []),
        '-i', path,
        '-map', `0:${probe.streamIndex}`,
        '-af', `${TO_48K_MONO},aformat=sample_fmts=flt`,
        '-f', 'f32le', 'pipe:1',
      ],
      stdout: 'stream',
      signal: opts.signal,
    });
    let tooLong = false;
    let lastReport = -1;
    try {
      for await (const chunk of dec.stdout as Readable) {
        env.push(reader.read(chunk as Buffer));
        if (env.sampleCount > maxSamples) {
          tooLong = true;
          dec.kill(0);
          break;
        }
        if (opts.onProgress && expected > 0) {
          const f = Math.min(1, env.sampleCount / expected);
          if (f - lastReport >= 0.01) {
            lastReport = f;
            opts.onProgress(f);
          }
        }
      }
    } catch (err) {
      // The stream errors when the process is killed: its `done` rejection (TIMEOUT, ABORTED,
      // STOPPED) says why; otherwise rethrow the stream error.
      if (!tooLong) {
        await dec.done;
        throw err;
      }
    }
    const res = await dec.done;
    if (tooLong) {
      throw new MediaError('TOO_LONG', `the audio is longer than the limit of ${fmtDuration(opts.maxDurationMs ?? 0)}`, {
        details: { maxDurationMs: opts.maxDurationMs },
      });
    }
    if (res.exitCode !== 0) {
      throw new MediaError('CORRUPT', `the audio cannot be decoded to the end: ${lastLines(res.stderr, 2)}`, {
        details: { exitCode: res.exitCode, stderr: lastLines(res.stderr, 10) },
      });
    }
    const envelope = env.finish();
    const input = summarize(envelope);
    const decodedMs = (envelope.samples / SAMPLE_RATE) * 1000;
    opts.onProgress?.(1);
    return { input, envelope, decodedSamples: envelope.samples, decodedMs };
  });
}

export interface RenderTargets {
  opusPath: string;
  mp3Path: string;
}

export interface RenderResult {
  peaks: number[];
  outputSamples: number;
  /** Measurement of the decoded Opus output. */
  opus: MeterSummary;
  /** Envelope of the decoded Opus output (block 0 = first output sample): where it peaks. */
  opusEnvelope: Envelope;
}

function opusArgs(p: ProcessingProfile): string[] {
  return [
    '-hide_banner', '-v', 'error', '-nostats',
    '-f', 'f32le', '-ar', String(SAMPLE_RATE), '-ac', '1', '-i', 'pipe:0',
    '-map_metadata', '-1', '-fflags', '+bitexact', '-flags:a', '+bitexact',
    '-c:a', 'libopus', '-b:a', `${p.opus.bitrateKbps}k`, '-vbr', p.opus.vbr, '-application', p.opus.application,
    '-compression_level', String(p.opus.complexity), '-frame_duration', String(p.opus.frameMs),
    '-f', 'ogg', 'pipe:1',
  ];
}

function mp3Args(p: ProcessingProfile, out: string): string[] {
  return [
    '-hide_banner', '-v', 'error', '-nostats', '-y',
    '-f', 'f32le', '-ar', String(SAMPLE_RATE), '-ac', '1', '-i', 'pipe:0',
    '-map_metadata', '-1', '-fflags', '+bitexact', '-flags:a', '+bitexact',
    ...(p.mp3.sampleRate !== SAMPLE_RATE ? ['-ar', String(p.mp3.sampleRate)] : []),
    '-c:a', 'libmp3lame', '-b:a', `${p.mp3.bitrateKbps}k`, '-compression_level', String(p.mp3.quality),
    '-id3v2_version', '0', '-write_id3v1', '0',
    '-f', 'mp3', out,
  ];
}

/** Resolves when `w` can take more data, or has gone away (its process's exit tells the story). */
function writable(w: Writable): Promise<void> {
  if (!w.writableNeedDrain || w.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      w.off('drain', done);
      w.off('close', done);
      w.off('error', done);
      resolve();
    };
    w.on('drain', done);
    w.on('close', done);
    w.on('error', done);
  });
}

export async function renderAudio(path: string, probe: ProbeResult, plan: GainPlan, profile: ProcessingProfile, targets: RenderTargets, opts: PassOptions): Promise<RenderResult> {
  const total = plan.range.endSample - plan.range.startSample;
  const durationMs = (total / SAMPLE_RATE) * 1000;
  return opts.supervisor.withSlot({ lane: opts.lane, signal: opts.signal }, async (slot) => {
    const procs: { name: string; h: ProcessHandle }[] = [];
    let failure: unknown = null;
    const fail = (err: unknown): void => {
      if (failure !== null) return;
      failure = err;
      for (const p of procs) p.h.kill(0);
    };
    const watch = (name: string, h: ProcessHandle): Promise<ProcessResult | null> => {
      procs.push({ name, h });
      return h.done.then(
        (r) => {
          if (r.exitCode !== 0) {
            fail(new MediaError('PROCESS_FAILED', `${name} failed (exit ${r.exitCode ?? r.signal}): ${lastLines(r.stderr, 3)}`, {
              details: { stderr: lastLines(r.stderr, 12) },
            }));
          }
          return r;
        },
        (err: unknown) => {
          fail(err);
          return null;
        },
      );
    };

    const dec = slot.spawn({
      kind: 'render-decode',
      command: 'ffmpeg',
      args: ['-hide_banner', '-nostdin', '-nostats', '-v', 'error', '-i', path, '-map', `0:${probe.streamIndex}`, '-af', `${TO_48K_MONO},aformat=sample_fmts=flt`, '-f', 'f32le', 'pipe:1'],
      stdout: 'stream',
      signal: opts.signal,
    });
    const opus = slot.spawn({ kind: 'encode-opus', command: 'ffmpeg', args: opusArgs(profile), stdin: 'pipe', stdout: 'stream', signal: opts.signal });
    const mp3 = slot.spawn({ kind: 'encode-mp3', command: 'ffmpeg', args: mp3Args(profile, targets.mp3Path), stdin: 'pipe', signal: opts.signal });
    const ver = slot.spawn({
      kind: 'verify',
      command: 'ffmpeg',
      args: ['-hide_banner', '-nostats', '-v', 'error', '-f', 'ogg', '-i', 'pipe:0', '-f', 'f32le', '-ac', '1', '-ar', String(SAMPLE_RATE), 'pipe:1'],
      stdin: 'pipe',
      stdout: 'stream',
      signal: opts.signal,
    });
    const decDone = watch('decoder', dec);
    const opusDone = watch('opus encoder', opus);
    const mp3Done = watch('mp3 encoder', mp3);
    const verDone = watch('verifier', ver);

    // Tee Ogg/Opus bytes: file + verifier. The verifier's stdin may close early only on failure.
    const opusFile = createWriteStream(targets.opusPath);
    const opusOut = opus.stdout as Readable;
    const verIn = ver.stdin as Writable;
    const tee = (async () => {
      for await (const chunk of opusOut) {
        const okFile = opusFile.write(chunk);
        const okVer = verIn.destroyed ? true : verIn.write(chunk);
        if (!okFile) await writable(opusFile);
        if (!okVer) await writable(verIn);
      }
      verIn.end();
      opusFile.end();
      await finished(opusFile);
    })().catch(fail);

    // Measure the decoded output as it comes back.
    // True peak is interpolated where it can matter: near the running max, or within 2 dB of the limit.
    const outMeter = new PcmMeter({ expectedSamples: total, hotBelowDb: 0.5, hotAbove: 10 ** ((profile.truePeakDbtp - 2) / 20) });
    const verReader = new F32Reader();
    const measure = (async () => {
      for await (const chunk of ver.stdout as Readable) outMeter.push(verReader.read(chunk as Buffer));
    })().catch(fail);

    const applier = new GainApplier(plan);
    const peaks = new PeaksBuilder(total, profile.peaksBuckets);
    const reader = new F32Reader();
    const opusIn = opus.stdin as Writable;
    const mp3In = mp3.stdin as Writable;
    let written = 0;
    let lastReport = -1;
    const pump = (async () => {
      for await (const chunk of dec.stdout as Readable) {
        if (failure !== null) break;
        const out = applier.apply(reader.read(chunk as Buffer));
        if (out.length === 0) continue;
        peaks.push(out);
        written += out.length;
        const bytes = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
        const a = opusIn.write(bytes);
        const b = mp3In.write(bytes);
        if (!a) await writable(opusIn);
        if (!b) await writable(mp3In);
        if (opts.onProgress) {
          const f = Math.min(1, written / total);
          if (f - lastReport >= 0.01) {
            lastReport = f;
            opts.onProgress(f);
          }
        }
      }
      opusIn.end();
      mp3In.end();
    })().catch(fail);

    await Promise.all([pump, tee, measure, decDone, opusDone, mp3Done, verDone]);
    if (failure !== null) {
      // Prefer the process that actually failed over peers we killed because of it.
      throw failure;
    }
    if (written !== total) {
      throw new MediaError('PROCESS_FAILED', `render wrote ${written} samples, expected ${total}`, { details: { written, total, durationMs } });
    }
    const opusEnvelope = outMeter.finish();
    if (Math.abs(opusEnvelope.samples - written) > SAMPLE_RATE / 10) {
      throw new MediaError('PROCESS_FAILED', `the Opus output decodes to ${opusEnvelope.samples} samples, expected ${written}`);
    }
    opts.onProgress?.(1);
    return { peaks: peaks.finish(), outputSamples: written, opus: summarize(opusEnvelope), opusEnvelope };
  }).catch((err: unknown) => {
    throw isMediaError(err) ? err : new MediaError('PROCESS_FAILED', `render failed: ${(err as Error).message}`, { cause: err });
  });
}
