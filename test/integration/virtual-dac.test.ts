import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AudioSink, PcmSource } from '../../edge-agent/src/hardware.js';
import { createPcmPipeSink } from '../../firmware-sim/src/pcm-pipe-sink.js';
import { createSimClock, trueClock, type SimClock } from '../../firmware-sim/src/sim-clock.js';
import { createTicker, createVirtualDac, type SoundEdge, type VirtualDac } from '../../firmware-sim/src/virtual-dac.js';

// Real timers, real time: the DAC paces itself against this machine's true clock.

const SR = 48_000;

/** Poll `cond` until true or the deadline passes (no blind sleeps). */
async function waitFor(cond: () => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function nextOnset(dac: VirtualDac, timeoutMs = 10_000): Promise<SoundEdge> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no onset')), timeoutMs);
    dac.once('onset', (e) => {
      clearTimeout(t);
      resolve(e);
    });
  });
}

/** A 2 ms click at hardware-clock time `atHw`, placed by sample position from presentationTime. */
function clickAt(atHw: number): PcmSource {
  return {
    read(out, pt) {
      for (let i = 0; i < out.length; i++) {
        const t = pt + (i * 1000) / SR;
        out[i] = t >= atHw && t < atHw + 2 ? 0.9 : 0;
      }
      return out.length;
    },
  };
}

const sinks: AudioSink[] = [];
afterEach(() => {
  for (const s of sinks.splice(0)) s.stop();
});
let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vdac-int-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function dac(clock: SimClock, extra: Parameters<typeof createVirtualDac>[0] extends infer O ? Partial<O> : never = {}): VirtualDac {
  const d = createVirtualDac({ clock, latencyMs: 20, ...extra });
  sinks.push(d);
  return d;
}

describe('virtual DAC on real time', () => {
  it('a click placed at a presentation time on an offset, drifting clock sounds at the matching TRUE time', async () => {
    const hw = createSimClock({ offsetMs: 1234, driftPpm: 200 });
    const d = dac(hw);
    const atHw = hw.now() + 400;
    d.attach(clickAt(atHw));
    const onset = nextOnset(d);
    d.start();
    const e = await onset;
    const expectedTrue = hw.toTrue(atHw);
    expect(Math.abs(e.trueMs - expectedTrue)).toBeLessThan(2);
    expect(Math.abs(e.hwMs - atHw)).toBeLessThan(2);
  });

  it('two sinks with different clock offsets, asked for the same TRUE instant, record clicks that line up', async () => {
    const a = createSimClock({ offsetMs: 2000, driftPpm: 100 });
    const b = createSimClock({ offsetMs: -1500, driftPpm: -100 });
    const da = dac(a, { record: { maxSeconds: 5 } });
    const db = dac(b, { record: { maxSeconds: 5 } });
    const target = trueClock.now() + 500;
    da.attach(clickAt(a.fromTrue(target)));
    db.attach(clickAt(b.fromTrue(target)));
    da.start();
    db.start();
    await waitFor(() => da.onsets().length > 0 && db.onsets().length > 0, 10_000, 'both clicks');
    // From the recordings (what a cross-correlation bench does): sample index → true time.
    const clickTrue = (d: VirtualDac): number => {
      const r = d.recording()!;
      const i = r.samples.findIndex((x) => x > 0.5);
      expect(i).toBeGreaterThan(0);
      return d.trueTimeOfFrame(r.startFrame + i);
    };
    const ta = clickTrue(da);
    const tb = clickTrue(db);
    expect(Math.abs(ta - target)).toBeLessThan(2);
    expect(Math.abs(ta - tb)).toBeLessThan(1);
    expect(ta).toBeCloseTo(da.onsets()[0]!.trueMs, 6);
  });

  it('a drifting clock consumes frames at its drifted rate (+5000 ppm and −5000 ppm)', async () => {
    const runs = [5000, -5000].map((ppm) => {
      const hw = createSimClock({ driftPpm: ppm });
      const d = dac(hw);
      // What the source sees: frames pulled vs true time of each pull, fitted by least squares.
      const pts: [number, number][] = [];
      let pulled = 0;
      d.attach({
        read(out) {
          pts.push([trueClock.now(), pulled]);
          pulled += out.length;
          return out.length;
        },
      });
      return { ppm, d, pts };
    });
    for (const r of runs) r.d.start();
    await waitFor(() => runs.every((r) => r.d.stats().framesPlayed > 0), 5000, 'playing');
    const t1 = trueClock.now();
    const f1 = runs.map((r) => r.d.stats().framesPlayed);
    await waitFor(() => runs.every((r) => r.d.stats().framesPlayed > 3.2 * SR), 20_000, '3 s of audio');
    const f2 = runs.map((r) => r.d.stats().framesPlayed);
    const t2 = trueClock.now();
    runs.forEach((r, i) => {
      const rate = (f2[i]! - f1[i]!) / (((t2 - t1) / 1000) * SR);
      // Frames played over a measured true interval ≈ (1 + drift) · 48 kHz.
      expect(Math.abs((rate - 1) * 1e6 - r.ppm)).toBeLessThan(500);
      // Independent evidence from the pull side: slope of frames pulled against true time.
      const n = r.pts.length;
      const mx = r.pts.reduce((s, p) => s + p[0], 0) / n;
      const my = r.pts.reduce((s, p) => s + p[1], 0) / n;
      let sxy = 0;
      let sxx = 0;
      for (const [x, y] of r.pts) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) ** 2;
      }
      const pullPpm = ((sxy / sxx) * 1000) / SR - 1;
      expect(Math.abs(pullPpm * 1e6 - r.ppm)).toBeLessThan(2500);
    });
  });

  it('counts underruns when the source runs short and when it runs dry', async () => {
    const d = dac(createSimClock());
    let calls = 0;
    let shortReads = 0;
    d.attach({
      read(out) {
        calls++;
        if (calls > 40) return 0; // stream ended: every later block is an underrun
        if (calls % 4 === 0) {
          shortReads++;
          return out.length / 2;
        }
        return out.length;
      },
    });
    d.start();
    await waitFor(() => calls >= 60, 10_000, '60 reads');
    d.stop();
    const st = d.stats();
    const dry = calls - 40;
    expect(st.underruns).toBe(shortReads + dry);
    expect(st.underrunFrames).toBe(shortReads * 240 + dry * 480);
  });

  it('one shared ticker drives many DACs', async () => {
    const ticker = createTicker(10);
    const ds = Array.from({ length: 50 }, (_, i) => dac(createSimClock({ offsetMs: i * 10, driftPpm: (i - 25) * 4 }), { ticker }));
    for (const d of ds) d.start();
    await waitFor(() => ds.every((d) => d.stats().framesPlayed > SR / 2), 15_000, 'all 50 playing');
    for (const d of ds) d.stop();
    ticker.stop();
    expect(ds.every((d) => d.stats().skippedFrames === 0)).toBe(true);
  });
  it('the subscribers of a ticker take turns at running first; one that leaves mid-tick is not called', async () => {
    const ticker = createTicker(5);
    const log: string[] = [];
    const offs = ['a', 'b', 'c'].map((name) => ticker.add(() => { log.push(name); }));
    await waitFor(() => log.length >= 18, 10_000, '6 ticks');
    for (const off of offs) off();
    ticker.stop();
    const ticks = Array.from({ length: 6 }, (_, i) => log.slice(3 * i, 3 * i + 3));
    for (const t of ticks) expect([...t].sort()).toEqual(['a', 'b', 'c']); // each once per tick
    expect(ticks.map((t) => t[0])).toEqual(['a', 'b', 'c', 'a', 'b', 'c']); // first by turns
    // On a fresh ticker x runs first in the first tick and makes y leave: y is called neither in that tick nor later.
    const ticker2 = createTicker(5);
    const log2: string[] = [];
    let offY: () => void = () => {};
    const offX = ticker2.add(() => { log2.push('x'); offY(); });
    offY = ticker2.add(() => { log2.push('y'); });
    await waitFor(() => log2.length >= 3, 10_000, '3 ticks');
    offX();
    ticker2.stop();
    expect(log2).not.toContain('y');
  });

  it('after a stall of the event loop, the ticker runs after the datagrams that came in meanwhile were read', async () => {
    const ticker = createTicker(5);
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    let received = 0;
    sock.on('message', () => { received++; });
    try {
      await new Promise<void>((r) => { const off = ticker.add(() => { off(); r(); }); }); // the ticker runs
      const keep = ticker.add(() => {}); // and keeps running
      // Block this event loop (from its check phase, so that the timers phase comes next) while another
      // process sends us a datagram: it waits in the socket, and the ticker's interval falls due meanwhile.
      const seen = await new Promise<number>((r) => setImmediate(() => {
        execFileSync(process.execPath, ['-e', `const s=require('dgram').createSocket('udp4');s.send('x',${sock.address().port},'127.0.0.1',()=>s.close())`]);
        expect(received).toBe(0);
        const off = ticker.add(() => { off(); r(received); });
      }));
      keep();
      expect(seen).toBe(1); // in the timers phase it would still be 0: the sink would conceal a frame it has
    } finally {
      ticker.stop();
      sock.close();
    }
  });
});

describe('pcm pipe sink on real time', () => {
  it('writes 48 kHz s16le to a file at the pace of its clock', async () => {
    const path = join(dir, 'pipe.raw');
    const out = createWriteStream(path);
    const sink = createPcmPipeSink({ output: out, clock: createSimClock(), endOnStop: true });
    sinks.push(sink);
    sink.attach({
      read(buf) {
        buf.fill(0.25);
        return buf.length;
      },
    });
    const t0 = trueClock.now();
    sink.start();
    await waitFor(() => sink.stats().framesPlayed >= SR, 10_000, '1 s of PCM');
    const elapsed = trueClock.now() - t0;
    const frames = sink.stats().framesPlayed;
    sink.stop();
    await new Promise<void>((resolve) => out.on('finish', () => resolve()));
    // Paced, not dumped: no more than what was due (plus one block) by the time we looked.
    expect(frames).toBeLessThanOrEqual((elapsed / 1000) * SR + 240 + 1);
    expect((await stat(path)).size).toBe(frames * 2);
  });
});
