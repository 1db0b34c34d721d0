import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionFleet, runFleet, type FleetAgent, type RunningFleet } from '../../firmware-sim/src/fleet.js';
import { trueClock } from '../../firmware-sim/src/sim-clock.js';
import { CHROMIUM_ARGS, CHROMIUM_PATH, chromiumMissingReason } from '../helpers/browser.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { waitFor } from '../helpers/wait.js';

/*
 * The console's live panel in a real headless Chromium whose microphone is a WAV file (Chromium's fake
 * capture device): clicks every 250 ms. A real controller, three simulated clusters with virtual DACs.
 *
 * 1. Live voice: the operator targets the commune and presses "Bắt đầu"; the page shows "Hãy nói" once
 *    every cluster is ready, the AudioWorklet's 20 ms float32 frames flow over the microphone
 *    WebSocket, and every cluster's DAC sounds the clicks (onsets after the attention chime, true
 *    time). "Kết thúc" ends the session (API).
 * 2. One-press emergency with TTS text, confirmed in the dialog: every cluster reports playing.
 * 3. A refused microphone permission gives a clear Vietnamese message and creates no session.
 */
const run = promisify(execFile);
const skipReason = chromiumMissingReason();
const N = 3;
/** The attention chime of a cold amplifier (edge-agent/src/live.ts CHIME_MS) sounds at join, before "speak now". */
const CHIME_MS = 700;

describe.skipIf(skipReason !== undefined)(`console live panel in headless Chromium${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let t: TestController;
  let fleet: RunningFleet;
  let tmp: string;
  let context: BrowserContext;
  let page: Page;
  const errors: string[] = [];

  const session = async (id: string) => (await t.api('GET', `/api/v1/live/sessions/${id}`)).body;
  const activeIds = async (): Promise<string[]> => ((await t.api('GET', '/api/v1/live/sessions')).body.active as { sessionId: string }[]).map((s) => s.sessionId);

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'console-live-'));
    // The fake microphone: 48 kHz mono, a 20 ms 1 kHz burst every 250 ms (Chromium loops the file).
    const wav = path.join(tmp, 'clicks.wav');
    await run('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', '-f', 'lavfi',
      '-i', 'aevalsrc=0.7*sin(2*PI*1000*t)*lt(mod(t\\,0.25)\\,0.02):s=48000:d=4', '-ac', '1', '-c:a', 'pcm_s16le', wav]);

    t = await startTestController({ env: { RADIO_RTP_PORT: 0 } });
    const specs = await provisionFleet({ base: t.base, token: t.token, count: N, villages: 2, prefix: 'cl' });
    fleet = await runFleet(specs, {
      telemetryIntervalMs: 1000, keepaliveS: 4, syncIntervalMs: 300,
      hardware: () => ({ warmupMs: 300, volume: 60 }),
      agent: () => ({ liveBindAddress: '127.0.0.1' }),
    });
    await Promise.all(fleet.agents.map((c) => waitFor(() => c.agent.clockSource.estimate().samples >= 3, { what: `clock sync of ${c.spec.nodeId}`, timeoutMs: 20_000 })));

    // test/helpers/browser.ts launches without extra flags; the fake media flags need our own launch.
    const profile = path.join(tmp, 'profile');
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH, headless: true, timeout: 30_000,
      args: [...CHROMIUM_ARGS, '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-audio-capture=${wav}`,
        '--autoplay-policy=no-user-gesture-required'],
      viewport: { width: 1280, height: 900 }, locale: 'vi-VN', timezoneId: 'Asia/Ho_Chi_Minh',
    });
    page = context.pages()[0] ?? await context.newPage();
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });

    await page.goto(`${t.base}/`);
    await page.getByLabel('Tên đăng nhập').fill('admin');
    await page.getByLabel('Mật khẩu').fill('test-password');
    await page.getByRole('button', { name: 'Đăng nhập' }).click();
    await page.getByTestId('count-online').filter({ hasText: new RegExp(`^${N}$`) }).waitFor();
    await page.locator('#live[data-state="on"]').waitFor();
  }, 60_000);

  afterAll(async () => {
    await context?.close().catch(() => {});
    await fleet?.stop();
    await t?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Onsets of a cluster's DAC after `from` (true time). */
  const onsetsAfter = (c: FleetAgent, from: number) => c.hardware.sink.onsets().filter((e) => e.trueMs > from);

  it('live voice: targets the commune, says "Hãy nói", every cluster sounds the microphone, "Kết thúc" ends the session', async () => {
    const panel = page.getByRole('region', { name: 'Phát trực tiếp' });
    await panel.getByLabel('Toàn xã').check();
    await panel.getByLabel('Tiêu đề').fill('Thông báo của xã');
    await panel.getByLabel('Mức ưu tiên').selectOption({ label: 'Ưu tiên' });
    await panel.getByRole('button', { name: 'Bắt đầu' }).click();

    await panel.getByTestId('speak-now').filter({ hasText: 'Hãy nói' }).waitFor({ timeout: 20_000 });
    const spokeAt = trueClock.now();
    const [id] = await activeIds();
    expect(id).toBeTruthy();
    const view = await session(id!);
    expect(view.kind).toBe('voice');
    expect(view.priority).toBe('priority');
    expect(view.title).toBe('Thông báo của xã');
    expect(view.targets).toHaveLength(N);
    expect(view.mic.connected).toBe(true);
    // Reach from the live.session events: every cluster plays.
    await panel.getByTestId('live-reach').filter({ hasText: `Đang phát ở ${N}/${N} cụm` }).waitFor();

    // Let the fake microphone's clicks flow until every horn has sounded several of them (the
    // chime of a cold amplifier is over CHIME_MS after the join, which precedes "speak now").
    const after = spokeAt + CHIME_MS;
    await Promise.all(fleet.agents.map((c) => waitFor(() => onsetsAfter(c, after).length >= 6, { what: `microphone clicks on ${c.spec.nodeId}`, timeoutMs: 15_000 })));
    const live = await session(id!);
    expect(live.mic.frames).toBeGreaterThan(50);
    const counters = `page sent ${await panel.getAttribute('data-frames-sent')}, stale ${await panel.getAttribute('data-frames-stale')}, ahead ${await panel.getAttribute('data-frames-ahead')}, backlog-dropped ${await panel.getAttribute('data-frames-dropped')}; controller ${JSON.stringify(live.mic)}`;
    // The page never sends ahead of real time (its own budget, stale and backlog guards)…
    expect(Number(await panel.getAttribute('data-frames-ahead')), counters).toBe(0);
    // …but the controller's real-time budget starts when it processes the first frame, so an event-loop
    // stall of its own at that moment (this process also runs the fleet; parallel suites on 2 cores)
    // makes it drop the excess. Reported, bounded, not zero.
    if (live.mic.droppedSamples > 0) console.log(`controller dropped microphone audio (its own stall at the first frame): ${counters}`);
    expect(live.mic.droppedSamples, counters).toBeLessThan(live.mic.samples * 0.25);
    // The level meter moved.
    expect(Number(await panel.getAttribute('data-frames-sent'))).toBeGreaterThan(0);
    await panel.screenshot({ path: '/tmp/console-live.png' });

    await panel.getByRole('button', { name: 'Kết thúc' }).click();
    await panel.getByTestId('speak-now').filter({ hasText: 'Phiên đã kết thúc' }).waitFor();
    const ended = await session(id!);
    expect(ended.state).toBe('ended');
    expect(ended.endReason).toBe('stopped');
    expect(ended.actor).toBe('admin');
    await panel.getByTestId('live-reach').filter({ hasText: `Đã phát ở ${N}/${N} cụm` }).waitFor();
    expect(await activeIds()).toEqual([]);
    // Ready for the next session.
    expect(await panel.getByRole('button', { name: 'Bắt đầu' }).isEnabled()).toBe(true);
  }, 60_000);

  it('emergency one-press with text, confirmed: every cluster reports playing; stop ends it', async () => {
    const panel = page.getByRole('region', { name: 'Khẩn cấp', exact: true });
    await panel.getByLabel('Nội dung thông báo').fill('Cảnh báo lũ. Mọi người di chuyển lên chỗ cao.');
    await panel.getByLabel('Toàn xã').check();
    await panel.getByLabel('Số lần phát').fill('1');
    await panel.getByRole('button', { name: 'Phát khẩn cấp' }).click();
    const dialog = page.getByRole('dialog', { name: 'Xác nhận thao tác' });
    await dialog.filter({ hasText: 'toàn xã' }).waitFor();
    await dialog.getByRole('button', { name: 'Đồng ý' }).click();

    await panel.getByTestId('em-reach').filter({ hasText: `Đang phát ở ${N}/${N} cụm` }).waitFor({ timeout: 20_000 });
    const sessions = await Promise.all((await activeIds()).map(session));
    const v = sessions.find((x) => x.kind === 'emergency');
    const id = v.sessionId as string;
    expect(v.priority).toBe('emergency');
    expect(v.reach.playing).toBe(N);
    expect(v.nodes.every((n: { state: string }) => n.state === 'playing')).toBe(true);
    // The whole page with the emergency on air and the live panel's cluster picker open.
    await page.getByRole('region', { name: 'Phát trực tiếp' }).getByLabel('Chọn cụm loa').check();
    await page.getByRole('region', { name: 'Phát trực tiếp' }).getByRole('checkbox').first().waitFor();
    await page.screenshot({ path: '/tmp/console-live-full.png', fullPage: true });
    await page.getByRole('region', { name: 'Phát trực tiếp' }).getByLabel('Toàn xã').check();

    await panel.getByRole('button', { name: 'Dừng phát' }).click();
    await dialog.getByRole('button', { name: 'Đồng ý' }).click();
    await panel.filter({ hasText: 'Phiên đã kết thúc' }).waitFor();
    expect((await session(id)).state).toBe('ended');
  }, 60_000);

  it('a refused microphone gives a clear message and starts nothing; MediaRecorder vs AudioWorklet latency is measured', async () => {
    const panel = page.getByRole('region', { name: 'Phát trực tiếp' });
    await page.evaluate(`navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'))`);
    await panel.getByRole('button', { name: 'Bắt đầu' }).click();
    await panel.getByRole('alert').filter({ hasText: 'Trình duyệt không cho phép dùng micro' }).waitFor();
    expect(await activeIds()).toEqual([]);
    expect(await panel.getByRole('button', { name: 'Bắt đầu' }).isEnabled()).toBe(true);

    // The measurement behind the choice of AudioWorklet PCM (app.js): time to the first chunk and the
    // chunk period of each path on the same fake microphone, in this browser.
    await page.reload();
    await page.getByTestId('count-online').filter({ hasText: new RegExp(`^${N}$`) }).waitFor();
    const m = await page.evaluate(`(async () => {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 } });
      const rec = new MediaRecorder(stream, { mimeType: 'audio/webm;codecs=opus' });
      const recTimes = [];
      const t0 = performance.now();
      rec.ondataavailable = (e) => { if (e.data.size > 0) recTimes.push(performance.now() - t0); };
      rec.start(20);
      const ctx = new AudioContext({ sampleRate: 48000 });
      await ctx.audioWorklet.addModule('/web/mic-worklet.js');
      const node = new AudioWorkletNode(ctx, 'mic-capture', { processorOptions: { frameSamples: 960 } });
      const wlTimes = [];
      const t1 = performance.now();
      node.port.onmessage = () => wlTimes.push(performance.now() - t1);
      const g = ctx.createGain(); g.gain.value = 0;
      ctx.createMediaStreamSource(stream).connect(node).connect(g).connect(ctx.destination);
      await new Promise((r) => setTimeout(r, 2000));
      rec.stop(); await ctx.close(); for (const tr of stream.getTracks()) tr.stop();
      const gaps = (a) => a.slice(1).map((x, i) => x - a[i]).sort((x, y) => x - y);
      const med = (a) => a.length ? a[Math.floor(a.length / 2)] : null;
      return { recFirstMs: recTimes[0] ?? null, recChunks: recTimes.length, recMedianGapMs: med(gaps(recTimes)), wlFirstMs: wlTimes[0] ?? null, wlBlocks: wlTimes.length, wlMedianGapMs: med(gaps(wlTimes)), rate: ctx.sampleRate };
    })()`) as { recFirstMs: number | null; recChunks: number; recMedianGapMs: number | null; wlFirstMs: number | null; wlBlocks: number; wlMedianGapMs: number | null; rate: number };
    console.log('capture latency in this Chromium (ms):', JSON.stringify(m));
    expect(m.rate).toBe(48_000);
    // ~100 blocks of 20 ms in 2 s (the first after the worklet module loaded).
    expect(m.wlBlocks).toBeGreaterThan(60);
    expect(errors).toEqual([]);
  }, 30_000);
});
