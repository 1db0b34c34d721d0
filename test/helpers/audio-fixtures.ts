/**
 * Audio fixtures generated at test time (never downloaded) with espeak-ng, ffmpeg and sox, plus an
 * independent measurement helper: ffmpeg's ebur128 filter run directly, parsed here, so tests do
 * not trust the pipeline's own meter.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { deflateSync } from 'node:zlib';

const run = promisify(execFile);

export const SPEECH_TEXT =
  'Thông báo của Ủy ban nhân dân xã. Đề nghị bà con nhân dân các thôn chủ động chằng chống nhà cửa, ' +
  'thu hoạch lúa chạy bão, không ra khơi đánh bắt cá.';

export async function sh(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(cmd, args, { maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' });
}

async function ffmpeg(...args: string[]): Promise<void> {
  await sh('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-y', ...args]);
}

/** Sine amplitude (linear) for a given loudness: a 997 Hz mono sine reads ≈ 20·log10(A) − 3.01 LUFS. */
export function sineAmplitudeFor(lufs: number): number {
  return 10 ** ((lufs + 3.01) / 20);
}

export interface AudioFixtures {
  dir: string;
  /** espeak-ng Vietnamese speech, 22.05 kHz mono WAV, with espeak's own leading/trailing silence. */
  speechWav: string;
  /** The same speech with 1 s of digital silence before and after (trim test). */
  speechPaddedWav: string;
  toneQuiet: string; // ≈ -35 LUFS, 6 s
  toneLoud: string; // ≈ -6 LUFS, 6 s
  stereo44k: string; // speech, stereo 44.1 kHz WAV (channels differ slightly)
  amrPhone: string | null; // 8 kHz AMR-NB 12.2 kbps (sox), null when sox cannot write AMR
  amrDtx: string | null; // AMR-NB with DTX/SID frames (sox default mode on speech with digital silence)
  speechPeak0: string; // speech pushed into clipping: sample peak 0 dBFS (phone AGC style)
  mp3: string;
  m4a: string;
  oggOpus: string;
  oggVorbis: string;
  flac: string;
  webm: string;
  /** WebM written to a pipe (like a browser MediaRecorder upload): the container states no duration. */
  webmNoDuration: string;
  // bad inputs
  textAsMp3: string;
  pngAsWav: string;
  truncatedMp3: string;
  zeroBytes: string;
  silenceWav: string;
  quietNoise: string; // white noise at ≈ -65 dBFS: needs more than +30 dB
  videoOnly: string; // Matroska with one MJPEG video stream, no audio
  truncatedWav: string; // RIFF header declares more data than the file holds
  cleanup(): Promise<void>;
}

function png1x1(): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer): number => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0);
  ihdr.writeUInt32BE(1, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.from([0, 255, 0, 0]))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

async function soxCanWriteAmr(): Promise<boolean> {
  try {
    const { stdout } = await sh('sox', ['-h']);
    return /\bamr-nb\b/.test(stdout);
  } catch {
    return false;
  }
}

/** Build every fixture into a fresh temp dir (a few seconds of CPU). */
export async function makeAudioFixtures(which: 'all' | 'bad' = 'all'): Promise<AudioFixtures> {
  const dir = await mkdtemp(join(tmpdir(), 'radio-audio-fx-'));
  const p = (name: string): string => join(dir, name);
  const fx = {
    dir,
    speechWav: p('speech.wav'),
    speechPaddedWav: p('speech-padded.wav'),
    toneQuiet: p('tone-35.wav'),
    toneLoud: p('tone-6.wav'),
    stereo44k: p('speech-stereo-44k.wav'),
    amrPhone: null as string | null,
    amrDtx: null as string | null,
    speechPeak0: p('speech-peak0.wav'),
    mp3: p('speech.mp3'),
    m4a: p('speech.m4a'),
    oggOpus: p('speech.opus.ogg'),
    oggVorbis: p('speech.vorbis.ogg'),
    flac: p('speech.flac'),
    webm: p('speech.webm'),
    webmNoDuration: p('recorder.webm'),
    textAsMp3: p('notes.mp3'),
    pngAsWav: p('photo.wav'),
    truncatedMp3: p('truncated.mp3'),
    zeroBytes: p('empty.mp3'),
    silenceWav: p('silence.wav'),
    quietNoise: p('quiet-noise.wav'),
    videoOnly: p('video-only.mkv'),
    truncatedWav: p('truncated.wav'),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };

  await sh('espeak-ng', ['-v', 'vi', '-s', '150', '-w', fx.speechWav, SPEECH_TEXT]);
  const jobs: Promise<unknown>[] = [];
  // Bad inputs
  jobs.push(writeFile(fx.textAsMp3, 'Đây là ghi chú, không phải âm thanh.\nThis is a text file renamed to .mp3\n'));
  jobs.push(writeFile(fx.pngAsWav, png1x1()));
  jobs.push(writeFile(fx.zeroBytes, Buffer.alloc(0)));
  jobs.push(ffmpeg('-f', 'lavfi', '-i', 'anullsrc=r=44100:cl=mono', '-t', '3', '-c:a', 'pcm_s16le', fx.silenceWav));
  jobs.push(
    ffmpeg('-f', 'lavfi', '-i', 'anoisesrc=r=48000:a=0.0005:c=white:seed=7', '-t', '4', '-c:a', 'pcm_s16le', fx.quietNoise),
  );
  jobs.push(
    (async () => {
      // A 64 kb/s MP3 cut at 45 %: the Xing header still declares the full length.
      const full = p('full-for-truncation.mp3');
      await ffmpeg('-i', fx.speechWav, '-c:a', 'libmp3lame', '-b:a', '64k', full);
      const buf = await readFile(full);
      await writeFile(fx.truncatedMp3, buf.subarray(0, Math.floor(buf.length * 0.45)));
      await rm(full);
    })(),
  );
  jobs.push(ffmpeg('-f', 'lavfi', '-i', 'color=c=black:s=16x16:d=1', '-c:v', 'mjpeg', '-f', 'matroska', fx.videoOnly));
  jobs.push(
    (async () => {
      const buf = await readFile(fx.speechWav);
      await writeFile(fx.truncatedWav, buf.subarray(0, Math.floor(buf.length / 3) & ~1));
    })(),
  );
  jobs.push(
    (async () => {
      // Non-seekable output: the muxer cannot go back to write Duration/Cues.
      const { stdout } = await run('ffmpeg', ['-v', 'error', '-i', fx.speechWav, '-c:a', 'libopus', '-b:a', '32k', '-f', 'webm', 'pipe:1'], {
        encoding: 'buffer',
        maxBuffer: 64 * 1024 * 1024,
      });
      await writeFile(fx.webmNoDuration, stdout);
    })(),
  );
  if (which === 'all') {
    jobs.push(
      ffmpeg(
        '-f', 'lavfi', '-i', 'anullsrc=r=22050:cl=mono:d=1',
        '-i', fx.speechWav,
        '-f', 'lavfi', '-i', 'anullsrc=r=22050:cl=mono:d=1',
        '-filter_complex', '[0][1][2]concat=n=3:v=0:a=1', '-c:a', 'pcm_s16le', fx.speechPaddedWav,
      ),
    );
    for (const [file, lufs] of [
      [fx.toneQuiet, -35],
      [fx.toneLoud, -6],
    ] as const) {
      // lavfi sine has amplitude 1/8.
      jobs.push(
        ffmpeg('-f', 'lavfi', '-i', 'sine=frequency=997:sample_rate=48000:duration=6', '-af', `volume=${sineAmplitudeFor(lufs) * 8}`, '-c:a', 'pcm_s24le', file),
      );
    }
    jobs.push(
      ffmpeg('-i', fx.speechWav, '-af', 'aresample=44100,pan=stereo|c0=c0|c1=0.8*c0,adelay=0|3', '-c:a', 'pcm_s16le', fx.stereo44k),
    );
    // Peaks at 0 dBFS: +12 dB into 16-bit saturation, like an AGC'd phone mic.
    jobs.push(ffmpeg('-i', fx.speechWav, '-af', 'volume=12dB', '-c:a', 'pcm_s16le', fx.speechPeak0));
    jobs.push(ffmpeg('-i', fx.speechWav, '-c:a', 'libmp3lame', '-b:a', '96k', fx.mp3));
    jobs.push(ffmpeg('-i', fx.speechWav, '-ar', '44100', '-c:a', 'aac', '-b:a', '96k', fx.m4a));
    jobs.push(ffmpeg('-i', fx.speechWav, '-c:a', 'libopus', '-b:a', '48k', '-f', 'ogg', fx.oggOpus));
    jobs.push(ffmpeg('-i', fx.speechWav, '-c:a', 'libvorbis', '-q:a', '4', '-f', 'ogg', fx.oggVorbis));
    jobs.push(ffmpeg('-i', fx.speechWav, '-c:a', 'flac', fx.flac));
    jobs.push(ffmpeg('-i', fx.speechWav, '-c:a', 'libopus', '-b:a', '32k', '-f', 'webm', fx.webm));
    if (await soxCanWriteAmr()) {
      fx.amrPhone = p('phone.amr');
      fx.amrDtx = p('phone-dtx.amr');
      const amrPhone = fx.amrPhone;
      const amrDtx = fx.amrDtx;
      jobs.push(
        (async () => {
          // Phone-like: 8 kHz, steady background noise (-45 dBFS), 12.2 kbps mode (-C 7).
          const mix = p('phone-mix.wav');
          await ffmpeg(
            '-i', fx.speechWav, '-f', 'lavfi', '-i', 'anoisesrc=r=8000:a=0.006:c=pink:seed=3',
            '-filter_complex', '[0]aresample=8000[s];[s][1]amix=inputs=2:duration=first:normalize=0', '-c:a', 'pcm_s16le', mix,
          );
          await sh('sox', [mix, '-C', '7', '-t', 'amr-nb', amrPhone]);
          await sh('sox', [fx.speechWav, '-r', '8000', '-t', 'amr-nb', amrDtx]);
        })(),
      );
    }
  }
  await Promise.all(jobs);
  return fx;
}

export interface IndependentMeasure {
  integratedLufs: number;
  truePeakDbtp: number;
  codec: string;
  sampleRate: number;
  channels: number;
  durationMs: number;
}

/** ffprobe + ffmpeg ebur128 (peak=true) on a file, parsed here. `decoder` forces an ffmpeg decoder. */
export async function measureIndependently(path: string, decoder?: string): Promise<IndependentMeasure> {
  const probe = await sh('ffprobe', ['-v', 'error', '-show_streams', '-show_format', '-of', 'json', path]);
  const info = JSON.parse(probe.stdout) as { streams: { codec_name: string; sample_rate: string; channels: number }[]; format: { duration: string } };
  const s = info.streams[0]!;
  const { stderr } = await sh('ffmpeg', ['-hide_banner', '-nostats', ...(decoder ? ['-c:a', decoder] : []), '-i', path, '-af', 'ebur128=peak=true', '-f', 'null', '-']);
  const summary = stderr.slice(stderr.lastIndexOf('Summary:'));
  const i = /I:\s+(-?[\d.]+|-inf) LUFS/.exec(summary);
  const tp = /True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS/.exec(summary);
  if (!i || !tp) throw new Error(`no ebur128 summary for ${path}`);
  const num = (x: string): number => (x === '-inf' ? -Infinity : Number(x));
  return {
    integratedLufs: num(i[1]!),
    truePeakDbtp: num(tp[1]!),
    codec: s.codec_name,
    sampleRate: Number(s.sample_rate),
    channels: s.channels,
    durationMs: Math.round(Number(info.format.duration) * 1000),
  };
}

/** Decode to 48 kHz mono float with ffmpeg (as the pipeline does) and return the samples. */
export async function decodeMono48k(path: string): Promise<Float32Array> {
  const { stdout } = await run('ffmpeg', ['-v', 'error', '-i', path, '-af', 'aresample=48000,aformat=channel_layouts=mono', '-f', 'f32le', '-c:a', 'pcm_f32le', 'pipe:1'], {
    encoding: 'buffer',
    maxBuffer: 512 * 1024 * 1024,
  });
  const b = stdout;
  const copy = new Uint8Array(b.length - (b.length % 4));
  copy.set(b.subarray(0, copy.length));
  return new Float32Array(copy.buffer);
}

/** Duration (ms) between the first and the last sample whose |x| exceeds `thresholdDbfs`. */
export function nonSilentSpanMs(x: Float32Array, thresholdDbfs = -60, rate = 48000): number {
  const thr = 10 ** (thresholdDbfs / 20);
  let first = -1;
  let last = -1;
  for (let i = 0; i < x.length; i++) {
    if (Math.abs(x[i]!) > thr) {
      if (first < 0) first = i;
      last = i;
    }
  }
  return first < 0 ? 0 : ((last - first + 1) / rate) * 1000;
}

/** Files in `dir` other than the expected outputs (leftover temp files). */
export async function strayFiles(dir: string, keep: string[] = []): Promise<string[]> {
  const names = await readdir(dir);
  return names.filter((n) => !keep.includes(n));
}
