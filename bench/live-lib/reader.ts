/**
 * The bench's sink reader: a SEPARATE process that timestamps, in true time
 * (performance.timeOrigin + performance.now(), the same base as firmware-sim's trueClock), every chunk
 * of 48 kHz s16le mono PCM as it arrives, from
 *  - our agents' pcm-pipe sinks: stream connections to a Unix socket, first line = label; and
 *  - snapclients it spawns itself (`--player file:filename=stdout`): their stdout pipe.
 * The hot path only appends bytes and (time, cumulative samples) pairs; click detection runs at collect.
 *
 * IPC: parent → {type:'spawn', id, label, cmd, args} | {type:'collect', id} | {type:'reset'} | {type:'stop'}
 *      child  → {type:'listening'} | {type:'result', id, pid} | {type:'result', id, streams: StreamResult[]}
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { RATE, detectClicks, silentRuns } from './signal.js';

export interface StreamResult {
  label: string;
  samples: number;
  /** [true ms, index of the first sample of the chunk that arrived then]. */
  arrivals: [number, number][];
  clicks: number[];
  gaps: [number, number][];
}

const now = () => performance.timeOrigin + performance.now();
const sockPath = process.argv[2]!;

interface Stream { label: string; chunks: Buffer[]; bytes: number; arrivals: [number, number][]; ended: boolean }
let streams: Stream[] = [];
const children: { c: ChildProcess; s: Stream }[] = [];

/**
 * Stamp = (arrival, index of the FIRST sample in the chunk): a real-time writer hands over a chunk when
 * its first sample is due and the rest follow at the sample rate, as a sink playing the bytes as they
 * arrive would sound them. Stamping the chunk's last sample instead would make every sample look one
 * chunk early: 5 ms for our pipe sink, 50 ms for snapclient's file player (it writes 50 ms chunks).
 */
function onData(s: Stream, b: Buffer): void {
  const t = now();
  s.arrivals.push([t, Math.floor(s.bytes / 2)]);
  s.chunks.push(b);
  s.bytes += b.length;
}

const server = net.createServer((sock) => {
  let s: Stream | null = null;
  let head = Buffer.alloc(0);
  sock.on('data', (b: Buffer) => {
    if (s) { onData(s, b); return; }
    head = Buffer.concat([head, b]);
    const nl = head.indexOf(10);
    if (nl < 0) return;
    s = { label: head.subarray(0, nl).toString(), chunks: [], bytes: 0, arrivals: [], ended: false };
    streams.push(s);
    if (head.length > nl + 1) onData(s, head.subarray(nl + 1));
  });
  sock.on('error', () => { /* the agent went away */ });
  sock.on('close', () => { if (s) s.ended = true; });
});
try { fs.unlinkSync(sockPath); } catch { /* none */ }
server.listen(sockPath, () => process.send?.({ type: 'listening' }));

function analyse(s: Stream): StreamResult {
  const all = Buffer.concat(s.chunks);
  const n = Math.floor(all.length / 2);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = all.readInt16LE(i * 2) / 32768;
  const clicks = detectClicks(x);
  // Gaps only where the track should be sounding: from 1 s before the first click to 0.3 s after the last.
  const gaps = clicks.length ? silentRuns(x, Math.max(0, Math.round(clicks[0]! - RATE)), Math.round(clicks[clicks.length - 1]! + 0.3 * RATE)) : [];
  return { label: s.label, samples: n, arrivals: s.arrivals, clicks, gaps };
}

process.on('message', (m: { type: string; id?: number; label?: string; cmd?: string; args?: string[] }) => {
  switch (m.type) {
    case 'spawn': {
      const c = spawn(m.cmd!, m.args!, { stdio: ['ignore', 'pipe', 'ignore'] });
      const s: Stream = { label: m.label!, chunks: [], bytes: 0, arrivals: [], ended: false };
      c.on('exit', () => { s.ended = true; });
      streams.push(s);
      // Not once it is being killed: a player draining its buffer after SIGTERM belongs to no run.
      c.stdout.on('data', (b: Buffer) => { if (!s.ended) onData(s, b); });
      children.push({ c, s });
      process.send?.({ type: 'result', id: m.id, pid: c.pid ?? null });
      return;
    }
    case 'killChildren':
      for (const { c, s } of children.splice(0)) { s.ended = true; c.kill('SIGTERM'); }
      process.send?.({ type: 'result', id: m.id, streams: [] });
      return;
    case 'collect':
      process.send?.({ type: 'result', id: m.id, streams: streams.filter((s) => s.bytes > 0).map(analyse) });
      return;
    case 'reset':
      // Per run: keep open connections (an agent's sink reconnects never), drop finished ones.
      streams = streams.filter((s) => !s.ended);
      for (const s of streams) { s.chunks = []; s.bytes = 0; s.arrivals = []; }
      return;
    case 'stop':
      for (const { c } of children.splice(0)) c.kill('SIGTERM');
      server.close();
      process.exit(0);
  }
});
process.on('disconnect', () => { for (const { c } of children) c.kill('SIGTERM'); process.exit(0); });
