/**
 * Waveform peaks for the console: `buckets` values of max |sample| in 0..1, computed from the
 * decoded PCM while it streams (the render pass feeds it the final, normalised samples).
 */
export class PeaksBuilder {
  private readonly out: Float32Array;
  private pos = 0;
  private bucket = 0;
  private nextBoundary: number;
  private cur = 0;

  /** @param totalSamples samples that will be pushed (needed up front to size the buckets) */
  constructor(
    private readonly totalSamples: number,
    private readonly buckets = 800,
  ) {
    const n = Math.max(1, Math.min(buckets, totalSamples));
    this.buckets = n;
    this.out = new Float32Array(n);
    this.nextBoundary = this.boundary(1);
  }

  private boundary(i: number): number {
    return Math.floor((i * this.totalSamples) / this.buckets);
  }

  push(x: Float32Array): void {
    let { pos, bucket, nextBoundary, cur } = this;
    for (let i = 0; i < x.length; i++, pos++) {
      while (pos >= nextBoundary && bucket < this.buckets - 1) {
        this.out[bucket] = cur;
        cur = 0;
        bucket++;
        nextBoundary = this.boundary(bucket + 1);
      }
      const v = x[i]!;
      const a = v < 0 ? -v : v;
      if (a > cur) cur = a;
    }
    Object.assign(this, { pos, bucket, nextBoundary, cur });
  }

  /** Values rounded to 3 decimals, clamped to 0..1. */
  finish(): number[] {
    this.out[this.bucket] = Math.max(this.out[this.bucket] ?? 0, this.cur);
    return Array.from(this.out, (v) => Math.round(Math.min(1, Math.max(0, v)) * 1000) / 1000);
  }
}

/** Peaks of a whole buffer at once (tests, TTS previews). */
export function computePeaks(samples: Float32Array, buckets = 800): number[] {
  const b = new PeaksBuilder(samples.length, buckets);
  b.push(samples);
  return b.finish();
}
