/**
 * The field hardware backend: the Hardware interface on a Linux cluster computer (Raspberry Pi class).
 *
 * - Audio: ALSA through a supervised `aplay` fed at the device's pace (alsa-sink.ts).
 * - Amplifier power relay: one GPIO line held by libgpiod's `gpioset` (gpio.ts); on → warming for
 *   `warmupMs` → on. Without a configured relay the amplifier state is tracked only.
 * - Volume/mute: setVolume() changes what listeners hear, as firmware-sim's DAC does: the sink scales
 *   samples by volume/100, or, with a mixer control configured, ALSA does (`amixer sset`); `volumeIn:
 *   'none'` leaves it to the player. Mute always silences the sink, so a muted cluster stays silent
 *   whatever the player does.
 * - Health from the system (sysfs-sensors.ts), polled: CPU temperature, optional amplifier heat-sink
 *   sensor and protection input, mains/battery (sysfs power_supply, INA219 hwmon, or a UPS status file),
 *   speaker-line sensor files, the 4G modem through `mmcli` when ModemManager is there. What is not
 *   configured or not readable reports an "unknown" default: 0 °C, 0 V on mains, RSSI 0 dBm with an
 *   empty operator (the telemetry schema has no null for these).
 * - Faults: transitions seen by the poll (mains lost → on_battery, over_temperature with 5 °C
 *   hysteresis, line_open/line_short, amplifier from the protection input, a relay holder that died,
 *   or an audio output that keeps failing) go to onFault listeners.
 * - Clock: the system clock (chrony/NTP-disciplined on a field unit).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { pino, type Logger } from 'pino';
import type { AmplifierState, FaultKind, SpeakerLine } from '../../schemas/src/index.js';
import { LinuxHardwareConfig, type LinuxHardwareConfigInput } from '../../schemas/src/agent-hardware-config.js';
import { createAlsaSink, type AlsaSink } from './alsa-sink.js';
import { systemClock, systemTimers, type Clock, type Timers } from './clock.js';
import { createGpioLine, type GpioLine } from './gpio.js';
import type { Hardware, HardwareFault, HardwareStatus } from './hardware.js';
import { findLinuxBinary, resolveLinuxBinary } from './linux-binaries.js';
import {
  parseFlag, parseLineSensor, parseMmcliLocation, parseMmcliModem, parseMmcliSignal, parseOsRelease, parseUpsStatus,
  readScaled, readText, runMmcli,
} from './sysfs-sensors.js';

const execFileP = promisify(execFile);

export class LinuxHardwareError extends Error {
  constructor(
    readonly code: 'AMPLIFIER_FAULT' | 'SUPERSEDED' | 'CLOSED' | 'BAD_VALUE' | 'REBOOT_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'LinuxHardwareError';
  }
}

export interface LinuxHardwareOptions {
  nodeId: string;
  /** The `linux` section of agent.json (defaults applied here). */
  config?: LinuxHardwareConfigInput;
  log?: Logger;
  /** Default: the system clock. */
  clock?: Clock;
  timers?: Timers;
  /** Where binaries are looked up (PATH, RADIO_APLAY_PATH, RADIO_GPIOSET_PATH …); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Default /etc/os-release. */
  osReleasePath?: string;
}

export interface LinuxHardware extends Hardware {
  readonly sink: AlsaSink;
  readonly config: LinuxHardwareConfig;
  /** The relay line, null when no relay is configured. */
  readonly relay: GpioLine | null;
  /** Faults active now, as onFault reported them: for an agent that subscribes late. */
  activeFaults(): HardwareFault[];
  /** Read every sensor now (the poll timer does this every sensors.pollIntervalMs). */
  poll(): Promise<void>;
  /** Ask the modem now (the modem timer does this every modem.pollIntervalMs). */
  pollModem(): Promise<void>;
}

type AmpFaultReason = 'relay' | 'sensor' | 'audio';

/**
 * Build the Linux backend: checks its programs (aplay always, gpioset when a relay is configured: a
 * missing one throws LinuxBinaryMissingError naming the Debian package), drives the relay OFF, reads
 * the sensors once and starts polling. The sink is idle until the player starts it.
 */
export async function createLinuxHardware(o: LinuxHardwareOptions): Promise<LinuxHardware> {
  const cfg = LinuxHardwareConfig.parse(o.config ?? {});
  const env = o.env ?? process.env;
  const clock = o.clock ?? systemClock;
  const timers = o.timers ?? systemTimers;
  const log = (o.log ?? pino({ level: 'silent' })).child({ component: 'linux-hardware', nodeId: o.nodeId });

  const aplayPath = resolveLinuxBinary('aplay', env);
  const gpiosetPath = cfg.relay ? resolveLinuxBinary('gpioset', env) : null;
  const volumeIn = cfg.volumeIn ?? (cfg.mixer ? 'mixer' : 'sink');
  const amixerPath = volumeIn === 'mixer' ? resolveLinuxBinary('amixer', env) : null;
  const mmcliPath = cfg.modem.enabled ? findLinuxBinary('mmcli', env) : null;
  if (cfg.modem.enabled && !mmcliPath) log.info('mmcli not found (Debian package modemmanager): modem figures reported as unknown');

  const firmwareVersion = cfg.firmwareVersion ?? parseOsRelease((await readText(o.osReleasePath ?? '/etc/os-release')) ?? '') ?? 'linux';

  let closed = false;
  let volume = 70;
  let mute = false;
  let ampPower = false;
  let ampState: AmplifierState = 'off';
  let warmGen = 0;
  let warmEnd = 0;
  let warmTimer: NodeJS.Timeout | undefined;
  let warmWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const ampReasons = new Map<AmpFaultReason, string>();
  const faultListeners = new Set<(f: HardwareFault) => void>();
  const active = new Map<string, HardwareFault>();

  const reading = {
    cpuTempC: null as number | null,
    ampTempC: null as number | null,
    mains: null as boolean | null,
    mainsV: null as number | null,
    batteryV: null as number | null,
    batteryPct: null as number | null,
  };
  const lines: SpeakerLine[] = cfg.lines.map((l) => ({ id: l.id, nominalOhm: l.nominalOhm, impedanceOhm: l.nominalOhm, fault: 'ok' }));
  const modem: { rssiDbm: number | null; operator: string | null; tech: HardwareStatus['modem']['tech'] | null } = { rssiDbm: null, operator: null, tech: null };
  let gpsFix: { lat: number; lon: number } | null = null;
  let overTemp = false;

  // ---- faults ----

  const transition = (fault: FaultKind, state: 'raised' | 'cleared', lineId?: string, detail?: string): void => {
    const key = lineId ? `${fault}:${lineId}` : fault;
    if ((state === 'raised') === active.has(key)) return;
    const f: HardwareFault = { fault, state, ...(lineId !== undefined ? { lineId } : {}), ...(detail !== undefined ? { detail: detail.slice(0, 500) } : {}) };
    if (state === 'raised') active.set(key, f);
    else active.delete(key);
    log.info({ fault, state, lineId, detail }, 'fault transition');
    for (const l of [...faultListeners]) {
      try {
        l(f);
      } catch (err) {
        log.error({ err }, 'onFault listener threw');
      }
    }
  };

  const setAmpReason = (reason: AmpFaultReason, detail: string | null): void => {
    if (detail === null) ampReasons.delete(reason);
    else ampReasons.set(reason, detail);
    if (ampReasons.size > 0) transition('amplifier', 'raised', undefined, [...ampReasons.values()][0]);
    else transition('amplifier', 'cleared');
  };

  const ampFaulted = (): boolean => ampReasons.has('relay') || ampReasons.has('sensor');

  // ---- relay and amplifier ----

  const relay = cfg.relay && gpiosetPath
    ? createGpioLine({ gpiosetPath, chip: cfg.relay.chip, line: cfg.relay.line, activeLow: cfg.relay.activeLow, syntax: cfg.relay.syntax, timers, log })
    : null;

  const rejectWaiters = (err: Error): void => {
    timers.clearTimeout(warmTimer);
    warmTimer = undefined;
    const ws = warmWaiters;
    warmWaiters = [];
    for (const w of ws) w.reject(err);
  };

  relay?.onFailure((err) => {
    // The holder died: the line fell back to its default, so the relay is (presumably) off.
    ampPower = false;
    ampState = 'off';
    warmGen++;
    setAmpReason('relay', `amplifier relay GPIO ${cfg.relay?.chip}:${cfg.relay?.line} lost: ${err.message}`);
    rejectWaiters(new LinuxHardwareError('AMPLIFIER_FAULT', err.message));
  });

  const finishWarmup = (gen: number): void => {
    if (gen !== warmGen || !ampPower || closed) return;
    const remaining = warmEnd - clock.now();
    if (remaining > 0) {
      // Node may fire a timer up to ~1 ms early (ms rounding): re-check instead of trusting it.
      warmTimer = timers.setTimeout(() => finishWarmup(gen), Math.ceil(remaining));
      return;
    }
    warmTimer = undefined;
    ampState = 'on';
    if (ampReasons.has('relay')) setAmpReason('relay', null);
    log.info('amplifier on');
    const ws = warmWaiters;
    warmWaiters = [];
    for (const w of ws) w.resolve();
  };

  const setAmplifier = (on: boolean): Promise<void> => {
    if (closed) return Promise.reject(new LinuxHardwareError('CLOSED', 'hardware closed'));
    if (!on) {
      warmGen++;
      rejectWaiters(new LinuxHardwareError('SUPERSEDED', 'amplifier switched off during warm-up'));
      const was = ampState;
      ampPower = false;
      ampState = 'off';
      if (was !== 'off') log.info('amplifier off');
      if (!relay) return Promise.resolve();
      return relay.set(false).then(
        () => { if (ampReasons.has('relay')) setAmpReason('relay', null); },
        (err: Error) => {
          setAmpReason('relay', `cannot switch the amplifier relay off: ${err.message}`);
          throw new LinuxHardwareError('AMPLIFIER_FAULT', err.message);
        },
      );
    }
    if (ampReasons.has('sensor')) return Promise.reject(new LinuxHardwareError('AMPLIFIER_FAULT', `amplifier is in fault: ${ampReasons.get('sensor')}`));
    if (ampState === 'on' && ampPower) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => warmWaiters.push({ resolve, reject }));
    if (ampState !== 'warming') {
      const gen = ++warmGen;
      ampPower = true;
      ampState = 'warming';
      log.info({ warmupMs: cfg.warmupMs }, 'amplifier warming up');
      const relayOn = relay ? relay.set(true) : Promise.resolve();
      relayOn.then(
        () => {
          if (gen !== warmGen) return;
          // Warm-up counts from the moment the relay closes.
          warmEnd = clock.now() + cfg.warmupMs;
          finishWarmup(gen);
        },
        (err: Error) => {
          if (gen !== warmGen) return;
          ampPower = false;
          ampState = 'off';
          setAmpReason('relay', `cannot switch the amplifier relay on: ${err.message}`);
          rejectWaiters(new LinuxHardwareError('AMPLIFIER_FAULT', err.message));
        },
      );
    }
    return p;
  };

  // ---- volume / mixer ----

  let mixerQueue: Promise<void> = Promise.resolve();
  const applyMixer = (): void => {
    if (volumeIn !== 'mixer' || !cfg.mixer || !amixerPath) return;
    const { control, card } = cfg.mixer;
    const pct = mute ? 0 : volume;
    const args = ['-q', ...(card ? ['-c', card] : []), 'sset', control, `${pct}%`];
    mixerQueue = mixerQueue.then(async () => {
      try {
        await execFileP(amixerPath, args, { timeout: 5000 });
      } catch (err) {
        log.warn({ err: (err as Error).message, args }, 'amixer failed');
      }
    });
  };
  const checkVolume = (v: number): number => {
    if (!Number.isFinite(v)) throw new LinuxHardwareError('BAD_VALUE', `volume must be a number 0..100, got ${v}`);
    return Math.max(0, Math.min(100, Math.round(v)));
  };

  // ---- audio sink ----

  const sink = createAlsaSink({
    aplayPath, device: cfg.audio.device, leadMs: cfg.audio.leadMs, periodMs: cfg.audio.periodMs, bufferMs: cfg.audio.bufferMs,
    outputLatencyMs: cfg.audio.outputLatencyMs, statusPath: cfg.audio.statusPath, clock, timers, log, muted: () => mute,
    gain: () => (volumeIn === 'sink' ? volume / 100 : 1),
  });
  sink.onHealth((h) => setAmpReason('audio', h.ok ? null : h.detail));

  // ---- sensors ----

  let polling: Promise<void> | null = null;
  const pollOnce = async (): Promise<void> => {
    const s = cfg.sensors;
    const p = s.power;
    const [cpu, amp, ampFault, mainsOnline, mainsV, battV, battPct, upsText, lineTexts] = await Promise.all([
      readScaled(s.cpuTempPath, 0.001),
      s.amplifierTemp ? readScaled(s.amplifierTemp.path, s.amplifierTemp.scale) : null,
      s.amplifierFaultPath ? readText(s.amplifierFaultPath).then(parseFlag) : null,
      p?.mainsOnlinePath ? readText(p.mainsOnlinePath).then(parseFlag) : null,
      p?.mainsVoltage ? readScaled(p.mainsVoltage.path, p.mainsVoltage.scale) : null,
      p?.batteryVoltage ? readScaled(p.batteryVoltage.path, p.batteryVoltage.scale) : null,
      p?.batteryPercentPath ? readScaled(p.batteryPercentPath) : null,
      p?.upsStatusPath ? readText(p.upsStatusPath) : null,
      Promise.all(cfg.lines.map((l) => (l.sensorPath ? readText(l.sensorPath) : null))),
    ]);
    if (closed) return;
    const ups = upsText !== null ? parseUpsStatus(upsText) : null;
    reading.cpuTempC = cpu;
    reading.ampTempC = amp;
    // A dedicated mains input wins over the UPS's opinion; no information at all means "on mains".
    reading.mains = mainsOnline ?? (ups?.onBattery == null ? null : !ups.onBattery);
    reading.mainsV = mainsV ?? ups?.mainsV ?? null;
    reading.batteryV = battV ?? ups?.batteryV ?? null;
    reading.batteryPct = battPct !== null ? Math.max(0, Math.min(100, battPct)) : (ups?.batteryPct ?? null);

    if (reading.mains === false) transition('on_battery', 'raised', undefined, `mains lost; running on battery${reading.batteryV !== null ? ` (${reading.batteryV.toFixed(1)} V)` : ''}`);
    else if (reading.mains === true) transition('on_battery', 'cleared', undefined, 'mains restored');

    const known = [cpu, amp].filter((x): x is number => x !== null);
    if (known.length > 0) {
      const hottest = Math.max(...known);
      const thr = s.overTemperatureC;
      if (!overTemp && hottest >= thr) overTemp = true;
      else if (overTemp && hottest < thr - 5) overTemp = false;
      if (overTemp) transition('over_temperature', 'raised', undefined, `${amp !== null && amp === hottest ? 'amplifier heat sink' : 'CPU'} ${hottest.toFixed(1)} °C ≥ ${thr} °C`);
      else transition('over_temperature', 'cleared');
    }

    if (ampFault !== null && ampFault !== ampReasons.has('sensor')) {
      setAmpReason('sensor', ampFault ? 'amplifier protection input active' : null);
      if (ampFault && ampPower) {
        // Protection tripped: stop waiting for a warm-up that will not produce sound.
        warmGen++;
        ampState = 'warming';
        rejectWaiters(new LinuxHardwareError('AMPLIFIER_FAULT', 'amplifier protection input active'));
      } else if (!ampFault && ampPower) {
        // Protection released with the relay still closed: the amplifier warms up again before it plays.
        const gen = ++warmGen;
        ampState = 'warming';
        warmEnd = clock.now() + cfg.warmupMs;
        finishWarmup(gen);
      }
    }

    cfg.lines.forEach((lc, i) => {
      const r = parseLineSensor(lineTexts[i] ?? null, lc.nominalOhm);
      if (!r) return;
      const line = lines[i]!;
      const prev = line.fault;
      line.impedanceOhm = Math.round(r.impedanceOhm * 100) / 100;
      line.fault = r.fault;
      if (prev === r.fault) return;
      if (prev !== 'ok') transition(prev === 'open' ? 'line_open' : 'line_short', 'cleared', line.id);
      if (r.fault !== 'ok') {
        transition(r.fault === 'open' ? 'line_open' : 'line_short', 'raised', line.id, `speaker line ${line.id} ${r.fault === 'open' ? 'open circuit' : 'short circuit'} (${line.impedanceOhm} Ω, nominal ${lc.nominalOhm} Ω)`);
      }
    });
  };
  /** A poll asked for while one runs starts after it (it must see the files as they are now). */
  const poll = (): Promise<void> => {
    const p = (polling ?? Promise.resolve()).then(() => pollOnce()).catch((err: unknown) => log.warn({ err }, 'sensor poll failed'));
    polling = p;
    void p.finally(() => { if (polling === p) polling = null; });
    return p;
  };

  let modemPolling: Promise<void> | null = null;
  const pollModemOnce = async (): Promise<void> => {
    if (!mmcliPath) return;
    const [m, sig, loc] = await Promise.all([runMmcli(mmcliPath, []), runMmcli(mmcliPath, ['--signal-get']), runMmcli(mmcliPath, ['--location-get'])]);
    if (closed) return;
    const r = m === null ? null : parseMmcliModem(m);
    modem.operator = r?.operator ?? null;
    modem.tech = r?.tech ?? null;
    modem.rssiDbm = (sig === null ? null : parseMmcliSignal(sig)) ?? r?.rssiDbm ?? null;
    gpsFix = loc === null ? null : parseMmcliLocation(loc);
  };
  const pollModem = (): Promise<void> => {
    modemPolling ??= pollModemOnce()
      .catch((err: unknown) => log.warn({ err }, 'modem poll failed'))
      .finally(() => { modemPolling = null; });
    return modemPolling;
  };

  // ---- start: relay held off, first readings, timers ----

  if (relay) {
    try {
      await relay.set(false);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'cannot hold the amplifier relay off');
      setAmpReason('relay', `cannot drive the amplifier relay: ${(err as Error).message}`);
    }
  }
  await poll();
  void pollModem();
  const pollTimer = timers.setInterval(() => { if (!polling) void poll(); }, cfg.sensors.pollIntervalMs);
  const modemTimer = mmcliPath ? timers.setInterval(() => { void pollModem(); }, cfg.modem.pollIntervalMs) : undefined;
  log.info({ device: cfg.audio.device, relay: cfg.relay ?? null, firmwareVersion, mmcli: mmcliPath !== null }, 'linux hardware ready');

  const hw: LinuxHardware = {
    clock,
    warmupMs: cfg.warmupMs,
    sink,
    config: cfg,
    relay,
    status() {
      const st: HardwareStatus = {
        firmwareVersion,
        amplifier: { power: ampPower, state: ampFaulted() ? 'fault' : ampState, tempC: round1(reading.ampTempC ?? 0) },
        lines: lines.map((l) => ({ ...l })),
        power: {
          source: reading.mains === false ? 'battery' : 'mains',
          mainsV: round1(Math.max(0, reading.mains === false ? 0 : (reading.mainsV ?? 0))),
          batteryV: Math.round(Math.max(0, reading.batteryV ?? 0) * 100) / 100,
          ...(reading.batteryPct !== null ? { batteryPct: round1(reading.batteryPct) } : {}),
        },
        temperatureC: round1(reading.cpuTempC ?? 0),
        modem: {
          rssiDbm: Math.max(-150, Math.min(0, modem.rssiDbm ?? 0)),
          operator: (modem.operator ?? '').slice(0, 40),
          ...(modem.tech ? { tech: modem.tech } : {}),
        },
        gps: gpsFix ? { ...gpsFix, fix: true } : cfg.position ? { ...cfg.position, fix: false } : null,
        volume,
        mute,
      };
      return st;
    },
    setAmplifier,
    setVolume(v) {
      const nv = checkVolume(v);
      if (nv === volume) return;
      volume = nv;
      applyMixer();
    },
    setMute(m) {
      if (m === mute) return;
      mute = m;
      applyMixer();
    },
    async reboot() {
      if (closed) throw new LinuxHardwareError('CLOSED', 'hardware closed');
      log.warn({ command: cfg.rebootCommand }, 'reboot requested');
      await setAmplifier(false).catch(() => {});
      sink.stop();
      const [cmd, ...args] = cfg.rebootCommand;
      try {
        await execFileP(cmd!, args, { timeout: 30_000 });
      } catch (err) {
        const e = err as Error & { stderr?: string };
        throw new LinuxHardwareError('REBOOT_FAILED', `reboot command ${cfg.rebootCommand.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`);
      }
    },
    onFault(listener) {
      faultListeners.add(listener);
      return () => faultListeners.delete(listener);
    },
    activeFaults: () => [...active.values()].map((f) => ({ ...f })),
    poll,
    pollModem,
    async close() {
      if (closed) return;
      closed = true;
      timers.clearInterval(pollTimer);
      timers.clearInterval(modemTimer);
      warmGen++;
      rejectWaiters(new LinuxHardwareError('CLOSED', 'hardware closed'));
      ampPower = false;
      ampState = 'off';
      faultListeners.clear();
      // Releasing the line lets it fall to its default: relay off (see gpio.ts on wiring).
      await Promise.all([sink.close(), relay?.close(), mixerQueue, polling, modemPolling]);
    },
  };
  return hw;
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
