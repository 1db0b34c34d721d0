import fs from 'node:fs';
import path from 'node:path';
import type { ClockSource, OffsetEstimate } from './time-sync.js';

/**
 * The last good offset estimate, kept on disk so an agent restarted while the controller is unreachable
 * still plays on controller time (its hardware clock kept running; only the process restarted). Until
 * the live estimator is synced again, controller time = local + saved offset, extrapolated with the
 * saved drift. The live estimate wins as soon as it is synced.
 */
export function createPersistedClockSource(o: { inner: ClockSource; dir?: string; minSaveIntervalMs?: number }) {
  const file = o.dir ? path.join(o.dir, 'clock.json') : undefined;
  const minInterval = o.minSaveIntervalMs ?? 300_000;
  let saved: { offsetMs: number; driftPpm: number; at: number; rttMs: number } | undefined;
  let lastSaveAt = -Infinity;
  if (file) {
    try {
      const v = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof saved;
      if (v && [v.offsetMs, v.driftPpm, v.at, v.rttMs].every(Number.isFinite)) saved = v;
    } catch { /* none yet */ }
  }
  const live = () => o.inner.estimate().synced || !saved;
  const offsetAt = (l: number) => saved!.offsetMs + saved!.driftPpm * 1e-6 * (l - saved!.at);

  const source: ClockSource & { save(localNow: number, force?: boolean): void; usingSaved(): boolean } = {
    toController: (l) => (live() ? o.inner.toController(l) : l + offsetAt(l)),
    toLocal(c) {
      if (live()) return o.inner.toLocal(c);
      let l = c - saved!.offsetMs;
      for (let i = 0; i < 3; i++) l = c - offsetAt(l);
      return l;
    },
    estimate(): OffsetEstimate {
      const e = o.inner.estimate();
      if (live()) return e;
      return { ...e, offsetMs: saved!.offsetMs, driftPpm: saved!.driftPpm, rttMs: saved!.rttMs, at: saved!.at, synced: false };
    },
    /** Remember the live estimate (rate-limited unless forced). */
    save(localNow, force = false) {
      const e = o.inner.estimate();
      if (!file || !e.synced) return;
      if (!force && localNow - lastSaveAt < minInterval) return;
      lastSaveAt = localNow;
      saved = { offsetMs: e.offsetMs, driftPpm: e.driftPpm, at: e.at, rttMs: e.rttMs };
      try {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(`${file}.tmp`, JSON.stringify(saved));
        fs.renameSync(`${file}.tmp`, file);
      } catch { /* best effort: the live estimator recovers in seconds once the link is back */ }
    },
    usingSaved: () => !live(),
  };
  return source;
}
