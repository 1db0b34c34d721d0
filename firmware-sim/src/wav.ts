import { readFile, writeFile } from 'node:fs/promises';

/**
 * Minimal RIFF/WAVE for the sim: writes PCM s16le mono (48 kHz by default); reads PCM 8/16/24/32-bit
 * integer and IEEE float (format 1, 3 and WAVE_FORMAT_EXTENSIBLE), mixing channels down to mono.
 * Enough for DAC recordings, test fixtures and what espeak-ng/ffmpeg/sox produce.
 */

export interface WavData {
  sampleRate: number;
  /** Channels in the file (samples below are already mixed down to mono). */
  channels: number;
  bitsPerSample: number;
  /** Mono float32 in [-1, 1]. */
  samples: Float32Array;
}

const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_IEEE_FLOAT = 3;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/** Float [-1, 1] → s16 with clipping; the one conversion used by every sink that writes s16. */
export function floatToS16(x: number): number {
  const v = x < -1 ? -1 : x > 1 ? 1 : x;
  return v < 0 ? Math.round(v * 0x8000) : Math.round(v * 0x7fff);
}

/** Encode float samples as s16le into `out` at `offset` (bytes). Returns bytes written. */
export function encodeS16le(samples: Float32Array, out: Buffer, offset = 0): number {
  for (let i = 0; i < samples.length; i++) out.writeInt16LE(floatToS16(samples[i]!), offset + i * 2);
  return samples.length * 2;
}

export function encodeWav(samples: Float32Array, sampleRate = 48_000): Buffer {
  const dataBytes = samples.length * 2;
  const buf = Buffer.alloc(44 + dataBytes);
  buf.write('RIFF', 0, 'ascii');
  buf.writeUInt32LE(36 + dataBytes, 4);
  buf.write('WAVE', 8, 'ascii');
  buf.write('fmt ', 12, 'ascii');
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(WAVE_FORMAT_PCM, 20);
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(sampleRate, 24);
  buf.writeUInt32LE(sampleRate * 2, 28); // byte rate
  buf.writeUInt16LE(2, 32); // block align
  buf.writeUInt16LE(16, 34);
  buf.write('data', 36, 'ascii');
  buf.writeUInt32LE(dataBytes, 40);
  encodeS16le(samples, buf, 44);
  return buf;
}

export async function writeWav(path: string, samples: Float32Array, sampleRate = 48_000): Promise<void> {
  await writeFile(path, encodeWav(samples, sampleRate));
}

export class WavFormatError extends Error {
  readonly code = 'WAV_FORMAT';
}

export function decodeWav(buf: Buffer): WavData {
  if (buf.length < 12 || buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') {
    throw new WavFormatError('not a RIFF/WAVE file');
  }
  let fmt: { format: number; channels: number; sampleRate: number; bits: number } | undefined;
  let pos = 12;
  while (pos + 8 <= buf.length) {
    const id = buf.toString('ascii', pos, pos + 4);
    let size = buf.readUInt32LE(pos + 4);
    const body = pos + 8;
    if (id === 'fmt ') {
      if (size < 16) throw new WavFormatError('fmt chunk too short');
      let format = buf.readUInt16LE(body);
      const channels = buf.readUInt16LE(body + 2);
      const sampleRate = buf.readUInt32LE(body + 4);
      const bits = buf.readUInt16LE(body + 14);
      // WAVE_FORMAT_EXTENSIBLE: the real format is the first 2 bytes of the SubFormat GUID.
      if (format === WAVE_FORMAT_EXTENSIBLE && size >= 40) format = buf.readUInt16LE(body + 24);
      fmt = { format, channels, sampleRate, bits };
    } else if (id === 'data') {
      if (!fmt) throw new WavFormatError('data chunk before fmt chunk');
      // Streamed WAVs (ffmpeg/espeak-ng to a pipe) leave the size 0 or 0xFFFFFFFF: take the rest.
      if (size === 0 || size === 0xffffffff || body + size > buf.length) size = buf.length - body;
      return { sampleRate: fmt.sampleRate, channels: fmt.channels, bitsPerSample: fmt.bits, samples: decodePcm(buf.subarray(body, body + size), fmt) };
    }
    pos = body + size + (size & 1); // chunks are word-aligned
  }
  throw new WavFormatError('no data chunk');
}

function decodePcm(data: Buffer, fmt: { format: number; channels: number; bits: number }): Float32Array {
  const { format, channels, bits } = fmt;
  if (channels < 1) throw new WavFormatError('zero channels');
  const bytes = bits / 8;
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > 4) throw new WavFormatError(`unsupported bits per sample ${bits}`);
  const frameBytes = bytes * channels;
  const frames = Math.floor(data.length / frameBytes);
  const out = new Float32Array(frames);
  let read: (off: number) => number;
  if (format === WAVE_FORMAT_IEEE_FLOAT && bits === 32) read = (o) => data.readFloatLE(o);
  else if (format === WAVE_FORMAT_PCM && bits === 8) read = (o) => (data.readUInt8(o) - 128) / 128;
  else if (format === WAVE_FORMAT_PCM && bits === 16) read = (o) => data.readInt16LE(o) / 32768;
  else if (format === WAVE_FORMAT_PCM && bits === 24) read = (o) => data.readIntLE(o, 3) / 8388608;
  else if (format === WAVE_FORMAT_PCM && bits === 32) read = (o) => data.readInt32LE(o) / 2147483648;
  else throw new WavFormatError(`unsupported WAV format ${format} with ${bits} bits`);
  for (let f = 0; f < frames; f++) {
    let acc = 0;
    for (let c = 0; c < channels; c++) acc += read(f * frameBytes + c * bytes);
    out[f] = acc / channels;
  }
  return out;
}

export async function readWav(path: string): Promise<WavData> {
  return decodeWav(await readFile(path));
}
