/**
 * The field hardware backend against what this machine has: real `aplay` on the ALSA null device
 * (Debian package alsa-utils; skipped with a reason when absent), stand-in scripts for `gpioset`,
 * `amixer`, `mmcli` and a capturing `aplay` (they record their argv and input), temp files as sysfs.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GpsFix, ModemState, PowerState, SpeakerLine } from '../../schemas/src/index.js';
import { createAlsaSink } from '../../edge-agent/src/alsa-sink.js';
import type { HardwareFault, PcmSource } from '../../edge-agent/src/hardware.js';
import { createLinuxHardware, type LinuxHardware, type LinuxHardwareOptions } from '../../edge-agent/src/hardware-linux.js';
import { findLinuxBinary } from '../../edge-agent/src/linux-binaries.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { nextEvent, waitFor } from '../helpers/wait.js';

const APLAY = findLinuxBinary('aplay');
const NO_APLAY = APLAY === null;
if (NO_APLAY) console.warn('hardware-linux: aplay not found (Debian package alsa-utils): ALSA null-device tests skipped');

/** The system clock the backend uses (edge-agent/src/clock.ts). */
const now = (): number => performance.timeOrigin + performance.now();

let dir: string;
const cleanups: (() => Promise<void> | void)[] = [];

function write(name: string, text: string, mode = 0o644): string {
  const p = path.join(dir, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text, { mode });
  return p;
}

/** A gpioset stand-in: answers --version, logs "<ms> start|stop <argv>", holds until SIGTERM; line 99 is "busy". */
function fakeGpioset(name: string, version = 'v1.6.3'): { bin: string; log: string } {
  const log = path.join(dir, `${name}.log`);
  const bin = write(`${name}/gpioset`, `#!/bin/sh
if [ "$1" = "--version" ]; then echo "gpioset (libgpiod) ${version}"; exit 0; fi
case "$*" in *" 99="*) echo "gpioset: error setting the GPIO line values: Device or resource busy" >&2; exit 1;; esac
trap 'echo "$(date +%s%3N) stop $*" >> '"'${log}'"'; exit 0' TERM INT
echo "$(date +%s%3N) start $*" >> '${log}'
while :; do sleep 0.2 & wait $!; done
`, 0o755);
  return { bin, log };
}

interface GpioRecord { ts: number; what: 'start' | 'stop'; args: string }
function gpioLog(file: string): GpioRecord[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => {
    const [ts, what, ...rest] = l.split(' ');
    return { ts: Number(ts), what: what as 'start' | 'stop', args: rest.join(' ') };
  });
}

/** An aplay stand-in that prints the setup line the sink anchors on, records argv, and captures stdin. */
function fakeAplay(name: string): { bin: string; out: string; args: string } {
  const out = path.join(dir, `${name}.raw`);
  const args = path.join(dir, `${name}.args`);
  const bin = write(`${name}/aplay`, `#!/bin/sh
printf '%s\\n' "$@" > '${args}'
echo "Null PCM" >&2
echo "  boundary     : 5404319552844595200" >&2
exec cat >> '${out}'
`, 0o755);
  return { bin, out, args };
}

function logCapture() {
  const lines: any[] = [];
  const log = pino({ level: 'debug' }, new Writable({ write(chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb(); } }));
  return { log, lines };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function makeHw(o: Partial<LinuxHardwareOptions> & { env?: NodeJS.ProcessEnv }): Promise<LinuxHardware> {
  const hw = await createLinuxHardware({
    nodeId: 'cum-test',
    osReleasePath: write('os-release', 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'),
    ...o,
    config: { modem: { enabled: false }, sensors: { cpuTempPath: path.join(dir, 'absent') }, ...o.config },
  });
  cleanups.push(() => hw.close());
  return hw;
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'radio-hwlinux-'));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('ALSA sink on the null device (real aplay)', () => {
  it.skipIf(NO_APLAY)('pulls at real-time pace with presentationTime ≈ now + queued audio; start/stop spawn and end aplay', async () => {
    // The system clock, noting the sink's last reading: the time it decided what to write.
    let lastReading = Number.NaN;
    const clock = { now: () => (lastReading = now()) };
    const sink = createAlsaSink({ aplayPath: APLAY!, device: 'null', leadMs: 50, periodMs: 10, clock });
    cleanups.push(() => sink.close());
    let frames = 0;
    const ahead: number[] = [];
    const times: number[] = [];
    const source: PcmSource = {
      read(out, presentationTime) {
        ahead.push(presentationTime - lastReading);
        times.push(presentationTime);
        out.fill(0.25);
        frames += out.length;
        return out.length;
      },
    };
    sink.attach(source);
    expect(sink.pid()).toBeNull();
    const t0 = now();
    sink.start();
    await waitFor(() => frames >= 48_000, { what: '1 s of audio pulled', timeoutMs: 20_000, intervalMs: 5 });
    const elapsed = now() - t0;
    // Pacing correctness: 1 s of audio cannot have been pulled in much less than 1 s (the lead is 50 ms).
    expect(elapsed).toBeGreaterThanOrEqual(900);
    const pid = sink.pid();
    expect(pid).not.toBeNull();
    expect(isAlive(pid!)).toBe(true);
    // Every block is due between the moment the sink decided to write it and the lead ahead of it.
    expect(Math.min(...ahead)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...ahead)).toBeLessThanOrEqual(50);
    // Consecutive blocks are 10 ms apart, except where the sink re-anchored after an underrun.
    let jumps = 0;
    for (let i = 1; i < times.length; i++) if (Math.abs(times[i]! - times[i - 1]! - 10) > 0.01) jumps++;
    const st = sink.stats();
    expect(jumps).toBeLessThanOrEqual(st.deviceUnderruns);
    expect(st.underruns).toBe(0);
    expect(st.framesPlayed).toBe(frames);
    expect(st.bytesWritten).toBe(frames * 2);

    sink.stop();
    await sink.idle();
    expect(sink.pid()).toBeNull();
    await waitFor(() => !isAlive(pid!), { what: 'aplay gone after stop()' });
    const pulledAtStop = frames;
    // Idle means idle: nothing is pulled without a process.
    await new Promise((r) => setTimeout(r, 100));
    expect(frames).toBe(pulledAtStop);

    sink.start();
    await waitFor(() => sink.pid(), { what: 'a new aplay after start()' });
    expect(sink.pid()).not.toBe(pid);
    await waitFor(() => frames > pulledAtStop, { what: 'pulling again' });
  });

  it.skipIf(NO_APLAY)('restarts aplay when it dies and logs its stderr; counts a source underrun', async () => {
    const { log, lines } = logCapture();
    const sink = createAlsaSink({ aplayPath: APLAY!, device: 'null', restartMinMs: 50, log });
    cleanups.push(() => sink.close());
    let reads = 0;
    sink.attach({ read: (out) => { reads++; out.fill(0); return reads === 3 ? 100 : out.length; } });
    sink.start();
    const first = await waitFor(() => (reads > 5 ? sink.pid() : null), { what: 'aplay running' });
    process.kill(first, 'SIGKILL');
    const second = await waitFor(() => { const p = sink.pid(); return p !== null && p !== first ? p : null; }, { what: 'aplay restarted' });
    expect(second).not.toBe(first);
    const before = reads;
    await waitFor(() => reads > before + 3, { what: 'pulling from the new aplay' });
    const st = sink.stats();
    expect(st.restarts).toBe(1);
    expect(st.underruns).toBe(1);
    expect(st.underrunFrames).toBe(380);
    const warn = lines.find((l) => l.msg === 'aplay exited unexpectedly; restarting');
    expect(warn).toMatchObject({ signal: 'SIGKILL' });
    expect(warn.stderr).toMatch(/boundary/);
  });

  it.skipIf(NO_APLAY)('reports failure after repeated deaths (a device that cannot open) and keeps retrying', async () => {
    const sink = createAlsaSink({ aplayPath: APLAY!, device: 'no_such_pcm_device', restartMinMs: 20, restartMaxMs: 50, failAfterRestarts: 2 });
    cleanups.push(() => sink.close());
    const health = nextEvent<{ ok: boolean; detail: string }>((cb) => sink.onHealth(cb), () => true, 15_000, 'sink failure');
    sink.start();
    const h = await health;
    expect(h.ok).toBe(false);
    expect(h.detail).toMatch(/no_such_pcm_device/);
    await waitFor(() => sink.stats().restarts >= 3, { what: 'more restarts' });
  });
});

describe('ALSA sink drift steering (stand-in aplay, fake /proc status)', () => {
  it('reads the device delay (scaled by the card rate) and corrects its estimate towards it', async () => {
    const ap = fakeAplay('ap-steer');
    // The card says it holds nothing: it consumed faster than estimated (a fast crystal, or after an xrun).
    const status = write('proc/card9/pcm0p/sub0/status', 'state: RUNNING\nowner_pid   : 1\ndelay       : 0\navail       : 4410\n');
    write('proc/card9/pcm0p/sub0/hw_params', 'access: RW_INTERLEAVED\nrate: 44100 (44100/1)\n');
    const sink = createAlsaSink({ aplayPath: ap.bin, device: 'hw:9,0', statusPath: status, leadMs: 50 });
    cleanups.push(() => sink.close());
    sink.attach({ read: (out) => { out.fill(0); return out.length; } });
    sink.start();
    // The estimate says up to a lead is queued; the device says none (all of it played): error ≤ 0
    // (unless that tick came later than the lead, when the estimate itself says the device ran dry).
    await waitFor(() => sink.stats().corrections >= 2, { what: 'two device readings', timeoutMs: 10_000 });
    expect(sink.stats().lastCorrectionFrames).toBeGreaterThanOrEqual(-2400);
    // Now the card holds 99 999 frames at 44.1 kHz = 108 842 at 48 kHz (more than estimated): the sink
    // adopts that (off by more than a lead) and holds back instead of piling up more.
    fs.writeFileSync(status, 'state: RUNNING\ndelay       : 99999\n');
    const n = sink.stats().corrections;
    await waitFor(() => sink.stats().corrections > n, { what: 'the next reading', timeoutMs: 10_000 });
    const big = sink.stats().lastCorrectionFrames;
    expect(big).toBeGreaterThan(108_842 - 2400);
    expect(big).toBeLessThanOrEqual(108_842);
    expect(sink.stats().queuedFrames).toBeGreaterThan(48_000);
  });
});

describe('createLinuxHardware', () => {
  it('refuses to start without aplay, naming the Debian package', async () => {
    const empty = fs.mkdtempSync(path.join(dir, 'empty-'));
    await expect(createLinuxHardware({ nodeId: 'x', env: { PATH: empty } })).rejects.toThrow(/alsa-utils/);
    await expect(createLinuxHardware({ nodeId: 'x', env: { PATH: empty, RADIO_APLAY_PATH: path.join(empty, 'aplay') } })).rejects.toThrow(/RADIO_APLAY_PATH.*alsa-utils/);
    const ap = fakeAplay('ap-missing-gpio');
    await expect(createLinuxHardware({ nodeId: 'x', env: { PATH: empty, RADIO_APLAY_PATH: ap.bin }, config: { relay: { line: 17 } } })).rejects.toThrow(/gpioset.*'gpiod'/);
  });

  it('drives the relay through gpioset: held off at start, on only after the warm-up, off again', async () => {
    const g = fakeGpioset('g1');
    const ap = fakeAplay('ap1');
    const hw = await makeHw({ env: { ...process.env, RADIO_GPIOSET_PATH: g.bin, RADIO_APLAY_PATH: ap.bin }, config: { relay: { chip: 'gpiochip0', line: 17 }, warmupMs: 300 } });
    await waitFor(() => gpioLog(g.log).length >= 1, { what: 'relay held off' });
    expect(gpioLog(g.log)[0]).toMatchObject({ what: 'start', args: '--mode=signal gpiochip0 17=0' });
    expect(hw.status().amplifier).toMatchObject({ power: false, state: 'off' });
    const offPid = hw.relay!.pid()!;
    expect(isAlive(offPid)).toBe(true);

    const tBefore = Date.now();
    const on = hw.setAmplifier(true);
    expect(hw.status().amplifier).toMatchObject({ power: true, state: 'warming' });
    await on;
    const tOn = Date.now();
    expect(hw.status().amplifier).toMatchObject({ power: true, state: 'on' });
    const recs = gpioLog(g.log);
    const stopOff = recs.findIndex((r) => r.what === 'stop' && r.args.endsWith('17=0'));
    const startOn = recs.findIndex((r) => r.what === 'start' && r.args === '--mode=signal gpiochip0 17=1');
    // The off-holder released the line before the on-holder requested it (the kernel refuses two holders).
    expect(stopOff).toBeGreaterThanOrEqual(0);
    expect(startOn).toBeGreaterThan(stopOff);
    // The amplifier is declared on a warm-up after the relay closed, never before.
    expect(tOn - tBefore).toBeGreaterThanOrEqual(300);
    expect(tOn - recs[startOn]!.ts).toBeGreaterThanOrEqual(300 - 100);
    expect(isAlive(offPid)).toBe(false);

    await hw.setAmplifier(false);
    expect(hw.status().amplifier).toMatchObject({ power: false, state: 'off' });
    await waitFor(() => gpioLog(g.log).filter((r) => r.what === 'start').at(-1)?.args.endsWith('17=0'), { what: 'relay off' });

    // Switching off during warm-up rejects the waiter and leaves the relay off.
    const superseded = expect(hw.setAmplifier(true)).rejects.toMatchObject({ code: 'SUPERSEDED' });
    await hw.setAmplifier(false);
    await superseded;
    expect(hw.status().amplifier.state).toBe('off');
    // (The stand-in logs when its shell gets there; real gpioset sets the line at once.)
    await waitFor(() => gpioLog(g.log).filter((r) => r.what === 'start').at(-1)?.args.endsWith('17=0'), { what: 'relay left off' });

    // close() releases the line (its default state is the relay's off state, see deploy/README.md).
    const holder = hw.relay!.pid()!;
    await hw.close();
    expect(isAlive(holder)).toBe(false);
    expect(gpioLog(g.log).at(-1)!.what).toBe('stop');
  });

  it('speaks libgpiod v2 syntax and active-low when gpioset says v2', async () => {
    const g = fakeGpioset('g2', 'v2.1.3');
    const ap = fakeAplay('ap2');
    const hw = await makeHw({ env: { ...process.env, RADIO_GPIOSET_PATH: g.bin, RADIO_APLAY_PATH: ap.bin }, config: { relay: { chip: 'gpiochip4', line: 23, activeLow: true }, warmupMs: 0 } });
    await hw.setAmplifier(true);
    await waitFor(() => gpioLog(g.log).some((r) => r.what === 'start' && r.args === '-c gpiochip4 -l 23=1'), { what: 'v2 holder' });
    expect(gpioLog(g.log)[0]!.args).toBe('-c gpiochip4 -l 23=0');
  });

  it('raises an amplifier fault when the relay holder dies or cannot take the line, and clears it when the relay works again', async () => {
    const g = fakeGpioset('g3');
    const ap = fakeAplay('ap3');
    const env = { ...process.env, RADIO_GPIOSET_PATH: g.bin, RADIO_APLAY_PATH: ap.bin };
    const hw = await makeHw({ env, config: { relay: { line: 5 }, warmupMs: 20 } });
    const faults: HardwareFault[] = [];
    hw.onFault((f) => faults.push(f));
    await hw.setAmplifier(true);
    process.kill(hw.relay!.pid()!, 'SIGKILL');
    await waitFor(() => faults.some((f) => f.fault === 'amplifier' && f.state === 'raised'), { what: 'amplifier fault' });
    expect(hw.status().amplifier).toMatchObject({ power: false, state: 'fault' });
    expect(faults[0]!.detail).toMatch(/relay GPIO gpiochip0:5 lost/);
    await hw.setAmplifier(true);
    expect(faults.at(-1)).toMatchObject({ fault: 'amplifier', state: 'cleared' });
    expect(hw.status().amplifier.state).toBe('on');

    // A busy line at start-up: the agent still runs and reports the fault.
    const busy = await makeHw({ env, config: { relay: { line: 99 } } });
    expect(busy.activeFaults()).toEqual([expect.objectContaining({ fault: 'amplifier', state: 'raised', detail: expect.stringMatching(/busy/) })]);
    expect(busy.status().amplifier.state).toBe('fault');
  });

  it('feeds the source to aplay as s16le at 48 kHz mono with the configured device; volume scales it, mute silences it', async () => {
    const ap = fakeAplay('ap4');
    const hw = await makeHw({ env: { ...process.env, RADIO_APLAY_PATH: ap.bin }, config: { audio: { device: 'plughw:CARD=Headphones,DEV=0', leadMs: 40, periodMs: 5 } } });
    hw.setVolume(100);
    let pulled = 0;
    hw.sink.attach({ read: (out) => { out.fill(0.5); pulled += out.length; return out.length; } });
    hw.sink.start();
    const captured = (): number => (fs.existsSync(ap.out) ? fs.statSync(ap.out).size : 0);
    await waitFor(() => pulled >= 4800 && captured() >= 4800 * 2, { what: '100 ms of audio captured' });
    const args = fs.readFileSync(ap.args, 'utf8').trim().split('\n');
    expect(args).toEqual(expect.arrayContaining(['-D', 'plughw:CARD=Headphones,DEV=0', '-t', 'raw', '-f', 'S16_LE', '-r', '48000', '-c', '1', '--buffer-time=80000', '--period-time=5000', '--start-delay=40000']));
    const loud = fs.readFileSync(ap.out);
    expect(loud.readInt16LE(0)).toBe(16384);
    expect(loud.readInt16LE(loud.length - 2)).toBe(16384);

    // Software volume (no mixer configured): 50 → half the amplitude, as firmware-sim's DAC does.
    hw.setVolume(50);
    const atHalf = captured();
    await waitFor(() => captured() >= atHalf + 4800 * 2, { what: 'audio at volume 50' });
    hw.setMute(true);
    expect(hw.status()).toMatchObject({ volume: 50, mute: true });
    const atMute = captured();
    await waitFor(() => captured() >= atMute + 4800 * 2, { what: 'muted audio captured' });
    hw.sink.stop();
    await hw.sink.idle();
    // The whole capture is full level, then half, then silence: each change applies from the next block.
    const all = fs.readFileSync(ap.out);
    const runs: number[] = [];
    for (let i = 0; i + 1 < all.length; i += 2) {
      const v = all.readInt16LE(i);
      if (runs.at(-1) !== v) runs.push(v);
    }
    expect(runs).toEqual([16384, 8192, 0]);
  });

  it('reports sensors from sysfs-style files and raises/clears faults on transitions', async () => {
    const ap = fakeAplay('ap5');
    const cpu = write('sys/thermal_zone0/temp', '52312\n');
    const amp = write('sys/w1/temperature', '61000\n');
    const ampFault = write('sys/amp_fault', '0\n');
    const mains = write('sys/AC/online', '1\n');
    const batt = write('sys/hwmon/in1_input', '13150\n');
    const line2 = write('sys/lines/L2', '7.8\n');
    const hw = await makeHw({
      env: { ...process.env, RADIO_APLAY_PATH: ap.bin },
      config: {
        sensors: {
          cpuTempPath: cpu, amplifierTemp: { path: amp, scale: 0.001 }, amplifierFaultPath: ampFault, overTemperatureC: 70, pollIntervalMs: 50,
          power: { mainsOnlinePath: mains, batteryVoltage: { path: batt, scale: 0.001 } },
        },
        lines: [{ id: 'L1', nominalOhm: 8 }, { id: 'L2', nominalOhm: 8, sensorPath: line2 }],
        position: { lat: 21.03, lon: 105.85 },
      },
    });
    const s = hw.status();
    expect(s).toMatchObject({
      firmwareVersion: 'debian 12', temperatureC: 52.3, amplifier: { tempC: 61, state: 'off' },
      power: { source: 'mains', batteryV: 13.15 },
      lines: [{ id: 'L1', impedanceOhm: 8, fault: 'ok' }, { id: 'L2', impedanceOhm: 7.8, fault: 'ok' }],
      gps: { lat: 21.03, lon: 105.85, fix: false },
    });
    expect(hw.activeFaults()).toEqual([]);

    // Mains lost: seen by the poll timer, reported once.
    const lost = nextEvent<HardwareFault>((cb) => hw.onFault(cb), (f) => f.fault === 'on_battery', 10_000, 'on_battery raised');
    fs.writeFileSync(mains, '0\n');
    expect(await lost).toMatchObject({ state: 'raised', detail: expect.stringMatching(/13\.2 V/) });
    expect(hw.status().power.source).toBe('battery');

    const faults: HardwareFault[] = [];
    hw.onFault((f) => faults.push(f));
    fs.writeFileSync(mains, '1\n');
    fs.writeFileSync(amp, '74500\n');
    fs.writeFileSync(line2, '0.3\n');
    fs.writeFileSync(ampFault, '1\n');
    await hw.poll();
    expect(faults).toEqual(expect.arrayContaining([
      expect.objectContaining({ fault: 'on_battery', state: 'cleared' }),
      expect.objectContaining({ fault: 'over_temperature', state: 'raised', detail: expect.stringMatching(/amplifier heat sink 74\.5/) }),
      expect.objectContaining({ fault: 'line_short', state: 'raised', lineId: 'L2' }),
      expect.objectContaining({ fault: 'amplifier', state: 'raised' }),
    ]));
    expect(hw.status().amplifier.state).toBe('fault');
    await expect(hw.setAmplifier(true)).rejects.toMatchObject({ code: 'AMPLIFIER_FAULT' });

    // Hysteresis: 66 °C is below 70 but not 5 °C below: still hot. 64 °C clears.
    faults.length = 0;
    fs.writeFileSync(amp, '66000\n');
    fs.writeFileSync(line2, 'open\n');
    fs.writeFileSync(ampFault, '0\n');
    await hw.poll();
    expect(faults.map((f) => `${f.fault}:${f.state}`)).toEqual(['amplifier:cleared', 'line_short:cleared', 'line_open:raised']);
    fs.writeFileSync(amp, '64000\n');
    await hw.poll();
    expect(faults.at(-1)).toMatchObject({ fault: 'over_temperature', state: 'cleared' });
    // A poll that sees nothing new reports nothing.
    const n = faults.length;
    await hw.poll();
    expect(faults.length).toBe(n);
  });

  it('reads mains and battery from a UPS status file', async () => {
    const ap = fakeAplay('ap6');
    const ups = write('apcupsd.status', 'STATUS   : ONLINE \nLINEV    : 226.0 Volts\nBCHARGE  : 100.0 Percent\nBATTV    : 13.6 Volts\n');
    const hw = await makeHw({ env: { ...process.env, RADIO_APLAY_PATH: ap.bin }, config: { sensors: { power: { upsStatusPath: ups } } } });
    expect(hw.status().power).toEqual({ source: 'mains', mainsV: 226, batteryV: 13.6, batteryPct: 100 });
    fs.writeFileSync(ups, 'ups.status: OB DISCHRG\nbattery.charge: 81\nbattery.voltage: 12.7\ninput.voltage: 0\n');
    await hw.poll();
    expect(hw.status().power).toEqual({ source: 'battery', mainsV: 0, batteryV: 12.7, batteryPct: 81 });
    expect(hw.activeFaults()).toEqual([expect.objectContaining({ fault: 'on_battery', state: 'raised' })]);
  });

  it('reports unknown defaults that still fit the telemetry schema when nothing can be read', async () => {
    const ap = fakeAplay('ap7');
    const empty = fs.mkdtempSync(path.join(dir, 'nommcli-'));
    const hw = await makeHw({ env: { PATH: empty, RADIO_APLAY_PATH: ap.bin }, config: { modem: { enabled: true } } });
    const s = hw.status();
    expect(s).toMatchObject({ temperatureC: 0, amplifier: { power: false, state: 'off', tempC: 0 }, power: { source: 'mains', mainsV: 0, batteryV: 0 }, modem: { rssiDbm: 0, operator: '' }, gps: null, volume: 70, mute: false });
    expect(s.modem.tech).toBeUndefined();
    expect(() => { PowerState.parse(s.power); ModemState.parse(s.modem); s.lines.forEach((l) => SpeakerLine.parse(l)); }).not.toThrow();
  });

  it('asks ModemManager through mmcli when present', async () => {
    const ap = fakeAplay('ap8');
    const mm = write('mm/mmcli', `#!/bin/sh
case "$*" in
  *--signal-get*) echo '{"modem":{"signal":{"lte":{"rssi":"-71.00"}}}}';;
  *--location-get*) echo '{"modem":{"location":{"gps":{"latitude":"21.0285","longitude":"105.8542"}}}}';;
  *) echo '{"modem":{"3gpp":{"operator-name":"VNPT"},"generic":{"access-technologies":["lte"],"signal-quality":{"value":"60"},"state":"connected"}}}';;
esac
`, 0o755);
    const hw = await makeHw({ env: { ...process.env, RADIO_APLAY_PATH: ap.bin, RADIO_MMCLI_PATH: mm }, config: { modem: { enabled: true } } });
    await hw.pollModem();
    const s = hw.status();
    expect(s.modem).toEqual({ rssiDbm: -71, operator: 'VNPT', tech: '4g' });
    expect(s.gps).toEqual({ lat: 21.0285, lon: 105.8542, fix: true });
    GpsFix.parse(s.gps);
  });

  it('sets the ALSA mixer through amixer when a control is configured', async () => {
    const ap = fakeAplay('ap9');
    const amixLog = path.join(dir, 'amixer.log');
    const amixer = write('amx/amixer', `#!/bin/sh\necho "$*" >> '${amixLog}'\n`, 0o755);
    const hw = await makeHw({ env: { ...process.env, RADIO_APLAY_PATH: ap.bin, RADIO_AMIXER_PATH: amixer }, config: { mixer: { control: 'PCM', card: '0' } } });
    hw.setVolume(40);
    hw.setMute(true);
    hw.setMute(false);
    expect(hw.status()).toMatchObject({ volume: 40, mute: false });
    expect(() => hw.setVolume(Number.NaN)).toThrow(/volume/);
    await waitFor(() => fs.existsSync(amixLog) && fs.readFileSync(amixLog, 'utf8').trim().split('\n').length === 3, { what: 'three amixer calls' });
    expect(fs.readFileSync(amixLog, 'utf8').trim().split('\n')).toEqual(['-q -c 0 sset PCM 40%', '-q -c 0 sset PCM 0%', '-q -c 0 sset PCM 40%']);
  });

  it('reboot() switches the amplifier off and runs the configured command', async () => {
    const g = fakeGpioset('g10');
    const ap = fakeAplay('ap10');
    const marker = path.join(dir, 'rebooted');
    const hw = await makeHw({
      env: { ...process.env, RADIO_GPIOSET_PATH: g.bin, RADIO_APLAY_PATH: ap.bin },
      config: { relay: { line: 6 }, warmupMs: 0, rebootCommand: ['sh', '-c', `echo now > '${marker}'`] },
    });
    await hw.setAmplifier(true);
    await hw.reboot();
    expect(fs.readFileSync(marker, 'utf8').trim()).toBe('now');
    expect(hw.status().amplifier.power).toBe(false);
    expect(gpioLog(g.log).filter((r) => r.what === 'start').at(-1)!.args).toMatch(/6=0$/);

    const failing = await makeHw({ env: { ...process.env, RADIO_APLAY_PATH: ap.bin }, config: { rebootCommand: ['sh', '-c', 'echo "Access denied" >&2; exit 1'] } });
    await expect(failing.reboot()).rejects.toMatchObject({ code: 'REBOOT_FAILED', message: expect.stringMatching(/Access denied/) });
  });
});

describe("agent CLI with hardware 'linux'", () => {
  let t: TestController;
  beforeAll(async () => { t = await startTestController(); });
  afterAll(async () => { await t.stop(); });

  function runCli(cfg: object, env: NodeJS.ProcessEnv) {
    const file = path.join(dir, `agent-${Math.random().toString(36).slice(2)}.json`);
    fs.writeFileSync(file, JSON.stringify(cfg));
    // Its own process group: if a test fails midway, the cleanup kills the agent with its aplay and
    // gpioset children (as systemd's control-group kill does).
    const child = spawn(process.execPath, ['--import', './deploy/ts-register.mjs', 'edge-agent/src/cli.ts', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, RADIO_LOG_LEVEL: 'warn', ...env } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    cleanups.push(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    });
    return { child, output: () => out, exited: new Promise<number | null>((r) => child.once('exit', (c) => r(c))) };
  }

  it('refuses a bad linux section and a missing aplay with exit code 2 and a message', async () => {
    const base = { nodeId: 'cum-x', username: 'u', password: 'p', mqttUrl: 'mqtt://127.0.0.1:1', hardware: 'linux' };
    const bad = runCli({ ...base, linux: { audio: { leadMs: 1 } } }, {});
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toMatch(/linux\.audio\.leadMs/);
    const noAplay = runCli(base, { RADIO_APLAY_PATH: path.join(dir, 'nope', 'aplay') });
    expect(await noAplay.exited).toBe(2);
    expect(noAplay.output()).toMatch(/alsa-utils/);
  });

  it('runs an agent on the linux backend: online, telemetry, a test tone through the relay and aplay', async () => {
    await t.api('POST', '/api/v1/zones', { id: 'thon-linux', name: 'Linux' });
    const { body } = await t.api('POST', '/api/v1/nodes', { id: 'cum-linux', name: 'Linux', zoneId: 'thon-linux' });
    const g = fakeGpioset('gcli');
    const ap = fakeAplay('apcli');
    const cli = runCli({
      nodeId: 'cum-linux', username: body.credentials.username, password: body.credentials.password, mqttUrl: body.credentials.mqttUrl,
      telemetryIntervalMs: 1000, hardware: 'linux',
      linux: { relay: { line: 17 }, warmupMs: 100, firmwareVersion: 'field-test-1', modem: { enabled: false }, sensors: { cpuTempPath: path.join(dir, 'absent') } },
    }, { RADIO_APLAY_PATH: ap.bin, RADIO_GPIOSET_PATH: g.bin });
    await waitFor(() => t.ctl.nodes.get('cum-linux')?.status === 'online', { what: 'linux agent online', timeoutMs: 30_000 });
    const tel = await waitFor(async () => (await t.api('GET', '/api/v1/nodes/cum-linux')).body.telemetry?.data, { what: 'telemetry' });
    expect(tel.firmwareVersion).toBe('field-test-1');
    const r = await t.api('POST', '/api/v1/nodes/cum-linux/commands', { name: 'test_tone', params: { durationMs: 300, frequencyHz: 1000 } });
    expect(r.status).toBeLessThan(300);
    // The tone reaches aplay, and the relay went on (and off again after the tone).
    await waitFor(() => fs.existsSync(ap.out) && fs.readFileSync(ap.out).some((b) => b !== 0), { what: 'tone samples at aplay', timeoutMs: 20_000 });
    await waitFor(() => gpioLog(g.log).some((x) => x.what === 'start' && x.args.endsWith('17=1')), { what: 'relay on' });
    await waitFor(() => gpioLog(g.log).filter((x) => x.what === 'start').at(-1)?.args.endsWith('17=0') && gpioLog(g.log).some((x) => x.args.endsWith('17=1')), { what: 'relay off after the tone' });
    cli.child.kill('SIGTERM');
    expect(await cli.exited).toBe(0);
    // Clean stop released the relay line.
    expect(gpioLog(g.log).at(-1)!.what).toBe('stop');
  });
});
