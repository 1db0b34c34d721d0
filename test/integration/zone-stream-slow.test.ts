/**
 * A zone stream's slow listener is dropped, and only it: a listener that stops reading (a player that
 * hung, a link that died without a FIN) would otherwise make the controller buffer its stream without
 * bound. A real controller with a low per-listener limit (32 KiB) and a high MP3 bitrate (320 kb/s); one
 * listener is a TCP client that reads the response's first bytes and then never reads again; another is
 * ffmpeg, playing. The stalled one is dropped (counted, its connection closed by the server); ffmpeg
 * goes on receiving audio.
 *
 * Slow by nature: Linux's socket buffers on loopback take about 4 MB before the server's own buffer
 * grows (the sender's buffer autotunes to 4 MB whatever the receiver's, measured here: a Python client
 * with SO_RCVBUF 4 KiB changed nothing), so at 320 kb/s the drop comes after about 100 s (8 minutes at
 * the default 64 kb/s).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestController, type TestController } from '../helpers/controller.js';
import { waitFor } from '../helpers/wait.js';

const ZONE = 'slow-thon-1';
let t: TestController;
let player: ChildProcess | undefined;
let stalled: net.Socket | undefined;

beforeAll(async () => {
  t = await startTestController({ streams: { maxListenerBufferBytes: 32 * 1024, mp3BitrateKbps: 320 } });
  expect((await t.api('POST', '/api/v1/zones', { id: ZONE, name: 'Thôn Chậm' })).status).toBe(201);
  expect((await t.api('POST', '/api/v1/nodes', { id: 'slow-node-1', name: 'Cụm loa 1', zoneId: ZONE })).status).toBe(201);
}, 30_000);

afterAll(async () => {
  player?.kill('SIGKILL');
  stalled?.destroy();
  await t?.stop();
});

describe('zone stream: slow listener', () => {
  it('drops a listener that stops reading, and only it', async () => {
    const pathQ = `/api/v1/zones/${ZONE}/stream.mp3?token=${encodeURIComponent(t.token)}`;
    const url = new URL(t.base);
    // The player: ffmpeg decoding the stream; bytes of PCM counted.
    let pcmBytes = 0;
    player = spawn('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', '-probesize', '65536', '-analyzeduration', '500000', '-i', `${t.base}${pathQ}`, '-f', 's16le', '-ac', '1', '-ar', '48000', 'pipe:1'], { stdio: ['ignore', 'pipe', 'ignore'] });
    player.stdout!.on('data', (c: Buffer) => { pcmBytes += c.length; });
    // ffmpeg analyses seconds of a live MP3 stream before its first output (by default up to 5 MB or 5 s
    // of it); on a loaded machine (the suite runs files in parallel) that took more than 15 s once and
    // more than 60 s once more, so it is told to probe 64 KiB (1.6 s at 320 kb/s) and 0.5 s at most.
    await waitFor(() => (pcmBytes > 48_000 * 2 ? true : undefined), { what: 'the player hearing 1 s of the stream', timeoutMs: 60_000 });

    // The stalled listener: the response's first bytes, then its socket is paused for good.
    const sock = net.connect(Number(url.port), url.hostname);
    stalled = sock;
    const closed = new Promise<void>((resolve) => { sock.once('close', () => resolve()); });
    const head = await new Promise<string>((resolve, reject) => {
      sock.once('error', reject);
      sock.once('data', (c: Buffer) => { sock.pause(); resolve(c.toString('latin1')); });
      sock.write(`GET ${pathQ} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`);
    });
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    expect(t.ctl.streams.stats().listeners).toBe(2);

    // Its unsent bytes grow past the limit once the kernel's buffers are full: dropped.
    await waitFor(() => (t.ctl.streams.stats().slowDropped === 1 ? true : undefined), { what: 'the stalled listener dropped', timeoutMs: 200_000, intervalMs: 500 });
    expect(t.ctl.streams.stats().listeners).toBe(1);
    // The server closed it: reading again, the client reaches the end.
    sock.on('error', () => {});
    sock.resume();
    await closed;

    // The player was not disturbed: still connected, still receiving.
    const before = pcmBytes;
    await waitFor(() => (pcmBytes > before + 48_000 * 2 ? true : undefined), { what: 'the player hearing 1 s more', timeoutMs: 30_000 });
    expect(player.exitCode).toBeNull();
    expect(t.ctl.streams.stats().slowDropped).toBe(1);
  }, 300_000);
});
