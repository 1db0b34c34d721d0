/**
 * Live-session inputs on the controller: an ffmpeg child (a media file played live, an external stream
 * relayed) that writes 48 kHz mono s16le on stdout, paced by the session sender's back-pressure
 * ('paced' mode: write() → false pauses the pipe, 'drain' resumes it), and the PCM framing of the
 * console microphone WebSocket.
 */
import type { Supervisor, ProcessHandle } from '../../../audio-pipeline/src/index.js';
import type { SessionSender } from '../../../audio-pipeline/src/live/index.js';

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

export interface FfmpegSource {
  /** Resolves when the input ends (EOF), rejects on a failure (bad URL, decoder error, watchdog). */
  readonly done: Promise<void>;
  stop(): void;
}

/**
 * Run ffmpeg on the urgent lane and feed its PCM to `sender` at the sender's pace. `input` is the
 * ffmpeg input arguments (e.g. ['-i', url]); `durationMs` bounds the output (-t).
 */
export async function startFfmpegSource(o: {
  supervisor: Supervisor;
  sender: SessionSender;
  input: string[];
  durationMs?: number;
  kind: string;
  watchdogMs: number;
}): Promise<FfmpegSource> {
  const args = ['-hide_banner', '-nostdin', '-v', 'error', ...o.input, '-vn', '-ac', '1', '-ar', String(LIVE_SAMPLE_RATE),
    ...(o.durationMs ? ['-t', (o.durationMs / 1000).toFixed(3)] : []), '-f', 's16le', 'pipe:1'];
  const handle: ProcessHandle = await o.supervisor.launch({ kind: o.kind, command: 'ffmpeg', args, stdout: 'stream', lane: 'urgent', watchdogMs: o.watchdogMs });
  const out = handle.stdout!;
  let carry: Buffer | null = null;
  let stopped = false;
  const onDrain = () => { if (!stopped) out.resume(); };
  o.sender.on('drain', onDrain);
  out.on('data', (chunk: Buffer) => {
    if (stopped) return;
    let b = carry ? Buffer.concat([carry, chunk]) : chunk;
    const whole = b.length - (b.length % 2);
    carry = whole < b.length ? Buffer.from(b.subarray(whole)) : null;
    b = b.subarray(0, whole);
    if (b.length && !o.sender.write(decodePcm(b, 's16le'))) out.pause();
  });
  // EOF of the PCM, not the process exit: ffmpeg exits as soon as its last bytes are in the pipe,
  // while the paced reader may still hold seconds of them.
  const drained = new Promise<void>((resolve) => { out.once('end', resolve); out.once('close', resolve); });
  const done = (async () => {
    try {
      const r = await handle.done;
      if (!stopped && r.exitCode === 0) await drained;
      if (!stopped && r.exitCode !== 0) throw new Error(`ffmpeg exited ${r.exitCode ?? r.signal ?? '?'}: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
    } finally {
      o.sender.off('drain', onDrain);
    }
  })();
  return {
    done,
    stop() {
      if (stopped) return;
      stopped = true;
      handle.kill(500);
    },
  };
}
