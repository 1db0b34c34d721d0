import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LinuxHardwareConfig } from '../../schemas/src/agent-hardware-config.js';
import { AgentConfigFile } from '../../schemas/src/index.js';
import { gpiosetArgs, parseGpiosetVersion } from '../../edge-agent/src/gpio.js';
import {
  parseFlag, parseLineSensor, parseMmcliLocation, parseMmcliModem, parseMmcliSignal, parseOsRelease, parseScaled, parseUpsStatus, techFromAccess,
} from '../../edge-agent/src/sysfs-sensors.js';

describe('sysfs and status-file parsers', () => {
  it('scales sysfs numbers (millidegrees, millivolts) and treats junk as unknown', () => {
    expect(parseScaled('48312\n', 0.001)).toBeCloseTo(48.312, 6);
    expect(parseScaled('12873', 0.001)).toBeCloseTo(12.873, 6);
    expect(parseScaled('-5000', 0.001)).toBe(-5);
    expect(parseScaled('', 1)).toBeNull();
    expect(parseScaled(null)).toBeNull();
    expect(parseScaled('N/A')).toBeNull();
  });

  it('reads flags from sysfs online / GPIO value files', () => {
    expect(parseFlag('1\n')).toBe(true);
    expect(parseFlag('0')).toBe(false);
    expect(parseFlag('Online')).toBe(true);
    expect(parseFlag('maybe')).toBeNull();
    expect(parseFlag(null)).toBeNull();
  });

  it('parses apcupsd status files', () => {
    const onBatt = 'APC      : 001,036,0870\nSTATUS   : ONBATT \nLINEV    : 000.0 Volts\nBCHARGE  : 087.0 Percent\nBATTV    : 12.9 Volts\n';
    expect(parseUpsStatus(onBatt)).toEqual({ onBattery: true, batteryPct: 87, batteryV: 12.9, mainsV: 0 });
    expect(parseUpsStatus('STATUS   : ONLINE \nLINEV    : 228.0 Volts\n').onBattery).toBe(false);
  });

  it('parses NUT upsc output', () => {
    const text = 'battery.charge: 64\nbattery.voltage: 12.40\ninput.voltage: 0.0\nups.status: OB DISCHRG\n';
    expect(parseUpsStatus(text)).toEqual({ onBattery: true, batteryPct: 64, batteryV: 12.4, mainsV: 0 });
    expect(parseUpsStatus('ups.status: OL CHRG\n').onBattery).toBe(false);
    expect(parseUpsStatus('nothing useful').onBattery).toBeNull();
  });

  it('derives a short firmware version from /etc/os-release', () => {
    expect(parseOsRelease('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n')).toBe('debian 12');
    expect(parseOsRelease('PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nID=raspbian\nVERSION_ID="12"\n')).toBe('raspbian 12');
    expect(parseOsRelease('ID=arch\n')).toBe('arch');
    expect(parseOsRelease('')).toBeNull();
  });

  it('classifies speaker-line sensor readings against the nominal impedance', () => {
    expect(parseLineSensor('7.6', 8)).toEqual({ impedanceOhm: 7.6, fault: 'ok' });
    expect(parseLineSensor('95000', 8)).toEqual({ impedanceOhm: 95000, fault: 'open' });
    expect(parseLineSensor('0.4', 8)).toEqual({ impedanceOhm: 0.4, fault: 'short' });
    expect(parseLineSensor('open\n', 8)).toMatchObject({ fault: 'open' });
    expect(parseLineSensor('short', 16)).toMatchObject({ fault: 'short' });
    expect(parseLineSensor('ok', 16)).toEqual({ impedanceOhm: 16, fault: 'ok' });
    expect(parseLineSensor('garbage', 8)).toBeNull();
    expect(parseLineSensor(null, 8)).toBeNull();
  });
});

describe('mmcli JSON', () => {
  const modem = {
    modem: {
      '3gpp': { 'operator-name': 'Viettel', 'operator-code': '45204', 'registration-state': 'home' },
      generic: { 'access-technologies': ['lte'], 'signal-quality': { recent: 'yes', value: '74' }, state: 'connected' },
    },
  };

  it('reads operator, tech and an RSSI estimate from the modem status', () => {
    // −113 + 0.62 × 74 = −67.1 dBm (CSQ scale, 3GPP TS 27.007 §8.5)
    expect(parseMmcliModem(modem)).toEqual({ operator: 'Viettel', tech: '4g', rssiDbm: -67 });
  });

  it('treats "--" and a 0 % quality of an unregistered modem as unknown', () => {
    const idle = { modem: { '3gpp': { 'operator-name': '--' }, generic: { 'access-technologies': [], 'signal-quality': { value: '0' }, state: 'searching' } } };
    expect(parseMmcliModem(idle)).toEqual({ operator: null, tech: null, rssiDbm: null });
    expect(parseMmcliModem(null)).toEqual({ operator: null, tech: null, rssiDbm: null });
    expect(parseMmcliModem('not json object')).toEqual({ operator: null, tech: null, rssiDbm: null });
  });

  it('maps access technologies to the telemetry tech', () => {
    expect(techFromAccess(['5gnr', 'lte'])).toBe('5g');
    expect(techFromAccess(['hspa-plus'])).toBe('3g');
    expect(techFromAccess(['edge'])).toBe('2g');
    expect(techFromAccess(['pots'])).toBeNull();
  });

  it('prefers the measured RSSI from --signal-get', () => {
    expect(parseMmcliSignal({ modem: { signal: { refresh: { rate: '10' }, lte: { rssi: '-71.00', rsrp: '-101.00' }, umts: { rssi: '--' } } } })).toBe(-71);
    expect(parseMmcliSignal({ modem: { signal: { lte: { rssi: '--' } } } })).toBeNull();
    expect(parseMmcliSignal({})).toBeNull();
  });

  it('reads a GPS fix from --location-get', () => {
    expect(parseMmcliLocation({ modem: { location: { gps: { latitude: '21.028500', longitude: '105.854200', altitude: '12.0' } } } })).toEqual({ lat: 21.0285, lon: 105.8542 });
    expect(parseMmcliLocation({ modem: { location: { gps: { latitude: '--', longitude: '--' } } } })).toBeNull();
  });
});

describe('gpioset command lines', () => {
  it('detects libgpiod v1 and v2 from --version', () => {
    expect(parseGpiosetVersion('gpioset (libgpiod) v1.6.3\nCopyright (C) 2017-2018 Bartosz Golaszewski\n')).toBe('v1');
    expect(parseGpiosetVersion('gpioset (libgpiod) v2.1.3\n')).toBe('v2');
    expect(parseGpiosetVersion('gpioset')).toBeNull();
  });

  it('builds holder argv for both syntaxes', () => {
    expect(gpiosetArgs('v1', 'gpiochip0', 17, true, false)).toEqual(['--mode=signal', 'gpiochip0', '17=1']);
    expect(gpiosetArgs('v1', '0', 4, false, true)).toEqual(['--mode=signal', '--active-low', '0', '4=0']);
    expect(gpiosetArgs('v2', 'gpiochip0', 17, true, true)).toEqual(['-c', 'gpiochip0', '-l', '17=1']);
  });
});

describe('LinuxHardwareConfig', () => {
  it('fills defaults for an empty section', () => {
    const c = LinuxHardwareConfig.parse({});
    expect(c.audio).toMatchObject({ device: 'default', leadMs: 50, periodMs: 10, outputLatencyMs: 0 });
    expect(c.sensors).toMatchObject({ cpuTempPath: '/sys/class/thermal/thermal_zone0/temp', overTemperatureC: 80, pollIntervalMs: 5000 });
    expect(c.relay).toBeUndefined();
    expect(c.lines).toEqual([{ id: 'L1', nominalOhm: 8 }]);
    expect(c.rebootCommand).toEqual(['systemctl', 'reboot']);
    expect(c.modem).toEqual({ enabled: true, pollIntervalMs: 30_000 });
  });

  it('applies relay defaults and refuses bad values with the field named', () => {
    expect(LinuxHardwareConfig.parse({ relay: { line: 17 } }).relay).toEqual({ chip: 'gpiochip0', line: 17, activeLow: false, syntax: 'auto' });
    const bad = LinuxHardwareConfig.safeParse({ audio: { leadMs: 2 }, relay: { line: -1 }, lines: [{ id: 'L1', nominalOhm: 8 }, { id: 'L1', nominalOhm: 8 }] });
    expect(bad.success).toBe(false);
    const paths = bad.error!.issues.map((i) => i.path.join('.'));
    expect(paths).toEqual(expect.arrayContaining(['audio.leadMs', 'relay.line', 'lines']));
    expect(LinuxHardwareConfig.safeParse({ volumeIn: 'mixer' }).error?.issues[0]).toMatchObject({ path: ['volumeIn'], message: expect.stringMatching(/mixer\.control/) });
  });

  it('accepts the sample config shipped in deploy/', () => {
    const raw = JSON.parse(fs.readFileSync('deploy/agent.example.json', 'utf8'));
    expect(AgentConfigFile.parse(raw).hardware).toBe('linux');
    expect(LinuxHardwareConfig.parse(raw.linux).relay).toMatchObject({ chip: 'gpiochip0', line: 17 });
  });
});
