import type { AmplifierState, FaultKind, SpeakerLine } from '../../schemas/src/index.js';
import type { Clock } from './clock.js';

/** Sample format of every sink: 48 kHz mono, float32 in [-1, 1]. */
export const SAMPLE_RATE = 48_000;

/**
 * Whatever the agent plays. The sink PULLS: when its DAC needs samples it calls read(); the agent never
 * tells the sink "this played now". `presentationTime` is the time, on the hardware clock (ms since epoch),
 * at which out[0] will leave the DAC, so the player can place audio by sample position.
 * Returns the number of frames written; fewer than out.length is an underrun (the sink pads silence).
 */
export interface PcmSource {
  read(out: Float32Array, presentationTime: number): number;
}

export interface SinkStats {
  framesPlayed: number;
  underruns: number;
  /** Frames of silence the sink had to insert because read() returned short. */
  underrunFrames: number;
}

export interface AudioSink {
  readonly sampleRate: number;
  /** Attach (or detach with null) the source the DAC pulls from. */
  attach(source: PcmSource | null): void;
  stats(): SinkStats;
  start(): void;
  stop(): void;
}

export interface HardwareStatus {
  firmwareVersion: string;
  amplifier: { power: boolean; state: AmplifierState; tempC: number };
  lines: SpeakerLine[];
  power: { source: 'mains' | 'battery'; mainsV: number; batteryV: number; batteryPct?: number };
  temperatureC: number;
  modem: { rssiDbm: number; operator: string; tech?: '2g' | '3g' | '4g' | '5g' | 'ethernet' | 'wifi' | 'none' };
  gps: { lat: number; lon: number; fix: boolean } | null;
  volume: number;
  mute: boolean;
}

export interface HardwareFault {
  fault: FaultKind;
  state: 'raised' | 'cleared';
  lineId?: string;
  detail?: string;
}

/**
 * The agent talks to cluster hardware only through this interface. firmware-sim implements it for tests
 * and the demo; a Linux/ALSA/GPIO implementation serves in the field.
 */
export interface Hardware {
  /** The cluster's own clock (RTC/system clock): may be offset and drift against true time. */
  readonly clock: Clock;
  /** Time from relay-on until the amplifier is ready to play. */
  readonly warmupMs: number;
  readonly sink: AudioSink;
  status(): HardwareStatus;
  /** Switch the amplifier relay; resolves when the amplifier is `on` (after warm-up) or `off`. */
  setAmplifier(on: boolean): Promise<void>;
  setVolume(volume: number): void;
  setMute(mute: boolean): void;
  /** Restart the cluster computer (the sim restarts the agent's process or signals the agent to restart). */
  reboot(): Promise<void>;
  /** Fault transitions, as they happen. Returns an unsubscribe function. */
  onFault(listener: (f: HardwareFault) => void): () => void;
  close(): Promise<void>;
}
