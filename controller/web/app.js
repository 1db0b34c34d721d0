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
  $('#zone-list').replaceChildren();
  zoneViews.clear();
  nodeViews.clear();
}

async function onLogout() {
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
    // Events sent before this socket opened (link down, or the first page load racing the socket)
    // never reach it: catch up from the API.
    void refreshAll().catch((e) => { if (state.session) showError(e.message); });
    return;
  }
  if (ev.type === 'command.reply' || ev.type === 'job.progress') return;
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
  const section = h('section', { class: 'zone', 'aria-labelledby': hid, 'data-testid': `zone-${zid}` },
    h('div', { class: 'zone-head' }, h('h3', { id: hid }, title, ' ', count), form), out, grid);
  const zv = { section, title, count, grid, volume, volLabel, applyBtn, toneBtn, form, out };
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
  const none = nodes.length === 0 || !state.zones.has(zid);
  zv.applyBtn.disabled = none;
  zv.toneBtn.disabled = none;
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
