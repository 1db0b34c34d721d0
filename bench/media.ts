/**
 * Media ingest benchmark (issue 3): 1-, 10- and 60-minute speech files through ingestAudio,
 * against a fixed baseline — ffmpeg's own two-pass loudnorm + libopus + MP3 command lines, run bare.
 *
 *   node --import ./deploy/ts-register.mjs bench/media.ts  (BENCH_MEDIA_LONG=0 skips the 60-minute file)
 *
 * realtimeFactor = input duration ÷ wall time; overheadRatio = our wall time ÷ baseline wall time.
 * The last line is one JSON object for the 10-minute file.
 * The timed part is isolated in `timedIngest()` so it can later be swapped for the HTTP upload path
 * (wall time from the last upload byte to the committed media row).
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { DEFAULT_PROFILE } from '../audio-pipeline/src/index.js';
import { createController } from '../controller/src/controller.js';
import { login } from '../firmware-sim/src/fleet.js';

const exec = promisify(execFile);

const TEXT =
  'Thông báo của Ủy ban nhân dân xã về việc phòng chống bão số năm. Đề nghị bà con nhân dân các thôn chủ động chằng chống nhà cửa, ' +
  'thu hoạch lúa chạy bão, không ra khơi đánh bắt cá. Các hộ gia đình ở vùng trũng thấp chuẩn bị sẵn sàng di dời đến nơi an toàn ' +
  'theo hướng dẫn của ban chỉ huy phòng chống thiên tai. Lịch tiêm phòng cho trẻ em sẽ được tổ chức tại trạm y tế xã vào sáng thứ hai tuần sau.';

interface Case {
  label: string;
  minutes: number;
  runs: number;
  baselineRuns: number;
}

async function ff(args: string[]): Promise<string> {
  const { stderr } = await exec('ffmpeg', ['-hide_banner', '-nostdin', '-y', ...args], { maxBuffer: 64 * 1024 * 1024 });
  return stderr;
}

/**
 * Speech-like inputs: espeak-ng Vietnamese in its three voices (about 2 min 13 s), looped to length,
 * as a 44.1 kHz stereo 128 kb/s MP3 — what a laptop upload looks like. Made once, cached in tmp.
 */
async function makeInputs(minutesList: number[]): Promise<Map<number, string>> {
  const dir = join(os.tmpdir(), 'radio-bench-media-v1');
  await mkdir(dir, { recursive: true });
  const base = join(dir, 'base.wav');
  if (!existsSync(base)) {
    const parts: string[] = [];
    for (const v of ['vi', 'vi-vn-x-central', 'vi-vn-x-south']) {
      const p = join(dir, `part-${v}.wav`);
      await exec('espeak-ng', ['-v', v, '-w', p, `${TEXT} ${TEXT}`]);
      parts.push(p);
    }
    await ff([...parts.flatMap((p) => ['-i', p]), '-filter_complex', '[0][1][2]concat=n=3:v=0:a=1', '-ar', '44100', '-ac', '2', base]);
  }
  const out = new Map<number, string>();
  for (const m of minutesList) {
    const f = join(dir, `speech-${m}min.mp3`);
    if (!existsSync(f) || (await stat(f)).size < m * 60 * 16000 * 0.9) {
      await ff(['-v', 'error', '-stream_loop', '-1', '-i', base, '-t', String(m * 60), '-c:a', 'libmp3lame', '-b:a', '128k', f]);
    }
    out.set(m, f);
  }
  return out;
}

/**
 * The one timed operation, through the real HTTP API: the file is uploaded to POST /api/v1/media of an
 * in-process controller, and the time taken is the server's own `Server-Timing: ingest;dur=` — from the
 * last upload byte received to the committed media row (the issue's definition). The item is fetched
 * (for the output measurement) and deleted again, so the next identical upload is not a duplicate.
 */
export async function timedIngest(input: string, outDir: string, api: BenchApi): Promise<{ ms: number; result: { opusPath: string; attempts: number } }> {
  const form = new FormData();
  form.append('file', new Blob([await readFile(input)]), basename(input));
  const r = await fetch(`${api.base}/api/v1/media`, { method: 'POST', headers: { authorization: `Bearer ${api.token}` }, body: form });
  const body = (await r.json()) as { id: string; message?: string; duplicate?: boolean; processing: { attempts?: number } };
  if (r.status !== 201) throw new Error(`upload failed: ${r.status} ${body.message ?? ''}`);
  const timing = /ingest;dur=([\d.]+)/.exec(r.headers.get('server-timing') ?? '');
  if (!timing) throw new Error('no Server-Timing ingest figure in the upload response');
  const audio = await fetch(`${api.base}/api/v1/media/${body.id}/audio?format=opus`, { headers: { authorization: `Bearer ${api.token}` } });
  const opusPath = join(outDir, 'out.opus');
  await writeFile(opusPath, Buffer.from(await audio.arrayBuffer()));
  await fetch(`${api.base}/api/v1/media/${body.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${api.token}` } });
  return { ms: Number(timing[1]), result: { opusPath, attempts: Number(body.processing.attempts ?? 1) } };
}

export interface BenchApi { base: string; token: string }

/** Baseline command lines (same output spec as our default profile, loudness by ffmpeg loudnorm). */
export function baselineCommands(input: string, outBase: string, measured?: Record<string, string>): string[][] {
  const p = DEFAULT_PROFILE;
  const ln = `loudnorm=I=${p.targetLufs}:TP=${p.truePeakDbtp}:LRA=11`;
  const pass1 = ['ffmpeg', '-hide_banner', '-nostdin', '-nostats', '-i', input, '-af', `${ln}:print_format=json`, '-f', 'null', '-'];
  const m = measured ?? { input_i: 'I', input_tp: 'TP', input_lra: 'LRA', input_thresh: 'THRESH', target_offset: 'OFFSET' };
  const pass2 = [
    'ffmpeg', '-hide_banner', '-nostdin', '-nostats', '-y', '-i', input,
    '-filter_complex',
    `[0:a]${ln}:measured_I=${m.input_i}:measured_TP=${m.input_tp}:measured_LRA=${m.input_lra}:measured_thresh=${m.input_thresh}:offset=${m.target_offset}:linear=true,` +
      `aresample=48000,aformat=channel_layouts=mono,asplit=2[o][m]`,
    '-map', '[o]', '-c:a', 'libopus', '-b:a', `${p.opus.bitrateKbps}k`, '-vbr', p.opus.vbr, '-application', p.opus.application,
    '-compression_level', String(p.opus.complexity), '-f', 'ogg', `${outBase}.opus`,
    '-map', '[m]', '-c:a', 'libmp3lame', '-b:a', `${p.mp3.bitrateKbps}k`, `${outBase}.mp3`,
  ];
  return [pass1, pass2];
}

function runCmd(cmd: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      err += d;
      if (err.length > 1 << 20) err = err.slice(-65536);
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(err) : reject(new Error(`${cmd[0]} exited ${code}: ${err.slice(-400)}`))));
  });
}

async function timedBaseline(input: string, outBase: string): Promise<number> {
  const t0 = performance.now();
  const [pass1] = baselineCommands(input, outBase);
  const stderr = await runCmd(pass1!);
  const json = stderr.slice(stderr.lastIndexOf('{'), stderr.lastIndexOf('}') + 1);
  const measured = JSON.parse(json) as Record<string, string>;
  await runCmd(baselineCommands(input, outBase, measured)[1]!);
  return performance.now() - t0;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

async function measureOutput(path: string): Promise<{ lufs: number; tp: number }> {
  const { stderr } = await exec('ffmpeg', ['-hide_banner', '-nostats', '-i', path, '-af', 'ebur128=peak=true', '-f', 'null', '-'], { maxBuffer: 256 * 1024 * 1024 });
  const s = stderr.slice(stderr.lastIndexOf('Summary:'));
  return { lufs: Number(/I:\s+(-?[\d.]+) LUFS/.exec(s)?.[1]), tp: Number(/True peak:\s+Peak:\s+(-?[\d.]+)/.exec(s)?.[1]) };
}

export async function run(): Promise<{ realtimeFactor: number; overheadRatio: number }> {
  const long = process.env.BENCH_MEDIA_LONG !== '0';
  const cases: Case[] = [
    { label: '1 min', minutes: 1, runs: 7, baselineRuns: 3 },
    { label: '10 min', minutes: 10, runs: 3, baselineRuns: 2 },
    ...(long ? [{ label: '60 min', minutes: 60, runs: 1, baselineRuns: 1 }] : []),
  ];
  const cpus = os.cpus();
  const ffv = (await exec('ffmpeg', ['-version'])).stdout.split('\n')[0];
  console.log('# media ingest benchmark');
  console.log(`machine: ${cpus[0]?.model ?? '?'}, ${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, node ${process.version}, ${ffv}`);
  console.log(`load average at start: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`profile: ${DEFAULT_PROFILE.targetLufs} LUFS, ${DEFAULT_PROFILE.truePeakDbtp} dBTP, Opus ${DEFAULT_PROFILE.opus.bitrateKbps}k ${DEFAULT_PROFILE.opus.application} c${DEFAULT_PROFILE.opus.complexity} + MP3 ${DEFAULT_PROFILE.mp3.bitrateKbps}k`);

  const inputs = await makeInputs(cases.map((c) => c.minutes));
  const work = await mkdtemp(join(os.tmpdir(), 'radio-bench-out-'));
  const ctlDir = await mkdtemp(join(os.tmpdir(), 'radio-bench-ctl-'));
  const ctl = await createController({
    log: pino({ level: 'silent' }),
    env: { RADIO_DATA_DIR: ctlDir, RADIO_HTTP_PORT: 0, RADIO_MQTT_PORT: 0, RADIO_RTP_PORT: 0, RADIO_HTTP_HOST: '127.0.0.1', RADIO_ADMIN_PASSWORD: 'bench-password' },
  });
  await ctl.start();
  const base = `http://127.0.0.1:${ctl.httpPort()}`;
  const api: BenchApi = { base, token: await login(base, 'admin', 'bench-password') };
  console.log('ours: HTTP upload to an in-process controller (embedded broker, SQLite); time = last upload byte → committed row (Server-Timing)');
  console.log('baseline command lines (run bare, timed together):');
  for (const c of baselineCommands('<input.mp3>', '<out>')) console.log(`  ${c.map((a) => (/[\s;[\]|]/.test(a) ? `'${a}'` : a)).join(' ')}`);

  let tenMin = { realtimeFactor: NaN, overheadRatio: NaN };
  try {
    for (const c of cases) {
      const input = inputs.get(c.minutes)!;
      const inputMs = c.minutes * 60_000;
      const ours: number[] = [];
      let last: { opusPath: string; attempts: number } | undefined;
      for (let i = 0; i < c.runs; i++) {
        const outDir = join(work, `ours-${c.minutes}-${i}`);
        await mkdir(outDir);
        const { ms, result } = await timedIngest(input, outDir, api);
        ours.push(ms);
        last = result;
        if (i < c.runs - 1) await rm(outDir, { recursive: true, force: true });
      }
      const base: number[] = [];
      for (let i = 0; i < c.baselineRuns; i++) {
        const outBase = join(work, `base-${c.minutes}-${i}`);
        base.push(await timedBaseline(input, outBase));
        if (i < c.baselineRuns - 1) await Promise.all(['opus', 'mp3'].map((e) => rm(`${outBase}.${e}`, { force: true })));
      }
      ours.sort((a, b) => a - b);
      base.sort((a, b) => a - b);
      const med = quantile(ours, 0.5);
      const baseMed = quantile(base, 0.5);
      const rtf = inputMs / med;
      const ratio = med / baseMed;
      const oursOut = await measureOutput(last!.opusPath);
      const baseOut = await measureOutput(join(work, `base-${c.minutes}-${c.baselineRuns - 1}.opus`));
      console.log(
        `${c.label}: ours n=${ours.length} median ${(med / 1000).toFixed(2)} s, p95 ${(quantile(ours, 0.95) / 1000).toFixed(2)} s, p99 ${(quantile(ours, 0.99) / 1000).toFixed(2)} s` +
          `${ours.length < 20 ? ' (p95/p99 of few runs = max)' : ''}; realtimeFactor ${rtf.toFixed(1)}x; attempts ${last!.attempts}; ` +
          `output ${oursOut.lufs} LUFS / ${oursOut.tp} dBTP`,
      );
      console.log(
        `${c.label}: baseline n=${base.length} median ${(baseMed / 1000).toFixed(2)} s (${(inputMs / baseMed).toFixed(1)}x realtime), output ${baseOut.lufs} LUFS / ${baseOut.tp} dBTP; overheadRatio ${ratio.toFixed(3)}`,
      );
      if (c.minutes === 10) tenMin = { realtimeFactor: Number(rtf.toFixed(2)), overheadRatio: Number(ratio.toFixed(3)) };
      for (const d of await readdir(work)) await rm(join(work, d), { recursive: true, force: true });
    }
  } finally {
    await ctl.stop();
    await rm(work, { recursive: true, force: true });
    await rm(ctlDir, { recursive: true, force: true });
  }
  console.log(JSON.stringify({ bench: 'media', ...tenMin }));
  return tenMin;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  run().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
