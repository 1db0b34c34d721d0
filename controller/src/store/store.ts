import type { Db } from './db.js';
import type { Alarm, AlarmType, Node, Zone } from '../../../schemas/src/index.js';

interface NodeRow {
  id: string; commune_id: string; zone_id: string; name: string; lat: number | null; lon: number | null;
  hardware: string; secret_hash: string; status: string; status_changed_at: number | null; last_seen_at: number | null;
  agent_version: string | null; maintenance: number; actual_only: number; last_telemetry: string | null;
  last_telemetry_at: number | null; created_at: number;
}
interface ZoneRow { id: string; commune_id: string; name: string; description: string | null; created_at: number; node_count: number }
interface AlarmRow {
  id: number; commune_id: string; node_id: string; type: string; severity: string; state: string; detail: string | null;
  raised_at: number; cleared_at: number | null; acked_at: number | null; acked_by: string | null;
}

export interface NodeAuthRow { id: string; communeId: string; zoneId: string; secretHash: string }

function toNode(r: NodeRow): Node {
  return {
    id: r.id, communeId: r.commune_id, zoneId: r.zone_id, name: r.name,
    status: r.status === 'online' ? 'online' : 'offline',
    lastSeenAt: r.last_seen_at, statusChangedAt: r.status_changed_at,
    position: r.lat !== null && r.lon !== null ? { lat: r.lat, lon: r.lon } : null,
    hardware: JSON.parse(r.hardware) as Record<string, unknown>,
    maintenance: r.maintenance === 1, actualOnly: r.actual_only === 1,
    agentVersion: r.agent_version, createdAt: r.created_at,
  };
}
function toZone(r: ZoneRow): Zone {
  return { id: r.id, communeId: r.commune_id, name: r.name, description: r.description, createdAt: r.created_at, nodeCount: r.node_count };
}
export function toAlarm(r: AlarmRow): Alarm {
  return {
    id: r.id, communeId: r.commune_id, nodeId: r.node_id, type: r.type as AlarmType,
    severity: r.severity as Alarm['severity'], state: r.state as Alarm['state'], detail: r.detail,
    raisedAt: r.raised_at, clearedAt: r.cleared_at, ackedAt: r.acked_at, ackedBy: r.acked_by,
  };
}

export interface TelemetryWrite { nodeId: string; communeId: string; ts: number; json: string }

/** Data access for the controller. Synchronous (better-sqlite3); hot paths batch into one transaction. */
export function createStore(db: Db) {
  const q = {
    zoneList: db.prepare<[string], ZoneRow>(`SELECT z.*, (SELECT count(*) FROM nodes n WHERE n.zone_id = z.id) AS node_count FROM zones z WHERE commune_id = ? ORDER BY name`),
    zoneGet: db.prepare<[string, string], ZoneRow>(`SELECT z.*, (SELECT count(*) FROM nodes n WHERE n.zone_id = z.id) AS node_count FROM zones z WHERE id = ? AND commune_id = ?`),
    nodeGet: db.prepare<[string, string], NodeRow>(`SELECT * FROM nodes WHERE id = ? AND commune_id = ?`),
    nodeGetAny: db.prepare<[string], NodeRow>(`SELECT * FROM nodes WHERE id = ?`),
    nodeList: db.prepare<[string], NodeRow>(`SELECT * FROM nodes WHERE commune_id = ? ORDER BY zone_id, name`),
    nodeListZone: db.prepare<[string, string], NodeRow>(`SELECT * FROM nodes WHERE commune_id = ? AND zone_id = ? ORDER BY name`),
    nodeAll: db.prepare<[], NodeRow>(`SELECT * FROM nodes`),
    setStatus: db.prepare(`UPDATE nodes SET status = ?, status_changed_at = ?, last_seen_at = coalesce(?, last_seen_at), agent_version = coalesce(?, agent_version) WHERE id = ?`),
    setTelemetry: db.prepare(`UPDATE nodes SET last_telemetry = ?, last_telemetry_at = ?, last_seen_at = ? WHERE id = ?`),
    insTelemetry: db.prepare(`INSERT INTO telemetry_raw (node_id, commune_id, ts, data) VALUES (?, ?, ?, ?)`),
    audit: db.prepare(`INSERT INTO audit (commune_id, ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)`),
    event: db.prepare(`INSERT INTO events (commune_id, node_id, ts, type, data) VALUES (?, ?, ?, ?, ?)`),
  };

  return {
    db,
    // --- communes
    ensureCommune(id: string, name: string, now: number) {
      db.prepare(`INSERT INTO communes (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT(id) DO NOTHING`).run(id, name, now);
    },
    // --- zones
    listZones: (communeId: string) => q.zoneList.all(communeId).map(toZone),
    getZone: (communeId: string, id: string) => { const r = q.zoneGet.get(id, communeId); return r ? toZone(r) : undefined; },
    zoneExistsAnywhere: (id: string) => db.prepare(`SELECT 1 FROM zones WHERE id = ?`).get(id) !== undefined,
    insertZone(z: { id: string; communeId: string; name: string; description: string | null; createdAt: number }) {
      db.prepare(`INSERT INTO zones (id, commune_id, name, description, created_at) VALUES (?, ?, ?, ?, ?)`).run(z.id, z.communeId, z.name, z.description, z.createdAt);
    },
    updateZone(communeId: string, id: string, patch: { name?: string; description?: string | undefined }) {
      const cur = q.zoneGet.get(id, communeId);
      if (!cur) return false;
      db.prepare(`UPDATE zones SET name = ?, description = ? WHERE id = ?`).run(patch.name ?? cur.name, patch.description !== undefined ? patch.description : cur.description, id);
      return true;
    },
    deleteZone: (communeId: string, id: string) => db.prepare(`DELETE FROM zones WHERE id = ? AND commune_id = ?`).run(id, communeId).changes > 0,
    // --- nodes
    listNodes: (communeId: string, zoneId?: string) => (zoneId ? q.nodeListZone.all(communeId, zoneId) : q.nodeList.all(communeId)).map(toNode),
    getNode: (communeId: string, id: string) => { const r = q.nodeGet.get(id, communeId); return r ? toNode(r) : undefined; },
    getNodeAny: (id: string) => { const r = q.nodeGetAny.get(id); return r ? toNode(r) : undefined; },
    nodeExistsAnywhere: (id: string) => q.nodeGetAny.get(id) !== undefined,
    allNodeAuth(): NodeAuthRow[] {
      return q.nodeAll.all().map((r) => ({ id: r.id, communeId: r.commune_id, zoneId: r.zone_id, secretHash: r.secret_hash }));
    },
    latestTelemetry(id: string): { ts: number; json: string } | undefined {
      const r = q.nodeGetAny.get(id);
      return r?.last_telemetry && r.last_telemetry_at ? { ts: r.last_telemetry_at, json: r.last_telemetry } : undefined;
    },
    insertNode(n: { id: string; communeId: string; zoneId: string; name: string; lat: number | null; lon: number | null; hardware: string; secretHash: string; actualOnly: boolean; createdAt: number }) {
      db.prepare(`INSERT INTO nodes (id, commune_id, zone_id, name, lat, lon, hardware, secret_hash, actual_only, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(n.id, n.communeId, n.zoneId, n.name, n.lat, n.lon, n.hardware, n.secretHash, n.actualOnly ? 1 : 0, n.createdAt);
    },
    updateNode(id: string, p: { name: string; zoneId: string; lat: number | null; lon: number | null; hardware: string; maintenance: boolean; actualOnly: boolean }) {
      db.prepare(`UPDATE nodes SET name = ?, zone_id = ?, lat = ?, lon = ?, hardware = ?, maintenance = ?, actual_only = ? WHERE id = ?`)
        .run(p.name, p.zoneId, p.lat, p.lon, p.hardware, p.maintenance ? 1 : 0, p.actualOnly ? 1 : 0, id);
    },
    setNodeSecret: (id: string, secretHash: string) => db.prepare(`UPDATE nodes SET secret_hash = ? WHERE id = ?`).run(secretHash, id),
    deleteNode(id: string) {
      db.transaction(() => {
        db.prepare(`DELETE FROM telemetry_raw WHERE node_id = ?`).run(id);
        db.prepare(`DELETE FROM telemetry_rollup WHERE node_id = ?`).run(id);
        db.prepare(`DELETE FROM nodes WHERE id = ?`).run(id);
      })();
    },
    setNodeStatus(id: string, status: 'online' | 'offline', ts: number, seen: number | null, agentVersion: string | null) {
      q.setStatus.run(status, ts, seen, agentVersion, id);
    },
    /** One transaction for a whole tick of telemetry (better-sqlite3 is synchronous: batch, don't trickle). */
    writeTelemetryBatch(batch: TelemetryWrite[]) {
      if (batch.length === 0) return;
      db.transaction(() => {
        for (const t of batch) {
          q.insTelemetry.run(t.nodeId, t.communeId, t.ts, t.json);
          q.setTelemetry.run(t.json, t.ts, t.ts, t.nodeId);
        }
      })();
    },
    telemetryRaw(nodeId: string, from: number, to: number, limit: number) {
      return db.prepare<[string, number, number, number], { ts: number; data: string }>(
        `SELECT ts, data FROM telemetry_raw WHERE node_id = ? AND ts >= ? AND ts <= ? ORDER BY ts DESC LIMIT ?`).all(nodeId, from, to, limit);
    },
    telemetryRollup(nodeId: string, from: number, to: number, limit: number) {
      return db.prepare<[string, number, number, number], { bucket_ts: number; n: number; temperature_c: number; battery_v: number; mains_v: number; rssi_dbm: number; volume: number; clock_offset_ms: number; live_loss_pct: number | null; live_jitter_ms: number | null }>(
        `SELECT * FROM telemetry_rollup WHERE node_id = ? AND bucket_ts >= ? AND bucket_ts <= ? ORDER BY bucket_ts DESC LIMIT ?`).all(nodeId, from, to, limit);
    },
    /**
     * Downsample raw telemetry older than `before` into `bucketMs` buckets and delete the raw rows.
     * Returns how many raw rows were folded.
     */
    compactTelemetry(before: number, bucketMs: number): number {
      return db.transaction(() => {
        db.prepare(`
          INSERT INTO telemetry_rollup (node_id, commune_id, bucket_ts, n, temperature_c, battery_v, mains_v, rssi_dbm, volume, clock_offset_ms, live_loss_pct, live_jitter_ms)
          SELECT node_id, commune_id, (ts / CAST(@b AS INTEGER)) * CAST(@b AS INTEGER) AS bucket, count(*),
            avg(json_extract(data, '$.temperatureC')), min(json_extract(data, '$.power.batteryV')),
            avg(json_extract(data, '$.power.mainsV')), avg(json_extract(data, '$.modem.rssiDbm')),
            avg(json_extract(data, '$.volume')), avg(json_extract(data, '$.clock.offsetMs')),
            max(json_extract(data, '$.live.lossPct')), max(json_extract(data, '$.live.jitterMs'))
          FROM telemetry_raw WHERE ts < @before GROUP BY node_id, bucket
          ON CONFLICT(node_id, bucket_ts) DO UPDATE SET
            temperature_c = (temperature_c * n + excluded.temperature_c * excluded.n) / (n + excluded.n),
            battery_v = min(battery_v, excluded.battery_v),
            mains_v = (mains_v * n + excluded.mains_v * excluded.n) / (n + excluded.n),
            rssi_dbm = (rssi_dbm * n + excluded.rssi_dbm * excluded.n) / (n + excluded.n),
            volume = (volume * n + excluded.volume * excluded.n) / (n + excluded.n),
            clock_offset_ms = (clock_offset_ms * n + excluded.clock_offset_ms * excluded.n) / (n + excluded.n),
            -- worst of both; coalesce both ways because a NULL (no live session) must not win or erase
            live_loss_pct = max(coalesce(live_loss_pct, excluded.live_loss_pct), coalesce(excluded.live_loss_pct, live_loss_pct)),
            live_jitter_ms = max(coalesce(live_jitter_ms, excluded.live_jitter_ms), coalesce(excluded.live_jitter_ms, live_jitter_ms)),
            n = n + excluded.n
        `).run({ b: bucketMs, before });
        return db.prepare(`DELETE FROM telemetry_raw WHERE ts < ?`).run(before).changes;
      })();
    },
    // --- events and audit
    addEvent(communeId: string, nodeId: string | null, ts: number, type: string, data: unknown) {
      q.event.run(communeId, nodeId, ts, type, data === undefined ? null : JSON.stringify(data));
    },
    listEvents(communeId: string, nodeId: string | undefined, limit: number) {
      const rows = nodeId
        ? db.prepare<[string, string, number], { id: number; node_id: string | null; ts: number; type: string; data: string | null }>(`SELECT * FROM events WHERE commune_id = ? AND node_id = ? ORDER BY id DESC LIMIT ?`).all(communeId, nodeId, limit)
        : db.prepare<[string, number], { id: number; node_id: string | null; ts: number; type: string; data: string | null }>(`SELECT * FROM events WHERE commune_id = ? ORDER BY id DESC LIMIT ?`).all(communeId, limit);
      return rows.map((r) => ({ id: r.id, nodeId: r.node_id, ts: r.ts, type: r.type, data: r.data ? (JSON.parse(r.data) as unknown) : null }));
    },
    audit(communeId: string | null, ts: number, actor: string, action: string, target: string | null, detail?: unknown) {
      q.audit.run(communeId, ts, actor, action, target, detail === undefined ? null : JSON.stringify(detail));
    },
    listAudit(communeId: string, limit: number, offset: number) {
      return db.prepare<[string, number, number], { id: number; commune_id: string | null; ts: number; actor: string; action: string; target: string | null; detail: string | null }>(
        `SELECT * FROM audit WHERE commune_id = ? ORDER BY id DESC LIMIT ? OFFSET ?`).all(communeId, limit, offset)
        .map((r) => ({ id: r.id, communeId: r.commune_id, ts: r.ts, actor: r.actor, action: r.action, target: r.target, detail: r.detail ? (JSON.parse(r.detail) as Record<string, unknown>) : null }));
    },
    // --- alarms
    activeAlarms: () => db.prepare<[], AlarmRow>(`SELECT * FROM alarms WHERE state = 'active'`).all().map(toAlarm),
    listAlarms(communeId: string, opts: { state?: string; nodeId?: string; limit: number }) {
      const where = ['commune_id = @c'];
      if (opts.state) where.push('state = @s');
      if (opts.nodeId) where.push('node_id = @n');
      return db.prepare<[Record<string, unknown>], AlarmRow>(`SELECT * FROM alarms WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT @l`)
        .all({ c: communeId, s: opts.state, n: opts.nodeId, l: opts.limit }).map(toAlarm);
    },
    getAlarm: (id: number) => { const r = db.prepare<[number], AlarmRow>(`SELECT * FROM alarms WHERE id = ?`).get(id); return r ? toAlarm(r) : undefined; },
    raiseAlarm(a: { communeId: string; nodeId: string; type: AlarmType; severity: string; detail: string | null; ts: number }): Alarm {
      const info = db.prepare(`INSERT INTO alarms (commune_id, node_id, type, severity, state, detail, raised_at) VALUES (?, ?, ?, ?, 'active', ?, ?)`)
        .run(a.communeId, a.nodeId, a.type, a.severity, a.detail, a.ts);
      return toAlarm(db.prepare<[number], AlarmRow>(`SELECT * FROM alarms WHERE id = ?`).get(Number(info.lastInsertRowid))!);
    },
    clearAlarm(id: number, ts: number): Alarm {
      db.prepare(`UPDATE alarms SET state = 'cleared', cleared_at = ? WHERE id = ?`).run(ts, id);
      return toAlarm(db.prepare<[number], AlarmRow>(`SELECT * FROM alarms WHERE id = ?`).get(id)!);
    },
    ackAlarm(id: number, ts: number, by: string): Alarm {
      db.prepare(`UPDATE alarms SET acked_at = ?, acked_by = ? WHERE id = ?`).run(ts, by, id);
      return toAlarm(db.prepare<[number], AlarmRow>(`SELECT * FROM alarms WHERE id = ?`).get(id)!);
    },
    // --- retained republish
    putRetained(topic: string, communeId: string, payload: string, ts: number) {
      if (payload === '') db.prepare(`DELETE FROM retained WHERE topic = ?`).run(topic);
      else db.prepare(`INSERT INTO retained (topic, commune_id, payload, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(topic) DO UPDATE SET payload = excluded.payload, updated_at = excluded.updated_at`).run(topic, communeId, payload, ts);
    },
    allRetained: () => db.prepare<[], { topic: string; payload: string }>(`SELECT topic, payload FROM retained`).all(),
    getRetained: (topic: string) => db.prepare<[string], { payload: string }>(`SELECT payload FROM retained WHERE topic = ?`).get(topic)?.payload,
    // --- settings
    getSetting: (key: string) => db.prepare<[string], { value: string }>(`SELECT value FROM settings WHERE key = ?`).get(key)?.value,
    setSetting: (key: string, value: string) => db.prepare(`INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(key, value),
  };
}

export type Store = ReturnType<typeof createStore>;
