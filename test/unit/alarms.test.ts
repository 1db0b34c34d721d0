import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { ServerEvent, Telemetry } from '../../schemas/src/index.js';
import { createAlarmEngine } from '../../controller/src/alarms.js';
import { createEventBus } from '../../controller/src/event-bus.js';
import { openDb } from '../../controller/src/store/db.js';
import { createStore } from '../../controller/src/store/store.js';

function setup(raiseAfterMs: number, clearAfterMs: number) {
  const store = createStore(openDb(':memory:'));
  store.ensureCommune('c', 'C', 0);
  let t = 1000;
  const bus = createEventBus();
  const events: ServerEvent[] = [];
  bus.on((_c, e) => events.push(e));
  const info = { communeId: 'c', maintenance: false };
  const engine = createAlarmEngine({ store, bus, log: pino({ level: 'silent' }), now: () => t, policy: { raiseAfterMs, clearAfterMs, overTemperatureC: 70 }, nodeInfo: () => info });
  return { engine, events, info, advance: (ms: number) => { t += ms; engine.tick(); }, store };
}

const telemetry = (over: Partial<Telemetry> = {}): Telemetry => ({
  v: 1, ts: 0, uptimeS: 1, agentVersion: 'x', firmwareVersion: 'y',
  amplifier: { power: true, state: 'on', tempC: 40 }, lines: [{ id: 'L1', impedanceOhm: 8, nominalOhm: 8, fault: 'ok' }],
  volume: 50, mute: false, power: { source: 'mains', mainsV: 230, batteryV: 13 }, temperatureC: 40,
  modem: { rssiDbm: -70, operator: 'Viettel' }, gps: null, clock: { offsetMs: 0, rttMs: 1, driftPpm: 0, synced: true },
  cache: { usedBytes: 0, capacityBytes: 0, items: 0, missingSoon: 0 }, playing: null, ...over,
});

describe('alarm engine hysteresis', () => {
  it('raises a flapping offline condition once, only after it holds for raiseAfterMs', () => {
    const { engine, events, advance } = setup(20_000, 30_000);
    for (let i = 0; i < 10; i++) { engine.onStatus('n', false); advance(5000); engine.onStatus('n', true); advance(5000); }
    expect(events.filter((e) => e.type === 'alarm.raised')).toHaveLength(0);
    engine.onStatus('n', false);
    advance(19_999);
    expect(events.filter((e) => e.type === 'alarm.raised')).toHaveLength(0);
    advance(2);
    expect(events.filter((e) => e.type === 'alarm.raised')).toHaveLength(1);
  });
  it('clears only after the condition has been gone for clearAfterMs', () => {
    const { engine, events, advance } = setup(0, 30_000);
    engine.onTelemetry('n', telemetry({ power: { source: 'battery', mainsV: 0, batteryV: 12.1 } }));
    expect(events.filter((e) => e.type === 'alarm.raised').map((e) => e.type === 'alarm.raised' && e.alarm.type)).toEqual(['on_battery']);
    engine.onTelemetry('n', telemetry());
    advance(10_000);
    engine.onTelemetry('n', telemetry({ power: { source: 'battery', mainsV: 0, batteryV: 12.0 } }));
    engine.onTelemetry('n', telemetry());
    advance(29_000);
    expect(events.some((e) => e.type === 'alarm.cleared')).toBe(false);
    advance(1001);
    expect(events.filter((e) => e.type === 'alarm.cleared')).toHaveLength(1);
  });
  it('uses value hysteresis on temperature and names faulty lines', () => {
    const { engine, events, advance } = setup(0, 0);
    engine.onTelemetry('n', telemetry({ temperatureC: 71, lines: [{ id: 'L2', impedanceOhm: 1e6, nominalOhm: 8, fault: 'open' }] }));
    const raised = events.filter((e) => e.type === 'alarm.raised').map((e) => (e.type === 'alarm.raised' ? e.alarm : null));
    expect(raised.map((a) => a!.type).sort()).toEqual(['line_open', 'over_temperature']);
    expect(raised.find((a) => a!.type === 'line_open')!.detail).toMatch(/L2/);
    engine.onTelemetry('n', telemetry({ temperatureC: 67 }));
    advance(1);
    expect(events.some((e) => e.type === 'alarm.cleared' && e.alarm.type === 'over_temperature')).toBe(false);
    engine.onTelemetry('n', telemetry({ temperatureC: 64 }));
    advance(1);
    expect(events.some((e) => e.type === 'alarm.cleared' && e.alarm.type === 'over_temperature')).toBe(true);
  });
  it('raises nothing for a node in maintenance, and acknowledges with who and when', () => {
    const { engine, events, info, advance, store } = setup(0, 0);
    info.maintenance = true;
    engine.onFault('n', { v: 1, ts: 0, kind: 'fault', fault: 'amplifier', state: 'raised' });
    advance(1);
    expect(events).toHaveLength(0);
    info.maintenance = false;
    advance(1);
    const a = events.find((e) => e.type === 'alarm.raised');
    expect(a && a.type === 'alarm.raised' && a.alarm.type).toBe('amplifier_fault');
    const acked = engine.ack((a as { alarm: { id: number } }).alarm.id, 'tech1')!;
    expect(acked.ackedBy).toBe('tech1');
    expect(store.activeAlarms()[0]!.ackedAt).not.toBeNull();
  });
});
