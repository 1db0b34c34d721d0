/**
 * First look at an upload: what is it, and may it go on? ffprobe plus a few byte-level checks that
 * ffprobe alone gets wrong (a text file named .mp3, a WAV whose data chunk is cut short).
 * The full decode check (truncated MP3s usually probe fine) happens in the analysis pass.
 */
import { open, stat } from 'node:fs/promises';
import { MediaError } from './errors.js';
import type { Lane, Supervisor } from './supervisor.js';
import { lastLines } from './supervisor.js';

export interface ProbeResult {
  formatName: string;
  codec: string;
  /** null when the container does not say (e.g. browser MediaRecorder WebM); the decode finds out. */
  durationMs: number | null;
  /** ffprobe had to guess the duration from the bit rate (VBR MP3 without a Xing header, AMR …). */
  durationEstimated: boolean;
  sampleRate: number;
  channels: number;
  bitRate: number | null;
  sizeBytes: number;
  /** Index of the audio stream used (the first one). */
  streamIndex: number;
}

export interface ProbeOptions {
  supervisor: Supervisor;
  maxDurationMs?: number;
  maxBytes?: number;
  lane?: Lane;
  signal?: AbortSignal;
}

/** Magic numbers of containers we accept; a file starting with one of these is audio-ish. */
const AUDIO_MAGIC: { name: string; test: (b: Buffer) => boolean }[] = [
  { name: 'id3', test: (b) => b.subarray(0, 3).toString('latin1') === 'ID3' },
  { name: 'mpeg-audio', test: (b) => b.length >= 2 && b[0] === 0xff && ((b[1] ?? 0) & 0xe0) === 0xe0 },
  { name: 'riff-wave', test: (b) => b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WAVE' },
  { name: 'ogg', test: (b) => b.subarray(0, 4).toString('latin1') === 'OggS' },
  { name: 'flac', test: (b) => b.subarray(0, 4).toString('latin1') === 'fLaC' },
  { name: 'amr', test: (b) => b.subarray(0, 5).toString('latin1') === '#!AMR' },
  { name: 'ebml', test: (b) => b.length >= 4 && b[0] === 0x1a && b[1] === 0x45 && b[2] === 0xdf && b[3] === 0xa3 },
  { name: 'iso-bmff', test: (b) => b.subarray(4, 8).toString('latin1') === 'ftyp' },
  { name: 'aiff', test: (b) => b.subarray(0, 4).toString('latin1') === 'FORM' },
  { name: 'caf', test: (b) => b.subarray(0, 4).toString('latin1') === 'caff' },
];

/** Things people upload by mistake, recognised before ffprobe gets a chance to misread them. */
const NOT_AUDIO_MAGIC: { name: string; test: (b: Buffer) => boolean }[] = [
  { name: 'PNG image', test: (b) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) },
  { name: 'JPEG image', test: (b) => b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff },
  { name: 'GIF image', test: (b) => b.subarray(0, 4).toString('latin1') === 'GIF8' },
  { name: 'PDF document', test: (b) => b.subarray(0, 5).toString('latin1') === '%PDF-' },
  { name: 'ZIP/Office document', test: (b) => b.subarray(0, 4).equals(Buffer.from([0x50, 0x4b, 0x03, 0x04])) },
  { name: 'WebP image', test: (b) => b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP' },
];

/** Printable UTF-8 with no NUL/control bytes: a text file, whatever its name says. */
function looksLikeText(b: Buffer): boolean {
  if (b.length === 0) return false;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(b.length === 512 ? trimPartialUtf8(b) : b);
  } catch {
    return false;
  }
  // eslint-disable-next-line no-control-regex -- we are looking precisely for control characters
  return !/[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.test(text);
}

function trimPartialUtf8(b: Buffer): Buffer {
  // Drop a multi-byte sequence cut by the 512-byte window.
  let end = b.length;
  for (let i = 1; i <= 3 && end - i >= 0; i++) {
    const byte = b[end - i] ?? 0;
    if ((byte & 0xc0) === 0x80) continue;
    if ((byte & 0xc0) === 0xc0) end -= i;
    break;
  }
  return b.subarray(0, end);
}

export function sniff(head: Buffer): { audio: string | null; notAudio: string | null } {
  const notAudio = NOT_AUDIO_MAGIC.find((m) => m.test(head))?.name ?? (looksLikeText(head) ? 'text' : null);
  const audio = AUDIO_MAGIC.find((m) => m.test(head))?.name ?? null;
  return { audio, notAudio: audio ? null : notAudio };
}

/**
 * RIFF/WAVE: the `data` chunk declares its size; fewer bytes on disk = truncated upload
 * (ffprobe quietly reports the shorter duration). Placeholders 0 / 0xFFFFFFFF mean "streamed".
 */
async function wavTruncation(path: string, sizeBytes: number): Promise<{ declared: number; present: number } | null> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(Math.min(sizeBytes, 64 * 1024));
    await fh.read(buf, 0, buf.length, 0);
    let off = 12;
    while (off + 8 <= buf.length) {
      const id = buf.subarray(off, off + 4).toString('latin1');
      const size = buf.readUInt32LE(off + 4);
      if (id === 'data') {
        if (size === 0 || size === 0xffffffff) return null;
        const present = sizeBytes - (off + 8);
        return present < size ? { declared: size, present } : null;
      }
      off += 8 + size + (size % 2);
    }
    return null;
  } finally {
    await fh.close();
  }
}

interface FfprobeJson {
  streams?: {
    index?: number;
    codec_type?: string;
    codec_name?: string;
    sample_rate?: string;
    channels?: number;
    duration?: string;
    bit_rate?: string;
  }[];
  format?: { format_name?: string; duration?: string; bit_rate?: string; size?: string };
}

export async function probeAudio(path: string, opts: ProbeOptions): Promise<ProbeResult> {
  let sizeBytes: number;
  try {
    sizeBytes = (await stat(path)).size;
  } catch (err) {
    throw new MediaError('EMPTY', `input file cannot be read: ${(err as Error).message}`, { cause: err });
  }
  if (sizeBytes === 0) throw new MediaError('EMPTY', 'the file is empty (0 bytes)', { details: { sizeBytes } });
  if (opts.maxBytes !== undefined && sizeBytes > opts.maxBytes) {
    throw new MediaError('TOO_LARGE', `the file is ${sizeBytes} bytes; the limit is ${opts.maxBytes}`, {
      details: { sizeBytes, maxBytes: opts.maxBytes },
    });
  }

  const head = Buffer.alloc(Math.min(512, sizeBytes));
  const fh = await open(path, 'r');
  try {
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  const sniffed = sniff(head);
  if (sniffed.notAudio) {
    throw new MediaError('NOT_AUDIO', `this is not an audio file (looks like a ${sniffed.notAudio})`, { details: { detected: sniffed.notAudio } });
  }

  const res = await opts.supervisor.run({
    kind: 'probe',
    command: 'ffprobe',
    args: ['-hide_banner', '-v', 'warning', '-show_format', '-show_streams', '-of', 'json', '-i', path],
    stdout: 'collect',
    maxStdoutBytes: 4 * 1024 * 1024,
    lane: opts.lane,
    signal: opts.signal,
    watchdogMs: 15_000,
  });
  if (res.exitCode !== 0) {
    const why = lastLines(res.stderr, 2);
    if (sniffed.audio) {
      throw new MediaError('CORRUPT', `the audio file is damaged and cannot be read (${why})`, { details: { stderr: why, container: sniffed.audio } });
    }
    throw new MediaError('NOT_AUDIO', `this is not an audio file ffmpeg can read (${why})`, { details: { stderr: why } });
  }
  let info: FfprobeJson;
  try {
    info = JSON.parse(res.stdout.toString('utf8')) as FfprobeJson;
  } catch (err) {
    throw new MediaError('PROCESS_FAILED', 'ffprobe returned unreadable JSON', { cause: err });
  }
  const formatName = info.format?.format_name ?? 'unknown';
  const streams = info.streams ?? [];
  const audio = streams.find((s) => s.codec_type === 'audio');
  if (!audio) {
    // A media container (recognised magic) without sound is EMPTY; an image or anything else is NOT_AUDIO.
    const imageLike = /(_pipe|^image2|^tty$|^gif|^webp)/.test(formatName);
    if (imageLike || !sniffed.audio) {
      throw new MediaError('NOT_AUDIO', `this is not an audio file (ffprobe sees ${formatName}${streams[0]?.codec_name ? `/${streams[0].codec_name}` : ''})`, {
        details: { formatName },
      });
    }
    throw new MediaError('EMPTY', `the ${formatName} file has no audio stream`, { details: { formatName } });
  }

  if (formatName === 'wav') {
    const t = await wavTruncation(path, sizeBytes);
    if (t) {
      throw new MediaError('CORRUPT', `the WAV file is truncated: ${t.present} of ${t.declared} data bytes present`, { details: t });
    }
  }

  const num = (s: string | undefined): number | null => {
    if (s === undefined || s === 'N/A' || s === '') return null;
    const n = Number(s);
    return Number.isFinite(n) ? n : null;
  };
  const durationS = num(audio.duration) ?? num(info.format?.duration);
  const durationMs = durationS === null ? null : Math.round(durationS * 1000);
  const durationEstimated = /Estimating duration from bitrate/i.test(res.stderr);
  if (durationMs !== null && durationMs <= 0) {
    throw new MediaError('EMPTY', 'the audio stream has zero duration', { details: { formatName } });
  }
  if (opts.maxDurationMs !== undefined && durationMs !== null && durationMs > opts.maxDurationMs * (durationEstimated ? 1.1 : 1)) {
    throw new MediaError('TOO_LONG', `the audio lasts ${fmtDuration(durationMs)}; the limit is ${fmtDuration(opts.maxDurationMs)}`, {
      details: { durationMs, maxDurationMs: opts.maxDurationMs },
    });
  }
  const sampleRate = num(audio.sample_rate) ?? 0;
  const channels = audio.channels ?? 0;
  if (sampleRate <= 0 || channels <= 0) {
    throw new MediaError('CORRUPT', `the audio stream has no usable sample rate/channel count (${audio.codec_name ?? '?'})`, {
      details: { sampleRate, channels },
    });
  }
  return {
    formatName,
    codec: audio.codec_name ?? 'unknown',
    durationMs,
    durationEstimated,
    sampleRate,
    channels,
    bitRate: num(audio.bit_rate) ?? num(info.format?.bit_rate),
    sizeBytes,
    streamIndex: audio.index ?? 0,
  };
}

export function fmtDuration(ms: number): string {
  const s = Math.round(ms / 100) / 10;
  if (s < 120) return `${s} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}
