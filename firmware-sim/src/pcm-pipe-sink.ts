import type { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { Clock } from '../../edge-agent/src/clock.js';
import type { AudioSink, PcmSource, SinkStats } from '../../edge-agent/src/hardware.js';
import { SAMPLE_RATE } from '../../edge-agent/src/hardware.js';
import { isSimClock, trueClock as defaultTrueClock } from './sim-clock.js';
import { createFramePacer, createTicker, type FramePacer, type Ticker } from './virtual-dac.js';
import { encodeS16le } from './wav.js';

/*
 * A paced raw-PCM sink: 48 kHz s16le mono written to a stream (file, pipe, stdout) in real time by the
 * agent's own clock, like snapclient's file player (`--player file`). A separate reader process timestamps
 * the bytes as they arrive, so the live-latency bench measures our agents and Snapcast the same way.
 *
 * Timing: frame 0 is due at start(); frame k is due at start + k / (sampleRate · rate) in true time
 * (rate = the clock's rate against true time, 1 for the machine clock). A block is pulled and written as
 * soon as its FIRST frame is due, and the `presentationTime` handed to the source is the clock's reading
 * at that moment — "out[0] leaves the agent now". There is no device buffer behind the pipe, so there
 * is no extra output latency to add; the reader sees each block at most one tick after it was due.
 */

export interface PcmPipeSinkOptions {
  output: Writable;
  /** The agent's clock: it paces the output and presentation times are on it. */
  clock: Clock;
  /** Source of true time; default the SimClock's base, else the machine clock. */
  trueClock?: Clock;
  sampleRate?: number;
  /** Frames per write; default 240 (5 ms), finer than the DAC so the reader's stamps are tighter. */
  periodFrames?: number;
  /** Behind more than this → write silence up to now instead of pulling the backlog; default 500 ms. */
  maxCatchUpMs?: number;
  /** End the stream on stop(); default false (stdout must stay open). */
  endOnStop?: boolean;
  ticker?: Ticker;
  log?: Logger;
}

export interface PcmPipeSinkStats extends SinkStats {
  /** write() calls that returned false: the reader is not keeping up. */
  backpressured: number;
  skippedFrames: number;
  bytesWritten: number;
}

export interface PcmPipeSink extends AudioSink {
  stats(): PcmPipeSinkStats;
}

export function createPcmPipeSink(o: PcmPipeSinkOptions): PcmPipeSink {
  const sampleRate = o.sampleRate ?? SAMPLE_RATE;
  const periodFrames = o.periodFrames ?? Math.round(sampleRate / 200);
  const tc = o.trueClock ?? (isSimClock(o.clock) ? o.clock.base : defaultTrueClock);
  const log = o.log ?? pino({ level: 'silent' });
  const maxCatchUpFrames = ((o.maxCatchUpMs ?? 500) * sampleRate) / 1000;
  const ownTicker = !o.ticker;
  const ticker = o.ticker ?? createTicker((periodFrames * 1000) / sampleRate);
  const buf = new Float32Array(periodFrames);
  const out = o.output;

  let pacer: FramePacer | null = null;
  let source: PcmSource | null = null;
  let unsubscribe: (() => void) | null = null;
  let framesWritten = 0;
  let underruns = 0;
  let underrunFrames = 0;
  let backpressured = 0;
  let skippedFrames = 0;
  let bytesWritten = 0;
  let failed = false;

  const onError = (err: Error): void => {
    // EPIPE when the reader exits: stop quietly instead of crashing the agent.
    if (!failed) log.warn({ err }, 'pcm pipe sink: output failed; stopping');
    failed = true;
    stop();
  };
  out.on('error', onError);

  const write = (bytes: Buffer): void => {
    bytesWritten += bytes.length;
    if (!out.write(bytes)) backpressured++;
  };

  const tick = (): void => {
    if (!pacer || failed) return;
    const t = tc.now();
    pacer.update(t);
    const due = pacer.playhead(t);
    if (due - framesWritten > maxCatchUpFrames) {
      const skip = Math.floor(due) - framesWritten;
      skippedFrames += skip;
      framesWritten += skip;
      write(Buffer.alloc(skip * 2));
      log.warn({ skippedFrames: skip }, 'pcm pipe sink fell behind; wrote silence up to now');
    }
    if (framesWritten > due) return;
    const hwNow = o.clock.now();
    while (framesWritten <= due) {
      const k = framesWritten;
      buf.fill(0);
      if (source) {
        let got: number;
        try {
          got = source.read(buf, pacer.hwTimeOfFrame(k, t, hwNow));
        } catch (err) {
          log.warn({ err }, 'pcm pipe sink: source.read threw; writing silence');
          got = 0;
        }
        got = Number.isFinite(got) ? Math.max(0, Math.min(periodFrames, Math.floor(got))) : 0;
        if (got < periodFrames) {
          buf.fill(0, got);
          underruns++;
          underrunFrames += periodFrames - got;
        }
      }
      const bytes = Buffer.allocUnsafe(periodFrames * 2);
      encodeS16le(buf, bytes, 0);
      write(bytes);
      framesWritten += periodFrames;
    }
  };

  function stop(): void {
    if (!unsubscribe) return;
    unsubscribe();
    unsubscribe = null;
    if (ownTicker) ticker.stop();
    if (o.endOnStop && !failed) out.end();
  }

  return {
    sampleRate,
    attach(s) {
      source = s;
    },
    start() {
      if (unsubscribe || failed) return;
      if (!pacer) pacer = createFramePacer(o.clock, sampleRate);
      // Frame indices continue across stop/start; the next frame is due now.
      pacer.anchor(framesWritten, tc.now());
      unsubscribe = ticker.add(() => {
        try {
          tick();
        } catch (err) {
          log.error({ err }, 'pcm pipe sink tick failed');
        }
      });
      tick();
    },
    stop,
    stats: () => ({ framesPlayed: framesWritten, underruns, underrunFrames, backpressured, skippedFrames, bytesWritten }),
  };
}
