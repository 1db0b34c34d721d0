/**
 * Readings of a Linux cluster computer from files (sysfs, /proc, a UPS daemon's status file) and from
 * ModemManager's `mmcli -J`. Parsers are pure (unit-tested on sample texts); readers return null when
 * a file is absent or unreadable, so an unconfigured or missing sensor is "unknown", never an error.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import type { HardwareStatus } from './hardware.js';

const execFileP = promisify(execFile);

/** Text of a file, trimmed; null when it cannot be read. */
export async function readText(path: string): Promise<string | null> {
  try {
    return (await fs.readFile(path, 'utf8')).trim();
  } catch {
    return null;
  }
}

/** First number in a file × scale (sysfs thermal and hwmon files hold millidegrees/millivolts). */
export function parseScaled(text: string | null, scale = 1): number | null {
  if (text === null) return null;
  const m = /-?\d+(?:\.\d+)?/.exec(text);
  if (!m) return null;
  const v = Number(m[0]) * scale;
  return Number.isFinite(v) ? v : null;
}

export async function readScaled(path: string, scale = 1): Promise<number | null> {
  return parseScaled(await readText(path), scale);
}

/** A boolean file: 1/0, on/off, true/false, yes/no (sysfs `online`, a GPIO `value`). */
export function parseFlag(text: string | null): boolean | null {
  if (text === null) return null;
  const t = text.trim().toLowerCase();
  if (/^(1|on|true|yes|online|active)$/.test(t)) return true;
  if (/^(0|off|false|no|offline|inactive)$/.test(t)) return false;
  return null;
}

export interface UpsReading {
  onBattery: boolean | null;
  batteryPct: number | null;
  batteryV: number | null;
  mainsV: number | null;
}

/**
 * A UPS status text from apcupsd (`STATUS   : ONBATT`, `BCHARGE  : 087.0 Percent`, `BATTV : 13.5 Volts`,
 * `LINEV : 230.0 Volts`) or Network UPS Tools' `upsc` (`ups.status: OB DISCHRG`, `battery.charge: 87`,
 * `battery.voltage: 12.9`, `input.voltage: 230.0`).
 */
export function parseUpsStatus(text: string): UpsReading {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z0-9_.]+)\s*:\s*(.*?)\s*$/.exec(line);
    if (m) kv.set(m[1]!.toLowerCase(), m[2]!);
  }
  const num = (...keys: string[]): number | null => {
    for (const k of keys) {
      const v = parseScaled(kv.get(k) ?? null);
      if (v !== null) return v;
    }
    return null;
  };
  let onBattery: boolean | null = null;
  const apc = kv.get('status');
  const nut = kv.get('ups.status');
  if (nut !== undefined) {
    const flags = nut.toUpperCase().split(/\s+/);
    if (flags.includes('OB')) onBattery = true;
    else if (flags.includes('OL')) onBattery = false;
  } else if (apc !== undefined) {
    const s = apc.toUpperCase();
    if (s.includes('ONBATT')) onBattery = true;
    else if (s.includes('ONLINE')) onBattery = false;
  }
  const pct = num('battery.charge', 'bcharge');
  return {
    onBattery,
    batteryPct: pct === null ? null : Math.max(0, Math.min(100, pct)),
    batteryV: num('battery.voltage', 'battv'),
    mainsV: num('input.voltage', 'linev'),
  };
}

/** A short version from /etc/os-release: "debian 12", "raspbian 12"; max 40 characters (telemetry). */
export function parseOsRelease(text: string): string | null {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) kv.set(m[1]!, m[2]!.replace(/^["']|["']$/g, ''));
  }
  const id = kv.get('ID');
  const ver = kv.get('VERSION_ID');
  const s = id ? (ver ? `${id} ${ver}` : id) : (kv.get('PRETTY_NAME') ?? null);
  return s ? s.slice(0, 40) : null;
}

export type LineReading = { impedanceOhm: number; fault: 'ok' | 'open' | 'short' };

/**
 * A speaker-line sensor file: a measured impedance in ohms (open above 4 × nominal, short below
 * nominal / 4, the bands a 100 V line tester uses for "open" and "shorted" on a 4–16 Ω tap), or the
 * word ok/open/short from a tester that decides itself. Null when unreadable.
 */
export function parseLineSensor(text: string | null, nominalOhm: number): LineReading | null {
  if (text === null) return null;
  const t = text.trim().toLowerCase();
  if (t === 'ok') return { impedanceOhm: nominalOhm, fault: 'ok' };
  if (t === 'open') return { impedanceOhm: 100_000, fault: 'open' };
  if (t === 'short') return { impedanceOhm: 0, fault: 'short' };
  const z = parseScaled(t);
  if (z === null || z < 0) return null;
  return { impedanceOhm: z, fault: z > 4 * nominalOhm ? 'open' : z < nominalOhm / 4 ? 'short' : 'ok' };
}

// ---- ModemManager (mmcli -J) ----

export interface ModemReading {
  rssiDbm: number | null;
  operator: string | null;
  tech: HardwareStatus['modem']['tech'] | null;
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | null => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : null);
/** mmcli prints "--" for unknown values. */
const str = (v: unknown): string | null => (typeof v === 'string' && v !== '--' && v !== '' ? v : null);

/** Map ModemManager access technologies to the telemetry's coarse tech. */
export function techFromAccess(list: string[]): HardwareStatus['modem']['tech'] | null {
  const s = list.map((x) => x.toLowerCase());
  if (s.some((x) => x.startsWith('5gnr'))) return '5g';
  if (s.some((x) => x === 'lte' || x.startsWith('lte'))) return '4g';
  if (s.some((x) => /umts|hsdpa|hsupa|hspa|evdo/.test(x))) return '3g';
  if (s.some((x) => /gsm|gprs|edge|1xrtt/.test(x))) return '2g';
  return null;
}

/**
 * `mmcli -m any -J`: operator from modem.3gpp.operator-name, tech from modem.generic.access-technologies,
 * RSSI approximated from modem.generic.signal-quality (percent). ModemManager derives the percent from
 * AT+CSQ (0..31 → 0..100 %, RSSI = −113 + 2·CSQ dBm, 3GPP TS 27.007 §8.5), so the inverse is
 * −113 + 0.62·percent dBm; `--signal-get` gives the real figure when signal polling is set up.
 */
export function parseMmcliModem(json: unknown): ModemReading {
  const modem = obj(obj(json)?.modem);
  const generic = obj(modem?.generic);
  const gpp = obj(modem?.['3gpp']);
  const access = Array.isArray(generic?.['access-technologies']) ? (generic['access-technologies'] as unknown[]).filter((x): x is string => typeof x === 'string') : [];
  const q = parseScaled(str(obj(generic?.['signal-quality'])?.value));
  const state = str(generic?.state);
  return {
    operator: str(gpp?.['operator-name']),
    tech: techFromAccess(access),
    // 0 % from a modem that is not registered means "no signal figure", not −113 dBm.
    rssiDbm: q === null || (q === 0 && state !== 'registered' && state !== 'connected') ? null : Math.round(-113 + 0.62 * q),
  };
}

/** `mmcli -m any --signal-get -J`: modem.signal.{5g,lte,umts,gsm}.rssi, first known. */
export function parseMmcliSignal(json: unknown): number | null {
  const sig = obj(obj(obj(json)?.modem)?.signal);
  if (!sig) return null;
  for (const k of ['5g', 'lte', 'umts', 'gsm', 'cdma1x', 'evdo']) {
    const v = parseScaled(str(obj(sig[k])?.rssi));
    if (v !== null && v < 0) return Math.round(v);
  }
  return null;
}

/** `mmcli -m any --location-get -J`: modem.location.gps.{latitude,longitude}. */
export function parseMmcliLocation(json: unknown): { lat: number; lon: number } | null {
  const gps = obj(obj(obj(obj(json)?.modem)?.location)?.gps);
  const lat = parseScaled(str(gps?.latitude));
  const lon = parseScaled(str(gps?.longitude));
  if (lat === null || lon === null || Math.abs(lat) > 90 || Math.abs(lon) > 180) return null;
  if (lat === 0 && lon === 0) return null;
  return { lat, lon };
}

/** Run `mmcli -m any … -J`, parsed; null when it fails (no ModemManager, no modem, not allowed). */
export async function runMmcli(mmcliPath: string, args: string[], timeoutMs = 5000): Promise<unknown> {
  try {
    const { stdout } = await execFileP(mmcliPath, ['-m', 'any', ...args, '-J'], { timeout: timeoutMs, maxBuffer: 1 << 20 });
    return JSON.parse(stdout) as unknown;
  } catch {
    return null;
  }
}
