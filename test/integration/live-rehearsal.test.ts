import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createAgent } from '../../edge-agent/src/agent.js';
import { rehearseLiveJoin } from '../../edge-agent/src/live-rehearsal.js';
import { createSimHardware } from '../../firmware-sim/src/sim-hardware.js';
import { waitFor } from '../helpers/wait.js';

/*
 * The agent's warm-up for its first live session (edge-agent/src/live-rehearsal.ts): a real loopback
 * session (real UDP sockets, the hello answered by a sender report and Opus/RED packets, the jitter buffer
 * decoding them), and the validation of the reports a session adds. Each must really have run its path
 * (or it warms nothing), and only once per process.
 */
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'live-rehearsal-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('live join rehearsal', () => {
  it('runs every round through hello, RTP reception, RED repair and decoding, once per process', async () => {
    const first = rehearseLiveJoin({ rounds: 12 });
    // A second agent in the same process (the bench's workers host hundreds) shares the first rehearsal.
    expect(rehearseLiveJoin({ rounds: 99 })).toBe(first);
    const r = await first;
    expect(r).not.toBeNull();
    expect(r!.rounds).toBe(12);
    // Every round's 7 packets (of 8: one is left out for RED to repair) were accepted by that round's
    // receiver and jitter buffer...
    expect(r!.packets).toBe(12 * 7);
    // ...the missing one repaired from the next packet's RED block in every round...
    expect(r!.recoveredByRed).toBe(12);
    // ...and decoded to sound (a 440 Hz tone; codec priming makes the very first samples quiet, not all).
    expect(r!.audibleSamples).toBeGreaterThan(12 * 4 * 960);
  });

  it("an agent's start validates a live session's reports: its samples are valid payloads", async () => {
    const lines: { msg?: string; validated?: number; err?: string }[] = [];
    const log = pino({ level: 'debug' }, new Writable({ write(chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb(); } }));
    const hw = createSimHardware({ nodeId: 'warm-1', seed: 'warm-1' });
    // No broker listens there: the agent retries in the background; the warm-up does not need one.
    const agent = createAgent({ nodeId: 'warm-1', credentials: { username: 'warm-1', password: 'x' }, brokerUrl: 'mqtt://127.0.0.1:9', hardware: hw, dataDir: dir, log });
    try {
      await agent.start();
      const warmed = await waitFor(() => lines.find((l) => l.msg === 'live reports warmed' || l.msg === 'live report warm-up failed'), { what: 'the live report warm-up' });
      expect(warmed.err).toBeUndefined();
      expect(warmed.msg).toBe('live reports warmed');
      expect(warmed.validated).toBe(400);
    } finally {
      await agent.stop();
      agent.dispose();
      await hw.close();
    }
  });
});
