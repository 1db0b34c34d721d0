import { afterEach, describe, expect, it } from 'vitest';
import type { HardwareFault } from '../../edge-agent/src/hardware.js';
import { GpsFix, ModemState, PowerState, SpeakerLine } from '../../schemas/src/index.js';
import { createSimHardware, HardwareError, type SimHardware, type SimHardwareOptions } from '../../firmware-sim/src/sim-hardware.js';

/** Poll `cond` until true or the deadline passes (no blind sleeps). */
async function waitFor(cond: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const open: SimHardware[] = [];
function hw(o: Partial<SimHardwareOptions> = {}): SimHardware {
  const h = createSimHardware({ nodeId: 'n1', warmupMs: 300, ...o });
  open.push(h);
  return h;
}
afterEach(async () => {
  for (const h of open.splice(0)) await h.close();
});

describe('sim hardware: amplifier', () => {
  it('warms up before it is on: off → warming → on, not before warmupMs of hardware time', async () => {
    const h = hw({ driftPpm: -5000 });
    const states: string[] = [];
    h.on('amplifier', (s) => states.push(s));
    expect(h.status().amplifier).toMatchObject({ power: false, state: 'off' });
    const t0 = h.clock.now();
    const p1 = h.setAmplifier(true);
    const p2 = h.setAmplifier(true); // a second caller waits for the same warm-up
    expect(h.status().amplifier).toMatchObject({ power: true, state: 'warming' });
    await Promise.all([p1, p2]);
    expect(h.clock.now() - t0).toBeGreaterThanOrEqual(300);
    expect(states).toEqual(['warming', 'on']);
    expect(h.status().amplifier.state).toBe('on');
    await h.setAmplifier(true); // already on: resolves at once
    await h.setAmplifier(false);
    expect(h.status().amplifier).toMatchObject({ power: false, state: 'off' });
    expect(states).toEqual(['warming', 'on', 'off']);
  });

  it('switching off during warm-up rejects the pending switch-on', async () => {
    const h = hw({ warmupMs: 5000 });
    const p = h.setAmplifier(true);
    await h.setAmplifier(false);
    await expect(p).rejects.toMatchObject({ code: 'SUPERSEDED' });
    expect(h.status().amplifier.state).toBe('off');
  });

  it('an amplifier fault refuses switch-on; clearing it warms up again', async () => {
    const h = hw();
    const faults: HardwareFault[] = [];
    h.onFault((f) => faults.push(f));
    await h.setAmplifier(true);
    h.inject({ kind: 'amplifier' });
    expect(h.status().amplifier.state).toBe('fault');
    expect(faults).toEqual([expect.objectContaining({ fault: 'amplifier', state: 'raised' })]);
    await expect(h.setAmplifier(true)).rejects.toBeInstanceOf(HardwareError);
    h.clear('amplifier');
    expect(faults[1]).toMatchObject({ fault: 'amplifier', state: 'cleared' });
    expect(h.status().amplifier.state).toBe('warming');
    await h.setAmplifier(true);
    expect(h.status().amplifier.state).toBe('on');
  });

  it('the DAC is silent until the amplifier is on, then plays at volume', async () => {
    const h = hw({ warmupMs: 200, volume: 50, dac: { record: true } });
    h.sink.attach({
      read(out) {
        out.fill(0.8);
        return out.length;
      },
    });
    h.sink.start();
    await waitFor(() => h.sink.stats().framesPlayed > 4800, 5000, 'DAC running');
    expect(h.sink.onsets()).toHaveLength(0); // amplifier off: nothing heard
    const before = h.trueClock.now();
    await h.setAmplifier(true);
    await waitFor(() => h.sink.onsets().length > 0, 5000, 'onset');
    const onset = h.sink.onsets()[0]!;
    expect(onset.trueMs - before).toBeGreaterThanOrEqual(200 - 1); // not before warm-up ends
    const rec = h.sink.recording()!;
    expect(Math.max(...rec.samples)).toBeCloseTo(0.4, 6); // 0.8 × volume 50 %
    h.setMute(true);
    await waitFor(() => h.sink.offsets().length > 0, 5000, 'offset after mute');
  });
});

describe('sim hardware: faults', () => {
  it('line open/short raise and clear, and status shows the impedance', () => {
    const h = hw({ lines: [{ id: 'L1', nominalOhm: 8 }, { id: 'L2', nominalOhm: 16 }] });
    const faults: HardwareFault[] = [];
    const off = h.onFault((f) => faults.push(f));
    const ok = h.status().lines;
    expect(ok.map((l) => SpeakerLine.parse(l).fault)).toEqual(['ok', 'ok']);
    expect(ok[1]!.impedanceOhm).toBeGreaterThan(15);
    expect(ok[1]!.impedanceOhm).toBeLessThan(17);

    h.inject({ kind: 'line_open', lineId: 'L2' });
    h.inject({ kind: 'line_open', lineId: 'L2' }); // idempotent
    expect(faults).toEqual([expect.objectContaining({ fault: 'line_open', state: 'raised', lineId: 'L2' })]);
    expect(h.status().lines[1]).toMatchObject({ fault: 'open' });
    expect(h.status().lines[1]!.impedanceOhm).toBeGreaterThan(10_000);

    h.inject({ kind: 'line_short', lineId: 'L2' }); // open → short: one cleared, one raised
    expect(faults.slice(1)).toEqual([
      expect.objectContaining({ fault: 'line_open', state: 'cleared', lineId: 'L2' }),
      expect.objectContaining({ fault: 'line_short', state: 'raised', lineId: 'L2' }),
    ]);
    expect(h.status().lines[1]!.impedanceOhm).toBeLessThan(1);
    expect(h.activeFaults()).toEqual([expect.objectContaining({ fault: 'line_short', lineId: 'L2' })]);

    h.clear('line_short', 'L2');
    expect(faults[3]).toMatchObject({ fault: 'line_short', state: 'cleared', lineId: 'L2' });
    expect(h.status().lines[1]!.fault).toBe('ok');
    expect(h.activeFaults()).toEqual([]);
    expect(() => h.inject({ kind: 'line_open', lineId: 'L9' })).toThrow(/no speaker line L9/);
    off();
    h.inject({ kind: 'line_open' }); // default first line; the unsubscribed listener hears nothing
    expect(faults).toHaveLength(4);
    expect(h.status().lines[0]!.fault).toBe('open');
  });

  it('mains failure → on_battery, battery drains; restore clears', async () => {
    const h = hw({ timeScale: 3600, envTickMs: 20 }); // one true second = one sim hour
    const faults: HardwareFault[] = [];
    h.onFault((f) => faults.push(f));
    const p0 = PowerState.parse(h.status().power);
    expect(p0).toMatchObject({ source: 'mains' });
    expect(p0.mainsV).toBeGreaterThan(200);
    h.inject({ kind: 'mains_fail' });
    expect(faults).toEqual([expect.objectContaining({ fault: 'on_battery', state: 'raised' })]);
    const p1 = h.status().power;
    expect(p1).toMatchObject({ source: 'battery', mainsV: 0 });
    await waitFor(() => (h.status().power.batteryPct ?? 100) < 90, 10_000, 'battery drain');
    expect(h.status().power.batteryV).toBeLessThan(p1.batteryV);
    h.clear('mains_fail');
    expect(faults[1]).toMatchObject({ fault: 'on_battery', state: 'cleared' });
    expect(h.status().power.source).toBe('mains');
  });

  it('injected over-temperature raises, shows a hot heat sink, and clears', () => {
    const h = hw();
    const faults: HardwareFault[] = [];
    h.onFault((f) => faults.push(f));
    h.inject({ kind: 'over_temperature' });
    expect(faults).toEqual([expect.objectContaining({ fault: 'over_temperature', state: 'raised' })]);
    expect(h.status().amplifier.tempC).toBeGreaterThanOrEqual(75);
    h.clear('over_temperature');
    expect(faults[1]).toMatchObject({ fault: 'over_temperature', state: 'cleared' });
    expect(h.status().amplifier.tempC).toBeLessThan(75);
  });

  it('temperature rises while the amplifier plays and the model raises and clears over-temperature', async () => {
    const h = hw({ warmupMs: 50, timeScale: 600, envTickMs: 20, volume: 100, thermal: { overTempC: 60, tauS: 300 } });
    const faults: HardwareFault[] = [];
    h.onFault((f) => faults.push(f));
    const cold = h.status().amplifier.tempC;
    h.sink.attach({
      read(out) {
        out.fill(0.5);
        return out.length;
      },
    });
    h.sink.start();
    await h.setAmplifier(true);
    await waitFor(() => faults.some((f) => f.fault === 'over_temperature' && f.state === 'raised'), 20_000, 'over-temperature');
    expect(h.status().amplifier.tempC).toBeGreaterThan(cold + 20);
    await h.setAmplifier(false);
    await waitFor(() => faults.some((f) => f.fault === 'over_temperature' && f.state === 'cleared'), 20_000, 'cooling');
    expect(h.status().amplifier.tempC).toBeLessThan(60);
  });

  it('faults present from power-on are visible through activeFaults and status', () => {
    const h = hw({ faults: [{ kind: 'line_short', lineId: 'L2' }, { kind: 'mains_fail' }] });
    expect(h.activeFaults().map((f) => f.fault).sort()).toEqual(['line_short', 'on_battery']);
    expect(h.status().power.source).toBe('battery');
  });
});

describe('sim hardware: the rest of the status', () => {
  it('reports modem, GPS, volume, mute, firmware; values fit the schemas', () => {
    const h = hw({ firmwareVersion: 'fw-2.3', seed: 'x', modem: { operator: 'VNPT', rssiDbm: -85 }, gps: { lat: 21.01, lon: 105.8 } });
    h.setVolume(140);
    h.setMute(true);
    const s = h.status();
    expect(s.firmwareVersion).toBe('fw-2.3');
    expect(s.volume).toBe(100);
    expect(s.mute).toBe(true);
    expect(ModemState.parse(s.modem)).toMatchObject({ operator: 'VNPT', tech: '4g' });
    expect(s.modem.rssiDbm).toBeGreaterThan(-100);
    expect(GpsFix.parse(s.gps)).toEqual({ lat: 21.01, lon: 105.8, fix: true });
    expect(() => h.setVolume(Number.NaN)).toThrow(HardwareError);
    const noGps = hw({ gps: null });
    expect(noGps.status().gps).toBeNull();
    expect(['Viettel', 'VNPT', 'MobiFone']).toContain(noGps.status().modem.operator);
  });

  it('reboot emits an event, drops the relay and detaches the source', async () => {
    const h = hw();
    await h.setAmplifier(true);
    let heard = 0;
    const off = h.onReboot(() => heard++);
    await h.reboot();
    expect(heard).toBe(1);
    expect(h.reboots).toBe(1);
    expect(h.status().amplifier.state).toBe('off');
    off();
    await h.reboot();
    expect(heard).toBe(1);
  });

  it('close() is idempotent and later calls refuse', async () => {
    const h = hw({ warmupMs: 10_000 });
    const p = h.setAmplifier(true);
    await h.close();
    await h.close();
    await expect(p).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(h.setAmplifier(true)).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

describe('power-on faults', () => {
  it('starts on battery with real numbers when created with mains_fail (regression: NaN battery and temperature)', async () => {
    const h = createSimHardware({ nodeId: 'pf', faults: [{ kind: 'mains_fail' }] });
    try {
      const s = h.status();
      expect(s.power.source).toBe('battery');
      expect(Number.isFinite(s.power.batteryV)).toBe(true);
      expect(Number.isFinite(s.temperatureC)).toBe(true);
    } finally {
      await h.close();
    }
  });
});
