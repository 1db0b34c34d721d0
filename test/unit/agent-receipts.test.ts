import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Receipt } from '../../schemas/src/index.js';
import { createReceiptQueue } from '../../edge-agent/src/receipts.js';

const dirs: string[] = [];
const tmp = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-receipts-')); dirs.push(d); return d; };
afterAll(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }); });

function queue(dir: string, online: { value: boolean }, sent: Receipt[][]) {
  const q = createReceiptQueue({ dir, send: (b) => { if (!online.value) return false; sent.push(b); return true; }, resendMs: 3_600_000 });
  q.start();
  return q;
}

describe('agent receipt queue', () => {
  it('keeps receipts on disk until acked, across restarts, and sends them on reconnect', () => {
    const dir = tmp();
    const online = { value: false };
    const sent: Receipt[][] = [];
    let q = queue(dir, online, sent);
    const a = q.record({ airingId: 'airing-0001', state: 'started', at: 1000, startErrorMs: 1.5 });
    q.record({ airingId: 'airing-0001', state: 'finished', at: 3000, playedMs: 2000 });
    expect(a.id).toBe('airing-0001:started');
    expect(sent).toEqual([]); // offline: nothing left the node
    q.stop();

    // Restart (a crash would leave the same journal: every record is fsync'ed before record() returns).
    q = queue(dir, online, sent);
    expect(q.pending().map((r) => r.id)).toEqual(['airing-0001:started', 'airing-0001:finished']);
    online.value = true;
    q.onConnect();
    expect(sent.flat().map((r) => r.id)).toEqual(['airing-0001:started', 'airing-0001:finished']);
    expect(sent[0]![0]!.startErrorMs).toBe(1.5);

    // Only what the controller acked leaves the queue, and that survives a restart too.
    expect(q.onAck(['airing-0001:started', 'unknown:id'])).toBe(1);
    q.stop();
    q = queue(dir, online, sent);
    expect(q.pending().map((r) => r.id)).toEqual(['airing-0001:finished']);
    q.onAck(['airing-0001:finished']);
    q.stop();
    q = queue(dir, online, sent);
    expect(q.pending()).toEqual([]);
    expect(fs.readFileSync(path.join(dir, 'receipts.jsonl'), 'utf8')).toBe(''); // compacted when empty
    q.stop();
  });

  it('numbers repeated states of one airing deterministically, across restarts', () => {
    const dir = tmp();
    const online = { value: true };
    let q = queue(dir, online, []);
    expect(q.record({ airingId: 'airing-0002', state: 'started', at: 1 }).id).toBe('airing-0002:started');
    expect(q.record({ airingId: 'airing-0002', state: 'interrupted', at: 2, reason: 'preempted:restart' }).id).toBe('airing-0002:interrupted');
    q.onAck(['airing-0002:started', 'airing-0002:interrupted']);
    q.stop();
    q = queue(dir, online, []);
    expect(q.record({ airingId: 'airing-0002', state: 'started', at: 3 }).id).toBe('airing-0002:started:2');
    expect(q.ledger('airing-0002')?.state).toBe('started');
    q.stop();
  });

  it('sends at most 200 receipts per batch', () => {
    const online = { value: false };
    const sent: Receipt[][] = [];
    const q = queue(tmp(), online, sent);
    for (let i = 0; i < 450; i++) q.record({ airingId: `airing-${String(i).padStart(4, '0')}`, state: 'finished', at: i });
    online.value = true;
    q.onConnect();
    expect(sent.map((b) => b.length)).toEqual([200, 200, 50]);
    q.stop();
  });

  it('skips a torn journal line (power cut mid-write) and keeps the rest', () => {
    const dir = tmp();
    const online = { value: false };
    let q = queue(dir, online, []);
    q.record({ airingId: 'airing-0003', state: 'failed', at: 5, reason: 'quiet_hours' });
    q.stop();
    fs.appendFileSync(path.join(dir, 'receipts.jsonl'), '{"add":{"id":"airing-0004:sta');
    q = queue(dir, online, []);
    expect(q.pending().map((r) => r.id)).toEqual(['airing-0003:failed']);
    expect(q.pending()[0]!.reason).toBe('quiet_hours');
    q.stop();
  });

  it('works without a directory (memory only)', () => {
    const sent: Receipt[][] = [];
    const q = createReceiptQueue({ send: (b) => { sent.push(b); return true; } });
    q.start();
    q.record({ airingId: 'airing-0005', state: 'started', at: 1 });
    expect(sent.flat().map((r) => r.id)).toEqual(['airing-0005:started']);
    q.onAck(['airing-0005:started']);
    expect(q.pending()).toEqual([]);
    q.stop();
  });
});
