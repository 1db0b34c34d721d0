import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CapLiveRequest } from '../../controller/src/cap/cap-service.js';
import { buildApp } from '../../controller/src/http/app.js';
import { capRoutes } from '../../controller/src/http/routes/cap.js';
import { AppError } from '../../controller/src/errors.js';
import { hashPassword } from '../../controller/src/secrets.js';
import type { LiveSessionInfo } from '../../controller/src/live/index.js';
import { startTestController, type TestController } from '../helpers/controller.js';

const dir = path.join(import.meta.dirname, '../fixtures/cap');
const fx = (name: string) => fs.readFileSync(path.join(dir, name), 'utf8');
/** The controller's clock: five minutes after the fixtures' last `sent`, moving at real speed. */
const BASE = Date.parse('2025-09-07T09:05:00+07:00');
const t0 = performance.now();
const now = () => Math.floor(BASE + (performance.now() - t0));
type App = Awaited<ReturnType<typeof buildApp>>;
/** What CAP reads of a live session: its id. The rest of LiveSessionInfo belongs to the live service. */
const fakeSession = (sessionId: string) => ({ sessionId }) as Partial<LiveSessionInfo> as LiveSessionInfo;

describe('CAP alert ingest API', () => {
  let t: TestController;
  let app: App;
  let ownApp: App | undefined;
  let communeId: string;
  let token: string;
  let senderId: string;
  let started: CapLiveRequest[];
  let stopped: string[];
  let nextSession = 0;

  const admin = async (method: 'GET' | 'POST' | 'PATCH' | 'PUT', url: string, payload?: object) => {
    const r = await app.inject({ method, url, headers: { authorization: `Bearer ${t.token}` }, ...(payload ? { payload } : {}) });
    return { status: r.statusCode, body: r.json() as any };
  };
  const post = async (xml: string, opts: { token?: string | null; type?: string } = {}) => {
    const headers: Record<string, string> = { 'content-type': opts.type ?? 'application/cap+xml' };
    const tok = opts.token === undefined ? token : opts.token;
    if (tok !== null) headers.authorization = `Bearer ${tok}`;
    const r = await app.inject({ method: 'POST', url: '/api/v1/cap/alerts', headers, payload: xml });
    return { status: r.statusCode, body: r.json() as any };
  };
  /** The controller answers after bad input: a valid authenticated read still works. */
  const stillAnswers = async () => expect((await admin('GET', '/api/v1/cap/alerts?limit=1')).status).toBe(200);
  const audit = () => t.ctl.store.listAudit(communeId, 500, 0);

  beforeAll(async () => {
    // Port 0: the live RTP socket must not collide with other controllers under test.
    t = await startTestController({ now, env: { RADIO_RTP_PORT: 0 } });
    communeId = t.ctl.config.RADIO_COMMUNE_ID;
    // The lead registers capRoutes in app.ts; until then the test mounts them on an app of its own.
    if (t.ctl.app.hasRoute({ method: 'POST', url: '/api/v1/cap/alerts' })) app = t.ctl.app;
    else app = ownApp = await buildApp(t.ctl, [capRoutes]);
    for (const [id, name] of [['z-north', 'Thôn Bắc'], ['z-south', 'Xóm Nam'], ['z-river', 'Ven sông']]) {
      expect((await admin('POST', '/api/v1/zones', { id, name })).status).toBe(201);
    }
    const nodes = [
      { id: 'n-north', name: 'North', zoneId: 'z-north', position: { lat: 16.48, lon: 107.59 } },
      { id: 'n-east', name: 'East', zoneId: 'z-north', position: { lat: 16.485, lon: 107.62 }, actualOnly: true },
      { id: 'n-south', name: 'South', zoneId: 'z-south', position: { lat: 16.44, lon: 107.59 } },
      { id: 'n-nopos', name: 'No GPS', zoneId: 'z-river' },
    ];
    for (const n of nodes) expect((await admin('POST', '/api/v1/nodes', n)).status).toBe(201);
    const s = await admin('POST', '/api/v1/cap/senders', { name: 'PCTT Thừa Thiên Huế', capSender: 'pctt.hue.gov.vn' });
    expect(s.status).toBe(201);
    token = s.body.token;
    senderId = s.body.sender.id;
  });
  afterAll(async () => {
    await ownApp?.close();
    await t?.stop();
  });

  beforeEach(() => {
    // Record what CAP asks of the live service, independent of the live implementation.
    started = [];
    stopped = [];
    t.ctl.live.startSession = vi.fn(async (_cid: string, _actor: string, req: CapLiveRequest): Promise<LiveSessionInfo> => {
      started.push(req);
      return fakeSession(`sess-cap-${++nextSession}`);
    }) as typeof t.ctl.live.startSession;
    t.ctl.live.stopSession = vi.fn(async (_cid: string, _actor: string, sessionId: string): Promise<LiveSessionInfo> => {
      stopped.push(sessionId);
      return fakeSession(sessionId);
    }) as typeof t.ctl.live.stopSession;
  });

  it('lists senders without their token; the token is kept hashed', async () => {
    const l = await admin('GET', '/api/v1/cap/senders');
    expect(l.status).toBe(200);
    expect(l.body).toEqual([expect.objectContaining({ id: senderId, capSender: 'pctt.hue.gov.vn', enabled: true })]);
    expect(JSON.stringify(l.body)).not.toContain(token);
    const row = t.ctl.store.db.prepare(`SELECT token_hash FROM cap_senders WHERE id = ?`).get(senderId) as { token_hash: string };
    expect(row.token_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(row.token_hash).not.toBe(token);
  });

  it('refuses missing, unknown and user tokens with 401 and starts nothing', async () => {
    const xml = fx('alert-flood-vi.xml');
    expect((await post(xml, { token: null })).body.code).toBe('CAP_SENDER_UNAUTHENTICATED');
    const unknown = await post(xml, { token: 'not-a-sender-token-at-all' });
    expect(unknown).toMatchObject({ status: 401, body: { code: 'CAP_SENDER_UNKNOWN' } });
    // A console user's token is not a sender token.
    expect((await post(xml, { token: t.token })).status).toBe(401);
    expect(started).toHaveLength(0);
    await stillAnswers();
  });

  it('an Alert starts one emergency session on exactly the clusters its polygon covers', async () => {
    const r = await post(fx('alert-flood-vi.xml'));
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ identifier: 'flood-001', action: 'start', state: 'active', exercise: false, matchedNodes: ['n-east', 'n-north'], sessionId: 'sess-cap-1', language: 'vi-VN' });
    expect(t.ctl.live.startSession).toHaveBeenCalledTimes(1);
    expect(t.ctl.live.startSession).toHaveBeenCalledWith(communeId, `cap:${senderId}`, expect.anything());
    const req = started[0]!;
    expect(req).toMatchObject({ kind: 'emergency', priority: 'emergency', voice: 'vi', repeat: 2, forcedVolume: 90, exercise: false });
    expect(req.targets.nodes).toEqual(['n-east', 'n-north']);
    expect(req.text).toMatch(/^Cảnh báo lũ quét khẩn cấp\n\nMực nước sông Hương dâng nhanh & có nguy cơ/);
    expect(req.text).toContain('Di chuyển ngay lên vùng đất cao');
    expect(audit().some((a) => a.action === 'cap.start' && a.target === 'pctt.hue.gov.vn,flood-001,2025-09-07T08:00:00+07:00')).toBe(true);
  });

  it('the same alert again answers 200 with the earlier result and starts no second session', async () => {
    const r = await post(fx('alert-flood-vi.xml'));
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ duplicate: true, sessionId: 'sess-cap-1', matchedNodes: ['n-east', 'n-north'], state: 'active' });
    expect(t.ctl.live.startSession).not.toHaveBeenCalled();
  });

  it('an Update stops the referenced session and starts a new one; a Cancel stops it', async () => {
    const u = await post(fx('update-flood.xml'));
    expect(u.status).toBe(201);
    expect(u.body).toMatchObject({ action: 'update', state: 'active', stoppedSessions: ['sess-cap-1'], sessionId: 'sess-cap-2' });
    expect(stopped).toEqual(['sess-cap-1']);
    expect(started[0]!.text).toMatch(/^Cập nhật: lũ quét đang lên/);

    stopped = [];
    const c = await post(fx('cancel-flood.xml'));
    expect(c.status).toBe(201);
    expect(c.body).toMatchObject({ action: 'cancel', stoppedSessions: ['sess-cap-2'], referencesNotFound: [] });
    expect(stopped).toEqual(['sess-cap-2']);
    expect(t.ctl.live.stopSession).toHaveBeenLastCalledWith(communeId, `cap:${senderId}`, 'sess-cap-2');
    expect(t.ctl.live.startSession).toHaveBeenCalledTimes(1); // only the update's

    const list = await admin('GET', '/api/v1/cap/alerts');
    const byId = Object.fromEntries((list.body as { identifier: string; state: string }[]).map((a) => [a.identifier, a.state]));
    expect(byId).toMatchObject({ 'flood-001': 'superseded', 'flood-002': 'cancelled', 'flood-003': 'recorded' });
    expect((await admin('GET', '/api/v1/cap/alerts?state=cancelled')).body.map((a: { identifier: string }) => a.identifier)).toEqual(['flood-002']);
    expect(audit().filter((a) => a.action === 'cap.update' || a.action === 'cap.cancel')).toHaveLength(2);
  });

  it('a Test alert never sounds on actual-only clusters and is flagged as an exercise', async () => {
    const r = await post(fx('test-polygon.xml'));
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ state: 'active', exercise: true, matchedNodes: ['n-north'], excludedActualOnly: ['n-east'] });
    expect(started).toHaveLength(1);
    expect(started[0]!.targets.nodes).toEqual(['n-north']);
    expect(started[0]!.exercise).toBe(true);
    expect(started[0]!.text).toMatch(/^Đây là tin thử nghiệm\./);
  });

  it('per-commune settings set repeat and forced volume; an Exercise circle targets the south cluster', async () => {
    expect((await admin('PUT', '/api/v1/cap/settings', { repeat: 3, forcedVolume: 80, geocodeZones: {} })).status).toBe(200);
    const r = await post(fx('exercise-circle.xml'));
    expect(r.status).toBe(201);
    expect(started[0]).toMatchObject({ repeat: 3, forcedVolume: 80, exercise: true, targets: { nodes: ['n-south'] } });
  });

  it('an alert whose area covers no cluster is accepted with no targets and audited', async () => {
    const r = await post(fx('no-match.xml'));
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ state: 'no_targets', matchedNodes: [], sessionId: null });
    expect(r.body.message).toMatch(/^accepted, no targets: no area .*Hà Nội/);
    expect(t.ctl.live.startSession).not.toHaveBeenCalled();
    expect(audit().some((a) => a.action === 'cap.no_targets' && a.target?.includes('far-001'))).toBe(true);
  });

  it('System status is recorded and never sounds; a geocode naming a zone reaches its clusters', async () => {
    expect((await post(fx('system.xml'))).body).toMatchObject({ state: 'recorded', action: 'none' });
    expect(t.ctl.live.startSession).not.toHaveBeenCalled();
    const g = await post(fx('geocode-zone.xml'));
    expect(g.body).toMatchObject({ state: 'active', matchedNodes: ['n-nopos'] });
  });

  it('bad input: each gets a clear 4xx and the controller keeps answering', async () => {
    const cases: [string, number, string][] = [
      ['invalid-not-xml.xml', 400, 'CAP_NOT_XML'],
      ['invalid-malformed.xml', 400, 'CAP_MALFORMED_XML'],
      ['invalid-namespace.xml', 400, 'CAP_WRONG_NAMESPACE'],
      ['invalid-missing-identifier.xml', 400, 'CAP_MISSING_ELEMENT'],
      ['invalid-polygon-open.xml', 400, 'CAP_INVALID_VALUE'],
      ['invalid-entity-bomb.xml', 400, 'CAP_DTD_FORBIDDEN'],
      ['invalid-expired.xml', 422, 'CAP_EXPIRED'],
      ['invalid-future.xml', 422, 'CAP_SENT_IN_FUTURE'],
    ];
    for (const [file, status, code] of cases) {
      const r = await post(fx(file));
      expect({ file, status: r.status, code: r.body.code }).toEqual({ file, status, code });
      expect(r.body.message.length).toBeGreaterThan(10);
      await stillAnswers();
    }
    const malformed = await post(fx('invalid-malformed.xml'));
    expect(malformed.body.message).toMatch(/^malformed XML at line \d+/);
    // Not XML at all, sent as JSON.
    const json = await post('{"alert":1}', { type: 'application/json' });
    expect(json).toMatchObject({ status: 415, body: { code: 'CAP_CONTENT_TYPE' } });
    // Oversize: refused while reading the body.
    const big = await post(`<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><note>${'x'.repeat(600 * 1024)}</note></alert>`);
    expect(big).toMatchObject({ status: 413, body: { code: 'CAP_TOO_LARGE' } });
    await stillAnswers();
    // Someone else's CAP sender name with this token.
    const other = await post(fx('alert-flood-vi.xml').replace('<sender>pctt.hue.gov.vn</sender>', '<sender>someone.else</sender>').replace('flood-001', 'flood-x'));
    expect(other).toMatchObject({ status: 403, body: { code: 'CAP_SENDER_MISMATCH' } });
    expect(started).toHaveLength(0);
    expect(audit().filter((a) => a.action === 'cap.rejected').length).toBeGreaterThanOrEqual(cases.length);
  });

  it('a live failure is reported (503), recorded as failed, and the same alert posted again retries', async () => {
    t.ctl.live.startSession = vi.fn(async () => { throw new AppError(501, 'LIVE_NOT_AVAILABLE', 'live sessions are not available'); }) as typeof t.ctl.live.startSession;
    const xml = fx('alert-prefixed.xml');
    const r = await post(xml);
    expect(r).toMatchObject({ status: 503, body: { code: 'CAP_ACTION_FAILED' } });
    expect(r.body.message).toContain('live sessions are not available');
    expect((await admin('GET', '/api/v1/cap/alerts?state=failed')).body.map((a: { identifier: string }) => a.identifier)).toEqual(['pref-001']);
    const startSession = vi.fn(async (_c: string, _a: string, _r: CapLiveRequest): Promise<LiveSessionInfo> => fakeSession('sess-retry'));
    t.ctl.live.startSession = startSession as typeof t.ctl.live.startSession;
    const again = await post(xml);
    expect(again).toMatchObject({ status: 201, body: { state: 'active', sessionId: 'sess-retry', matchedNodes: ['n-south'] } });
    expect(startSession).toHaveBeenCalledTimes(1);
  });

  it('a disabled sender gets 403; admins only manage senders', async () => {
    expect((await admin('PATCH', `/api/v1/cap/senders/${senderId}`, { enabled: false })).body.enabled).toBe(false);
    const r = await post(fx('alert-flood-vi.xml'));
    expect(r).toMatchObject({ status: 403, body: { code: 'CAP_SENDER_DISABLED' } });
    expect(started).toHaveLength(0);
    expect(audit().some((a) => a.action === 'cap.sender.disable' && a.target === senderId)).toBe(true);
    await stillAnswers();
    expect((await admin('PATCH', `/api/v1/cap/senders/${senderId}`, { enabled: true })).body.enabled).toBe(true);
    expect((await post(fx('alert-flood-vi.xml'))).status).toBe(200); // the duplicate again, now accepted
    // An operator (not admin) may read alerts but not manage senders.
    t.ctl.store.db.prepare(`INSERT INTO users (commune_id, username, password_hash, role, created_at) VALUES (?, 'op', ?, 'operator', ?)`)
      .run(communeId, hashPassword('op-password'), now());
    const login = await app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'op', password: 'op-password' } });
    const op = { authorization: `Bearer ${(login.json() as { token: string }).token}` };
    expect((await app.inject({ method: 'GET', url: '/api/v1/cap/alerts', headers: op })).statusCode).toBe(200);
    const denied = await app.inject({ method: 'POST', url: '/api/v1/cap/senders', headers: op, payload: { name: 'x', capSender: 'x' } });
    expect(denied.statusCode).toBe(403);
  });

  it('keeps the raw XML of every alert', async () => {
    const list = (await admin('GET', '/api/v1/cap/alerts')).body as { id: number; identifier: string }[];
    const id = list.find((a) => a.identifier === 'flood-001')!.id;
    const r = await app.inject({ method: 'GET', url: `/api/v1/cap/alerts/${id}/xml`, headers: { authorization: `Bearer ${t.token}` } });
    expect(r.statusCode).toBe(200);
    expect(r.body).toBe(fx('alert-flood-vi.xml'));
  });
});
