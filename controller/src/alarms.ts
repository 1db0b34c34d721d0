import type { Logger } from 'pino';
import type { Alarm, AlarmPolicy, AlarmType, FaultEvent, Telemetry } from '../../schemas/src/index.js';
import type { EventBus } from './event-bus.js';
import type { Store } from './store/store.js';

const SEVERITY: Record<AlarmType, Alarm['severity']> = {
  offline: 'critical', amplifier_fault: 'critical', line_open: 'major', line_short: 'major', on_battery: 'minor', over_temperature: 'major',
};

const FAULT_TO_ALARM: Partial<Record<FaultEvent['fault'], AlarmType>> = {
  amplifier: 'amplifier_fault', line_open: 'line_open', line_short: 'line_short', on_battery: 'on_battery', over_temperature: 'over_temperature',
};

interface Condition { on: boolean; since: number; detail: string | null }

export interface NodeInfo { communeId: string; maintenance: boolean }

/**
 * Alarms with hysteresis: a condition must hold `raiseAfterMs` before its alarm is raised and be gone
 * `clearAfterMs` before it clears, so a flapping 4G link yields one alarm, not a flood. Nodes in
 * maintenance raise nothing. One active alarm per (node, type).
 */
export function createAlarmEngine(deps: { store: Store; bus: EventBus; log: Logger; now: () => number; policy: AlarmPolicy; nodeInfo: (id: string) => NodeInfo | undefined }) {
  const { store, bus, log, now, policy } = deps;
  const conds = new Map<string, Map<AlarmType, Condition>>();
  const active = new Map<string, Alarm>();
  for (const a of store.activeAlarms()) active.set(`${a.nodeId}|${a.type}`, a);
  let timer: NodeJS.Timeout | undefined;

  function set(nodeId: string, type: AlarmType, on: boolean, detail: string | null, ts = now()) {
    let m = conds.get(nodeId);
    if (!m) { m = new Map(); conds.set(nodeId, m); }
    const c = m.get(type);
    if (!c) m.set(type, { on, since: ts, detail });
    else {
      if (c.on !== on) { c.on = on; c.since = ts; }
      if (on) c.detail = detail;
    }
    evaluate(nodeId, type);
  }

  function evaluate(nodeId: string, type: AlarmType) {
    const c = conds.get(nodeId)?.get(type);
    if (!c) return;
    const key = `${nodeId}|${type}`;
    const cur = active.get(key);
    const t = now();
    if (c.on && !cur && t - c.since >= policy.raiseAfterMs) {
      const info = deps.nodeInfo(nodeId);
      if (!info || info.maintenance) return;
      const alarm = store.raiseAlarm({ communeId: info.communeId, nodeId, type, severity: SEVERITY[type], detail: c.detail, ts: t });
      active.set(key, alarm);
      log.info({ nodeId, type, alarmId: alarm.id }, 'alarm raised');
      bus.emit(info.communeId, { type: 'alarm.raised', ts: t, alarm });
    } else if (!c.on && cur && t - c.since >= policy.clearAfterMs) {
      const alarm = store.clearAlarm(cur.id, t);
      active.delete(key);
      log.info({ nodeId, type, alarmId: alarm.id }, 'alarm cleared');
      bus.emit(alarm.communeId, { type: 'alarm.cleared', ts: t, alarm });
    }
  }

  function tick() {
    for (const [nodeId, m] of conds) for (const type of m.keys()) evaluate(nodeId, type);
  }

  return {
    start(intervalMs = 500) { timer ??= setInterval(tick, intervalMs); timer.unref(); },
    stop() { clearInterval(timer); timer = undefined; },
    tick,
    onStatus(nodeId: string, online: boolean, ts?: number) {
      set(nodeId, 'offline', !online, online ? null : 'node went offline (last will or keepalive timeout)', ts);
    },
    onTelemetry(nodeId: string, t: Telemetry) {
      set(nodeId, 'amplifier_fault', t.amplifier.state === 'fault', 'amplifier reports a fault');
      const open = t.lines.filter((l) => l.fault === 'open').map((l) => l.id);
      const short = t.lines.filter((l) => l.fault === 'short').map((l) => l.id);
      set(nodeId, 'line_open', open.length > 0, open.length ? `open speaker line(s): ${open.join(', ')}` : null);
      set(nodeId, 'line_short', short.length > 0, short.length ? `shorted speaker line(s): ${short.join(', ')}` : null);
      set(nodeId, 'on_battery', t.power.source === 'battery', `mains lost, battery ${t.power.batteryV.toFixed(1)} V`);
      // Value hysteresis too: raise at the threshold, clear 5 °C below it.
      const cur = conds.get(nodeId)?.get('over_temperature')?.on ?? false;
      const hot = cur ? t.temperatureC >= policy.overTemperatureC - 5 : t.temperatureC >= policy.overTemperatureC;
      set(nodeId, 'over_temperature', hot, `temperature ${t.temperatureC.toFixed(1)} °C`);
    },
    onFault(nodeId: string, e: FaultEvent) {
      const type = FAULT_TO_ALARM[e.fault];
      if (!type) return;
      set(nodeId, type, e.state === 'raised', e.detail ?? (e.lineId ? `line ${e.lineId}` : null));
    },
    forget(nodeId: string) { conds.delete(nodeId); },
    activeFor(nodeId: string) { return [...active.values()].filter((a) => a.nodeId === nodeId); },
    ack(id: number, by: string): Alarm | undefined {
      const a = store.getAlarm(id);
      if (!a) return undefined;
      const acked = store.ackAlarm(id, now(), by);
      const key = `${acked.nodeId}|${acked.type}`;
      if (active.get(key)?.id === id) active.set(key, acked);
      bus.emit(acked.communeId, { type: 'alarm.acked', ts: now(), alarm: acked });
      return acked;
    },
  };
}
export type AlarmEngine = ReturnType<typeof createAlarmEngine>;
