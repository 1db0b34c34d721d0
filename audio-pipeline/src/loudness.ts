/**
 * Loudness per EBU R128 / ITU-R BS.1770-4.
 *
 * Two halves:
 * - the official measurement: ffmpeg's `ebur128=peak=true` filter, whose summary we parse
 *   (integrated loudness, loudness range, sample and true peak);
 * - a model in JS (K-weighting + 400 ms gating blocks) that lets the normaliser predict, before
 *   encoding, the integrated loudness of the signal after gain and peak limiting (limiter.ts).
 */
import { MediaError } from './errors.js';
import type { Lane, Supervisor } from './supervisor.js';
import { lastLines } from './supervisor.js';

export interface LoudnessSummary {
  /** Integrated loudness, LUFS; -70 when nothing passes the absolute gate. */
  integratedLufs: number;
  /** Loudness range, LU. */
  lra: number;
  /** Maximum true peak, dBTP (-Infinity for digital silence); null when not measured. */
  truePeakDbtp: number | null;
  /** Maximum sample peak, dBFS; null when not measured. */
  samplePeakDbfs: number | null;
}

function parseDb(s: string): number {
  const t = s.trim().toLowerCase();
  if (t === '-inf') return -Infinity;
  if (t === 'inf' || t === '+inf') return Infinity;
  return Number(t);
}

/**
 * Parse the "Summary:" block ffmpeg's ebur128 filter logs at the end of a run (at info level).
 * Returns null when no summary is present.
 */
export function parseEbur128Summary(stderr: string): LoudnessSummary | null {
  const at = stderr.lastIndexOf('Summary:');
  if (at < 0) return null;
  const text = stderr.slice(at);
  const integrated = /Integrated loudness:\s*\n\s*I:\s*(-?inf|[-+]?\d+(?:\.\d+)?)\s*LUFS/i.exec(text);
  const lra = /Loudness range:\s*\n\s*LRA:\s*([-+]?\d+(?:\.\d+)?)\s*LU/i.exec(text);
  const sample = /Sample peak:\s*\n\s*Peak:\s*(-?inf|[-+]?\d+(?:\.\d+)?)\s*dBFS/i.exec(text);
  const truePk = /True peak:\s*\n\s*Peak:\s*(-?inf|[-+]?\d+(?:\.\d+)?)\s*dBFS/i.exec(text);
  if (!integrated?.[1]) return null;
  return {
    integratedLufs: parseDb(integrated[1]),
    lra: lra?.[1] ? Number(lra[1]) : 0,
    samplePeakDbfs: sample?.[1] ? parseDb(sample[1]) : null,
    truePeakDbtp: truePk?.[1] ? parseDb(truePk[1]) : null,
  };
}

/** The ebur128 filter string used everywhere (per-frame lines at verbose so they stay out of the log). */
export const EBUR128_FILTER = 'ebur128=peak=sample+true:framelog=verbose';

/**
 * Measure a file as it is (all channels, its own rate) with ffmpeg's ebur128.
 * Used to verify our own output; an upload is measured during analysis instead.
 */
export async function measureLoudness(
  path: string,
  opts: { supervisor: Supervisor; lane?: Lane; signal?: AbortSignal; durationMs?: number; kind?: string },
): Promise<LoudnessSummary> {
  const res = await opts.supervisor.run({
    kind: opts.kind ?? 'measure',
    command: 'ffmpeg',
    args: ['-hide_banner', '-nostdin', '-nostats', '-v', 'info', '-progress', 'pipe:3', '-i', path, '-map', '0:a:0', '-af', EBUR128_FILTER, '-f', 'null', '-'],
    progressFd: true,
    durationMs: opts.durationMs,
    lane: opts.lane,
    signal: opts.signal,
  });
  const summary = parseEbur128Summary(res.stderr);
  if (res.exitCode !== 0 || !summary) {
    throw new MediaError('PROCESS_FAILED', `loudness measurement failed: ${lastLines(res.stderr, 3)}`, { details: { exitCode: res.exitCode } });
  }
  return summary;
}

// --- BS.1770-4 model ---------------------------------------------------------------------------

/**
 * K-weighting pre-filter at 48 kHz: high-shelf (stage 1) then RLB high-pass (stage 2),
 * coefficients from ITU-R BS.1770-4 Annex 1, Tables 1 and 2.
 */
export class KWeighting48k {
  // stage 1 state
  private x1 = 0;
  private x2 = 0;
  private y1 = 0;
  private y2 = 0;
  // stage 2 state
  private u1 = 0;
  private u2 = 0;
  private z1 = 0;
  private z2 = 0;

  /** Filter `input` into `out` (same length); `out` may be `input`. */
  process(input: Float32Array, out: Float32Array): void {
    const b0 = 1.53512485958697;
    const b1 = -2.69169618940638;
    const b2 = 1.19839281085285;
    const a1 = -1.69065929318241;
    const a2 = 0.73248077421585;
    const c1 = -1.99004745483398;
    const c2 = 0.99007225036621;
    let { x1, x2, y1, y2, u1, u2, z1, z2 } = this;
    for (let i = 0; i < input.length; i++) {
      const x = input[i]!;
      const y = b0 * x + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
      x2 = x1;
      x1 = x;
      y2 = y1;
      y1 = y;
      // stage 2: b = [1, -2, 1]
      const z = y - 2 * u1 + u2 - c1 * z1 - c2 * z2;
      u2 = u1;
      u1 = y;
      z2 = z1;
      z1 = z;
      out[i] = z;
    }
    Object.assign(this, { x1, x2, y1, y2, u1, u2, z1, z2 });
  }
}

/** LUFS of a mean square (mono, channel weight 1): BS.1770-4 eq. (2). */
export function lufsOfMeanSquare(ms: number): number {
  return ms > 0 ? -0.691 + 10 * Math.log10(ms) : -Infinity;
}

/**
 * Gated integrated loudness (BS.1770-4 §5.1 / EBU Tech 3341) over 400 ms blocks with 75 % overlap,
 * given the mean square of each gating block. Absolute gate -70 LUFS, relative gate -10 LU.
 * Returns -70 when no block passes the absolute gate (ffmpeg prints the same).
 */
export function gatedLoudness(blockMeanSquares: ArrayLike<number>): number {
  const absGate = 10 ** ((-70 + 0.691) / 10);
  let sum = 0;
  let n = 0;
  for (let i = 0; i < blockMeanSquares.length; i++) {
    const z = blockMeanSquares[i]!;
    if (z > absGate) {
      sum += z;
      n++;
    }
  }
  if (n === 0) return -70;
  const relGate = (sum / n) * 10 ** (-10 / 10);
  let sum2 = 0;
  let n2 = 0;
  for (let i = 0; i < blockMeanSquares.length; i++) {
    const z = blockMeanSquares[i]!;
    if (z > absGate && z > relGate) {
      sum2 += z;
      n2++;
    }
  }
  return n2 === 0 ? -70 : lufsOfMeanSquare(sum2 / n2);
}

export const dbToLin = (db: number): number => 10 ** (db / 20);
export const linToDb = (lin: number): number => (lin > 0 ? 20 * Math.log10(lin) : -Infinity);
