/**
 * Live-session inputs on the controller: an ffmpeg child (a media file played live, an external stream
 * relayed, a sound card captured) that writes 48 kHz mono s16le on stdout, and the PCM framing of the
 * console microphone WebSocket. Files and relays can be paused: they are paced by the session sender's
 * back-pressure ('paced' mode: write() → false pauses the pipe, 'drain' resumes it). A sound card
 * produces real time by itself and cannot be paused (a paused capture overruns): its sender runs in
 * 'live' mode, where write() never pushes back and a queue beyond maxQueueMs is dropped.
 */
import type { Supervisor, ProcessHandle } from '../../../audio-pipeline/src/index.js';
import type { SessionSender } from '../../../audio-pipeline/src/live/index.js';
import { LIVE_INPUT_RE } from '../../../schemas/src/index.js';

export const LIVE_SAMPLE_RATE = 48_000;

/** Microphone WebSocket frame formats: 48 kHz mono little-endian, signed 16-bit (default) or float32. */
export type MicFormat = 's16le' | 'f32le';

/** Decode one binary frame; a trailing partial sample is ignored (the console sends whole samples). */
export function decodePcm(buf: Buffer, format: MicFormat): Float32Array {
  if (format === 'f32le') {
    const n = Math.floor(buf.length / 4);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const v = buf.readFloatLE(i * 4);
      out[i] = Number.isFinite(v) ? Math.max(-1, Math.min(1, v)) : 0;
    }
    return out;
  }
  const n = Math.floor(buf.length / 2);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = buf.readInt16LE(i * 2) / 32768;
  return out;
}

/**
 * ffmpeg arguments (the input, and a timestamp filter for the output) of a sound card from
 * `RADIO_LIVE_INPUT`: `alsa:<pcm>` (ffmpeg's alsa demuxer, e.g. `alsa:default`, `alsa:plughw:1,0`;
 * the `plug` layer converts rate and channels a card lacks) or `pulse:<source>` (PulseAudio or
 * PipeWire's pulse server, e.g. `pulse:default`). 48 kHz is asked for; the channels are
 * the demuxer's default (2) and are mixed down to mono by the output options. ALSA reads its own
 * configuration (/etc/asound.conf, ~/.asoundrc, ALSA_CONFIG_PATH) in the ffmpeg child, which inherits
 * the controller's environment. Throws on a malformed value.
 */
export function soundcardInput(spec: string): string[] {
  if (!LIVE_INPUT_RE.test(spec)) throw new Error(`RADIO_LIVE_INPUT must be alsa:<device> or pulse:<source> (e.g. alsa:default, alsa:plughw:1,0, pulse:default), got ${JSON.stringify(spec)}`);
  const i = spec.indexOf(':');
  const format = spec.slice(0, i) as 'alsa' | 'pulse';
  const device = spec.slice(i + 1);
  // After -i, so an output option. The capture demuxers stamp packets with the wall clock, and small
  // ALSA periods (ffmpeg asks for the card's minimum) give packets whose timestamps collide at the muxer,
  // which drops them (clicks): the PCM pipe needs no wall clock, so number the samples instead. And
  // regroup into 20 ms blocks (one Opus frame), so a card with tiny periods does not turn into
  // thousands of pipe writes a second.
  return ['-f', format, '-sample_rate', String(LIVE_SAMPLE_RATE), '-i', device, '-af', 'asetpts=N/SR/TB,asetnsamples=n=960:p=0'];
}

/** The last two lines of ffmpeg's stderr, without the `[demuxer @ 0x…]` addresses (noise in a session's end reason). */
export function ffmpegWords(stderr: string): string {
  return stderr.trim().split('\n').slice(-2).map((l) => l.replace(/\[([\w-]+) @ 0x[0-9a-f]+\] /g, '$1: ')).join(' | ');
}

/** A running source of a session's PCM, whatever makes it (ffmpeg, or the in-process Ogg/Opus reader). */
export interface PacedSource {
  /** Resolves when the input ends (EOF), rejects on a failure (bad URL, decoder error, watchdog). */
  readonly done: Promise<void>;
  stop(): void;
}

/**
 * Run ffmpeg on the urgent lane and feed its PCM to `sender` at the sender's pace. `input` is the
 * ffmpeg input arguments (e.g. ['-i', url]); `durationMs` bounds the output (-t).
 *
 * `gate`: start ffmpeg now but hold its PCM until the gate opens (the targets are ready), so that the
 * process start, the file's opening or the stream's connection and the first decode are done while the
 * clusters join, not after. Up to `prerollMaxMs` of PCM is held (default 2000 ms); then the pipe is
 * paused and ffmpeg waits on it. A failure before the gate opens rejects `done` at once.
 */
export async function startFfmpegSource(o: {
  supervisor: Supervisor;
  sender: SessionSender;
  input: string[];
  durationMs?: number;
  kind: string;
  watchdogMs: number;
  gate?: Promise<void>;
  prerollMaxMs?: number;
}): Promise<PacedSource> {
  // -flush_packets 1: each decoded packet goes to the pipe at once, not when ffmpeg's 32 KiB output
  // buffer fills (a third of a second of PCM: a burst a live-mode sender would partly drop).
  const args = ['-hide_banner', '-nostdin', '-v', 'error', ...o.input, '-vn', '-ac', '1', '-ar', String(LIVE_SAMPLE_RATE),
    ...(o.durationMs ? ['-t', (o.durationMs / 1000).toFixed(3)] : []), '-flush_packets', '1', '-f', 's16le', 'pipe:1'];
  const handle: ProcessHandle = await o.supervisor.launch({ kind: o.kind, command: 'ffmpeg', args, stdout: 'stream', lane: 'urgent', watchdogMs: o.watchdogMs });
  const out = handle.stdout!;
  let carry: Buffer | null = null;
  let stopped = false;
  // PCM not yet handed to the sender: all of it until the gate opens, then whatever the sender's queue
  // did not take (it is handed on at the sender's pace, as ffmpeg's own output would be: the PCM taps
  // behind the sender see real time, not a burst).
  const held: Buffer[] = [];
  let heldBytes = 0;
  let open = !o.gate;
  const heldMax = Math.round(((o.prerollMaxMs ?? 2000) / 1000) * LIVE_SAMPLE_RATE) * 2;
  const CHUNK = (LIVE_SAMPLE_RATE / 50) * 2; // 20 ms
  /** Hand held PCM on while the sender takes it; true when all of it went. */
  const flush = (): boolean => {
    while (held.length) {
      const b = held[0]!;
      const part = b.subarray(0, CHUNK);
      if (part.length === b.length) held.shift(); else held[0] = b.subarray(CHUNK);
      heldBytes -= part.length;
      if (!o.sender.write(decodePcm(part, 's16le'))) return false; // the rest waits for 'drain'
    }
    return true;
  };
  const onDrain = () => {
    if (stopped || !open) return;
    if (flush()) out.resume();
  };
  o.sender.on('drain', onDrain);
  out.on('data', (chunk: Buffer) => {
    if (stopped) return;
    let b = carry ? Buffer.concat([carry, chunk]) : chunk;
    const whole = b.length - (b.length % 2);
    carry = whole < b.length ? Buffer.from(b.subarray(whole)) : null;
    b = b.subarray(0, whole);
    if (!b.length) return;
    if (!open || held.length) {
      held.push(b);
      heldBytes += b.length;
      if (open || heldBytes >= heldMax) out.pause();
      return;
    }
    if (!o.sender.write(decodePcm(b, 's16le'))) out.pause();
  });
  void o.gate?.then(() => {
    if (stopped) return;
    open = true;
    if (flush()) out.resume();
  });
  // EOF of the PCM, not the process exit: ffmpeg exits as soon as its last bytes are in the pipe,
  // while the paced reader may still hold seconds of them.
  const drained = new Promise<void>((resolve) => { out.once('end', resolve); out.once('close', resolve); });
  const done = (async () => {
    try {
      const r = await handle.done;
      if (!stopped && r.exitCode === 0) await drained;
      if (!stopped && r.exitCode !== 0) throw new Error(`ffmpeg exited ${r.exitCode ?? r.signal ?? '?'}: ${ffmpegWords(r.stderr)}`);
    } finally {
      o.sender.off('drain', onDrain);
    }
  })();
  return {
    done,
    stop() {
      if (stopped) return;
      stopped = true;
      held.length = 0;
      // A paused pipe never ends, and the process's slot is only given back when its output has closed:
      // read (and discard) what is left while ffmpeg is stopped.
      out.resume();
      handle.kill(500);
    },
  };
}
