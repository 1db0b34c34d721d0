import { pino, type Logger } from 'pino';
import type { CapAlertResult, CapSender, LiveStartRequest } from '../../../schemas/src/index.js';
import { AppError } from '../errors.js';
import type { Live } from '../live/index.js';
import type { Store } from '../store/store.js';
import { toRecord, type CapStore } from './cap-store.js';
import { CapError, chooseInfo, parseCap, type CapAlert, type CapInfo } from './parse.js';
import { matchTargets } from './targeting.js';

export interface CapServiceDeps {
  store: Store;
  capStore: CapStore;
  /** Read at call time: the live service (and, in tests, a recording replacement of its methods). */
  live: () => Pick<Live, 'startSession' | 'stopSession'>;
  now: () => number;
  log?: Logger;
  /** How far `sent` may lie ahead of the controller clock. */
  maxFutureMs?: number;
}

export interface IngestReply { statusCode: 200 | 201; result: CapAlertResult }

/** The live request an alert asks for; `exercise` is carried for the announcement (LiveAnnouncement.exercise). */
export type CapLiveRequest = LiveStartRequest & { exercise: boolean };

const MAX_TEXT = 5000;

/** Spoken Vietnamese preface so nobody mistakes a drill for the real thing. */
const PREFACE: Partial<Record<CapAlert['status'], string>> = {
  Exercise: 'Đây là tin diễn tập.',
  Test: 'Đây là tin thử nghiệm.',
};

/** Text to speak: headline, description, instruction (CAP 1.2 §3.2.2), or the event when none is given. */
export function spokenText(alert: CapAlert, info: CapInfo): string {
  const parts = [PREFACE[alert.status], info.headline, info.description, info.instruction].filter((s): s is string => !!s);
  if (!info.headline && !info.description && !info.instruction) parts.push(info.event);
  const text = parts.join('\n\n');
  return text.length > MAX_TEXT ? text.slice(0, MAX_TEXT - 1) + '…' : text;
}

const refKey = (r: { sender: string; identifier: string; sent: string }) => `${r.sender},${r.identifier},${r.sent}`;

/**
 * CAP 1.2 alert ingest: parse and validate, deduplicate on (sender, identifier, sent), match areas to
 * clusters, and turn Alert/Update/Cancel into live emergency sessions. Every outcome is audited.
 */
export function createCapService(deps: CapServiceDeps) {
  const { store, capStore, now } = deps;
  const log = deps.log ?? pino({ level: 'silent' });

  function audit(sender: CapSender, action: string, target: string | null, detail: unknown) {
    store.audit(sender.communeId, now(), `cap:${sender.id}`, action, target, detail);
  }

  async function stopReferenced(sender: CapSender, alert: CapAlert, newState: 'cancelled' | 'superseded') {
    const stopped: string[] = [];
    const notFound: string[] = [];
    const problems: string[] = [];
    for (const ref of alert.references) {
      // A sender may only cancel or update its own alerts: the reference must name its own CAP sender.
      const row = ref.sender === alert.sender ? capStore.findAlert(sender.communeId, ref.sender, ref.identifier, ref.sentMs) : undefined;
      if (!row) { notFound.push(refKey(ref)); continue; }
      if (row.state === 'active' && row.session_id) {
        try {
          await deps.live().stopSession(sender.communeId, `cap:${sender.id}`, row.session_id);
          stopped.push(row.session_id);
        } catch (e) {
          // The session may have ended on its own already; the alert is still marked as replaced.
          problems.push(`session ${row.session_id}: ${(e as Error).message}`);
          log.warn({ err: e, sessionId: row.session_id }, 'could not stop the session of a referenced CAP alert');
        }
      }
      if (row.state !== 'cancelled' && row.state !== 'superseded') capStore.setAlertState(row.id, newState);
    }
    return { stopped, notFound, problems };
  }

  async function startFor(sender: CapSender, alert: CapAlert, info: CapInfo | undefined) {
    const exercise = alert.status === 'Test' || alert.status === 'Exercise';
    if (!info) return { state: 'no_targets' as const, exercise, matched: [], excluded: [], sessionId: null, message: 'the alert has no <info> block: nothing to announce' };
    const settings = capStore.getSettings(sender.communeId);
    const nodes = store.listNodes(sender.communeId);
    const zoneIds = new Set(store.listZones(sender.communeId).map((z) => z.id));
    const t = matchTargets(info.areas, nodes, { exercise, zoneIds, geocodeZones: settings.geocodeZones });
    if (t.matched.length === 0) {
      const why = info.areas.length === 0
        ? 'the alert has no <area>; an alert without an area is not broadcast to the whole commune'
        : t.excludedActualOnly.length > 0
          ? `every cluster in the area is actual-only and the alert is ${alert.status}`
          : `no area (${info.areas.map((a) => a.areaDesc).join('; ').slice(0, 200)}) covers a cluster of this commune`;
      return { state: 'no_targets' as const, exercise, matched: [], excluded: t.excludedActualOnly, sessionId: null, message: `accepted, no targets: ${why}` };
    }
    const req: CapLiveRequest = {
      kind: 'emergency',
      priority: 'emergency',
      title: `CAP ${exercise ? `[${alert.status}] ` : ''}${info.headline ?? info.event}`.slice(0, 200),
      targets: { commune: false, zones: [], nodes: t.matched },
      text: spokenText(alert, info),
      voice: 'vi',
      repeat: settings.repeat,
      forcedVolume: settings.forcedVolume,
      exercise,
    };
    const s = await deps.live().startSession(sender.communeId, `cap:${sender.id}`, req);
    return {
      state: 'active' as const, exercise, matched: t.matched, excluded: t.excludedActualOnly, sessionId: s.sessionId,
      message: `session ${s.sessionId} started on ${t.matched.length} cluster(s)${t.excludedActualOnly.length ? `; ${t.excludedActualOnly.length} actual-only cluster(s) left out` : ''}`,
    };
  }

  return {
    /**
     * Ingest one CAP XML body from an authenticated, enabled sender. Resolves with 201 and the result,
     * or 200 and the earlier result for a duplicate. Throws CapError/AppError with a clear message.
     */
    async ingest(sender: CapSender, xml: string): Promise<IngestReply> {
      const receivedAt = now();
      let alert: CapAlert;
      try {
        alert = parseCap(xml, { now: receivedAt, ...(deps.maxFutureMs !== undefined ? { maxFutureMs: deps.maxFutureMs } : {}) });
      } catch (e) {
        if (e instanceof CapError) audit(sender, 'cap.rejected', null, { code: e.code, message: e.message, element: e.element ?? null });
        throw e;
      }
      const key = refKey(alert);
      if (alert.sender !== sender.capSender) {
        audit(sender, 'cap.rejected', key, { code: 'CAP_SENDER_MISMATCH', sender: alert.sender });
        throw new AppError(403, 'CAP_SENDER_MISMATCH', `alert.sender '${alert.sender.slice(0, 100)}' is not the sender this token is allowed to post for ('${sender.capSender}')`);
      }
      const info = chooseInfo(alert);

      // Claim the idempotency key synchronously, before any await: a concurrent duplicate finds the row.
      let id: number;
      const existing = capStore.findAlert(sender.communeId, alert.sender, alert.identifier, alert.sentMs);
      if (existing && !(existing.state === 'failed' && capStore.reclaimAlert(existing.id, xml, receivedAt))) {
        const rec = toRecord(existing);
        audit(sender, 'cap.duplicate', key, { alertId: existing.id, state: existing.state });
        const { senderId: _s, expires: _e, areaDesc: _a, ...result } = rec;
        return { statusCode: 200, result: { ...result, duplicate: true, message: existing.state === 'processing' ? 'this alert is being processed' : `duplicate of alert ${existing.id}: ${rec.message}` } };
      }
      if (existing) id = existing.id;
      else {
        id = capStore.insertAlert({
          communeId: sender.communeId, senderId: sender.id, identifier: alert.identifier, sender: alert.sender, sent: alert.sent,
          sentMs: alert.sentMs, status: alert.status, msgType: alert.msgType, expires: info?.expires ?? null,
          areaDesc: info ? info.areas.map((a) => a.areaDesc).join('; ').slice(0, 1000) || null : null, rawXml: xml, receivedAt,
        });
      }
      capStore.touchSender(sender.id, receivedAt);

      const base: CapAlertResult = {
        id, identifier: alert.identifier, sender: alert.sender, sent: alert.sent, status: alert.status, msgType: alert.msgType,
        action: 'none', state: 'recorded', exercise: alert.status === 'Test' || alert.status === 'Exercise',
        event: info?.event ?? null, headline: info?.headline ?? null, language: info?.language ?? null,
        matchedNodes: [], excludedActualOnly: [], sessionId: null, stoppedSessions: [], referencesNotFound: [],
        message: '', receivedAt, duplicate: false,
      };
      let result: CapAlertResult;
      try {
        result = await act(sender, alert, info, base);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        capStore.finishAlert(id, { ...base, state: 'failed', message: `failed: ${msg}` });
        audit(sender, 'cap.failed', key, { alertId: id, msgType: alert.msgType, status: alert.status, error: msg });
        log.error({ err: e, alert: key }, 'CAP alert could not be acted on');
        throw new AppError(503, 'CAP_ACTION_FAILED', `alert accepted and recorded, but its live session could not start: ${msg} (post it again to retry)`);
      }
      capStore.finishAlert(id, result);
      // Audit actions: cap.start, cap.update, cap.cancel, cap.no_targets, cap.recorded (+ cap.rejected/duplicate/failed).
      audit(sender, `cap.${result.state === 'no_targets' || result.action === 'none' ? result.state : result.action}`, key, {
        alertId: id, status: alert.status, msgType: alert.msgType, state: result.state, sessionId: result.sessionId,
        matchedNodes: result.matchedNodes.length, excludedActualOnly: result.excludedActualOnly.length,
        stoppedSessions: result.stoppedSessions, referencesNotFound: result.referencesNotFound, exercise: result.exercise, message: result.message,
      });
      return { statusCode: 201, result };
    },
  };

  async function act(sender: CapSender, alert: CapAlert, info: CapInfo | undefined, base: CapAlertResult): Promise<CapAlertResult> {
    // CAP 1.2 §3.2.1 status: System and Draft are not for the public; they are recorded and never sound.
    if (alert.status === 'System' || alert.status === 'Draft') {
      return { ...base, message: `status ${alert.status}: recorded, never sounded` };
    }
    switch (alert.msgType) {
      case 'Ack':
      case 'Error':
        return { ...base, message: `msgType ${alert.msgType}: recorded, nothing to announce` };
      case 'Cancel': {
        const r = await stopReferenced(sender, alert, 'cancelled');
        return {
          ...base, action: 'cancel', stoppedSessions: r.stopped, referencesNotFound: r.notFound,
          message: `cancel: ${r.stopped.length} session(s) stopped${r.notFound.length ? `; unknown reference(s): ${r.notFound.join(' ')}` : ''}${r.problems.length ? `; ${r.problems.join('; ')}` : ''}`,
        };
      }
      case 'Update':
      case 'Alert': {
        const r = alert.msgType === 'Update' ? await stopReferenced(sender, alert, 'superseded') : { stopped: [], notFound: [], problems: [] };
        const s = await startFor(sender, alert, info);
        const pre = alert.msgType === 'Update' ? `update: ${r.stopped.length} earlier session(s) stopped${r.notFound.length ? ` (unknown reference(s): ${r.notFound.join(' ')})` : ''}; ` : '';
        return {
          ...base, action: alert.msgType === 'Update' ? 'update' : 'start', state: s.state, exercise: s.exercise,
          matchedNodes: s.matched, excludedActualOnly: s.excluded, sessionId: s.sessionId,
          stoppedSessions: r.stopped, referencesNotFound: r.notFound, message: pre + s.message,
        };
      }
    }
  }
}
export type CapService = ReturnType<typeof createCapService>;
