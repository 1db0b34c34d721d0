import { z } from 'zod';
import { LinuxHardwareConfig } from './agent-hardware-config.js';

const port = z.coerce.number().int().min(0).max(65535);
/** `alsa:<pcm name>` or `pulse:<source>`; no spaces and no leading '-' (it becomes an ffmpeg argument). */
export const LIVE_INPUT_RE = /^(alsa|pulse):[A-Za-z0-9_@.][A-Za-z0-9_@.:,=-]{0,127}$/;

/** Controller configuration from the environment; defaults are the contract in ARCHITECTURE.md. */
export const ControllerEnv = z.object({
  RADIO_HTTP_PORT: port.default(8080),
  RADIO_HTTP_HOST: z.string().default('0.0.0.0'),
  RADIO_MQTT_PORT: port.default(1883),
  RADIO_MQTT_URL: z.string().url().optional(),
  RADIO_DATA_DIR: z.string().default('./data'),
  RADIO_RTP_PORT: port.default(5004),
  RADIO_PUBLIC_HOST: z.string().default('127.0.0.1'),
  RADIO_ADMIN_PASSWORD: z.string().min(8, 'RADIO_ADMIN_PASSWORD must be at least 8 characters').optional(),
  RADIO_COMMUNE_ID: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/).default('default'),
  RADIO_COMMUNE_NAME: z.string().default('Xã mẫu'),
  RADIO_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Optional HTTP TTS service (a commercial Vietnamese neural voice); espeak-ng is always available. */
  RADIO_TTS_URL: z.string().url().optional(),
  RADIO_TTS_KEY: z.string().optional(),
  RADIO_TTS_VOICE: z.string().default('default'),
  /** Webhook for alarm notifications, registered on first start if set. */
  RADIO_WEBHOOK_URL: z.string().url().optional(),
  /**
   * Sound-card input of live sessions (kind 'soundcard'): `alsa:<pcm>` (e.g. `alsa:default`,
   * `alsa:plughw:1,0`) or `pulse:<source>` (e.g. `pulse:default`). Unset: sound-card sessions answer 501.
   */
  RADIO_LIVE_INPUT: z.string().regex(LIVE_INPUT_RE,
    'RADIO_LIVE_INPUT must be alsa:<device> or pulse:<source>, e.g. alsa:default, alsa:plughw:1,0, pulse:default').optional(),
});
export type ControllerEnv = z.infer<typeof ControllerEnv>;

/** Tunables that tests and benches override; every field has a production default. */
export const AlarmPolicy = z.object({
  /** A condition must hold this long before an alarm is raised (flap damping). */
  raiseAfterMs: z.number().int().nonnegative().default(20_000),
  /** …and must be absent this long before it clears. */
  clearAfterMs: z.number().int().nonnegative().default(30_000),
  /** Over-temperature threshold, °C, with 5 °C hysteresis below it to clear. */
  overTemperatureC: z.number().default(70),
});
export type AlarmPolicy = z.infer<typeof AlarmPolicy>;

/** Edge agent configuration file (JSON) for `npm run agent -- --config FILE`. */
export const AgentConfigFile = z.object({
  nodeId: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/),
  username: z.string(),
  password: z.string(),
  mqttUrl: z.string().url(),
  httpBase: z.string().url().optional(),
  dataDir: z.string().default('./agent-data'),
  telemetryIntervalMs: z.number().int().min(500).default(15_000),
  keepaliveS: z.number().int().min(2).max(600).default(8),
  hardware: z.enum(['sim', 'linux']).default('sim'),
  /** Settings of the Linux/ALSA/GPIO backend (hardware: 'linux'); see deploy/README.md. */
  linux: LinuxHardwareConfig.optional(),
});
export type AgentConfigFile = z.infer<typeof AgentConfigFile>;
