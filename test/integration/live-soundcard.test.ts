import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { soundcardInput } from '../../controller/src/live/sources.js';
import { provisionFleet, runFleet, type RunningFleet } from '../../firmware-sim/src/fleet.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Sound-card input (kind 'soundcard', RADIO_LIVE_INPUT) end to end, on a machine with no sound card
 * (/proc/asound absent) but with ALSA's library: a real ALSA capture device is made with the `file`
 * PCM plugin (slave `null`, `infile` = the audio). The `null` slave has no clock — captured from a
 * plain file, the whole file arrives at once — so `infile` is a FIFO that `ffmpeg -re` fills with a
 * 880 Hz tone in real time, as a card would. ALSA finds the device through ALSA_CONFIG_PATH (alsa.conf
 * + this test's file), which the controller's ffmpeg child inherits from the controller's environment.
 *
 * 1. A sound-card session captures the device (ffmpeg's alsa demuxer) and the tone sounds on a
 *    simulated cluster's virtual DAC; the session ends by itself at durationMs.
 * 2. A card that does not exist ends the session with ffmpeg's error as the reason.
 * 3. Without RADIO_LIVE_INPUT the request answers 501 naming the variable.
 */
const TONE_HZ = 880;
const ALSA_CONF = '/usr/share/alsa/alsa.conf';
const hasAlsa = fs.existsSync(ALSA_CONF) && (() => {
  try { return execFileSync('ffmpeg', ['-hide_banner', '-demuxers'], { encoding: 'utf8' }).includes(' alsa '); } catch { return false; }
})();

let tmp: string;
let fifo: string;
let writer: ChildProcess | undefined;
let t: TestController;
let fleet: RunningFleet;
const others: TestController[] = [];
const savedAlsaPath = process.env.ALSA_CONFIG_PATH;

beforeAll(async () => {
  if (!hasAlsa) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'live-soundcard-'));
  fifo = path.join(tmp, 'capture.raw');
  execFileSync('mkfifo', [fifo]);
  const conf = path.join(tmp, 'asound.conf');
  fs.writeFileSync(conf, `pcm.radiotest {\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n  infile "${fifo}"\n  format "raw"\n}\n`);
  // The controller runs in this process: its ffmpeg children inherit this environment.
  process.env.ALSA_CONFIG_PATH = `${ALSA_CONF}:${conf}`;
  // The "card": 48 kHz stereo s16le in real time. Its open blocks until the capture opens the FIFO.
  writer = spawn('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-re', '-f', 'lavfi', '-i', `sine=frequency=${TONE_HZ}:sample_rate=48000:duration=60`,
    '-ac', '2', '-f', 's16le', '-y', fifo], { stdio: 'ignore' });
  writer.on('error', () => undefined);

  t = await startTestController({ env: { RADIO_RTP_PORT: 0, RADIO_LIVE_INPUT: 'alsa:radiotest' } });
  const specs = await provisionFleet({ base: t.base, token: t.token, count: 1, villages: 1, prefix: 'sc' });
  fleet = await runFleet(specs, {
    telemetryIntervalMs: 1000, keepaliveS: 4, syncIntervalMs: 300,
    hardware: () => ({ warmupMs: 300, volume: 80, dac: { record: { maxSeconds: 30 } } }),
    agent: () => ({ liveBindAddress: '127.0.0.1' }),
  });
  const c = fleet.agents[0]!;
  await waitFor(() => c.agent.clockSource.estimate().samples >= 6, { what: 'clock sync', timeoutMs: 20_000 });
}, 60_000);

afterAll(async () => {
  writer?.kill('SIGKILL');
  await fleet?.stop();
  await t?.stop();
  for (const o of others) await o.stop();
  if (savedAlsaPath === undefined) delete process.env.ALSA_CONFIG_PATH; else process.env.ALSA_CONFIG_PATH = savedAlsaPath;
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** Power at `hz` relative to the window's whole power (Goertzel; 1 = a pure tone at hz). */
function toneShare(x: Float32Array, from: number, n: number, hz: number, rate: number): { share: number; rms: number } {
  const w = (2 * Math.PI * hz) / rate;
  const coeff = 2 * Math.cos(w);
  let s1 = 0;
  let s2 = 0;
  let energy = 0;
  for (let i = from; i < from + n; i++) {
    const v = x[i]!;
    energy += v * v;
    const s0 = v + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const power = s1 * s1 + s2 * s2 - coeff * s1 * s2; // |X(hz)|²
  // A pure sine of amplitude A over n samples: |X|² = (A·n/2)², energy = A²·n/2 → share = |X|²·2/(n·energy).
  return { share: energy > 0 ? (2 * power) / (n * energy) : 0, rms: Math.sqrt(energy / n) };
}

const ended = async (tc: TestController, id: string, timeoutMs: number) =>
  waitFor(async () => { const v = (await tc.api('GET', `/api/v1/live/sessions/${id}`)).body; return v.state === 'ended' ? v : undefined; }, { what: 'the session to end', timeoutMs });

// Skipped only where ALSA's library config or ffmpeg's alsa demuxer is absent (no capture device can be
// made at all); .ci/run installs alsa-utils and ffmpeg, so CI runs it.
describe.skipIf(!hasAlsa)('sound-card live input (ALSA)', () => {
  it('builds ffmpeg input arguments from RADIO_LIVE_INPUT and refuses malformed values', () => {
    expect(soundcardInput('alsa:plughw:1,0')).toEqual(['-f', 'alsa', '-sample_rate', '48000', '-i', 'plughw:1,0', '-af', 'asetpts=N/SR/TB,asetnsamples=n=960:p=0']);
    expect(soundcardInput('pulse:default').slice(0, 5)).toEqual(['-f', 'pulse', '-sample_rate', '48000', '-i']);
    for (const bad of ['hw:1,0', 'oss:/dev/dsp', 'alsa:', 'alsa:-f', 'alsa:de fault', 'pulse:x;rm']) expect(() => soundcardInput(bad), bad).toThrow(/RADIO_LIVE_INPUT/);
  });

  it('captures the configured ALSA device and the tone sounds on a cluster, until durationMs', async () => {
    const c = fleet.agents[0]!;
    const r = await t.api('POST', '/api/v1/live/sessions', { kind: 'soundcard', title: 'Bàn trộn âm', durationMs: 4000, targets: { commune: true }, delayMs: 300 });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const id = r.body.sessionId as string;
    await waitFor(async () => (await t.api('GET', `/api/v1/live/sessions/${id}`)).body.reach.playing === 1, { what: 'the cluster playing', timeoutMs: 15_000 });
    const s = await ended(t, id, 20_000);
    expect(s.endReason).toBe('source_ended');
    expect(s.sender.framesSent).toBeGreaterThan(150);

    // What the listener heard: 100 ms windows that are loud and almost all 880 Hz.
    const rec = await waitFor(() => { const x = c.hardware.sink.recording(); return x && x.samples.length > 0 ? x : undefined; }, { what: 'a DAC recording' });
    const n = Math.round(rec.sampleRate / 10);
    let toneWindows = 0;
    for (let i = 0; i + n <= rec.samples.length; i += n) {
      const w = toneShare(rec.samples, i, n, TONE_HZ, rec.sampleRate);
      if (w.rms > 0.01 && w.share > 0.8) toneWindows++;
    }
    if (process.env.LIVE_TEST_VERBOSE === '1') console.log('soundcard: 880 Hz windows at the cluster', toneWindows, 'sender', JSON.stringify(s.sender));
    // 4 s captured; the first moments may go to the cluster's warm-up and the live queue bound.
    expect(toneWindows, 'tenths of a second of the 880 Hz tone at the cluster').toBeGreaterThanOrEqual(30);
  }, 45_000);

  it('a sound card that does not exist ends the session with ffmpeg\'s error as the reason', async () => {
    const o = await startTestController({ env: { RADIO_RTP_PORT: 0, RADIO_LIVE_INPUT: 'alsa:hw:9,0' } });
    others.push(o);
    await provisionFleet({ base: o.base, token: o.token, count: 1, villages: 1, prefix: 'sx' });
    const r = await o.api('POST', '/api/v1/live/sessions', { kind: 'soundcard', title: 'No card', targets: { commune: true } });
    expect(r.status).toBe(201);
    const s = await ended(o, r.body.sessionId, 20_000);
    expect(s.endReason).toMatch(/^source_failed: ffmpeg exited 1: .*hw:9,0/);
    expect(o.ctl.live.stats().active).toBe(0);
  }, 30_000);

  it('answers 501 naming RADIO_LIVE_INPUT when no sound card is configured', async () => {
    const o = await startTestController({ env: { RADIO_RTP_PORT: 0 } });
    others.push(o);
    await provisionFleet({ base: o.base, token: o.token, count: 1, villages: 1, prefix: 'sn' });
    const r = await o.api('POST', '/api/v1/live/sessions', { kind: 'soundcard', title: 'No card', targets: { commune: true } });
    expect(r.status).toBe(501);
    expect(r.body.code).toBe('LIVE_SOUNDCARD_UNAVAILABLE');
    expect(r.body.message).toMatch(/RADIO_LIVE_INPUT/);
  }, 20_000);
});
