import type { CapAlertRecord, CapAlertResult, CapAlertState, CapSender, CapSettings } from '../../../schemas/src/index.js';
import { CapSettings as CapSettingsSchema } from '../../../schemas/src/index.js';
import type { Db } from '../store/db.js';

interface SenderRow {
  id: string; commune_id: string; name: string; cap_sender: string; token_hash: string; enabled: number;
  created_at: number; created_by: string; last_used_at: number | null;
}
export interface AlertRow {
  id: number; commune_id: string; sender_id: string; identifier: string; sender: string; sent: string; sent_ms: number;
  status: string; msg_type: string; state: string; session_id: string | null; matched_nodes: string; expires: string | null;
  area_desc: string | null; result: string | null; raw_xml: string; received_at: number;
}

export interface SenderAuthRow { sender: CapSender; tokenHash: string }

function toSender(r: SenderRow): CapSender {
  return {
    id: r.id, communeId: r.commune_id, name: r.name, capSender: r.cap_sender, enabled: r.enabled === 1,
    createdAt: r.created_at, createdBy: r.created_by, lastUsedAt: r.last_used_at,
  };
}

/** The stored result with the row's current state (a later Cancel/Update changes the state, not the result). */
export function toRecord(r: AlertRow): CapAlertRecord {
  const res = r.result ? (JSON.parse(r.result) as CapAlertResult) : undefined;
  return {
    id: r.id, identifier: r.identifier, sender: r.sender, sent: r.sent,
    status: r.status as CapAlertRecord['status'], msgType: r.msg_type as CapAlertRecord['msgType'],
    action: res?.action ?? 'none', state: r.state as CapAlertState, exercise: res?.exercise ?? false,
    event: res?.event ?? null, headline: res?.headline ?? null, language: res?.language ?? null,
    matchedNodes: JSON.parse(r.matched_nodes) as string[], excludedActualOnly: res?.excludedActualOnly ?? [],
    sessionId: r.session_id, stoppedSessions: res?.stoppedSessions ?? [], referencesNotFound: res?.referencesNotFound ?? [],
    message: res?.message ?? '', receivedAt: r.received_at, duplicate: false,
    senderId: r.sender_id, expires: r.expires, areaDesc: r.area_desc,
  };
}

/** SQLite access for CAP senders, alerts and settings (tables of migrations-cap.ts). */
export function createCapStore(db: Db) {
  return {
    insertSender(s: { id: string; communeId: string; name: string; capSender: string; tokenHash: string; createdAt: number; createdBy: string }) {
      db.prepare(`INSERT INTO cap_senders (id, commune_id, name, cap_sender, token_hash, enabled, created_at, created_by) VALUES (?, ?, ?, ?, ?, 1, ?, ?)`)
        .run(s.id, s.communeId, s.name, s.capSender, s.tokenHash, s.createdAt, s.createdBy);
    },
    listSenders: (communeId: string) =>
      db.prepare<[string], SenderRow>(`SELECT * FROM cap_senders WHERE commune_id = ? ORDER BY created_at, id`).all(communeId).map(toSender),
    getSender(communeId: string, id: string): CapSender | undefined {
      const r = db.prepare<[string, string], SenderRow>(`SELECT * FROM cap_senders WHERE id = ? AND commune_id = ?`).get(id, communeId);
      return r ? toSender(r) : undefined;
    },
    senderByTokenHash(tokenHash: string): CapSender | undefined {
      const r = db.prepare<[string], SenderRow>(`SELECT * FROM cap_senders WHERE token_hash = ?`).get(tokenHash);
      return r ? toSender(r) : undefined;
    },
    setSenderEnabled: (id: string, enabled: boolean) => db.prepare(`UPDATE cap_senders SET enabled = ? WHERE id = ?`).run(enabled ? 1 : 0, id),
    touchSender: (id: string, ts: number) => db.prepare(`UPDATE cap_senders SET last_used_at = ? WHERE id = ?`).run(ts, id),

    getSettings(communeId: string): CapSettings {
      const r = db.prepare<[string], { json: string }>(`SELECT json FROM cap_settings WHERE commune_id = ?`).get(communeId);
      const parsed = CapSettingsSchema.safeParse(r ? JSON.parse(r.json) : {});
      return parsed.success ? parsed.data : CapSettingsSchema.parse({});
    },
    putSettings(communeId: string, s: CapSettings, ts: number, by: string) {
      db.prepare(`INSERT INTO cap_settings (commune_id, json, updated_at, updated_by) VALUES (?, ?, ?, ?)
        ON CONFLICT(commune_id) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at, updated_by = excluded.updated_by`)
        .run(communeId, JSON.stringify(s), ts, by);
    },

    findAlert(communeId: string, sender: string, identifier: string, sentMs: number): AlertRow | undefined {
      return db.prepare<[string, string, string, number], AlertRow>(
        `SELECT * FROM cap_alerts WHERE commune_id = ? AND sender = ? AND identifier = ? AND sent_ms = ?`).get(communeId, sender, identifier, sentMs);
    },
    getAlert: (communeId: string, id: number) =>
      db.prepare<[number, string], AlertRow>(`SELECT * FROM cap_alerts WHERE id = ? AND commune_id = ?`).get(id, communeId),
    /** Claim the (sender, identifier, sent) key; returns the new row id. Throws on a duplicate key. */
    insertAlert(a: { communeId: string; senderId: string; identifier: string; sender: string; sent: string; sentMs: number; status: string; msgType: string; expires: string | null; areaDesc: string | null; rawXml: string; receivedAt: number }): number {
      const r = db.prepare(`INSERT INTO cap_alerts (commune_id, sender_id, identifier, sender, sent, sent_ms, status, msg_type, state, expires, area_desc, raw_xml, received_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'processing', ?, ?, ?, ?)`)
        .run(a.communeId, a.senderId, a.identifier, a.sender, a.sent, a.sentMs, a.status, a.msgType, a.expires, a.areaDesc, a.rawXml, a.receivedAt);
      return Number(r.lastInsertRowid);
    },
    /** A failed alert posted again: take it back to processing with the new body. */
    reclaimAlert: (id: number, rawXml: string, receivedAt: number) =>
      db.prepare(`UPDATE cap_alerts SET state = 'processing', raw_xml = ?, received_at = ? WHERE id = ? AND state = 'failed'`).run(rawXml, receivedAt, id).changes === 1,
    finishAlert(id: number, r: CapAlertResult) {
      db.prepare(`UPDATE cap_alerts SET state = ?, session_id = ?, matched_nodes = ?, result = ? WHERE id = ?`)
        .run(r.state, r.sessionId, JSON.stringify(r.matchedNodes), JSON.stringify(r), id);
    },
    setAlertState: (id: number, state: CapAlertState) => db.prepare(`UPDATE cap_alerts SET state = ? WHERE id = ?`).run(state, id),
    listAlerts(communeId: string, q: { state?: CapAlertState | undefined; status?: string | undefined; limit: number }): CapAlertRecord[] {
      const where = ['commune_id = ?'];
      const args: (string | number)[] = [communeId];
      if (q.state) { where.push('state = ?'); args.push(q.state); }
      if (q.status) { where.push('status = ?'); args.push(q.status); }
      args.push(q.limit);
      return db.prepare<(string | number)[], AlertRow>(`SELECT * FROM cap_alerts WHERE ${where.join(' AND ')} ORDER BY received_at DESC, id DESC LIMIT ?`)
        .all(...args).map(toRecord);
    },
  };
}
export type CapStore = ReturnType<typeof createCapStore>;
