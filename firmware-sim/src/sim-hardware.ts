import { EventEmitter } from 'node:events';
import { pino, type Logger } from 'pino';
import type { AmplifierState, FaultKind, SpeakerLine } from '../../schemas/src/index.js';
import type { Clock } from '../../edge-agent/src/clock.js';
import type { Hardware, HardwareFault, HardwareStatus } from '../../edge-agent/src/hardware.js';
import { createSeededRandom, createSimClock, isRatedClock, isSimClock, trueClock as defaultTrueClock, type SimClock } from './sim-clock.js';
import { createVirtualDac, type VirtualDac, type VirtualDacOptions } from './virtual-dac.js';

/** Faults a test can inject; `mains_fail` shows up as the `on_battery` fault of the schemas. */
export const INJECTABLE_FAULTS = ['line_open', 'line_short', 'mains_fail', 'over_temperature', 'amplifier'] as const;
export type InjectableFault = (typeof INJECTABLE_FAULTS)[number];

export interface FaultInjection {
  kind: InjectableFault;
  /** Speaker line for line faults; default the first line. */
  lineId?: string;
  detail?: string;
}

export const VN_OPERATORS = ['Viettel', 'VNPT', 'MobiFone'] as const;

export interface SimLineOptions {
  id: string;
  nominalOhm: number;
}

export interface ThermalOptions {
  /** Ambient (cabinet in the sun), °C; default 32. */
  ambientC?: number;
  /** Heat-sink rise above ambient at full volume, continuous sound, °C; default 40. */
  riseC?: number;
  /** Share of riseC an idle powered amplifier reaches; default 0.15. */
  idleShare?: number;
  /** First-order time constant, s of sim time; default 300. */
  tauS?: number;
  /** Over-temperature raised at this heat-sink temperature; default 75. */
  overTempC?: number;
  /** Cleared this far below overTempC; default 5. */
  hysteresisC?: number;
}

export interface BatteryOptions {
  /** Volts at 100 % and 0 %; defaults 13.2 and 11.0 (12 V lead-acid under load). */
  fullV?: number;
  emptyV?: number;
  /** Runtime on battery from full, hours of sim time; default 8. */
  hours?: number;
  /** Recharge rate on mains, % per hour; default 20. */
  chargePctPerHour?: number;
  initialPct?: number;
}

export interface SimHardwareOptions {
  nodeId: string;
  /** The cluster's clock. Default: a SimClock with offsetMs/driftPpm over trueClock. */
  clock?: Clock;
  offsetMs?: number;
  driftPpm?: number;
  trueClock?: Clock;
  warmupMs?: number;
  lines?: SimLineOptions[];
  /** Position; null = no GPS module. Default: a seeded spot in the Red River delta. */
  gps?: { lat: number; lon: number; fix?: boolean } | null;
  modem?: { operator?: string; rssiDbm?: number; tech?: HardwareStatus['modem']['tech'] };
  firmwareVersion?: string;
  seed?: number | string;
  volume?: number;
  mute?: boolean;
  thermal?: ThermalOptions;
  battery?: BatteryOptions;
  /** Sim seconds per true second for the slow models (temperature, battery, 4G wander); default 1. */
  timeScale?: number;
  /** Environment update period, true ms; default 1000. */
  envTickMs?: number;
  /** Faults present from power-on (the demo's broken cluster). */
  faults?: FaultInjection[];
  /**
   * DAC options. `gain: 'amplifier'` (default) makes the DAC output what a listener hears: silence while
   * the amplifier is off, warming or faulted, or muted, and scaled by volume/100 otherwise.
   * `gain: 'unity'` records the digital output regardless of the amplifier.
   */
  dac?: Omit<VirtualDacOptions, 'clock' | 'trueClock' | 'gainAt' | 'log'> & { gain?: 'amplifier' | 'unity' };
  log?: Logger;
}

export class HardwareError extends Error {
  constructor(
    readonly code: 'AMPLIFIER_FAULT' | 'SUPERSEDED' | 'CLOSED' | 'UNKNOWN_LINE' | 'BAD_VALUE',
    message: string,
  ) {
    super(message);
    this.name = 'HardwareError';
  }
}

export interface SimHardware extends Hardware {
  readonly nodeId: string;
  readonly sink: VirtualDac;
  /** The SimClock when this hardware created it or was given one; null for a plain Clock. */
  readonly simClock: SimClock | null;
  readonly trueClock: Clock;
  readonly reboots: number;
  /** Raise a fault (idempotent). */
  inject(f: FaultInjection): void;
  /** Clear an injected fault (idempotent). */
  clear(kind: InjectableFault, lineId?: string): void;
  /** Faults active now, as onFault would have reported them: for an agent that subscribes late. */
  activeFaults(): HardwareFault[];
  /** Pin the modem's figures (tests); the RSSI keeps wandering around the new value. */
  setModem(m: { rssiDbm?: number; operator?: string; tech?: HardwareStatus['modem']['tech'] }): void;
  /** Listen for reboot(); returns an unsubscribe function. */
  onReboot(listener: () => void): () => void;
  on(event: 'reboot', listener: () => void): this;
  on(event: 'fault', listener: (f: HardwareFault) => void): this;
  on(event: 'amplifier', listener: (state: AmplifierState) => void): this;
  once(event: 'reboot', listener: () => void): this;
  once(event: 'fault', listener: (f: HardwareFault) => void): this;
  once(event: 'amplifier', listener: (state: AmplifierState) => void): this;
}

interface LineState {
  id: string;
  nominalOhm: number;
  fault: 'ok' | 'open' | 'short';
}

function faultKey(kind: FaultKind, lineId?: string): string {
  return lineId ? `${kind}:${lineId}` : kind;
}

class SimHardwareImpl extends EventEmitter implements SimHardware {
  readonly nodeId: string;
  readonly clock: Clock;
  readonly simClock: SimClock | null;
  readonly trueClock: Clock;
  readonly warmupMs: number;
  readonly sink: VirtualDac;
  reboots = 0;

  private readonly log: Logger;
  private readonly rand: () => number;
  private readonly firmwareVersion: string;
  private readonly lines: LineState[];
  private readonly gps: { lat: number; lon: number; fix: boolean } | null;
  private readonly thermal: Required<ThermalOptions>;
  private readonly battery: Required<BatteryOptions>;
  private readonly timeScale: number;
  private readonly faultListeners = new Set<(f: HardwareFault) => void>();
  private readonly active = new Map<string, HardwareFault>();

  private power = false;
  private ampState: AmplifierState = 'off';
  private ampFault = false;
  private warmEndTrue = 0;
  private warmTimer: NodeJS.Timeout | undefined;
  private warmWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private volume: number;
  private mute: boolean;
  private ampTempC: number;
  private forcedOverTemp = false;
  private modelOverTemp = false;
  private mainsOk = true;
  private batteryPct: number;
  private rssi: number;
  private rssiCenter: number;
  private operator: string;
  private tech: HardwareStatus['modem']['tech'];
  private lastEnvTrue: number;
  private readonly envTimer: NodeJS.Timeout;
  private closed = false;

  constructor(o: SimHardwareOptions) {
    super();
    this.nodeId = o.nodeId;
    this.log = (o.log ?? pino({ level: 'silent' })).child({ component: 'sim-hardware', nodeId: o.nodeId });
    this.rand = createSeededRandom(o.seed ?? o.nodeId);
    const tc = o.trueClock ?? (o.clock && isSimClock(o.clock) ? o.clock.base : defaultTrueClock);
    this.trueClock = tc;
    if (o.clock) {
      this.clock = o.clock;
      this.simClock = isSimClock(o.clock) ? o.clock : null;
    } else {
      const c = createSimClock({ offsetMs: o.offsetMs ?? 0, driftPpm: o.driftPpm ?? 0, base: tc });
      this.clock = c;
      this.simClock = c;
    }
    this.warmupMs = o.warmupMs ?? 1500;
    this.firmwareVersion = o.firmwareVersion ?? 'sim-1.0.0';
    const lines = o.lines ?? [
      { id: 'L1', nominalOhm: 8 },
      { id: 'L2', nominalOhm: 8 },
    ];
    if (lines.length === 0 || new Set(lines.map((l) => l.id)).size !== lines.length) {
      throw new HardwareError('BAD_VALUE', 'lines must be non-empty with unique ids');
    }
    this.lines = lines.map((l) => ({ id: l.id, nominalOhm: l.nominalOhm, fault: 'ok' }));
    this.gps =
      o.gps === null
        ? null
        : o.gps
          ? { lat: o.gps.lat, lon: o.gps.lon, fix: o.gps.fix ?? true }
          : { lat: 20.95 + (this.rand() - 0.5) * 0.1, lon: 105.75 + (this.rand() - 0.5) * 0.1, fix: true };
    this.thermal = { ambientC: 32, riseC: 40, idleShare: 0.15, tauS: 300, overTempC: 75, hysteresisC: 5, ...o.thermal };
    this.battery = { fullV: 13.2, emptyV: 11.0, hours: 8, chargePctPerHour: 20, initialPct: 100, ...o.battery };
    this.timeScale = o.timeScale ?? 1;
    this.volume = this.checkVolume(o.volume ?? 70);
    this.mute = o.mute ?? false;
    this.ampTempC = this.thermal.ambientC;
    this.batteryPct = this.battery.initialPct;
    this.rssiCenter = o.modem?.rssiDbm ?? -70 - Math.round(this.rand() * 30);
    this.rssi = this.rssiCenter;
    this.operator = o.modem?.operator ?? VN_OPERATORS[Math.floor(this.rand() * VN_OPERATORS.length)]!;
    this.tech = o.modem?.tech ?? '4g';

    const { gain = 'amplifier', ...dacOpts } = o.dac ?? {};
    this.sink = createVirtualDac({
      ...dacOpts,
      clock: this.clock,
      trueClock: tc,
      log: this.log,
      ...(gain === 'amplifier' ? { gainAt: (t: number) => this.gainAt(t) } : {}),
    });

    // Set before the power-on faults: inject('mains_fail') advances the models from lastEnvTrue.
    this.lastEnvTrue = tc.now();
    for (const f of o.faults ?? []) this.inject(f);
    this.envTimer = setInterval(() => this.updateEnv(), o.envTickMs ?? 1000);
    this.envTimer.unref();
  }

  // ---- Hardware interface ----

  status(): HardwareStatus {
    this.updateEnv();
    const noise = (): number => (this.rand() - 0.5) * 0.04; // ±2 % measurement noise
    const lines: SpeakerLine[] = this.lines.map((l) => ({
      id: l.id,
      nominalOhm: l.nominalOhm,
      fault: l.fault,
      impedanceOhm:
        l.fault === 'open' ? round(100_000 * (1 + noise()), 0) : l.fault === 'short' ? round(0.2 + this.rand() * 0.2, 2) : round(l.nominalOhm * (1 + noise()), 2),
    }));
    const ampT = this.reportedAmpTemp();
    const battV = this.battery.emptyV + ((this.battery.fullV - this.battery.emptyV) * this.batteryPct) / 100;
    return {
      firmwareVersion: this.firmwareVersion,
      amplifier: { power: this.power, state: this.ampFault ? 'fault' : this.ampState, tempC: round(ampT, 1) },
      lines,
      power: {
        source: this.mainsOk ? 'mains' : 'battery',
        mainsV: this.mainsOk ? round(220 + (this.rand() - 0.5) * 12, 1) : 0,
        batteryV: round(battV, 2),
        batteryPct: round(this.batteryPct, 1),
      },
      // Enclosure: follows the heat sink part of the way.
      temperatureC: round(this.thermal.ambientC + 0.4 * (ampT - this.thermal.ambientC), 1),
      modem: { rssiDbm: Math.round(this.rssi), operator: this.operator, tech: this.tech },
      gps: this.gps ? { ...this.gps } : null,
      volume: this.volume,
      mute: this.mute,
    };
  }

  setAmplifier(on: boolean): Promise<void> {
    if (this.closed) return Promise.reject(new HardwareError('CLOSED', 'hardware closed'));
    if (!on) {
      this.cancelWarmup(new HardwareError('SUPERSEDED', 'amplifier switched off during warm-up'));
      this.power = false;
      this.setAmpState('off');
      return Promise.resolve();
    }
    if (this.ampFault) return Promise.reject(new HardwareError('AMPLIFIER_FAULT', 'amplifier is in fault'));
    if (this.ampState === 'on') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.warmWaiters.push({ resolve, reject }));
    if (this.ampState !== 'warming') this.beginWarmup();
    return p;
  }

  setVolume(volume: number): void {
    this.volume = this.checkVolume(volume);
  }

  setMute(mute: boolean): void {
    this.mute = mute;
  }

  async reboot(): Promise<void> {
    if (this.closed) throw new HardwareError('CLOSED', 'hardware closed');
    // The relay drops with the computer; the agent that fed the DAC is gone until it restarts.
    this.cancelWarmup(new HardwareError('SUPERSEDED', 'rebooted during warm-up'));
    this.power = false;
    this.setAmpState('off');
    this.sink.attach(null);
    this.reboots++;
    this.log.info({ reboots: this.reboots }, 'reboot');
    this.emit('reboot');
    await Promise.resolve();
  }

  onFault(listener: (f: HardwareFault) => void): () => void {
    this.faultListeners.add(listener);
    return () => this.faultListeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.envTimer);
    this.cancelWarmup(new HardwareError('CLOSED', 'hardware closed'));
    this.sink.stop();
    this.faultListeners.clear();
    await Promise.resolve();
  }

  // ---- Simulation controls ----

  inject(f: FaultInjection): void {
    switch (f.kind) {
      case 'line_open':
      case 'line_short': {
        const line = this.line(f.lineId);
        const want = f.kind === 'line_open' ? 'open' : 'short';
        if (line.fault === want) return;
        if (line.fault !== 'ok') this.setLineFault(line, 'ok');
        this.setLineFault(line, want, f.detail);
        return;
      }
      case 'mains_fail':
        if (!this.mainsOk) return;
        this.updateEnv();
        this.mainsOk = false;
        this.transition('on_battery', 'raised', undefined, f.detail ?? 'mains failed; running on battery');
        return;
      case 'over_temperature':
        this.forcedOverTemp = true;
        this.refreshOverTemp(f.detail);
        return;
      case 'amplifier':
        if (this.ampFault) return;
        this.ampFault = true;
        this.cancelWarmup(new HardwareError('AMPLIFIER_FAULT', 'amplifier fault during warm-up'));
        this.emit('amplifier', 'fault' satisfies AmplifierState);
        this.transition('amplifier', 'raised', undefined, f.detail ?? 'amplifier protection tripped');
        return;
      default: {
        const never: never = f.kind;
        throw new HardwareError('BAD_VALUE', `unknown fault kind ${String(never)}`);
      }
    }
  }

  clear(kind: InjectableFault, lineId?: string): void {
    switch (kind) {
      case 'line_open':
      case 'line_short': {
        const line = this.line(lineId);
        if (line.fault === (kind === 'line_open' ? 'open' : 'short')) this.setLineFault(line, 'ok');
        return;
      }
      case 'mains_fail':
        if (this.mainsOk) return;
        this.updateEnv();
        this.mainsOk = true;
        this.transition('on_battery', 'cleared', undefined, 'mains restored');
        return;
      case 'over_temperature':
        this.forcedOverTemp = false;
        this.refreshOverTemp();
        return;
      case 'amplifier':
        if (!this.ampFault) return;
        this.ampFault = false;
        this.transition('amplifier', 'cleared');
        // Protection released: a powered amplifier warms up again before it plays.
        if (this.power) this.beginWarmup();
        else this.setAmpState('off');
        return;
      default: {
        const never: never = kind;
        throw new HardwareError('BAD_VALUE', `unknown fault kind ${String(never)}`);
      }
    }
  }

  activeFaults(): HardwareFault[] {
    return [...this.active.values()].map((f) => ({ ...f }));
  }

  setModem(m: { rssiDbm?: number; operator?: string; tech?: HardwareStatus['modem']['tech'] }): void {
    if (m.rssiDbm !== undefined) this.rssi = this.rssiCenter = m.rssiDbm;
    if (m.operator !== undefined) this.operator = m.operator;
    if (m.tech !== undefined) this.tech = m.tech;
  }

  onReboot(listener: () => void): () => void {
    this.on('reboot', listener);
    return () => this.off('reboot', listener);
  }

  // ---- internals ----

  private checkVolume(v: number): number {
    if (!Number.isFinite(v)) throw new HardwareError('BAD_VALUE', `volume must be a number 0..100, got ${v}`);
    return Math.max(0, Math.min(100, Math.round(v)));
  }

  private line(id?: string): LineState {
    const l = id === undefined ? this.lines[0] : this.lines.find((x) => x.id === id);
    if (!l) throw new HardwareError('UNKNOWN_LINE', `no speaker line ${id} on ${this.nodeId}`);
    return l;
  }

  private setLineFault(line: LineState, fault: 'ok' | 'open' | 'short', detail?: string): void {
    const prev = line.fault;
    line.fault = fault;
    if (prev !== 'ok') this.transition(prev === 'open' ? 'line_open' : 'line_short', 'cleared', line.id);
    if (fault !== 'ok') {
      this.transition(fault === 'open' ? 'line_open' : 'line_short', 'raised', line.id, detail ?? `speaker line ${line.id} ${fault === 'open' ? 'open circuit' : 'short circuit'}`);
    }
  }

  private transition(fault: FaultKind, state: 'raised' | 'cleared', lineId?: string, detail?: string): void {
    const key = faultKey(fault, lineId);
    const f: HardwareFault = { fault, state, ...(lineId !== undefined ? { lineId } : {}), ...(detail !== undefined ? { detail } : {}) };
    if (state === 'raised') this.active.set(key, f);
    else this.active.delete(key);
    this.log.info({ fault, state, lineId }, 'fault transition');
    this.emit('fault', f);
    for (const l of [...this.faultListeners]) {
      try {
        l(f);
      } catch (err) {
        this.log.error({ err }, 'onFault listener threw');
      }
    }
  }

  private setAmpState(s: AmplifierState): void {
    if (this.ampState === s) return;
    this.ampState = s;
    if (!this.ampFault) this.emit('amplifier', s);
  }

  private rate(): number {
    return isRatedClock(this.clock) ? this.clock.rate() : 1;
  }

  /** Warm-up lasts warmupMs of HARDWARE time (the relay's timer runs on the cluster's own clock). */
  private beginWarmup(): void {
    this.power = true;
    this.warmEndTrue = this.trueClock.now() + this.warmupMs / this.rate();
    this.setAmpState('warming');
    this.scheduleWarmCheck();
  }

  private scheduleWarmCheck(): void {
    clearTimeout(this.warmTimer);
    const remaining = this.warmEndTrue - this.trueClock.now();
    if (remaining <= 0) {
      this.warmTimer = undefined;
      this.finishWarmup();
      return;
    }
    // Node may fire a timer up to ~1 ms early (ms rounding): re-check instead of trusting it.
    this.warmTimer = setTimeout(() => this.scheduleWarmCheck(), Math.ceil(remaining));
  }

  private finishWarmup(): void {
    if (this.ampFault || !this.power) return;
    this.setAmpState('on');
    const waiters = this.warmWaiters;
    this.warmWaiters = [];
    for (const w of waiters) w.resolve();
  }

  private cancelWarmup(err: Error): void {
    clearTimeout(this.warmTimer);
    this.warmTimer = undefined;
    const waiters = this.warmWaiters;
    this.warmWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  /** What a listener hears per unit of DAC output at TRUE time t (see SimHardwareOptions.dac). */
  private gainAt(t: number): number {
    if (!this.power || this.mute || this.ampFault) return 0;
    if (this.ampState === 'warming') return t >= this.warmEndTrue ? this.volume / 100 : 0;
    return this.ampState === 'on' ? this.volume / 100 : 0;
  }

  private reportedAmpTemp(): number {
    return this.forcedOverTemp ? Math.max(this.ampTempC, this.thermal.overTempC + 5) : this.ampTempC;
  }

  private refreshOverTemp(detail?: string): void {
    const th = this.thermal;
    if (!this.modelOverTemp && this.ampTempC >= th.overTempC) this.modelOverTemp = true;
    else if (this.modelOverTemp && this.ampTempC < th.overTempC - th.hysteresisC) this.modelOverTemp = false;
    const hot = this.forcedOverTemp || this.modelOverTemp;
    const raised = this.active.has('over_temperature');
    if (hot && !raised) {
      this.transition('over_temperature', 'raised', undefined, detail ?? `amplifier heat sink ${round(this.reportedAmpTemp(), 1)} °C ≥ ${th.overTempC} °C`);
    } else if (!hot && raised) {
      this.transition('over_temperature', 'cleared');
    }
  }

  /** Advance the slow models to now (first-order thermal, linear battery, mean-reverting RSSI walk). */
  private updateEnv(): void {
    if (this.closed) return;
    const t = this.trueClock.now();
    const dtS = ((t - this.lastEnvTrue) / 1000) * this.rate() * this.timeScale;
    this.lastEnvTrue = t;
    if (dtS <= 0) return;
    const th = this.thermal;
    const playing = this.power && !this.ampFault && this.ampState === 'on' && !this.mute && this.sink.isSounding();
    const load = this.power ? th.idleShare + (playing ? (1 - th.idleShare) * (this.volume / 100) : 0) : 0;
    const target = th.ambientC + th.riseC * load;
    this.ampTempC = target + (this.ampTempC - target) * Math.exp(-dtS / th.tauS);
    this.refreshOverTemp();

    const b = this.battery;
    const dPct = this.mainsOk ? (b.chargePctPerHour * dtS) / 3600 : -((100 / b.hours) * dtS) / 3600;
    this.batteryPct = Math.max(0, Math.min(100, this.batteryPct + dPct));

    const steps = Math.min(60, Math.max(1, Math.round(dtS)));
    for (let i = 0; i < steps; i++) {
      this.rssi += 0.05 * (this.rssiCenter - this.rssi) + (this.rand() - 0.5) * 2;
    }
    this.rssi = Math.max(-120, Math.min(-45, this.rssi));
  }
}

function round(x: number, digits: number): number {
  const k = 10 ** digits;
  return Math.round(x * k) / k;
}

/** A simulated cluster. The DAC is not started: call `hw.sink.start()` (the agent's player normally does). */
export function createSimHardware(opts: SimHardwareOptions): SimHardware {
  return new SimHardwareImpl(opts);
}
