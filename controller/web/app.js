// Technician console: plain ES module, no build step, no framework, nothing fetched from outside the
// controller. State lives in one object; the views are rebuilt from it by small render functions that
// keep interactive elements (inputs, focused buttons) in place across live updates.
import { LANGS, LOCALES, STRINGS, TIME_ZONE } from './i18n.js';

const API = '/api/v1';
const REFRESH_MS = 10_000;
const DETAIL_CONCURRENCY = 4;
const WS_BACKOFF_MIN_MS = 1000;
const WS_BACKOFF_MAX_MS = 30_000;
const SESSION_KEY = 'radio.session';
const LANG_KEY = 'radio.lang';
const REFRESH_KEY = 'radio.refreshMs';
const SEVERITY_RANK = { critical: 0, major: 1, minor: 2 };

const state = {
  lang: 'vi',
  session: null, // {token, expiresAt, username}
  zones: new Map(), // id → Zone
  nodes: new Map(), // id → Node
  details: new Map(), // id → {ts, data} latest telemetry sample, or null
  alarms: new Map(), // id → Alarm (state active, acked or not)
  openNodeId: null,
  lastRefreshAt: null,
  refreshTimer: null,
  refreshing: null, // the in-flight refresh promise
  refreshAgain: false,
  eventsDuringRefresh: null, // events that arrived while a refresh was in flight (re-applied after it)
  ws: null,
  wsAttempt: 0,
  wsTimer: null,
  wsHadHello: false,
  wsReconnects: 0, // shown as #live[data-reconnects] (diagnostics, tests)
  live: 'connecting', // connecting | on | off
  liveRetryS: 0,
};

// ---------------------------------------------------------------------------------------------------
// i18n and formatting

/** Look up `key`; with `{n: 1}` a `key.one` variant wins where the language has one (English). */
function t(key, vars) {
  const dict = STRINGS[state.lang] ?? STRINGS.vi;
  let s = (vars?.n === 1 ? dict[`${key}.one`] : undefined) ?? dict[key] ?? STRINGS.vi[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

const locale = () => LOCALES[state.lang] ?? 'vi-VN';

function fmtNum(v, digits = 0) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return t('unknown');
  return new Intl.NumberFormat(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v);
}

function fmtTime(ms) {
  if (ms === null || ms === undefined) return t('never');
  return new Intl.DateTimeFormat(locale(), {
    timeZone: TIME_ZONE, day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
  }).format(new Date(ms));
}

function fmtClock(ms) {
  return new Intl.DateTimeFormat(locale(), { timeZone: TIME_ZONE, hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }).format(new Date(ms));
}

function fmtDuration(totalS) {
  if (typeof totalS !== 'number' || !Number.isFinite(totalS)) return t('unknown');
  const s = Math.max(0, Math.floor(totalS));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const parts = [];
  if (d) parts.push(t('unit.d', { n: d }));
  if (h) parts.push(t('unit.h', { n: h }));
  if (m && parts.length < 2) parts.push(t('unit.min', { n: m }));
  if (parts.length === 0) parts.push(t('unit.s', { n: sec }));
  return parts.slice(0, 2).join(' ');
}

function fmtAgo(ms) {
  if (ms === null || ms === undefined) return t('never');
  const s = (Date.now() - ms) / 1000;
  if (s < 5) return t('ago.now');
  return t('ago.past', { t: fmtDuration(s) });
}

function fmtBytes(n) {
  if (typeof n !== 'number') return t('unknown');
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${fmtNum(v, i === 0 ? 0 : 1)} ${units[i]}`;
}

function fmtOhm(v) {
  if (typeof v !== 'number') return t('unknown');
  return v >= 1000 ? `${fmtNum(v / 1000, 1)} kΩ` : `${fmtNum(v, 1)} Ω`;
}

function fmtSigned(v, digits, unit) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return t('unknown');
  return `${v > 0 ? '+' : v < 0 ? '−' : ''}${fmtNum(Math.abs(v), digits)} ${unit}`;
}

/** RSSI quality bands for LTE as field technicians read them. */
function rssiClass(dbm) {
  if (typeof dbm !== 'number') return '';
  if (dbm >= -75) return 'good';
  if (dbm >= -90) return 'fair';
  return 'bad';
}

// ---------------------------------------------------------------------------------------------------
// DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);

/** Build an element; text children become text nodes (never HTML), so API strings cannot inject markup. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = Boolean(v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof window.Node ? c : String(c));
  }
  return el;
}

function kv(label, value, cls) {
  return [h('dt', {}, label), h('dd', cls ? { class: cls } : {}, value)];
}

function applyStaticI18n() {
  document.documentElement.lang = state.lang;
  document.title = t('app.title');
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-label]')) el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  const toggle = $('#lang-toggle');
  const other = state.lang === 'vi' ? 'en' : 'vi';
  toggle.textContent = t('lang.switch');
  toggle.lang = other;
  toggle.title = t('lang.switchLabel');
  $('#user').textContent = state.session ? t('nav.user', { name: state.session.username }) : '';
}

// ---------------------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (state.session) headers.authorization = `Bearer ${state.session.token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let r;
  try {
    r = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'NETWORK', t('error.network', { msg: e.message }));
  }
  const text = await r.text();
  let data;
  try { data = text ? JSON.parse(text) : undefined; } catch { data = undefined; }
  if (!r.ok) {
    // The API's errors are {code, message}: the message says what is wrong, so show it as it is.
    const err = new ApiError(r.status, data?.code ?? `HTTP_${r.status}`, data?.message ?? `HTTP ${r.status} ${r.statusText}`);
    if (r.status === 401 && state.session && path !== '/auth/login') sessionExpired();
    throw err;
  }
  return data;
}

/** Run `fn` over `items` with at most `limit` in flight. */
async function mapLimit(items, limit, fn) {
  let next = 0;
  const worker = async () => { while (next < items.length) { const i = next++; await fn(items[i]); } };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

// ---------------------------------------------------------------------------------------------------
// Toasts (errors that belong to no form)

function showError(message) {
  const box = $('#toasts');
  const item = h('div', { class: 'toast', role: 'alert' },
    h('span', {}, message),
    h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'aria-label': t('error.dismiss'), onclick: () => item.remove() }, '×'));
  box.append(item);
  while (box.children.length > 4) box.firstElementChild.remove();
  setTimeout(() => item.remove(), 12_000);
}

// ---------------------------------------------------------------------------------------------------
// Session

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? 'null');
    if (s && typeof s.token === 'string' && typeof s.expiresAt === 'number' && s.expiresAt > Date.now()) return s;
  } catch { /* a damaged entry is treated as no session */ }
  return null;
}

function showLogin(message) {
  $('#console-view').hidden = true;
  $('#logout').hidden = true;
  $('#user').hidden = true;
  $('#live').hidden = true;
  $('#login-view').hidden = false;
  const err = $('#login-error');
  err.textContent = message ?? '';
  err.hidden = !message;
  $('#login-user').focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  const btn = $('#login-submit');
  const err = $('#login-error');
  err.hidden = true;
  btn.disabled = true;
  btn.textContent = t('login.busy');
  try {
    const r = await api('POST', '/auth/login', { username: $('#login-user').value.trim(), password: $('#login-pass').value });
    state.session = { token: r.token, expiresAt: r.expiresAt, username: r.username };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
    $('#login-pass').value = '';
    enterConsole();
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  } finally {
    btn.disabled = false;
    btn.textContent = t('login.submit');
  }
}

function enterConsole() {
  $('#login-view').hidden = true;
  $('#console-view').hidden = false;
  $('#logout').hidden = false;
  $('#user').hidden = false;
  $('#live').hidden = false;
  applyStaticI18n();
  renderAll();
  connectWs();
  void refreshLoop();
}

function teardown() {
  clearTimeout(state.refreshTimer);
  clearTimeout(state.wsTimer);
  state.refreshTimer = null;
  state.wsTimer = null;
  const ws = state.ws;
  state.ws = null; // before close(): onclose must not schedule a reconnect
  ws?.close(1000, 'logout');
  state.session = null;
  sessionStorage.removeItem(SESSION_KEY);
  state.zones.clear();
  state.nodes.clear();
  state.details.clear();
  state.alarms.clear();
  state.wsHadHello = false;
  state.wsAttempt = 0;
  state.wsReconnects = 0;
  state.refreshAgain = false;
  closeNodeDialog();
  resetBroadcast();
  $('#zone-list').replaceChildren();
  zoneViews.clear();
  nodeViews.clear();
}

async function onLogout() {
  // A voice session without its microphone would stall on every horn: end it while the token is valid.
  if (live.view?.state === 'active' && live.phase !== 'ended') {
    try { await api('POST', `/live/sessions/${encodeURIComponent(live.view.sessionId)}/stop`); } catch { /* it ends on its own when the microphone stalls */ }
  }
  try { await api('POST', '/auth/logout'); } catch { /* logging out locally is what matters */ }
  teardown();
  showLogin();
}

function sessionExpired() {
  if (!state.session) return;
  teardown();
  showLogin(t('login.expired'));
}

// ---------------------------------------------------------------------------------------------------
// Data: periodic refresh and live events

/**
 * Reload zones, nodes, alarms and every node's latest telemetry. A call while one is in flight runs
 * once more after it: that snapshot may predate whatever prompted the call (e.g. a new WebSocket).
 */
async function refreshAll() {
  if (state.refreshing) { state.refreshAgain = true; return state.refreshing; }
  state.eventsDuringRefresh = [];
  state.refreshing = (async () => {
    try {
      const [zones, nodes, alarms] = await Promise.all([
        api('GET', '/zones'), api('GET', '/nodes'), api('GET', '/alarms?state=active&limit=1000'),
      ]);
      state.zones = new Map(zones.map((z) => [z.id, z]));
      const prev = state.nodes;
      state.nodes = new Map(nodes.map((n) => {
        // A live status event newer than this snapshot wins over it.
        const p = prev.get(n.id);
        if (p && (p.statusChangedAt ?? 0) > (n.statusChangedAt ?? 0)) return [n.id, { ...n, status: p.status, statusChangedAt: p.statusChangedAt }];
        return [n.id, n];
      }));
      state.alarms = new Map(alarms.map((a) => [a.id, a]));
      for (const ev of state.eventsDuringRefresh) applyEvent(ev);
      state.eventsDuringRefresh = null;
      renderAll();
      await mapLimit([...state.nodes.keys()], DETAIL_CONCURRENCY, (id) => refreshDetail(id, false));
      for (const id of [...state.details.keys()]) if (!state.nodes.has(id)) state.details.delete(id);
      state.lastRefreshAt = Date.now();
      renderAll();
    } finally {
      state.eventsDuringRefresh = null;
      state.refreshing = null;
      if (state.refreshAgain && state.session) {
        state.refreshAgain = false;
        void refreshAll().catch((e) => { if (state.session) showError(e.message); });
      }
    }
  })();
  return state.refreshing;
}

/** Fetch one node's detail (latest telemetry, active alarms); re-render when asked. */
async function refreshDetail(id, render = true) {
  let d;
  try {
    d = await api('GET', `/nodes/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404) { state.nodes.delete(id); state.details.delete(id); if (render) renderAll(); return; }
    throw e;
  }
  const { telemetry, alarms, ...node } = d;
  const cur = state.nodes.get(id);
  state.nodes.set(id, cur && (cur.statusChangedAt ?? 0) > (node.statusChangedAt ?? 0) ? { ...node, status: cur.status, statusChangedAt: cur.statusChangedAt } : node);
  state.details.set(id, telemetry);
  for (const a of alarms) state.alarms.set(a.id, a);
  if (render) renderAll();
}

/**
 * Polling period. localStorage `radio.refreshMs` overrides it (min 2 s); `0` turns polling off so
 * that only the WebSocket updates the page — the e2e test uses this to prove the live path.
 */
function refreshMs() {
  let v = null;
  try { v = localStorage.getItem(REFRESH_KEY); } catch { /* storage blocked: default */ }
  if (v === null || v === '' || !Number.isFinite(Number(v))) return REFRESH_MS;
  return Number(v) <= 0 ? 0 : Math.max(2000, Number(v));
}

async function refreshLoop() {
  clearTimeout(state.refreshTimer);
  if (!state.session) return;
  try {
    await refreshAll();
  } catch (e) {
    if (state.session) showError(e.message);
  }
  const ms = refreshMs();
  if (state.session && ms > 0) state.refreshTimer = setTimeout(() => void refreshLoop(), ms);
}

function applyEvent(ev) {
  switch (ev.type) {
    case 'node.status': {
      const n = state.nodes.get(ev.nodeId);
      if (!n) return false;
      n.status = ev.status;
      n.statusChangedAt = ev.ts;
      if (ev.status === 'online') n.lastSeenAt = Math.max(n.lastSeenAt ?? 0, ev.ts);
      return true;
    }
    case 'alarm.raised':
    case 'alarm.acked':
      if (ev.alarm.state === 'active') state.alarms.set(ev.alarm.id, ev.alarm);
      else state.alarms.delete(ev.alarm.id);
      return true;
    case 'alarm.cleared':
      state.alarms.delete(ev.alarm.id);
      return true;
    default:
      return true;
  }
}

function onEvent(ev) {
  if (!ev || typeof ev.type !== 'string') return;
  if (ev.type === 'hello') {
    const reconnected = state.wsHadHello;
    state.wsHadHello = true;
    state.wsAttempt = 0;
    if (reconnected) state.wsReconnects++;
    setLive('on');
    // Reach changes of followed sessions may have been missed while the socket was down.
    for (const tr of trackers.values()) void fetchSession(tr);
    // Events sent before this socket opened (link down, or the first page load racing the socket)
    // never reach it: catch up from the API.
    void refreshAll().catch((e) => { if (state.session) showError(e.message); });
    return;
  }
  if (ev.type === 'command.reply' || ev.type === 'job.progress') return;
  if (ev.type === 'live.session') { onLiveSessionEvent(ev); return; }
  state.eventsDuringRefresh?.push(ev);
  const known = applyEvent(ev);
  // A node we have never seen (provisioned elsewhere): fetch the full picture.
  if (!known) { void refreshAll().catch((e) => showError(e.message)); return; }
  renderAll();
  const nodeId = ev.nodeId ?? ev.alarm?.nodeId;
  if (nodeId && nodeId === state.openNodeId) void refreshDetail(nodeId).catch(() => {});
}

function connectWs() {
  if (!state.session) return;
  clearTimeout(state.wsTimer);
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  // Browsers cannot set headers on a WebSocket: the API accepts the token in the query for upgrades.
  const ws = new WebSocket(`${proto}://${location.host}${API}/events?token=${encodeURIComponent(state.session.token)}`);
  state.ws = ws;
  setLive('connecting');
  ws.addEventListener('message', (m) => {
    if (state.ws !== ws) return;
    let ev;
    try { ev = JSON.parse(m.data); } catch { return; }
    onEvent(ev);
  });
  ws.addEventListener('close', () => {
    if (state.ws !== ws) return;
    state.ws = null;
    if (!state.session) return;
    if (state.session.expiresAt <= Date.now()) { sessionExpired(); return; }
    // Exponential backoff with jitter, so a controller restart is not met by every console at once.
    const base = Math.min(WS_BACKOFF_MAX_MS, WS_BACKOFF_MIN_MS * 2 ** state.wsAttempt);
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    state.wsAttempt++;
    setLive('off', Math.ceil(delay / 1000));
    state.wsTimer = setTimeout(connectWs, delay);
  });
}

function setLive(mode, retryS = 0) {
  state.live = mode;
  state.liveRetryS = retryS;
  renderLive();
}

// ---------------------------------------------------------------------------------------------------
// Rendering: header indicator, stats, alarms, zones and node cards

function renderLive() {
  const el = $('#live');
  el.className = `live live-${state.live}`;
  el.dataset.state = state.live;
  el.dataset.reconnects = String(state.wsReconnects);
  const text = state.live === 'on' ? t('live.on') : state.live === 'off' ? t('live.off', { s: state.liveRetryS }) : t('live.connecting');
  // A role=status region is announced on every change: touch it only when the text really changes.
  if (el.textContent === text) return;
  el.replaceChildren(h('span', { class: 'live-dot', 'aria-hidden': 'true' }), h('span', {}, text));
}

function renderAll() {
  if (!state.session) return;
  renderLive();
  renderStats();
  renderAlarms();
  renderZones();
  renderBroadcast();
  renderDetailInfo();
}

function renderStats() {
  let online = 0;
  for (const n of state.nodes.values()) if (n.status === 'online') online++;
  let unacked = 0;
  for (const a of state.alarms.values()) if (!a.ackedAt) unacked++;
  $('#count-total').textContent = String(state.nodes.size);
  $('#count-online').textContent = String(online);
  $('#count-offline').textContent = String(state.nodes.size - online);
  $('#count-alarms').textContent = String(state.alarms.size);
  $('#count-unacked').textContent = unacked ? t('stats.unacked', { n: unacked }) : '';
  $('#tile-offline').classList.toggle('warn', state.nodes.size - online > 0);
  $('#tile-alarms').classList.toggle('alert', unacked > 0);
  $('#last-refresh').textContent = state.lastRefreshAt ? t('live.updated', { time: fmtClock(state.lastRefreshAt) }) : '';
}

const nodeName = (id) => state.nodes.get(id)?.name ?? id;
const zoneName = (id) => state.zones.get(id)?.name ?? id ?? t('zones.unknown');

function renderAlarms() {
  const list = $('#alarm-list');
  const alarms = [...state.alarms.values()].sort((a, b) =>
    (a.ackedAt ? 1 : 0) - (b.ackedAt ? 1 : 0) || SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] || b.raisedAt - a.raisedAt);
  $('#alarms-empty').hidden = alarms.length > 0;
  $('#alarm-count').textContent = alarms.length ? `(${alarms.length})` : '';
  const focusedId = document.activeElement?.closest?.('#alarm-list li')?.dataset.alarmId;
  list.replaceChildren(...alarms.map((a) => {
    const type = t(`alarm.${a.type}`);
    const node = state.nodes.get(a.nodeId);
    const li = h('li', { class: `alarm sev-${a.severity}${a.ackedAt ? ' acked' : ''}`, 'data-alarm-id': a.id, 'data-testid': `alarm-${a.id}`, 'data-type': a.type },
      h('div', { class: 'alarm-main' },
        h('div', { class: 'alarm-title' },
          h('span', { class: `sev sev-${a.severity}` }, t(`severity.${a.severity}`)),
          h('strong', { class: 'alarm-type' }, type)),
        h('div', { class: 'alarm-node' },
          h('button', { type: 'button', class: 'link', onclick: () => openNode(a.nodeId) }, nodeName(a.nodeId)),
          node ? h('span', { class: 'muted' }, ` · ${zoneName(node.zoneId)}`) : null),
        h('div', { class: 'alarm-meta muted' },
          t('alarms.raisedAt', { time: fmtTime(a.raisedAt) }),
          a.detail ? h('span', { class: 'alarm-detail' }, ` · ${a.detail}`) : null),
        a.ackedAt ? h('div', { class: 'alarm-acked' }, t('alarms.acked', { who: a.ackedBy ?? '?', time: fmtTime(a.ackedAt) })) : null),
      a.ackedAt ? null : h('button', {
        type: 'button', class: 'btn btn-primary', 'aria-label': `${t('alarms.ack')}: ${type} – ${nodeName(a.nodeId)}`,
        onclick: (e) => void ackAlarm(a.id, e.currentTarget),
      }, t('alarms.ack')));
    return li;
  }));
  if (focusedId) list.querySelector(`li[data-alarm-id="${CSS.escape(focusedId)}"] button`)?.focus();
}

async function ackAlarm(id, btn) {
  btn.disabled = true;
  try {
    const a = await api('POST', `/alarms/${id}/ack`);
    if (a.state === 'active') state.alarms.set(a.id, a);
    renderAll();
  } catch (e) {
    btn.disabled = false;
    showError(e.message);
  }
}

const zoneViews = new Map(); // zoneId → {section, title, count, grid, volume, out}
const nodeViews = new Map(); // nodeId → {card, button, status, badges, body}

function renderZones() {
  const container = $('#zone-list');
  const byZone = new Map();
  for (const z of state.zones.values()) byZone.set(z.id, []);
  for (const n of state.nodes.values()) {
    if (!byZone.has(n.zoneId)) byZone.set(n.zoneId, []);
    byZone.get(n.zoneId).push(n);
  }
  const collator = new Intl.Collator(locale(), { numeric: true });
  const zoneIds = [...byZone.keys()].sort((a, b) => collator.compare(zoneName(a), zoneName(b)));
  $('#zones-empty').hidden = state.nodes.size > 0;

  for (const id of [...zoneViews.keys()]) if (!byZone.has(id)) { zoneViews.get(id).section.remove(); zoneViews.delete(id); }
  for (const id of [...nodeViews.keys()]) if (!state.nodes.has(id)) { nodeViews.get(id).card.remove(); nodeViews.delete(id); }

  for (const zid of zoneIds) {
    const nodes = byZone.get(zid).sort((a, b) => collator.compare(a.name, b.name));
    let zv = zoneViews.get(zid);
    if (!zv) { zv = buildZone(zid); zoneViews.set(zid, zv); }
    container.append(zv.section); // append moves an existing section: keeps the sorted order
    updateZone(zv, zid, nodes);
    for (const n of nodes) {
      let nv = nodeViews.get(n.id);
      if (!nv) { nv = buildNodeCard(n.id); nodeViews.set(n.id, nv); }
      zv.grid.append(nv.card);
      updateNodeCard(nv, n);
    }
  }
}

function buildZone(zid) {
  const hid = `zone-h-${zid}`;
  const title = h('span', {});
  const count = h('span', { class: 'muted zone-count' });
  const volume = h('input', { type: 'number', min: 0, max: 100, step: 1, value: 70, inputmode: 'numeric', required: true, class: 'input-num' });
  const volLabel = h('span', {});
  const applyBtn = h('button', { type: 'submit', class: 'btn' });
  const toneBtn = h('button', { type: 'button', class: 'btn' });
  const out = h('output', { class: 'cmd-result', 'aria-live': 'polite', hidden: true });
  const form = h('form', { class: 'zone-actions' },
    h('label', { class: 'inline-field' }, volLabel, volume), applyBtn, toneBtn);
  const grid = h('div', { class: 'node-grid' });
  // Pull streams of the zone (GET /zones/{id}/stream.ogg|.mp3) for IP speakers and VLC. Players cannot send a
  // header, so the zone's listen key rides in the URL (it grants listening to this zone only, unlike the
  // login token). Opening the panel fetches the key (GET /zones/{id}/stream); admins and operators can rotate it.
  const streamLabel = h('summary', {});
  const streamLinks = ['ogg', 'mp3'].map((f) => h('a', { 'data-format': f, target: '_blank', rel: 'noopener', 'data-testid': `zone-stream-${f}-${zid}` }, f === 'ogg' ? 'Ogg/Opus' : 'MP3'));
  const streamHint = h('span', { class: 'muted' });
  const rotateBtn = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': `zone-stream-rotate-${zid}`, hidden: true });
  const streamOut = h('output', { class: 'cmd-result', 'aria-live': 'polite', hidden: true });
  const streams = h('details', { class: 'zone-streams', 'data-testid': `zone-streams-${zid}` }, streamLabel,
    h('p', {}, streamLinks[0], ' · ', streamLinks[1], ' ', rotateBtn), h('p', {}, streamHint), streamOut);
  const section = h('section', { class: 'zone', 'aria-labelledby': hid, 'data-testid': `zone-${zid}` },
    h('div', { class: 'zone-head' }, h('h3', { id: hid }, title, ' ', count), form), streams, out, grid);
  const zv = { section, title, count, grid, volume, volLabel, applyBtn, toneBtn, form, out, streams, streamLabel, streamLinks, streamHint, rotateBtn, streamOut, streamInfo: null };
  streams.addEventListener('toggle', () => { if (streams.open) void loadZoneStream(zid, zv); });
  rotateBtn.addEventListener('click', () => void rotateZoneKey(zid, zv));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void zoneCommand(zid, zv, 'set_volume', applyBtn);
  });
  toneBtn.addEventListener('click', () => void zoneCommand(zid, zv, 'test_tone', toneBtn));
  return zv;
}

function updateZone(zv, zid, nodes) {
  const online = nodes.filter((n) => n.status === 'online').length;
  zv.title.textContent = zoneName(zid);
  zv.count.textContent = `· ${t('zones.nodeCount', { n: nodes.length })} · ${online} ${t('status.online').toLowerCase()}`;
  zv.volLabel.textContent = t('zone.volume');
  zv.applyBtn.textContent = t('zone.applyVolume');
  zv.toneBtn.textContent = t('zone.testTone');
  zv.form.setAttribute('aria-label', `${t('zone.actions')}: ${zoneName(zid)}`);
  zv.streams.hidden = !state.zones.has(zid) || !state.session?.token;
  if (zv.streams.hidden) { zv.streams.open = false; zv.streamInfo = null; }
  renderZoneStream(zv, zid);
  const none = nodes.length === 0 || !state.zones.has(zid);
  zv.applyBtn.disabled = none;
  zv.toneBtn.disabled = none;
}

/** Links of the zone's stream panel: with the listen key when the server gave one, else with the login token. */
function renderZoneStream(zv, zid) {
  zv.streamLabel.textContent = t('zone.stream');
  zv.rotateBtn.textContent = t('zone.rotateKey');
  const info = zv.streamInfo;
  const key = info?.listenKey?.key ?? null;
  // listenKey null: this role may not hand out keys; the links then carry the user's own login token.
  const byToken = info !== null && info.listenKey === null;
  for (const a of zv.streamLinks) {
    const f = a.dataset.format;
    const path = `/api/v1/zones/${encodeURIComponent(zid)}/stream.${f}`;
    const href = key ? `${path}?key=${encodeURIComponent(key)}` : byToken ? `${path}?token=${encodeURIComponent(state.session?.token ?? '')}` : null;
    if (href) a.href = href; else a.removeAttribute('href');
    a.title = key ? t('zone.streamKeyHint') : t('zone.streamHint');
  }
  zv.streamHint.textContent = !info ? t('zone.streamLoading')
    : key ? t('zone.streamKeyHint')
      : byToken ? t('zone.streamHint') : t('zone.streamKeyHidden');
  zv.rotateBtn.hidden = !info?.listenKey;
}

async function loadZoneStream(zid, zv) {
  try {
    zv.streamInfo = await api('GET', `/zones/${encodeURIComponent(zid)}/stream`);
  } catch (e) {
    zv.streamInfo = null;
    zv.streamOut.hidden = false;
    zv.streamOut.textContent = e.message;
  }
  renderZoneStream(zv, zid);
}

async function rotateZoneKey(zid, zv) {
  if (!(await confirmAction(t('zone.confirmRotateKey', { zone: zoneName(zid) })))) return;
  zv.rotateBtn.disabled = true;
  try {
    const r = await api('POST', `/zones/${encodeURIComponent(zid)}/stream/key`);
    zv.streamInfo = { ...(zv.streamInfo ?? {}), listenKey: { key: r.key, createdAt: r.createdAt, rotatedAt: r.rotatedAt } };
    zv.streamOut.textContent = t('zone.keyRotated', { n: r.disconnected });
  } catch (e) {
    zv.streamOut.textContent = e.message;
  } finally {
    zv.streamOut.hidden = false;
    zv.rotateBtn.disabled = false;
    renderZoneStream(zv, zid);
  }
}

async function zoneCommand(zid, zv, name, btn) {
  let body;
  if (name === 'set_volume') {
    const v = Number(zv.volume.value);
    if (!zv.volume.reportValidity()) return;
    if (!(await confirmAction(t('zone.confirmVolume', { v, zone: zoneName(zid) })))) return;
    body = { name, params: { volume: v } };
  } else {
    if (!(await confirmAction(t('zone.confirmTone', { zone: zoneName(zid) })))) return;
    body = { name, params: { durationMs: 2000, frequencyHz: 1000 } };
  }
  await runCommand('zone', zid, body, zv.out, btn);
}

function buildNodeCard(id) {
  const button = h('button', { type: 'button', class: 'node-open', onclick: () => openNode(id) });
  const status = h('span', { class: 'status' });
  const badges = h('span', { class: 'badges' });
  const body = h('dl', { class: 'kv kv-card' });
  const card = h('article', { class: 'node-card', 'data-testid': `node-${id}`, 'data-node-id': id },
    h('div', { class: 'node-head' }, h('h4', {}, button), status), badges, body);
  return { card, button, status, badges, body };
}

function statusEl(status) {
  return [h('span', { class: `dot dot-${status}`, 'aria-hidden': 'true' }), h('span', { class: 'status-text' }, t(`status.${status}`))];
}

function updateNodeCard(nv, n) {
  const sample = state.details.get(n.id);
  const tel = sample?.data;
  const alarms = [...state.alarms.values()].filter((a) => a.nodeId === n.id);
  nv.card.className = `node-card status-${n.status}${alarms.some((a) => !a.ackedAt) ? ' has-alarm' : ''}${n.maintenance ? ' maintenance' : ''}`;
  nv.card.dataset.status = n.status;
  if (nv.button.textContent !== n.name) nv.button.textContent = n.name;
  nv.status.replaceChildren(...statusEl(n.status));
  nv.badges.replaceChildren(...[
    n.maintenance ? h('span', { class: 'badge badge-maint' }, t('node.maintenance')) : null,
    alarms.length ? h('span', { class: 'badge badge-alarm' }, t('node.alarmsBadge', { n: alarms.length })) : null,
  ].filter(Boolean));
  nv.badges.hidden = !n.maintenance && alarms.length === 0;
  if (!tel) {
    nv.body.replaceChildren(...kv(t('field.lastSeen'), lastSeen(n)), h('dt', { class: 'sr-only' }, ''), h('dd', { class: 'muted wide' }, t('node.noTelemetry')));
    return;
  }
  nv.body.replaceChildren(
    ...kv(t('field.amplifier'), t(`amp.${tel.amplifier.state}`), tel.amplifier.state === 'fault' ? 'bad' : ''),
    ...kv(t('field.volume'), tel.mute ? `${tel.volume} · ${t('mute.on')}` : String(tel.volume), tel.mute ? 'fair' : ''),
    ...kv(t('field.power'), `${t(`power.${tel.power.source}`)} · ${t('field.battery').toLowerCase()} ${fmtNum(tel.power.batteryV, 1)} V`, tel.power.source === 'battery' ? 'fair' : ''),
    ...kv(t('field.temperature'), `${fmtNum(tel.temperatureC, 1)} °C`, tel.temperatureC >= 65 ? 'bad' : ''),
    ...kv(t('field.signal'), `${fmtNum(tel.modem.rssiDbm)} dBm · ${tel.modem.operator}`, rssiClass(tel.modem.rssiDbm)),
    ...kv(t('field.clock'), fmtSigned(tel.clock.offsetMs, 0, 'ms'), Math.abs(tel.clock.offsetMs) > 200 ? 'fair' : ''),
    ...kv(t('field.lastSeen'), lastSeen(n)),
  );
}

function lastSeen(n) {
  const ts = n.lastSeenAt ?? state.details.get(n.id)?.ts ?? null;
  if (ts === null) return t('never');
  return h('time', { datetime: new Date(ts).toISOString(), title: fmtTime(ts) }, `${fmtClock(ts)} (${fmtAgo(ts)})`);
}

// ---------------------------------------------------------------------------------------------------
// Commands

/**
 * Command outputs remember how to draw themselves, so a language switch redraws the last result in
 * the new language. `text` may be a function of the current language.
 */
function setResult(out, kind, text) {
  out.hidden = false;
  out.className = `cmd-result result-${kind}`;
  out.dataset.status = kind;
  const draw = () => out.replaceChildren(typeof text === 'function' ? text() : text);
  out.redraw = draw;
  draw();
}

function redrawResults() {
  for (const out of document.querySelectorAll('output.cmd-result')) out.redraw?.();
}

function describeRow(r) {
  switch (r.status) {
    case 'ok': return `${t('cmd.ok')}${r.rttMs !== null && r.rttMs !== undefined ? ` (${t('cmd.rtt', { ms: Math.round(r.rttMs) })})` : ''}`;
    case 'timeout': return `${t('cmd.timeout')}${r.error ? ` – ${r.error}` : ''}`;
    case 'pending': return t('cmd.pending');
    default: return `${t('cmd.error')} – ${r.error ?? '?'}`;
  }
}

function renderCmdResult(out, scope, result) {
  out.redraw = () => renderCmdResult(out, scope, result);
  const label = t(`cmd.${result.name}`);
  const rows = result.results ?? [];
  const ok = rows.filter((r) => r.status === 'ok').length;
  const kind = ok === rows.length && rows.length > 0 ? 'ok' : rows.some((r) => r.status === 'timeout') && ok === 0 ? 'timeout' : ok > 0 ? 'partial' : 'error';
  out.hidden = false;
  out.className = `cmd-result result-${kind}`;
  out.dataset.status = kind;
  if (scope === 'node' && rows.length === 1) {
    out.replaceChildren(h('strong', {}, `${label}: `), describeRow(rows[0]));
    return;
  }
  out.replaceChildren(
    h('strong', {}, `${label}: `), t('cmd.summary', { ok, total: rows.length }),
    rows.some((r) => r.status !== 'ok')
      ? h('ul', { class: 'cmd-rows' }, rows.filter((r) => r.status !== 'ok').map((r) => h('li', {}, `${nodeName(r.nodeId)}: ${describeRow(r)}`)))
      : null,
  );
}

async function runCommand(scope, id, body, out, btn) {
  const hadFocus = document.activeElement === btn;
  if (btn) btn.disabled = true;
  setResult(out, 'pending', () => t('cmd.sending'));
  try {
    const r = await api('POST', `/${scope}s/${encodeURIComponent(id)}/commands`, body);
    renderCmdResult(out, scope, r);
    return r;
  } catch (e) {
    setResult(out, 'error', () => `${t(`cmd.${body.name}`)}: ${t('cmd.error')} – ${e.message}`);
    return null;
  } finally {
    if (btn) {
      btn.disabled = false;
      if (hadFocus && (document.activeElement === document.body || !document.activeElement)) btn.focus();
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Confirm dialog (translated; window.confirm would show browser-language buttons)

function confirmAction(message) {
  const dlg = $('#confirm-dialog');
  $('#confirm-message').textContent = message;
  return new Promise((resolve) => {
    const done = () => { dlg.removeEventListener('close', done); resolve(dlg.returnValue === 'ok'); };
    dlg.returnValue = '';
    dlg.addEventListener('close', done);
    dlg.showModal();
    $('#confirm-cancel').focus();
  });
}

// ---------------------------------------------------------------------------------------------------
// Node detail dialog

const detail = {}; // elements of the open dialog's action area

function openNode(id) {
  if (!state.nodes.has(id)) return;
  state.openNodeId = id;
  buildDetailActions();
  renderDetailInfo();
  const dlg = $('#node-dialog');
  if (!dlg.open) dlg.showModal();
  $('#nd-close').focus();
  void refreshDetail(id).catch((e) => showError(e.message));
}

function closeNodeDialog() {
  const dlg = $('#node-dialog');
  if (dlg.open) dlg.close();
  state.openNodeId = null;
}

function buildDetailActions() {
  const id = state.openNodeId;
  const n = state.nodes.get(id);
  if (!n) return;
  const tel = state.details.get(id)?.data;
  const prevVolume = detail.nodeId === id ? detail.range?.value : undefined;
  const vol = prevVolume ?? String(tel?.volume ?? 70);

  const range = h('input', { type: 'range', id: 'nd-vol-range', min: 0, max: 100, step: 1, value: vol, 'aria-label': t('detail.volume') });
  const num = h('input', { type: 'number', id: 'nd-vol', min: 0, max: 100, step: 1, value: vol, inputmode: 'numeric', required: true, class: 'input-num' });
  range.addEventListener('input', () => { num.value = range.value; });
  num.addEventListener('input', () => { if (num.value !== '') range.value = num.value; });
  const applyBtn = h('button', { type: 'submit', class: 'btn btn-primary' }, t('detail.applyVolume'));
  // On a language switch the dialog is rebuilt: keep the last result on screen.
  const out = detail.nodeId === id && detail.out ? detail.out : h('output', { id: 'nd-result', class: 'cmd-result', 'aria-live': 'polite', hidden: true });
  const volForm = h('form', { class: 'vol-form' },
    h('label', { for: 'nd-vol', class: 'field-label' }, t('detail.volume')),
    h('div', { class: 'vol-row' }, range, num, applyBtn));
  volForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!num.reportValidity()) return;
    const volume = Number(num.value);
    const r = await runCommand('node', id, { name: 'set_volume', params: { volume } }, out, applyBtn);
    if (r?.results?.[0]?.status === 'ok') patchTelemetry(id, { volume });
  });

  const muteBtn = h('button', { type: 'button', class: 'btn', id: 'nd-mute' });
  muteBtn.addEventListener('click', async () => {
    const mute = !(state.details.get(id)?.data?.mute ?? false);
    const r = await runCommand('node', id, { name: 'set_mute', params: { mute } }, out, muteBtn);
    if (r?.results?.[0]?.status === 'ok') patchTelemetry(id, { mute });
  });

  const dur = h('input', { type: 'number', id: 'nd-tone-dur', min: 0.1, max: 30, step: 0.1, value: 2, inputmode: 'decimal', class: 'input-num' });
  const freq = h('input', { type: 'number', id: 'nd-tone-freq', min: 50, max: 8000, step: 1, value: 1000, inputmode: 'numeric', class: 'input-num' });
  const toneBtn = h('button', { type: 'submit', class: 'btn' }, t('detail.testTone'));
  const toneForm = h('form', { class: 'tone-form' },
    h('label', { class: 'inline-field' }, t('detail.toneDuration'), dur),
    h('label', { class: 'inline-field' }, t('detail.toneFrequency'), freq),
    toneBtn);
  toneForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!dur.reportValidity() || !freq.reportValidity()) return;
    void runCommand('node', id, { name: 'test_tone', params: { durationMs: Math.round(Number(dur.value) * 1000), frequencyHz: Math.round(Number(freq.value)) } }, out, toneBtn);
  });

  const rebootBtn = h('button', { type: 'button', class: 'btn btn-danger' }, t('detail.reboot'));
  rebootBtn.addEventListener('click', async () => {
    if (!(await confirmAction(t('detail.confirmReboot', { name: nodeName(id) })))) return;
    await runCommand('node', id, { name: 'reboot', params: {} }, out, rebootBtn);
  });

  const maint = h('input', { type: 'checkbox', id: 'nd-maint', checked: n.maintenance, class: 'switch' });
  maint.addEventListener('change', async () => {
    const want = maint.checked;
    maint.disabled = true;
    try {
      const node = await api('PATCH', `/nodes/${encodeURIComponent(id)}`, { maintenance: want });
      state.nodes.set(id, { ...state.nodes.get(id), ...node, status: state.nodes.get(id)?.status ?? node.status });
      setResult(out, 'ok', () => (want ? t('detail.maintenanceOn') : t('detail.maintenanceOff')));
      renderAll();
    } catch (e) {
      maint.checked = !want;
      setResult(out, 'error', e.message);
    } finally {
      maint.disabled = false;
    }
  });

  $('#nd-actions').replaceChildren(
    h('h3', {}, t('detail.actions')),
    volForm,
    h('div', { class: 'action-row' }, muteBtn, rebootBtn),
    toneForm,
    h('label', { class: 'switch-label', for: 'nd-maint' }, maint, h('span', {}, t('detail.maintenance'))),
    out,
  );
  Object.assign(detail, { nodeId: id, range, num, muteBtn, out, maint });
}

/** After a command the node confirmed: show the new value before the next telemetry arrives. */
function patchTelemetry(id, patch) {
  const s = state.details.get(id);
  if (s?.data) Object.assign(s.data, patch);
  renderAll();
}

function renderDetailInfo() {
  const id = state.openNodeId;
  if (!id) return;
  const n = state.nodes.get(id);
  if (!n) { closeNodeDialog(); return; }
  const sample = state.details.get(id);
  const tel = sample?.data;
  $('#nd-title').textContent = n.name;
  $('#nd-status').replaceChildren(...statusEl(n.status), n.maintenance ? h('span', { class: 'badge badge-maint' }, t('node.maintenance')) : '');
  $('#nd-status').className = `status status-${n.status}`;
  if (detail.muteBtn) {
    const muted = tel?.mute ?? false;
    detail.muteBtn.textContent = muted ? t('detail.unmute') : t('detail.mute');
    detail.muteBtn.setAttribute('aria-pressed', String(muted));
  }
  if (detail.maint && document.activeElement !== detail.maint && !detail.maint.disabled) detail.maint.checked = n.maintenance;

  const alarms = [...state.alarms.values()].filter((a) => a.nodeId === id);
  const info = [];
  info.push(h('section', { 'aria-labelledby': 'nd-alarms-h' },
    h('h3', { id: 'nd-alarms-h' }, t('detail.alarms')),
    alarms.length
      ? h('ul', { class: 'mini-alarms' }, alarms.map((a) => h('li', { class: `sev-${a.severity}` },
        h('span', { class: `sev sev-${a.severity}` }, t(`severity.${a.severity}`)), ' ',
        h('strong', {}, t(`alarm.${a.type}`)), ' · ', fmtTime(a.raisedAt), a.detail ? ` · ${a.detail}` : '')))
      : h('p', { class: 'muted' }, t('alarms.none'))));

  const rows = [
    ...kv(t('field.id'), n.id),
    ...kv(t('field.zone'), zoneName(n.zoneId)),
    ...kv(t('field.statusSince'), fmtTime(n.statusChangedAt)),
    ...kv(t('field.lastSeen'), lastSeen(n)),
  ];
  if (n.position) rows.push(...kv(t('field.position'), `${fmtNum(n.position.lat, 5)}, ${fmtNum(n.position.lon, 5)}`));
  if (tel) {
    const p = tel.playing;
    rows.push(
      ...kv(t('field.telemetryAt'), fmtTime(sample.ts)),
      ...kv(t('field.uptime'), fmtDuration(tel.uptimeS)),
      ...kv(t('field.agentVersion'), tel.agentVersion),
      ...kv(t('field.firmwareVersion'), tel.firmwareVersion),
      ...kv(t('field.amplifier'), t(`amp.${tel.amplifier.state}`), tel.amplifier.state === 'fault' ? 'bad' : ''),
      ...kv(t('field.ampPower'), tel.amplifier.power ? t('yes') : t('no')),
      ...kv(t('field.ampTemp'), `${fmtNum(tel.amplifier.tempC, 1)} °C`),
      ...kv(t('field.volume'), String(tel.volume)),
      ...kv(t('field.mute'), tel.mute ? t('mute.on') : t('mute.off'), tel.mute ? 'fair' : ''),
      ...kv(t('field.power'), t(`power.${tel.power.source}`), tel.power.source === 'battery' ? 'fair' : ''),
      ...kv(t('field.mains'), `${fmtNum(tel.power.mainsV, 0)} V`),
      ...kv(t('field.battery'), `${fmtNum(tel.power.batteryV, 2)} V`),
    );
    if (typeof tel.power.batteryPct === 'number') rows.push(...kv(t('field.batteryPct'), `${fmtNum(tel.power.batteryPct, 0)} %`));
    rows.push(
      ...kv(t('field.temperature'), `${fmtNum(tel.temperatureC, 1)} °C`, tel.temperatureC >= 65 ? 'bad' : ''),
      ...kv(t('field.signal'), `${fmtNum(tel.modem.rssiDbm)} dBm`, rssiClass(tel.modem.rssiDbm)),
      ...kv(t('field.operator'), tel.modem.operator),
      ...kv(t('field.tech'), tel.modem.tech ? tel.modem.tech.toUpperCase() : t('unknown')),
      ...kv(t('field.gps'), tel.gps ? `${fmtNum(tel.gps.lat, 5)}, ${fmtNum(tel.gps.lon, 5)}${tel.gps.fix ? '' : ` (${t('gps.nofix')})`}` : t('gps.none')),
      ...kv(t('field.clock'), fmtSigned(tel.clock.offsetMs, 1, 'ms'), Math.abs(tel.clock.offsetMs) > 200 ? 'fair' : ''),
      ...kv(t('field.clockRtt'), `${fmtNum(tel.clock.rttMs, 1)} ms`),
      ...kv(t('field.clockDrift'), fmtSigned(tel.clock.driftPpm, 1, 'ppm')),
      ...kv(t('field.clockSynced'), tel.clock.synced ? t('yes') : t('no'), tel.clock.synced ? '' : 'fair'),
      ...kv(t('field.cache'), t('cache.value', { used: fmtBytes(tel.cache.usedBytes), cap: fmtBytes(tel.cache.capacityBytes), items: tel.cache.items })),
      ...kv(t('field.cacheMissing'), String(tel.cache.missingSoon ?? 0), tel.cache.missingSoon ? 'fair' : ''),
      ...kv(t('field.playing'), p ? `${t(`playing.${p.kind}`)}${p.title ? ` – ${p.title}` : ''} (${p.priority}) · ${fmtClock(p.startedAt)}` : t('playing.none')),
    );
    // Reception of the live session (current, or the last one for a while): what the 4G path did to it.
    const lv = tel.live;
    if (lv) {
      rows.push(
        ...kv(t('field.liveSession'), t('field.liveSessionValue', { id: lv.sessionId, state: t(`nstate.${lv.state}`) })),
        ...kv(t('field.liveLoss'), t('field.liveLossValue', { pct: fmtNum(lv.lossPct, 1), lost: lv.lost, red: lv.recoveredByRed }),
          lv.lossPct >= 5 ? 'bad' : lv.lossPct >= 1 ? 'fair' : ''),
        ...kv(t('field.liveJitter'), `${fmtNum(lv.jitterMs, 1)} ms`, lv.jitterMs >= 30 ? 'fair' : ''),
        ...kv(t('field.liveLate'), String(lv.late), lv.late > 0 ? 'fair' : ''),
      );
    }
  }
  info.push(h('section', { 'aria-labelledby': 'nd-tel-h' },
    h('h3', { id: 'nd-tel-h' }, t('detail.telemetry')),
    h('dl', { class: 'kv kv-detail' }, rows),
    tel ? null : h('p', { class: 'muted' }, sample === undefined ? t('detail.loading') : t('node.noTelemetry'))));

  const lines = tel?.lines ?? [];
  info.push(h('section', { 'aria-labelledby': 'nd-lines-h' },
    h('h3', { id: 'nd-lines-h' }, t('lines.heading')),
    lines.length
      ? h('div', { class: 'table-wrap' }, h('table', { class: 'lines' },
        h('thead', {}, h('tr', {}, ['lines.id', 'lines.impedance', 'lines.nominal', 'lines.fault'].map((k) => h('th', { scope: 'col' }, t(k))))),
        h('tbody', {}, lines.map((l) => h('tr', { class: `line-${l.fault}` },
          h('th', { scope: 'row' }, l.id), h('td', {}, fmtOhm(l.impedanceOhm)), h('td', {}, fmtOhm(l.nominalOhm)),
          h('td', { class: l.fault === 'ok' ? 'good' : 'bad' }, t(`fault.${l.fault}`)))))))
      : h('p', { class: 'muted' }, t('lines.none'))));
  $('#nd-info').replaceChildren(...info);
}

// ---------------------------------------------------------------------------------------------------
// Live broadcast from the console microphone, and the one-press emergency (issue 5)
//
// Capture: getUserMedia (no echo cancellation, noise suppression or AGC: the controller runs its own
// AGC and limiter, and the browser's processing adds latency and pumping) → an AudioContext at 48 kHz
// where the browser allows it → AudioWorklet `mic-capture` (mic-worklet.js: mono, resampled to 48 kHz
// if the context runs at another rate, 20 ms float32 blocks) → one binary WebSocket frame per block on
// the session's microphone path with `format=f32le`.
//
// Why AudioWorklet PCM and not MediaRecorder/Opus (issue 5: pick by measured latency). Measured in
// headless Chromium 156 on the fake microphone (test/e2e/console-live.test.ts prints the figures each
// run): MediaRecorder('audio/webm;codecs=opus') asked for 20 ms timeslices delivers its first chunk
// ~60–65 ms after start() and then one chunk every 60 ms (it packs 60 ms of Opus per WebM block,
// whatever the timeslice; other browsers and older Chromium are commonly reported at 100–250 ms or
// more); the worklet posts its first 20 ms block ~14 ms after start and then one every 20 ms. So
// MediaRecorder costs ≥ 40 ms more on every frame, and the controller would also have to demux WebM
// and decode Opus before its AGC and limiter, then encode Opus again (a second lossy generation).
// PCM costs 1.5 Mbit/s on the operator's LAN/uplink, which a console microphone can afford.

const LIVE_RATE = 48_000;
const LIVE_FRAME_SAMPLES = 960; // 20 ms at 48 kHz
/** More than this queued on the socket (≈ 500 ms of float32) and new blocks are dropped, not queued: late speech is worse than a gap. */
const LIVE_MAX_BUFFERED_BYTES = (LIVE_RATE * 4) / 2;
/** A microphone block older than this when the page gets to it is dropped (s). */
const LIVE_STALE_S = 0.2;
/** Audio ahead of real time (since the socket's first frame) allowed before blocks are dropped: 250 ms. */
const LIVE_BURST_SAMPLES = LIVE_RATE / 4;
const LIVE_POLL_MS = 1000;
const LIVE_WS_RETRIES = 3;
const REACH_MAX_NAMES = 6;

/** Sessions whose reach the page follows: sessionId → {id, view, onUpdate, fetching, again}. */
const trackers = new Map();
let trackerPoll = null;

const live = {
  phase: 'idle', // idle | mic | starting | connecting | reconnecting | waiting | speak | stopping | ended
  view: null,
  error: null, // () => text, so a language switch redraws it
  stream: null, ctx: null, node: null,
  ws: null, wsRetries: 0, retryTimer: null,
  peak: 0, shown: 0, raf: 0,
  framesSent: 0, framesDropped: 0, framesStale: 0, framesAhead: 0, sendStartMs: null, samplesSent: 0, firstFrameMs: null, startedMs: 0,
};

const em = { phase: 'idle', view: null, error: null, media: null, mediaLoading: false };

let livePicker = null;
let emPicker = null;

// -------------------------------------------------------------------- targets (commune / zones / clusters)

function createTargetPicker(container, name) {
  const p = { name, container, mode: 'commune', zones: new Set(), nodes: new Set(), sig: '', fieldset: null, disabled: false };
  container.addEventListener('change', (e) => {
    const el = e.target;
    if (el.name === `${name}-mode`) { p.mode = el.value; p.sig = ''; renderTargetPicker(p); return; }
    const set = el.dataset.zone ? p.zones : el.dataset.node ? p.nodes : null;
    const id = el.dataset.zone ?? el.dataset.node;
    if (set) { if (el.checked) set.add(id); else set.delete(id); }
  });
  return p;
}

function renderTargetPicker(p) {
  const collator = new Intl.Collator(locale(), { numeric: true });
  const zones = [...state.zones.values()].sort((a, b) => collator.compare(a.name, b.name));
  const nodes = [...state.nodes.values()].sort((a, b) => collator.compare(a.name, b.name));
  const sig = JSON.stringify([state.lang, p.mode, zones.map((z) => [z.id, z.name]), p.mode === 'nodes' ? nodes.map((n) => [n.id, n.name, n.zoneId, n.status]) : nodes.length]);
  if (sig === p.sig) return;
  p.sig = sig;
  const focusedId = p.container.contains(document.activeElement) ? document.activeElement.id : null;
  const radio = (value, key) => h('label', { class: 'choice-item' },
    h('input', { type: 'radio', name: `${p.name}-mode`, id: `${p.name}-mode-${value}`, value, checked: p.mode === value }), ' ', h('span', {}, t(key)));
  const check = (kind, id, label, extra) => h('label', { class: 'check-item' },
    h('input', { type: 'checkbox', id: `${p.name}-${kind}-${id}`, [`data-${kind}`]: id, checked: (kind === 'zone' ? p.zones : p.nodes).has(id) }),
    ' ', h('span', {}, label), extra ?? null);
  let list = null;
  if (p.mode === 'zones') {
    list = zones.length
      ? h('div', { class: 'check-list' }, zones.map((z) => check('zone', z.id, z.name,
        h('span', { class: 'muted' }, ` · ${t('zones.nodeCount', { n: nodes.filter((n) => n.zoneId === z.id).length })}`))))
      : h('p', { class: 'muted' }, t('tg.empty'));
  } else if (p.mode === 'nodes') {
    list = nodes.length
      ? h('div', { class: 'check-groups' }, [...new Set(nodes.map((n) => n.zoneId))].sort((a, b) => collator.compare(zoneName(a), zoneName(b))).map((zid) =>
        h('div', { class: 'check-group' }, h('p', { class: 'check-group-title' }, zoneName(zid)),
          h('div', { class: 'check-list' }, nodes.filter((n) => n.zoneId === zid).map((n) => check('node', n.id, n.name,
            h('span', { class: `dot dot-${n.status}`, title: t(`status.${n.status}`), 'aria-label': t(`status.${n.status}`) })))))))
      : h('p', { class: 'muted' }, t('tg.empty'));
  }
  p.fieldset = h('fieldset', { class: 'choice', disabled: p.disabled },
    h('legend', { class: 'field-label' }, t('tg.legend')),
    h('div', { class: 'choice-row' }, radio('commune', 'tg.commune'), radio('zones', 'tg.zones'), radio('nodes', 'tg.nodes')),
    list);
  p.container.replaceChildren(p.fieldset);
  if (focusedId) document.getElementById(focusedId)?.focus();
}

function setPickerDisabled(p, disabled) {
  if (p.disabled === disabled) return;
  p.disabled = disabled;
  if (p.fieldset) p.fieldset.disabled = disabled;
}

/** The API's `targets`, or null when nothing is chosen. Ids of zones/clusters deleted meanwhile are left out. */
function pickerTargets(p) {
  if (p.mode === 'commune') return { commune: true };
  if (p.mode === 'zones') { const zones = [...p.zones].filter((id) => state.zones.has(id)); return zones.length ? { zones } : null; }
  const nodes = [...p.nodes].filter((id) => state.nodes.has(id));
  return nodes.length ? { nodes } : null;
}

function describeTargets(targets) {
  if (targets.commune) return t('em.targetsCommune');
  if (targets.zones?.length) return targets.zones.length <= 3 ? targets.zones.map(zoneName).join(', ') : t('em.targetsZones', { n: targets.zones.length });
  return targets.nodes.length <= 3 ? targets.nodes.map(nodeName).join(', ') : t('em.targetsNodes', { n: targets.nodes.length });
}

// -------------------------------------------------------------------- reach of a session

function whyText(x) {
  // Its hello reaches the controller but our packets do not reach it (controller/src/live/index.ts).
  if (x.state === 'joining' && x.reason?.startsWith('one-way')) return t('nstate.oneWay');
  const s = t(`nstate.${x.state}`);
  // A refusal or failure carries the cluster's own reason (from the device, in English): shown as is.
  return (x.state === 'refused' || x.state === 'failed') && x.reason ? `${s}: ${x.reason}` : s;
}

function namesWithWhy(items) {
  const parts = items.slice(0, REACH_MAX_NAMES).map((x) => `${nodeName(x.nodeId)} (${whyText(x)})`);
  if (items.length > REACH_MAX_NAMES) parts.push(t('reach.more', { n: items.length - REACH_MAX_NAMES }));
  return parts.join(', ');
}

/** "Đang phát ở 5/6 cụm; không phát: Cụm loa 2 (ngoại tuyến)", or the final figures of an ended session. */
function reachText(view) {
  const r = view.reach;
  if (view.state === 'ended' && Array.isArray(view.nodes)) {
    const missed = view.nodes.filter((n) => n.firstPlayingAt === undefined || n.firstPlayingAt === null)
      .map((n) => ({ nodeId: n.nodeId, state: n.state === 'announced' && !n.online ? 'offline' : n.state, reason: n.reason }));
    const played = view.nodes.length - missed.length;
    return t('reach.final', { played, targets: r.targets }) + (missed.length ? `; ${t('reach.notPlayed', { list: namesWithWhy(missed) })}` : '');
  }
  const notPlaying = r.notPlaying ?? [];
  return t('reach.playing', { playing: r.playing, targets: r.targets }) + (notPlaying.length ? `; ${t('reach.notPlaying', { list: namesWithWhy(notPlaying) })}` : '');
}

function endReasonText(reason) {
  if (!reason) return t('unknown');
  const key = `end.${reason.split(':')[0]}`;
  const s = t(key);
  return s === key ? reason : reason.includes(':') ? `${s} (${reason.slice(reason.indexOf(':') + 1).trim()})` : s;
}

/**
 * Follow a session's reach: every `live.session` event for it updates the counts at once and fetches
 * the full view (who is not playing, and why); while the events WebSocket is down, the view is polled
 * once a second instead.
 */
function trackSession(view, onUpdate) {
  const tr = { id: view.sessionId, view, onUpdate, fetching: false, again: false };
  trackers.set(tr.id, tr);
  onUpdate(view);
  // Events sent between the POST's answer and this registration were not routed here: catch up once.
  void fetchSession(tr);
  if (!trackerPoll) {
    trackerPoll = setInterval(() => {
      if (trackers.size === 0) { clearInterval(trackerPoll); trackerPoll = null; return; }
      if (state.live === 'on') return;
      for (const x of trackers.values()) void fetchSession(x);
    }, LIVE_POLL_MS);
  }
  return tr;
}

async function fetchSession(tr) {
  if (tr.fetching) { tr.again = true; return; }
  tr.fetching = true;
  try {
    const v = await api('GET', `/live/sessions/${encodeURIComponent(tr.id)}`);
    if (trackers.get(tr.id) !== tr) return;
    tr.view = v;
    if (v.state === 'ended') trackers.delete(tr.id);
    tr.onUpdate(v);
  } catch (e) {
    if (e.status === 404) trackers.delete(tr.id);
    // Other failures: the next event or poll tries again.
  } finally {
    tr.fetching = false;
    if (tr.again && trackers.get(tr.id) === tr) { tr.again = false; void fetchSession(tr); }
  }
}

function onLiveSessionEvent(ev) {
  const tr = trackers.get(ev.sessionId);
  if (!tr) return;
  tr.view = { ...tr.view, state: ev.state, speakNow: ev.speakNow, endReason: ev.endReason ?? tr.view.endReason, reach: { ...tr.view.reach, targets: ev.targets, ready: ev.ready, playing: ev.playing } };
  tr.onUpdate(tr.view);
  void fetchSession(tr);
}

// -------------------------------------------------------------------- live voice

function micErrorText(err) {
  switch (err?.name) {
    case 'NotAllowedError': case 'PermissionDeniedError': case 'SecurityError': return () => t('lv.micDenied');
    case 'NotFoundError': case 'DevicesNotFoundError': case 'OverconstrainedError': return () => t('lv.micMissing');
    case 'NotReadableError': case 'TrackStartError': case 'AbortError': return () => t('lv.micBusy');
    case 'InsecureContext': return () => t('lv.micInsecure');
    case 'NoAudioWorklet': return () => t('lv.micUnsupported');
    default: return () => t('lv.micError', { msg: err?.message ?? String(err) });
  }
}

async function openMic() {
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) throw Object.assign(new Error('insecure context'), { name: 'InsecureContext' });
  if (typeof AudioWorkletNode === 'undefined') throw Object.assign(new Error('no AudioWorklet'), { name: 'NoAudioWorklet' });
  live.stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
  });
  let ctx;
  try {
    ctx = new AudioContext({ sampleRate: LIVE_RATE, latencyHint: 'interactive' });
  } catch {
    ctx = new AudioContext({ latencyHint: 'interactive' }); // the worklet resamples to 48 kHz
  }
  live.ctx = ctx;
  await ctx.audioWorklet.addModule('/web/mic-worklet.js');
  const source = ctx.createMediaStreamSource(live.stream);
  const node = new AudioWorkletNode(ctx, 'mic-capture', {
    numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1], channelCount: 1, channelCountMode: 'explicit',
    processorOptions: { frameSamples: LIVE_FRAME_SAMPLES },
  });
  node.port.onmessage = (m) => onMicBlock(m.data);
  // The graph must pull the node for it to run: a muted gain into the destination does that without
  // playing the operator's voice back into the room (and into the microphone).
  const silent = ctx.createGain();
  silent.gain.value = 0;
  source.connect(node).connect(silent).connect(ctx.destination);
  live.node = node;
  live.stream.getAudioTracks()[0]?.addEventListener('ended', () => {
    if (live.node) finishLive(() => t('lv.micEnded'), true);
  });
  if (ctx.state === 'suspended') await ctx.resume();
  live.startedMs = performance.now();
}

function releaseMic() {
  clearTimeout(live.retryTimer);
  live.retryTimer = null;
  const ws = live.ws;
  live.ws = null; // before close(): its close handler must not act
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, 'stopped');
  try { live.node?.port.postMessage('stop'); live.node?.disconnect(); } catch { /* already gone */ }
  for (const tr of live.stream?.getTracks() ?? []) tr.stop();
  void live.ctx?.close().catch(() => {});
  live.node = null;
  live.stream = null;
  live.ctx = null;
  live.peak = 0;
  live.shown = 0;
  drawMeter();
}

function onMicBlock(msg) {
  if (!msg?.pcm) return;
  if (live.firstFrameMs === null) live.firstFrameMs = performance.now() - live.startedMs;
  live.peak = Math.max(live.peak, msg.peak);
  if (!live.raf) live.raf = requestAnimationFrame(drawMeter);
  const ws = live.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  // A block that sat in this page's queue (main thread busy) is stale: sending a backlog in one burst
  // would arrive faster than real time, and the controller drops that (and closes with 4429).
  if (live.ctx && typeof msg.t === 'number' && live.ctx.currentTime - msg.t > LIVE_STALE_S) { live.framesStale++; return; }
  if (ws.bufferedAmount > LIVE_MAX_BUFFERED_BYTES) { live.framesDropped++; return; }
  // The controller admits at most real time + a 500 ms burst since the first frame on this socket
  // (controller/src/live/index.ts). An audio thread catching up after a stall can run ahead of
  // that: drop here, within a smaller burst, so the controller never sees a flood (4429).
  const now = performance.now();
  if (live.sendStartMs === null) { live.sendStartMs = now; live.samplesSent = 0; }
  if (live.samplesSent + msg.pcm.length > ((now - live.sendStartMs) / 1000) * LIVE_RATE + LIVE_BURST_SAMPLES) { live.framesAhead++; return; }
  live.samplesSent += msg.pcm.length;
  // Float32Array bytes are the platform's order: little-endian on every platform browsers run on,
  // which is what `format=f32le` means.
  ws.send(msg.pcm.buffer);
  live.framesSent++;
}

function drawMeter() {
  live.raf = 0;
  // Peak meter with a decay (fast attack, ~0.3 s release at 60 frames/s), −60…0 dBFS.
  live.shown = Math.max(live.peak, live.shown * 0.85);
  live.peak = 0;
  const db = live.shown > 1e-6 ? 20 * Math.log10(live.shown) : -Infinity;
  const pct = Number.isFinite(db) ? Math.max(0, Math.min(100, ((db + 60) / 60) * 100)) : 0;
  const bar = $('#live-meter-bar');
  bar.style.width = `${pct.toFixed(1)}%`;
  bar.className = `meter-bar${db > -3 ? ' meter-hot' : db > -12 ? ' meter-warm' : ''}`;
  $('#live-meter-text').textContent = live.node ? (Number.isFinite(db) && db > -60 ? `${fmtNum(db, 0)} dBFS` : '−∞') : '';
  const panel = $('#live-panel');
  panel.dataset.framesSent = String(live.framesSent);
  panel.dataset.framesDropped = String(live.framesDropped);
  panel.dataset.framesStale = String(live.framesStale);
  panel.dataset.framesAhead = String(live.framesAhead);
  if (live.node && live.shown > 0.001) live.raf = requestAnimationFrame(drawMeter);
}

function connectMic() {
  if (!live.view || !state.session) return;
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  // Browsers cannot set headers on a WebSocket: the token goes in the query, as for /events.
  const ws = new WebSocket(`${proto}://${location.host}${live.view.micPath}?token=${encodeURIComponent(state.session.token)}&format=f32le`);
  ws.binaryType = 'arraybuffer';
  live.ws = ws;
  live.sendStartMs = null; // the controller restarts its real-time budget on every connection
  ws.addEventListener('open', () => {
    if (live.ws !== ws) return;
    live.wsRetries = 0;
    setLivePhase(live.view?.speakNow ? 'speak' : 'waiting');
  });
  ws.addEventListener('close', (e) => {
    if (live.ws !== ws) return;
    live.ws = null;
    onMicClose(e.code);
  });
}

/** Close codes of the microphone WebSocket (controller/src/http/routes/live.ts). */
function onMicClose(code) {
  if (!['connecting', 'reconnecting', 'waiting', 'speak'].includes(live.phase)) return;
  switch (code) {
    case 1000: // the session ended on the controller (stopped elsewhere, shutdown…): the view says why
      finishLive(null, false);
      return;
    case 4404: case 4408:
      finishLive(() => t(`lv.ws${code}`), false);
      return;
    case 4409:
      // Another console holds this session's microphone: leave the session to it.
      finishLive(() => t('lv.ws4409'), false);
      return;
    case 4400: case 4429:
      finishLive(() => t(`lv.ws${code}`), true);
      return;
    default:
      // A dropped link (1006): the controller keeps the session for its stall timeout, so reconnect at once.
      if (live.wsRetries < LIVE_WS_RETRIES) {
        live.wsRetries++;
        setLivePhase('reconnecting');
        live.retryTimer = setTimeout(connectMic, 250 * live.wsRetries);
        return;
      }
      finishLive(() => t('lv.wsLost', { code }), true);
  }
}

/** The microphone side is over: release it, show why, end the session on the controller if asked. */
function finishLive(errorText, stopRemote) {
  const id = live.view?.sessionId;
  releaseMic();
  live.error = errorText;
  setLivePhase('ended');
  if (!id) return;
  if (stopRemote && live.view?.state === 'active') {
    void api('POST', `/live/sessions/${encodeURIComponent(id)}/stop`).then((v) => onLiveView(v)).catch(() => {});
  } else {
    const tr = trackers.get(id);
    if (tr) void fetchSession(tr);
  }
}

function onLiveView(view) {
  if (!live.view || view.sessionId !== live.view.sessionId) return;
  live.view = view;
  if (view.state === 'ended' && ['connecting', 'reconnecting', 'waiting', 'speak'].includes(live.phase)) {
    finishLive(null, false);
    return;
  }
  if (live.phase === 'waiting' || live.phase === 'speak') live.phase = view.speakNow ? 'speak' : 'waiting';
  renderLivePanel();
}

function setLivePhase(phase) {
  live.phase = phase;
  renderLivePanel();
}

async function onLiveStart(e) {
  e.preventDefault();
  if (live.phase !== 'idle' && live.phase !== 'ended') return;
  live.error = null;
  const titleEl = $('#live-title');
  const title = titleEl.value.trim();
  if (!title) { live.error = () => t('lv.titleRequired'); renderLivePanel(); titleEl.focus(); return; }
  const targets = pickerTargets(livePicker);
  if (!targets) { live.error = () => t('tg.noneChosen'); renderLivePanel(); return; }
  const priority = $('#live-priority').value;
  if (priority === 'emergency' && !(await confirmAction(t('lv.confirmEmergency', { targets: describeTargets(targets) })))) return;
  live.view = null;
  live.framesSent = 0;
  live.framesDropped = 0;
  live.framesStale = 0;
  live.framesAhead = 0;
  live.firstFrameMs = null;
  live.wsRetries = 0;
  // The microphone first: a refused permission must not leave a session waiting for a voice.
  setLivePhase('mic');
  try {
    await openMic();
  } catch (err) {
    releaseMic();
    live.error = micErrorText(err);
    setLivePhase('idle');
    return;
  }
  setLivePhase('starting');
  let view;
  try {
    view = await api('POST', '/live/sessions', { kind: 'voice', title, priority, targets });
  } catch (err) {
    releaseMic();
    live.error = () => err.message;
    setLivePhase('idle');
    return;
  }
  live.view = view;
  live.phase = 'connecting';
  trackSession(view, onLiveView);
  connectMic();
  $('#live-stop').focus();
}

async function onLiveStop() {
  const id = live.view?.sessionId;
  if (!id || !['connecting', 'reconnecting', 'waiting', 'speak'].includes(live.phase)) return;
  setLivePhase('stopping');
  try {
    const v = await api('POST', `/live/sessions/${encodeURIComponent(id)}/stop`);
    live.view = v;
    trackers.get(id) && void fetchSession(trackers.get(id));
  } catch (err) {
    live.error = () => err.message;
  } finally {
    releaseMic();
    setLivePhase('ended');
    $('#live-start').focus();
  }
}

function renderLivePanel() {
  const p = live.phase;
  const busy = p !== 'idle' && p !== 'ended';
  $('#live-panel').dataset.state = p;
  $('#live-start').disabled = busy;
  $('#live-stop').disabled = !busy || p === 'mic' || p === 'starting' || p === 'stopping';
  $('#live-title').disabled = busy;
  $('#live-priority').disabled = busy;
  if (livePicker) setPickerDisabled(livePicker, busy);
  $('#live-session').hidden = p === 'idle';
  const speak = $('#live-speak');
  const v = live.view;
  let text = '';
  let cls = 'speak-wait';
  switch (p) {
    case 'idle': break;
    case 'mic': text = t('lv.mic'); break;
    case 'starting': text = t('lv.starting'); break;
    case 'connecting': text = t('lv.connecting'); break;
    case 'reconnecting': text = t('lv.reconnecting'); cls = 'speak-warn'; break;
    case 'waiting': text = t('lv.waiting', { ready: (v?.reach.ready ?? 0) + (v?.reach.playing ?? 0), targets: v?.reach.targets ?? 0 }); break;
    case 'speak': text = t('lv.speak'); cls = 'speak-go'; break;
    case 'stopping': text = t('lv.stopping'); break;
    case 'ended': text = v ? t('lv.ended', { reason: endReasonText(v.endReason) }) : ''; cls = 'speak-ended'; break;
  }
  if (speak.textContent !== text) speak.textContent = text;
  speak.className = `speak-now ${cls}`;
  speak.dataset.speak = String(p === 'speak');
  const reach = v ? reachText(v) : '';
  if ($('#live-reach').textContent !== reach) $('#live-reach').textContent = reach;
  $('#live-meter-text').closest('.meter-row').hidden = !live.node;
  const err = $('#live-error');
  err.textContent = live.error ? live.error() : '';
  err.hidden = !live.error;
}

// -------------------------------------------------------------------- emergency (one press)

async function loadEmergencyMedia() {
  if (em.mediaLoading) return;
  em.mediaLoading = true;
  try {
    const r = await api('GET', '/media?limit=200');
    em.media = r.items ?? [];
  } catch (e) {
    em.media = [];
    em.error = () => e.message;
  } finally {
    em.mediaLoading = false;
    renderEmPanel();
  }
}

function emContentMode() {
  return document.querySelector('input[name="em-content"]:checked')?.value ?? 'text';
}

async function onEmStart(e) {
  e.preventDefault();
  if (em.phase === 'sending' || em.phase === 'active') return;
  em.error = null;
  const mode = emContentMode();
  const text = $('#em-text').value.trim();
  const mediaId = $('#em-media').value;
  if (mode === 'text' && !text) { em.error = () => t('em.textRequired'); renderEmPanel(); $('#em-text').focus(); return; }
  if (mode === 'media' && !mediaId) { em.error = () => t('em.mediaRequired'); renderEmPanel(); return; }
  const targets = pickerTargets(emPicker);
  if (!targets) { em.error = () => t('tg.noneChosen'); renderEmPanel(); return; }
  const rep = $('#em-repeat');
  if (!rep.reportValidity()) return;
  const repeat = Number(rep.value);
  if (!(await confirmAction(t('em.confirm', { targets: describeTargets(targets), repeat })))) return;
  const mediaTitle = em.media?.find((m) => m.id === mediaId)?.title;
  const title = (mode === 'text' ? text : mediaTitle ?? t('em.title')).slice(0, 120);
  em.phase = 'sending';
  em.view = null;
  renderEmPanel();
  try {
    const view = await api('POST', '/live/emergency', { title, targets, repeat, ...(mode === 'text' ? { text } : { mediaId }) });
    em.view = view;
    em.phase = view.state === 'ended' ? 'ended' : 'active';
    trackSession(view, onEmView);
  } catch (err) {
    em.phase = 'idle';
    em.error = () => err.message;
    renderEmPanel();
  }
}

function onEmView(view) {
  if (!em.view || em.view.sessionId !== view.sessionId) return;
  em.view = view;
  if (view.state === 'ended') em.phase = 'ended';
  renderEmPanel();
}

async function onEmStop() {
  const id = em.view?.sessionId;
  if (!id || em.phase !== 'active') return;
  if (!(await confirmAction(t('em.confirmStop')))) return;
  try {
    const v = await api('POST', `/live/sessions/${encodeURIComponent(id)}/stop`);
    onEmView(v);
  } catch (err) {
    em.error = () => err.message;
    renderEmPanel();
  }
}

function renderEmPanel() {
  const mode = emContentMode();
  $('#em-text-field').hidden = mode !== 'text';
  $('#em-media-field').hidden = mode !== 'media';
  const busy = em.phase === 'sending' || em.phase === 'active';
  $('#em-start').disabled = busy;
  $('#em-stop').hidden = em.phase !== 'active';
  if (emPicker) setPickerDisabled(emPicker, busy);
  if (mode === 'media') {
    const sel = $('#em-media');
    const items = em.media ?? [];
    const sig = JSON.stringify([state.lang, em.media === null, items.map((m) => [m.id, m.title])]);
    if (sel.dataset.sig !== sig) {
      const keep = sel.value;
      sel.dataset.sig = sig;
      sel.replaceChildren(...(items.length
        ? items.map((m) => h('option', { value: m.id }, `${m.title} (${fmtDuration(m.durationMs / 1000)})`))
        : [h('option', { value: '' }, em.media === null ? t('detail.loading') : t('em.noMedia'))]));
      if (items.some((m) => m.id === keep)) sel.value = keep;
      sel.disabled = items.length === 0;
    }
  }
  $('#em-session').hidden = em.phase === 'idle';
  const v = em.view;
  const st = em.phase === 'sending' ? t('em.sending') : em.phase === 'active' ? t('em.active', { title: v?.title ?? '' })
    : em.phase === 'ended' && v ? t('lv.ended', { reason: endReasonText(v.endReason) }) : '';
  $('#em-state').textContent = st;
  $('#em-state').className = `em-state${em.phase === 'active' ? ' em-on' : ''}`;
  const reach = v ? reachText(v) : '';
  if ($('#em-reach').textContent !== reach) $('#em-reach').textContent = reach;
  $('#em-panel').dataset.state = em.phase;
  const err = $('#em-error');
  err.textContent = em.error ? em.error() : '';
  err.hidden = !em.error;
}

function renderBroadcast() {
  if (livePicker) renderTargetPicker(livePicker);
  if (emPicker) renderTargetPicker(emPicker);
  if (!$('#live-title').value && document.activeElement !== $('#live-title')) $('#live-title').value = t('lv.defaultTitle');
  renderLivePanel();
  renderEmPanel();
}

/** Logout or an expired login: the microphone goes, the pages's sessions are forgotten. */
function resetBroadcast() {
  releaseMic();
  trackers.clear();
  clearInterval(trackerPoll);
  trackerPoll = null;
  Object.assign(live, { phase: 'idle', view: null, error: null });
  Object.assign(em, { phase: 'idle', view: null, error: null, media: null });
  $('#em-media').dataset.sig = '';
  for (const p of [livePicker, emPicker]) if (p) { p.zones.clear(); p.nodes.clear(); p.sig = ''; }
}

function initBroadcast() {
  livePicker = createTargetPicker($('#live-targets'), 'lv');
  emPicker = createTargetPicker($('#em-targets'), 'em');
  $('#live-form').addEventListener('submit', (e) => void onLiveStart(e));
  $('#live-stop').addEventListener('click', () => void onLiveStop());
  $('#em-form').addEventListener('submit', (e) => void onEmStart(e));
  $('#em-stop').addEventListener('click', () => void onEmStop());
  for (const r of document.querySelectorAll('input[name="em-content"]')) {
    r.addEventListener('change', () => {
      if (emContentMode() === 'media' && em.media === null) void loadEmergencyMedia();
      renderEmPanel();
    });
  }
}

// ---------------------------------------------------------------------------------------------------
// Language

function setLang(lang) {
  if (!LANGS.includes(lang)) return;
  state.lang = lang;
  try { localStorage.setItem(LANG_KEY, lang); } catch { /* private mode: the choice lasts this page only */ }
  applyStaticI18n();
  if (state.openNodeId) buildDetailActions();
  renderAll();
  redrawResults();
  if (!$('#login-view').hidden) {
    $('#login-submit').textContent = t('login.submit');
  }
}

// ---------------------------------------------------------------------------------------------------
// Start

function init() {
  const saved = (() => { try { return localStorage.getItem(LANG_KEY); } catch { return null; } })();
  state.lang = LANGS.includes(saved) ? saved : 'vi';
  applyStaticI18n();
  $('#login-form').addEventListener('submit', (e) => void onLogin(e));
  $('#logout').addEventListener('click', () => void onLogout());
  $('#lang-toggle').addEventListener('click', () => setLang(state.lang === 'vi' ? 'en' : 'vi'));
  $('#nd-close').addEventListener('click', () => closeNodeDialog());
  initBroadcast();
  $('#node-dialog').addEventListener('close', () => { state.openNodeId = null; detail.nodeId = undefined; });
  // A click on the backdrop (outside the dialog box) closes it, as on most phone UIs.
  $('#node-dialog').addEventListener('click', (e) => { if (e.target === e.currentTarget) closeNodeDialog(); });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.session && !state.refreshing) void refreshLoop();
  });
  state.session = loadSession();
  if (state.session) enterConsole();
  else showLogin();
  document.body.classList.add('ready');
}

init();
