/**
 * From the reader's streams and the feeder's log to the bench figures.
 *
 * Mouth time of source click j: the feeder wrote frame f (samples [f·F, (f+1)·F)) at true time t_w(f)
 * as a microphone delivers a frame once its last sample is captured, so sample i was "spoken" at
 * t_w(f) − ((f+1)·F − i)/48 ms.
 * Sink time of a sample: per stream, (arrival true time, index of the chunk's first sample) pairs are
 * fitted by least squares over ±1 s around the click (the sample clock is smooth, single arrival stamps
 * are not), and the fit is read at the click's sample index: when that sample left, for a writer that
 * hands over each chunk when its first sample is due (reader.ts).
 */
import { summary } from '../lib.js';
import { CLICK_PERIOD_MS, RATE } from './signal.js';
import type { StreamResult } from './reader.js';

export interface SourceClick { idx: number; tIn: number }

export interface RunFigures {
  streams: number;
  latency: ReturnType<typeof summary>;
  skew: ReturnType<typeof summary>;
  clicksExpected: number;
  clicksFound: number;
  gaps: number;
  gapMs: number;
  /**
   * Gap events at the same track position (±20 ms) in at least half of the sinks (and ≥ 2): they were in
   * the stream before it reached the agents (source late, sender padding), not made by an agent.
   */
  commonGapEvents: number;
  /** Gaps not part of a common event: made at one agent (loss not concealed, late frames, sink stall). */
  ownGaps: number;
}

/** Least-squares t = a + b·E over arrivals with E in [k − w, k + w], read at k. */
export function sinkTime(arr: [number, number][], k: number, w = RATE): number {
  let n = 0; let se = 0; let st = 0; let see = 0; let set = 0;
  for (const [t, e] of arr) {
    if (e < k - w || e > k + w) continue;
    const x = e - k;
    n++; se += x; st += t; see += x * x; set += x * t;
  }
  if (n < 3) return NaN;
  const b = (n * set - se * st) / (n * see - se * se);
  const a = (st - b * se) / n;
  return a; // at x = 0, i.e. E = k
}

export function analyseRun(source: SourceClick[], streams: StreamResult[]): RunFigures {
  const period = (CLICK_PERIOD_MS * RATE) / 1000;
  const lat: number[] = [];
  const outByClick = new Map<number, number[]>();
  let found = 0;
  let expected = 0;
  let gaps = 0;
  let gapMs = 0;
  const gapPos: { stream: number; at: number }[] = [];
  for (const [si, s] of streams.entries()) {
    expected += source.length;
    if (s.clicks.length === 0) continue;
    const k0 = s.clicks[0]!;
    for (const k of s.clicks) {
      const j = Math.round((k - k0) / period);
      const src = source[j];
      if (!src) continue;
      const tOut = sinkTime(s.arrivals, k);
      if (!Number.isFinite(tOut)) continue;
      found++;
      lat.push(tOut - src.tIn);
      const l = outByClick.get(j) ?? [];
      l.push(tOut);
      outByClick.set(j, l);
    }
    // Track position of each gap: the first click found is source click 0 (as above).
    const shift = k0 - (source[0]?.idx ?? 0);
    for (const g of s.gaps) gapPos.push({ stream: si, at: g[0] - shift });
    gaps += s.gaps.length;
    gapMs += s.gaps.reduce((a, g) => a + (g[1] * 1000) / RATE, 0);
  }
  const skew: number[] = [];
  for (const l of outByClick.values()) if (l.length >= 2) skew.push(Math.max(...l) - Math.min(...l));
  gapPos.sort((a, b) => a.at - b.at);
  const tol = 0.02 * RATE;
  const need = Math.max(2, Math.ceil(streams.length / 2));
  let commonGapEvents = 0;
  let inCommon = 0;
  for (let i = 0; i < gapPos.length;) {
    let j = i;
    while (j + 1 < gapPos.length && gapPos[j + 1]!.at - gapPos[i]!.at <= tol) j++;
    const sinks = new Set(gapPos.slice(i, j + 1).map((g) => g.stream)).size;
    if (sinks >= need) { commonGapEvents++; inCommon += j + 1 - i; }
    i = j + 1;
  }
  return { streams: streams.length, latency: summary(lat), skew: summary(skew), clicksExpected: expected, clicksFound: found, gaps, gapMs, commonGapEvents, ownGaps: gaps - inCommon };
}
