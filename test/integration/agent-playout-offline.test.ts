/**
 * Store-and-forward when the link is gone: an agent whose MQTT path is black-holed (sockets open,
 * nothing passes, as on a dead 4G link) plays its airings from cache on time, is killed and restarted
 * while still offline (plan, media, receipt queue and clock estimate from disk), and delivers every
 * queued receipt exactly once when the link returns.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airing, startPlayoutHarness, type PlayoutHarness } from '../helpers/agent-playout.js';
import { waitFor } from '../helpers/wait.js';

const START_TOLERANCE_MS = 30;

let h: PlayoutHarness;
beforeAll(async () => { h = await startPlayoutHarness({ nodes: 1, prefix: 'cut' }); });
afterAll(async () => { await h?.stop(); });

describe('edge agent cut from the network', () => {
  it('plays from cache with the link black-holed, restarts offline from disk, and delivers its receipts on reconnect', async () => {
    const c = await h.cluster(0, { offsetMs: -1500, driftPpm: 100, proxied: true });
    await h.synced(c);
    // The agent saves a synced clock estimate with its telemetry, before the link goes away.
    await waitFor(() => fs.existsSync(path.join(c.dataDir, 'clock.json')), { what: 'clock estimate saved' });
    const t0 = h.t.ctl.now();
    const first = Math.round(t0 + 6000);
    const second = Math.round(t0 + 11_000);
    await h.publishPlan(c, [
      airing({ id: 'cut-airing-1', startAt: first, items: [h.tone] }),
      airing({ id: 'cut-airing-2', startAt: second, items: [{ kind: 'chime', chime: 'start', durationMs: 800 }, h.tone] }),
    ]);
    await waitFor(() => c.agent.cache.has(h.tone.sha256), { what: 'media cached' });
    c.proxy!.set({ up: { blackhole: true }, down: { blackhole: true } });
    await waitFor(() => !c.agent.connected(), { what: 'agent sees the link dead', timeoutMs: 20_000 });

    const e1 = await h.onsetAfter(c, first - 1000);
    expect(Math.abs(e1.trueMs - first)).toBeLessThan(START_TOLERANCE_MS);
    await waitFor(() => c.agent.receipts.pending().some((r) => r.id === 'cut-airing-1:finished'), { what: 'receipt queued offline' });

    // The process dies (no clean stop) and comes back with the link still down.
    await c.agent.kill();
    c.agent.dispose();
    c.agent = h.startAgent(c);
    expect(c.agent.connected()).toBe(false);
    const e2 = await h.onsetAfter(c, second - 1000);
    expect(Math.abs(e2.trueMs - second)).toBeLessThan(START_TOLERANCE_MS);
    await waitFor(() => c.agent.receipts.pending().some((r) => r.id === 'cut-airing-2:finished'), { what: 'second receipt queued offline' });
    expect(await h.stored(c.spec.nodeId, 'cut-airing-1')).toEqual([]);

    c.proxy!.set({ up: { blackhole: false }, down: { blackhole: false } });
    await waitFor(() => c.agent.connected(), { what: 'reconnected', timeoutMs: 30_000 });
    await waitFor(() => c.agent.receipts.pending().length === 0, { what: 'queued receipts acked', timeoutMs: 20_000 });
    const rows = [...await h.stored(c.spec.nodeId, 'cut-airing-1'), ...await h.stored(c.spec.nodeId, 'cut-airing-2')];
    expect(rows.map((r) => r.id).sort()).toEqual(['cut-airing-1:finished', 'cut-airing-1:started', 'cut-airing-2:finished', 'cut-airing-2:started']);
    for (const r of rows.filter((x) => x.state === 'started')) expect(Math.abs(r.startErrorMs)).toBeLessThan(START_TOLERANCE_MS);
    expect(h.journal(c)).toBe('');
  });
});
