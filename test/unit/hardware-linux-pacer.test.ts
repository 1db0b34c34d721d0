import { describe, expect, it } from 'vitest';
import { createWriteAheadPacer, encodeS16le, parseProcHwRate, parseProcPcmDelay, procStatusPathFor } from '../../edge-agent/src/alsa-sink.js';

const RATE = 48_000;
const mk = () => createWriteAheadPacer({ sampleRate: RATE, leadMs: 50, periodMs: 10 });

/** Drive the pacer like the sink does: plan, then write whole periods. */
function step(p: ReturnType<typeof mk>, now: number): { blocks: number; starved: boolean; times: number[] } {
  const r = p.plan(now);
  const times: number[] = [];
  for (let i = 0; i < r.blocks; i++) {
    times.push(p.presentationTime(p.written()));
    p.wrote(p.periodFrames);
  }
  return { ...r, times };
}

describe('write-ahead pacer (ALSA sink pacing)', () => {
  it('fills the lead at once, then writes one period per period of wall time', () => {
    const p = mk();
    expect(p.periodFrames).toBe(480);
    expect(p.leadFrames).toBe(2400);
    const t0 = 1_000_000;
    const first = step(p, t0);
    expect(first).toMatchObject({ blocks: 5, starved: false });
    expect(first.times).toEqual([t0, t0 + 10, t0 + 20, t0 + 30, t0 + 40]);
    // 4 ms later nothing is due; at +10 ms one more block, presented 50 ms ahead.
    expect(step(p, t0 + 4).blocks).toBe(0);
    const next = step(p, t0 + 10);
    expect(next.blocks).toBe(1);
    expect(next.times[0]).toBe(t0 + 50);
    // Over one simulated second of 10 ms ticks exactly one second of audio (+ the lead) is written.
    for (let t = t0 + 20; t <= t0 + 1000; t += 10) step(p, t);
    expect(p.written()).toBe(RATE + p.leadFrames);
  });

  it('keeps presentationTime = now + queued audio, and never more than the lead ahead', () => {
    const p = mk();
    const t0 = 5_000;
    for (let t = t0; t <= t0 + 500; t += 7) {
      const { times } = step(p, t);
      for (const pt of times) {
        expect(pt - t).toBeGreaterThanOrEqual(0);
        expect(pt - t).toBeLessThanOrEqual(50);
      }
      expect(p.queued(t)).toBeLessThanOrEqual(p.leadFrames);
    }
  });

  it('a tick later than the lead is a device underrun: re-anchor at now, do not replay the backlog', () => {
    const p = mk();
    step(p, 0);
    step(p, 10);
    // The event loop stalls 300 ms: the device ran dry 240 ms ago.
    const late = step(p, 310);
    expect(late.starved).toBe(true);
    expect(late.blocks).toBe(5); // just the lead again, not 30 periods of backlog
    expect(late.times[0]).toBe(310); // the next frame sounds as soon as the device restarts
    expect(step(p, 320)).toMatchObject({ blocks: 1, starved: false });
  });

  it('a late tick inside the lead catches up without an underrun', () => {
    const p = mk();
    step(p, 0);
    const r = step(p, 30);
    expect(r.starved).toBe(false);
    expect(r.blocks).toBe(3);
    expect(r.times).toEqual([50, 60, 70]);
  });

  it('steers towards the device-reported delay (sound-card drift) and jumps when far off', () => {
    const p = mk();
    for (let t = 0; t <= 1000; t += 10) step(p, t);
    const est = p.queued(1000);
    // The device says it holds 5 ms more than estimated (its crystal is slow against the system clock).
    const err = p.correct(1000, est + 240);
    expect(err).toBeCloseTo(240, 6);
    expect(p.queued(1000)).toBeCloseTo(est + 0.3 * 240, 6);
    // Presentation of the next frame moves later by the same share of 5 ms.
    const before = 1000 + (est / RATE) * 1000;
    expect(p.presentationTime(p.written())).toBeCloseTo(before + 0.3 * 5, 6);
    // Off by more than the lead (e.g. an xrun aplay recovered from): taken whole.
    p.correct(1000, 0);
    expect(p.queued(1000)).toBeCloseTo(0, 6);
  });

  it('adds a fixed output latency to presentation times', () => {
    const p = createWriteAheadPacer({ sampleRate: RATE, leadMs: 40, periodMs: 5, outputLatencyMs: 12 });
    p.plan(100);
    expect(p.presentationTime(p.written())).toBe(112);
  });
});

describe('ALSA /proc status and sample encoding', () => {
  it('reads delay only while the stream runs', () => {
    const running = 'state: RUNNING\nowner_pid   : 1234\ntrigger_time: 1.2\ntstamp      : 3.4\ndelay       : 2210\navail       : 2590\navail_max   : 2600\n-----\nhw_ptr      : 96000\nappl_ptr    : 98210\n';
    expect(parseProcPcmDelay(running)).toBe(2210);
    expect(parseProcPcmDelay('closed\n')).toBeNull();
    expect(parseProcPcmDelay('state: PREPARED\ndelay       : 480\n')).toBeNull();
  });

  it('reads the card rate from hw_params', () => {
    expect(parseProcHwRate('access: RW_INTERLEAVED\nformat: S16_LE\nsubformat: STD\nchannels: 2\nrate: 44100 (44100/1)\nperiod_size: 441\n')).toBe(44100);
    expect(parseProcHwRate('closed\n')).toBeNull();
  });

  it('derives the /proc status file from hw and plughw device names only', () => {
    expect(procStatusPathFor('hw:1,0')).toBe('/proc/asound/card1/pcm0p/sub0/status');
    expect(procStatusPathFor('plughw:CARD=Headphones,DEV=0')).toBe('/proc/asound/Headphones/pcm0p/sub0/status');
    expect(procStatusPathFor('plughw:2')).toBe('/proc/asound/card2/pcm0p/sub0/status');
    expect(procStatusPathFor('hw:CARD=sndrpihifiberry,DEV=1')).toBe('/proc/asound/sndrpihifiberry/pcm1p/sub0/status');
    expect(procStatusPathFor('default')).toBeNull();
    expect(procStatusPathFor('dmix:CARD=1')).toBeNull();
    expect(procStatusPathFor('null')).toBeNull();
  });

  it('encodes float samples to s16le with clamping', () => {
    const out = Buffer.alloc(12);
    encodeS16le(Float32Array.from([0, 0.5, -1, 1.5, -2, Number.NaN]), out);
    expect([0, 1, 2, 3, 4, 5].map((i) => out.readInt16LE(i * 2))).toEqual([0, 16384, -32768, 32767, -32768, 0]);
  });
});
