/**
 * The media supervisor with real ffmpeg children: lanes, limits, watchdog, progress, cancellation.
 * Children that must stay busy read stdin until we close it, so no test depends on timing.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createSupervisor, MediaError, type ProcessHandle, type ProgressEvent, type Supervisor } from '../../audio-pipeline/src/index.js';

/** An ffmpeg that runs until its stdin is closed. */
const waitForStdin = { kind: 'wait', command: 'ffmpeg', args: ['-hide_banner', '-v', 'error', '-f', 'u8', '-ar', '8000', '-ac', '1', '-i', 'pipe:0', '-f', 'null', '-'], stdin: 'pipe' } as const;

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves after `p` settles or rejects with 'pending' after the event loop turns a few times. */
async function isPending(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  return !settled;
}

const sups: Supervisor[] = [];
function make(opts: Parameters<typeof createSupervisor>[0]): Supervisor {
  const s = createSupervisor(opts);
  s.start();
  sups.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(sups.splice(0).map((s) => s.stop()));
});

describe('media supervisor', () => {
  it('never runs more normal jobs than `concurrency`', async () => {
    const sup = make({ concurrency: 2, urgentSlots: 0 });
    const starts = [0, 1, 2, 3].map(() => sup.launch({ ...waitForStdin }));
    const [a, b] = (await Promise.all(starts.slice(0, 2))) as [ProcessHandle, ProcessHandle];
    expect(sup.stats()).toMatchObject({ normalBusy: 2, queuedNormal: 2, running: 2 });
    expect(await isPending(starts[2]!)).toBe(true);

    a.stdin!.end();
    const c = await starts[2]!;
    expect(sup.stats()).toMatchObject({ normalBusy: 2, queuedNormal: 1 });
    expect((await a.done).exitCode).toBe(0);
    b.stdin!.end();
    const d = await starts[3]!;
    c.stdin!.end();
    d.stdin!.end();
    await Promise.all([b.done, c.done, d.done]);
    expect(sup.stats()).toMatchObject({ normalBusy: 0, urgentBusy: 0, running: 0 });
  });

  it('an urgent job starts at once while the normal lane is full and has a queue', async () => {
    const sup = make({ concurrency: 1, urgentSlots: 1 });
    const n1 = await sup.launch({ ...waitForStdin });
    const n2 = sup.launch({ ...waitForStdin });
    expect(await isPending(n2)).toBe(true);
    const events: ProgressEvent[] = [];
    const off = sup.onProgress((e) => events.push(e));
    const res = await sup.run({ kind: 'emergency-tts', command: 'ffmpeg', args: ['-hide_banner', '-v', 'error', '-f', 'lavfi', '-i', 'anullsrc=d=0.2', '-f', 'null', '-'], lane: 'urgent' });
    off();
    expect(res.exitCode).toBe(0);
    expect(await isPending(n2)).toBe(true); // the normal job is still waiting
    expect(events.filter((e) => e.kind === 'emergency-tts').map((e) => e.state)).toEqual(['queued', 'running', 'done']);
    expect(events.every((e) => e.kind !== 'emergency-tts' || e.lane === 'urgent')).toBe(true);
    n1.stdin!.end();
    const h2 = await n2;
    h2.stdin!.end();
    await h2.done;
  });

  it('urgent work borrows an idle normal slot when its reserved slots are busy', async () => {
    const sup = make({ concurrency: 1, urgentSlots: 1 });
    const u1 = await sup.launch({ ...waitForStdin, lane: 'urgent' });
    const u2 = await sup.launch({ ...waitForStdin, lane: 'urgent' });
    expect(sup.stats()).toMatchObject({ urgentBusy: 1, normalBusy: 1 });
    const n = sup.launch({ ...waitForStdin });
    expect(await isPending(n)).toBe(true);
    u1.stdin!.end();
    u2.stdin!.end();
    const h = await n;
    h.stdin!.end();
    await Promise.all([u1.done, u2.done, h.done]);
  });

  it('the watchdog kills a child that goes silent and rejects with TIMEOUT', async () => {
    const sup = make({ watchdogMs: 400 });
    // Real-time null source to a null sink: runs forever and, with -nostats -v quiet, says nothing.
    const h = await sup.launch({ kind: 'hung', command: 'ffmpeg', args: ['-nostdin', '-nostats', '-v', 'quiet', '-re', '-f', 'lavfi', '-i', 'anullsrc', '-f', 'null', '-'] });
    expect(alive(h.pid)).toBe(true);
    const err = await h.done.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MediaError);
    expect((err as MediaError).code).toBe('TIMEOUT');
    expect((err as MediaError).httpStatus).toBeGreaterThanOrEqual(500);
    expect(alive(h.pid)).toBe(false);
  });

  it('publishes monotonically increasing progress parsed from ffmpeg -progress', async () => {
    const sup = make({});
    const events: ProgressEvent[] = [];
    sup.onProgress((e) => events.push(e));
    const durationMs = 1_800_000; // 30 min of sine, decoded in a second or two
    const res = await sup.run({
      kind: 'progress-probe',
      jobId: 'p1',
      command: 'ffmpeg',
      args: ['-hide_banner', '-nostdin', '-v', 'error', '-stats_period', '0.05', '-progress', 'pipe:3', '-f', 'lavfi', '-i', `sine=frequency=440:duration=${durationMs / 1000}:sample_rate=8000`, '-f', 'null', '-'],
      progressFd: true,
      durationMs,
    });
    expect(res.exitCode).toBe(0);
    const mine = events.filter((e) => e.jobId === 'p1');
    const pcts = mine.map((e) => e.percent!);
    expect(new Set(pcts).size).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < pcts.length; i++) expect(pcts[i]!).toBeGreaterThanOrEqual(pcts[i - 1]!);
    expect(mine.at(-1)).toMatchObject({ state: 'done', percent: 100 });
    expect(mine[0]).toMatchObject({ state: 'queued' });
  });

  it('cancels a queued job and a running job through AbortSignal', async () => {
    const sup = make({ concurrency: 1, urgentSlots: 0 });
    const running = await sup.launch({ ...waitForStdin });
    const acQueued = new AbortController();
    const queued = sup.run({ ...waitForStdin, signal: acQueued.signal });
    expect(await isPending(queued)).toBe(true);
    acQueued.abort();
    await expect(queued).rejects.toMatchObject({ code: 'ABORTED' });
    expect(sup.stats().queuedNormal).toBe(0);

    running.stdin!.end();
    await running.done;
    const ac = new AbortController();
    const h = await sup.launch({ ...waitForStdin, signal: ac.signal });
    expect(alive(h.pid)).toBe(true);
    ac.abort();
    await expect(h.done).rejects.toMatchObject({ code: 'ABORTED' });
    expect(alive(h.pid)).toBe(false);
  });

  it('stop() kills every child and rejects every waiter with STOPPED', async () => {
    const sup = make({ concurrency: 1, urgentSlots: 0 });
    const h = await sup.launch({ ...waitForStdin });
    const waiting = sup.run({ ...waitForStdin }).catch((e: unknown) => e);
    const done = h.done.catch((e: unknown) => e);
    await sup.stop();
    expect(await done).toMatchObject({ code: 'STOPPED' });
    expect(await waiting).toMatchObject({ code: 'STOPPED' });
    expect(alive(h.pid)).toBe(false);
    await expect(sup.run({ ...waitForStdin })).rejects.toMatchObject({ code: 'STOPPED' });
    await sup.stop(); // idempotent
  });

  it('sends stderr to the log and collects stdout', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const sup = make({ log: pino({ level: 'debug' }, sink) });
    const bad = await sup.run({ kind: 'bad-input', command: 'ffmpeg', args: ['-hide_banner', '-v', 'error', '-i', '/nonexistent/input.wav', '-f', 'null', '-'] });
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toMatch(/No such file/);
    expect(lines.some((l) => l.kind === 'bad-input' && typeof l.stderr === 'string' && /No such file/.test(l.stderr))).toBe(true);

    const ok = await sup.run({ kind: 'pcm', command: 'ffmpeg', args: ['-v', 'error', '-f', 'lavfi', '-i', 'anullsrc=r=8000:cl=mono:d=0.5', '-f', 's16le', 'pipe:1'], stdout: 'collect' });
    expect(ok.stdout.length).toBe(8000); // 0.5 s × 8000 Hz × 2 bytes
  });

  it('a missing binary fails with BINARY_MISSING naming the Debian package', async () => {
    const sup = make({ env: { PATH: '/nonexistent-dir' } });
    const err = await sup.run({ kind: 'x', command: 'ffprobe', args: ['-version'] }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'BINARY_MISSING' });
    expect((err as Error).message).toMatch(/apt-get install ffmpeg/);
    expect((err as Error).message).toMatch(/RADIO_FFPROBE_PATH/);
  });
});
