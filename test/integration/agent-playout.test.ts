/**
 * Store-and-forward playout against the real controller: media uploaded through the media API
 * (ffmpeg-made tone, ingested and served with Range/ETag), hand-built plans published through the
 * controller's fleet link, agents on simulated hardware with ±2 s clock offsets and drift, the real
 * broker, receipts stored by the controller and acknowledged after its commit. Start times are judged
 * where a listener would: the TRUE time at which firmware-sim's virtual DAC (amplifier-gated) emitted
 * the first audible sample. The network-cut scenario is in agent-playout-offline.test.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Plan } from '../../schemas/src/index.js';
import { airing, envelope, quietHoursAround, quietHoursAwayFrom, startPlayoutHarness, type PlayoutHarness } from '../helpers/agent-playout.js';
import { nextEvent, waitFor } from '../helpers/wait.js';

/** Start-time tolerance in TRUE time at the DAC (the bench measures the real figure; loopback gives ~1 ms). */
const START_TOLERANCE_MS = 30;

let h: PlayoutHarness;
beforeAll(async () => { h = await startPlayoutHarness({ nodes: 4, prefix: 'play' }); });
afterAll(async () => { await h?.stop(); });

describe('edge agent store-and-forward playout (real controller, broker, media API)', () => {
  it('plays on time by its own clock despite ±2 s offsets, and its receipts are stored, acked and leave the disk queue', async () => {
    const a = await h.cluster(0, { offsetMs: 2000, driftPpm: 80 });
    const b = await h.cluster(1, { offsetMs: -2000, driftPpm: -60 });
    await Promise.all([h.synced(a), h.synced(b)]);
    const startAt = Math.round(h.t.ctl.now() + 3500);
    const airings = [airing({ id: 'play-airing-ontime', startAt, volume: 80, items: [h.tone] })];
    const verdicts = await Promise.all([a, b].map((c) => h.publishPlan(c, airings)));
    expect(verdicts.map((x) => x.status)).toEqual(['applied', 'applied']);

    // Media arrives ahead of air (downloaded with the node's credentials, verified by sha256).
    await waitFor(() => a.agent.cache.has(h.tone.sha256) && b.agent.cache.has(h.tone.sha256), { what: 'media cached' });
    const onsets = await Promise.all([a, b].map((c) => h.onsetAfter(c, startAt - 1000)));
    for (const e of onsets) expect(Math.abs(e.trueMs - startAt)).toBeLessThan(START_TOLERANCE_MS);
    // The programme volume (80) is on the amplifier while it plays (no technician override is set).
    expect(a.hw.status().volume).toBe(80);

    for (const c of [a, b]) {
      const rows = await h.storedUntil(c.spec.nodeId, 'play-airing-ontime', 'finished');
      const started = rows.find((x) => x.state === 'started')!;
      expect(started.id).toBe('play-airing-ontime:started');
      expect(Math.abs(started.startErrorMs)).toBeLessThan(START_TOLERANCE_MS);
      expect(rows.find((x) => x.state === 'finished')!.playedMs).toBeGreaterThan(1900);
      // Acked after the controller's commit → gone from the agent's queue, in memory and on disk.
      await waitFor(() => c.agent.receipts.pending().length === 0, { what: 'receipts acked' });
      expect(h.journal(c)).toBe('');
    }
    // Amplifier off once nothing is due, volume back to the node's default.
    await waitFor(() => !a.hw.status().amplifier.power, { what: 'amplifier off after the airing' });
    expect(a.hw.status().volume).toBe(70);
    const tel = a.agent.telemetry();
    expect(tel.cache).toMatchObject({ items: 1, missingSoon: 0, usedBytes: h.tone.sizeBytes });
  });

  it('lets a priority airing preempt a normal one at its start sample and resumes the normal one per its policy', async () => {
    const c = await h.cluster(2, { offsetMs: 1200, driftPpm: -100 });
    await h.synced(c);
    const t0 = Math.round(h.t.ctl.now() + 3500);
    await h.publishPlan(c, [
      airing({ id: 'play-airing-normal', startAt: t0, onInterrupt: 'resume', items: [h.tone] }),
      airing({ id: 'play-airing-urgent', startAt: t0 + 1000, priority: 'priority', items: [{ kind: 'chime', chime: 'attention', durationMs: 1000 }] }),
    ]);
    const rows = await h.storedUntil(c.spec.nodeId, 'play-airing-normal', 'finished');
    const byId = Object.fromEntries(rows.map((r) => [r.id, r]));
    expect(Object.keys(byId).sort()).toEqual(['play-airing-normal:finished', 'play-airing-normal:interrupted', 'play-airing-normal:started', 'play-airing-normal:started:2']);
    const cut = byId['play-airing-normal:interrupted'];
    expect(cut.reason).toBe('preempted:resume');
    expect(cut.interruptedBy).toBe('play-airing-urgent');
    expect(Math.abs(cut.playedMs - 1000)).toBeLessThan(30);
    expect(byId['play-airing-normal:started:2'].reason).toBe('resumed');
    // Resumed where it was cut: 2 s of programme in all, not 1 s + 2 s.
    expect(Math.abs(byId['play-airing-normal:finished'].playedMs - h.tone.durationMs)).toBeLessThan(50);
    const urgent = await h.storedUntil(c.spec.nodeId, 'play-airing-urgent', 'finished');
    expect(Math.abs(urgent.find((x) => x.state === 'started')!.startErrorMs)).toBeLessThan(5);
  });

  it('refuses non-emergency audio inside quiet hours on the agent (failed receipt), but sounds an emergency', async () => {
    const c = h.clusters[0]!;
    const t0 = Math.round(h.t.ctl.now() + 3000);
    await h.publishPlan(c, [
      airing({ id: 'play-airing-quiet', startAt: t0, items: [h.tone] }),
      airing({ id: 'play-airing-emergency', startAt: t0 + 3000, priority: 'emergency', items: [h.tone] }),
    ], { quietHours: quietHoursAround(t0) });
    const rows = await h.storedUntil(c.spec.nodeId, 'play-airing-quiet', 'failed');
    expect(rows.find((r) => r.state === 'failed').reason).toMatch(/^quiet_hours/);
    const e = await h.onsetAfter(c, t0 - 1000);
    // The first sound after the refused airing is the emergency one, on time.
    expect(Math.abs(e.trueMs - (t0 + 3000))).toBeLessThan(START_TOLERANCE_MS);
  });

  it('rejects an invalid plan with the reason and keeps the previous one', async () => {
    const c = h.clusters[1]!;
    const current = c.agent.planStore.current()!;
    const now = h.t.ctl.now();
    const bad: Plan = {
      ...envelope(now), nodeId: c.spec.nodeId, version: h.nextVersion(), from: now, to: now + 3600_000, timezone: 'Asia/Ho_Chi_Minh',
      quietHours: quietHoursAwayFrom(now),
      airings: [airing({ id: 'dup-airing-1', startAt: now + 5000, items: [h.tone] }), airing({ id: 'dup-airing-1', startAt: now + 9000, items: [h.tone] })],
    };
    const verdict = nextEvent<{ version: number; status: string; error?: string }>((cb) => c.agent.on('plan', cb), (e) => e.version === bad.version);
    h.t.ctl.link.publish('plan', c.spec.nodeId, bad);
    const ev = await verdict;
    expect(ev.status).toBe('rejected');
    expect(ev.error).toContain('twice');
    expect(c.agent.planStore.current()).toBe(current);
    const onDisk = JSON.parse(fs.readFileSync(path.join(c.dataDir, 'plan.json'), 'utf8')) as Plan;
    expect(onDisk.version).toBe(current.version);
  });

  it('warns ahead that an airing is not cached and fails it (media_missing) when the controller cannot serve it', async () => {
    const c = h.clusters[1]!;
    const t0 = Math.round(h.t.ctl.now() + 4000);
    const ghost = { ...h.tone, mediaId: 'no-such-media', sha256: 'f'.repeat(64), path: '/api/v1/media/no-such-media/audio?format=opus' };
    await h.publishPlan(c, [airing({ id: 'play-airing-ghost', startAt: t0, items: [ghost] })]);
    // The warning is an event the controller stores (cache.missing), sent as soon as an airing within
    // the warning lead (10 min) lacks media.
    const warning = await waitFor(async () => {
      const r = await h.t.api<{ type: string; data: any }[]>('GET', `/api/v1/nodes/${c.spec.nodeId}/events`);
      return r.body.find((e) => e.type === 'cache.missing' && e.data?.airingId === 'play-airing-ghost');
    }, { what: 'cache warning stored by the controller' });
    expect(warning.data.mediaIds).toEqual(['no-such-media']);
    expect(warning.data.startAt).toBe(t0);
    expect(c.agent.telemetry().cache.missingSoon).toBe(1);
    const rows = await h.storedUntil(c.spec.nodeId, 'play-airing-ghost', 'failed');
    expect(rows.find((r) => r.state === 'failed').reason).toMatch(/^media_missing/);
  });

  it('fetches media missing at air time from the controller and starts late, saying so in the receipt', async () => {
    const c = await h.cluster(3, { offsetMs: 700, driftPpm: 30 });
    await h.synced(c);
    expect(c.agent.cache.has(h.tone.sha256)).toBe(false);
    // Already 400 ms into its slot when the plan arrives: nothing was cached ahead.
    const startAt = Math.round(h.t.ctl.now() - 400);
    await h.publishPlan(c, [airing({ id: 'play-airing-late', startAt, durationMs: 60_000, items: [h.tone] })]);
    const rows = await h.storedUntil(c.spec.nodeId, 'play-airing-late', 'finished');
    const started = rows.find((r) => r.state === 'started');
    expect(started.reason).toBe('media_streamed');
    expect(started.startErrorMs).toBeGreaterThanOrEqual(400);
    expect(started.startErrorMs).toBeLessThan(10_000);
    expect(c.agent.cache.has(h.tone.sha256)).toBe(true);
  });
});
