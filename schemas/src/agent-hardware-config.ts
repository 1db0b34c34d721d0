import { z } from 'zod';

/*
 * Configuration of the field hardware backend (`hardware: 'linux'` in the agent config file), read from
 * the `linux` key of agent.json. Every field has a default that fits a Raspberry Pi-class computer with
 * an ALSA output; sensors that are not configured (or whose file is absent) report "unknown" defaults.
 *
 * Kept apart from AgentConfigFile so the backend's knobs do not crowd the agent's wire-level config;
 * the composition root (edge-agent/src/cli.ts) parses `raw.linux` with LinuxHardwareConfig.
 */

/** A numeric sysfs-style file: value = number in the file × scale (e.g. millidegrees → °C: 0.001). */
export const SensorFile = z.object({
  path: z.string().min(1),
  scale: z.number().positive().default(1),
});
export type SensorFile = z.infer<typeof SensorFile>;

export const LinuxAudioConfig = z.object({
  /** ALSA PCM name for `aplay -D`: 'default', 'plughw:CARD=Headphones,DEV=0', 'hw:0,0', 'null' … */
  device: z.string().min(1).default('default'),
  /**
   * How far ahead of the DAC the sink writes, ms. Bounds the output latency (presentationTime ≈ now +
   * lead) and how late the event loop may be before the device runs dry.
   */
  leadMs: z.number().int().min(10).max(500).default(50),
  /** Block pulled from the player per write, ms (480 frames at 48 kHz for 10 ms). */
  periodMs: z.number().int().min(2).max(50).default(10),
  /** ALSA buffer (aplay --buffer-time); default 2 × leadMs so the lead never fills it. */
  bufferMs: z.number().int().min(20).max(2000).optional(),
  /**
   * /proc/asound/cardN/pcmMp/sub0/status of the output device. The sink reads the device's `delay` once
   * a second and steers its write pace to it, so sound-card crystal drift against the system clock does
   * not accumulate into an underrun or a growing backlog. Default: derived from a `hw:`/`plughw:` device
   * name (none for `default`/dmix); `false` turns steering off.
   */
  statusPath: z.union([z.string().min(1), z.literal(false)]).optional(),
  /** Fixed latency after the ALSA buffer (codec FIFO, DAC filters, a USB adapter), ms. */
  outputLatencyMs: z.number().min(0).max(1000).default(0),
});
export type LinuxAudioConfig = z.infer<typeof LinuxAudioConfig>;

export const RelayConfig = z.object({
  /** GPIO chip for gpioset: 'gpiochip0' or '0'. */
  chip: z.string().min(1).default('gpiochip0'),
  /** Line offset on that chip (BCM number on a Raspberry Pi, e.g. 17). */
  line: z.number().int().min(0).max(1023),
  /** Relay energised by a LOW level (gpioset --active-low). */
  activeLow: z.boolean().default(false),
  /** libgpiod command-line syntax: v1 (Debian 12, `--mode=signal`) or v2 (Debian 13, `-c`); auto asks `gpioset --version`. */
  syntax: z.enum(['auto', 'v1', 'v2']).default('auto'),
});
export type RelayConfig = z.infer<typeof RelayConfig>;

export const PowerSensorsConfig = z.object({
  /** A file reading 1 while mains is present (/sys/class/power_supply/AC/online, a GPIO value file). */
  mainsOnlinePath: z.string().min(1).optional(),
  mainsVoltage: SensorFile.optional(),
  /** INA219 via hwmon: { path: '/sys/class/hwmon/hwmon2/in1_input', scale: 0.001 } (mV → V). */
  batteryVoltage: SensorFile.optional(),
  /** Percent 0..100 (/sys/class/power_supply/BAT0/capacity). */
  batteryPercentPath: z.string().min(1).optional(),
  /** A UPS status text: apcupsd's status file (`STATUS : ONBATT`) or `upsc ups@localhost` output saved by a timer. */
  upsStatusPath: z.string().min(1).optional(),
});
export type PowerSensorsConfig = z.infer<typeof PowerSensorsConfig>;

export const LinuxLineConfig = z.object({
  id: z.string().min(1).max(32),
  nominalOhm: z.number().positive(),
  /** File with the measured impedance in ohms, or the word ok/open/short. Absent → reported nominal and ok. */
  sensorPath: z.string().min(1).optional(),
});
export type LinuxLineConfig = z.infer<typeof LinuxLineConfig>;

export const LinuxHardwareConfig = z.object({
  audio: LinuxAudioConfig.prefault({}),
  /** Amplifier power relay. Absent: the amplifier is powered some other way; state is tracked only. */
  relay: RelayConfig.optional(),
  warmupMs: z.number().int().min(0).max(60_000).default(1500),
  /** ALSA mixer control that takes the volume (`amixer sset <control> N%`). */
  mixer: z.object({ control: z.string().min(1), card: z.string().min(1).optional() }).optional(),
  /**
   * Where setVolume() acts: `sink` scales the samples by volume/100 (as firmware-sim's DAC does),
   * `mixer` sets the mixer control, `none` keeps it as reported state only (the player applies it).
   * Default: `mixer` when a mixer is configured, else `sink`.
   */
  volumeIn: z.enum(['sink', 'mixer', 'none']).optional(),
  sensors: z.object({
    cpuTempPath: z.string().min(1).default('/sys/class/thermal/thermal_zone0/temp'),
    /** Heat-sink sensor: DS18B20 (/sys/bus/w1/devices/28-…/temperature) or hwmon temp1_input, scale 0.001. */
    amplifierTemp: SensorFile.optional(),
    /** A file reading 1 while the amplifier's protection output is active. */
    amplifierFaultPath: z.string().min(1).optional(),
    /** over_temperature is raised at this temperature (the hotter of amplifier and CPU), cleared 5 °C below. */
    overTemperatureC: z.number().min(30).max(150).default(80),
    power: PowerSensorsConfig.optional(),
    pollIntervalMs: z.number().int().min(50).max(600_000).default(5000),
  }).prefault({}),
  lines: z.array(LinuxLineConfig).min(1).max(16).default([{ id: 'L1', nominalOhm: 8 }])
    .refine((ls) => new Set(ls.map((l) => l.id)).size === ls.length, 'line ids must be unique'),
  /** 4G modem through ModemManager's mmcli, when installed; otherwise modem figures are unknown. */
  modem: z.object({
    enabled: z.boolean().default(true),
    pollIntervalMs: z.number().int().min(1000).max(3_600_000).default(30_000),
  }).prefault({}),
  /** Surveyed position of the cluster, reported (fix: false) when the modem gives no GPS fix. */
  position: z.object({ lat: z.number().min(-90).max(90), lon: z.number().min(-180).max(180) }).optional(),
  /** Reported firmware version; default from /etc/os-release. */
  firmwareVersion: z.string().min(1).max(40).optional(),
  /** argv run by reboot(); the agent's unit needs the right to run it (see deploy/README.md). */
  rebootCommand: z.array(z.string().min(1)).min(1).default(['systemctl', 'reboot']),
}).refine((c) => c.volumeIn !== 'mixer' || c.mixer !== undefined, { path: ['volumeIn'], message: "volumeIn 'mixer' needs mixer.control" });
export type LinuxHardwareConfig = z.infer<typeof LinuxHardwareConfig>;
/** What a config file may contain (defaults not yet applied). */
export type LinuxHardwareConfigInput = z.input<typeof LinuxHardwareConfig>;
