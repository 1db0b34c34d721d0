import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { PcmSource } from '../../edge-agent/src/hardware.js';
import { createPcmPipeSink } from '../../firmware-sim/src/pcm-pipe-sink.js';
import { createManualClock, createSimClock } from '../../firmware-sim/src/sim-clock.js';
import type { Ticker } from '../../firmware-sim/src/virtual-dac.js';

const T0 = 1_700_000_000_000;

function manualTicker(): Ticker & { tick(): void } {
  const subs = new Set<() => void>();
  return {
    add(fn) {
      subs.add(fn);
      return () => subs.delete(fn);
    },
    stop: () => subs.clear(),
    tick() {
      for (const fn of subs) fn();
    },
  };
}

describe('pcm pipe sink', () => {
  it('writes s16le in real time by its clock, each block when its first frame is due', () => {
    const base = createManualClock(T0);
    const hw = createSimClock({ offsetMs: 500, driftPpm: 10_000, base });
    const ticker = manualTicker();
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    const sink = createPcmPipeSink({ output: out, clock: hw, ticker, periodFrames: 240 });
    const pts: number[] = [];
    const src: PcmSource = {
      read(buf, pt) {
        pts.push(pt);
        buf.fill(0.5);
        return pts.length === 3 ? buf.length - 40 : buf.length;
      },
    };
    sink.attach(src);
    sink.start();
    for (let i = 0; i < 100; i++) {
      base.advance(5);
      ticker.tick();
    }
    sink.stop();
    const st = sink.stats();
    // 500 ms of true time at +1 %: frames due = 0.5 s · 48 000 · 1.01 = 24 240 → blocks covering it.
    const due = 500 * 48 * 1.01;
    expect(st.framesPlayed).toBeGreaterThan(due);
    expect(st.framesPlayed).toBeLessThanOrEqual(due + 240);
    expect(st.bytesWritten).toBe(st.framesPlayed * 2);
    expect(st.underruns).toBe(1);
    expect(st.underrunFrames).toBe(40);
    // The presentation time of block k is the hardware clock when it was due.
    expect(pts[0]).toBeCloseTo(T0 + 500, 6);
    expect(pts[10]! - pts[0]!).toBeCloseTo(10 * 5, 6); // 240 frames = 5 ms of hardware time
    const bytes = Buffer.concat(chunks);
    expect(bytes.readInt16LE(0)).toBe(Math.round(0.5 * 32767));
    // Short read padded with silence.
    expect(bytes.readInt16LE((2 * 240 + 200) * 2)).toBe(0);
    expect(bytes.readInt16LE((2 * 240 + 199) * 2)).toBe(Math.round(0.5 * 32767));
  });

  it('stops quietly when the reader goes away (EPIPE-like error)', () => {
    const base = createManualClock(T0);
    const ticker = manualTicker();
    const out = new PassThrough();
    const sink = createPcmPipeSink({ output: out, clock: createSimClock({ base }), ticker });
    out.resume();
    sink.start();
    base.advance(100);
    ticker.tick();
    expect(sink.stats().framesPlayed).toBeGreaterThan(4800); // running before the reader goes away
    out.destroy(new Error('EPIPE'));
    return new Promise<void>((resolve) => {
      setImmediate(() => {
        base.advance(100);
        ticker.tick();
        const before = sink.stats().framesPlayed;
        base.advance(100);
        ticker.tick();
        expect(sink.stats().framesPlayed).toBe(before);
        resolve();
      });
    });
  });
});
