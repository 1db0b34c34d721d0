import { XMLParser, XMLValidator } from 'fast-xml-parser';
import type { CapMsgType, CapScope, CapStatus } from '../../../schemas/src/index.js';
import { AppError } from '../errors.js';

/** OASIS CAP 1.2 namespace (CAP 1.2 §3.3.1). Anything else (1.1, 1.0, none) is refused. */
export const CAP_NS = 'urn:oasis:names:tc:emergency:cap:1.2';

/** Largest CAP body accepted, bytes. Text alerts are a few KiB; embedded resources (derefUri) we do not use. */
export const CAP_MAX_BYTES = 512 * 1024;

export type CapErrorCode =
  | 'CAP_NOT_XML' | 'CAP_MALFORMED_XML' | 'CAP_DTD_FORBIDDEN' | 'CAP_WRONG_ROOT' | 'CAP_WRONG_NAMESPACE'
  | 'CAP_MISSING_ELEMENT' | 'CAP_INVALID_VALUE' | 'CAP_EXPIRED' | 'CAP_SENT_IN_FUTURE' | 'CAP_TOO_LARGE';

/** A CAP message that cannot be accepted; `element` names the offending element path (`alert.info[0].urgency`). */
export class CapError extends AppError {
  constructor(code: CapErrorCode, message: string, readonly element?: string, status = 400) {
    super(status, code, message);
    this.name = 'CapError';
  }
}

export interface CapPoint { lat: number; lon: number }
export interface CapCircle { center: CapPoint; radiusKm: number }
export interface CapGeocode { valueName: string; value: string }
export interface CapArea {
  areaDesc: string;
  /** Closed rings (first point = last point), ≥ 4 points each. */
  polygons: CapPoint[][];
  circles: CapCircle[];
  geocodes: CapGeocode[];
}
export interface CapInfo {
  language: string;
  category: string[];
  event: string;
  urgency: string;
  severity: string;
  certainty: string;
  senderName?: string;
  headline?: string;
  description?: string;
  instruction?: string;
  effective?: string;
  onset?: string;
  expires?: string;
  expiresMs?: number;
  areas: CapArea[];
}
export interface CapReference { sender: string; identifier: string; sent: string; sentMs: number }
export interface CapAlert {
  identifier: string;
  sender: string;
  sent: string;
  sentMs: number;
  status: CapStatus;
  msgType: CapMsgType;
  scope: CapScope;
  source?: string;
  restriction?: string;
  addresses?: string;
  note?: string;
  references: CapReference[];
  info: CapInfo[];
}

export interface CapParseOptions {
  /** Controller time, epoch ms: expiry and future checks are made against it. */
  now: number;
  /** How far `sent` may lie ahead of `now` (clock skew between sender and controller). Default 15 min. */
  maxFutureMs?: number;
}

const STATUSES: readonly CapStatus[] = ['Actual', 'Exercise', 'System', 'Test', 'Draft'];
const MSG_TYPES: readonly CapMsgType[] = ['Alert', 'Update', 'Cancel', 'Ack', 'Error'];
const SCOPES: readonly CapScope[] = ['Public', 'Restricted', 'Private'];
// CAP 1.2 §3.2.2 value lists.
const CATEGORIES = ['Geo', 'Met', 'Safety', 'Security', 'Rescue', 'Fire', 'Health', 'Env', 'Transport', 'Infra', 'CBRNE', 'Other'];
const URGENCIES = ['Immediate', 'Expected', 'Future', 'Past', 'Unknown'];
const SEVERITIES = ['Extreme', 'Severe', 'Moderate', 'Minor', 'Unknown'];
// "Very Likely" is deprecated in 1.2 but still permitted for backward compatibility (§3.2.2 certainty note).
const CERTAINTIES = ['Observed', 'Likely', 'Possible', 'Unlikely', 'Unknown', 'Very Likely'];
const REPEATED = new Set(['info', 'area', 'polygon', 'circle', 'geocode', 'category', 'responseType', 'eventCode', 'parameter', 'resource', 'code']);

/** CAP 1.2 §3.3.2 dateTime: "2002-05-24T16:49:00-07:00"; the offset is mandatory ("Z" is not allowed). */
const CAP_DATE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})([+-])(\d{2}):(\d{2})$/;

/** Parse a CAP dateTime to epoch ms, or undefined when it is not one. */
export function parseCapDate(s: string): number | undefined {
  const m = CAP_DATE.exec(s);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, se, sign, oh, om] = m.map((x, i) => (i === 7 ? x : Number(x))) as [unknown, number, number, number, number, number, number, string, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 || oh > 14 || om > 59) return undefined;
  const local = Date.UTC(y, mo - 1, d, h, mi, se);
  if (new Date(local).getUTCDate() !== d) return undefined; // 31 February and the like
  const off = (oh * 60 + om) * 60_000 * (sign === '-' ? -1 : 1);
  return local - off;
}

/** The five predefined XML entities and character references, decoded in one pass (no DTD entities, ever). */
function decodeXmlText(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#\d{1,7}|#x[0-9a-fA-F]{1,6});/g, (all, e: string) => {
    switch (e) {
      case 'lt': return '<';
      case 'gt': return '>';
      case 'amp': return '&';
      case 'quot': return '"';
      case 'apos': return "'";
      default: {
        const cp = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : all;
      }
    }
  });
}

type XNode = Record<string, unknown>;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  // Entity expansion off: the body was already refused if it had a DOCTYPE; predefined entities are
  // decoded by decodeXmlText, so nothing here can grow (billion laughs, external entities).
  processEntities: false,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  maxNestedTags: 32,
  isArray: (name, _path, _leaf, isAttr) => !isAttr && REPEATED.has(localName(name)),
});

function localName(name: string): string {
  const i = name.indexOf(':');
  return i < 0 ? name : name.slice(i + 1);
}

/** Children of an element keyed by local name (namespace prefixes dropped), attributes left out. */
function children(v: unknown): Map<string, unknown> {
  const m = new Map<string, unknown>();
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, c] of Object.entries(v as XNode)) if (!k.startsWith('@_') && k !== '#text') m.set(localName(k), c);
  }
  return m;
}

function textOf(v: unknown): string | undefined {
  if (typeof v === 'string') return decodeXmlText(v).trim();
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v && typeof v === 'object' && !Array.isArray(v) && '#text' in v) return textOf((v as XNode)['#text']);
  if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).every((k) => k.startsWith('@_'))) return '';
  return undefined;
}

function list(v: unknown): unknown[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

const missing = (path: string) => new CapError('CAP_MISSING_ELEMENT', `${path} is required (CAP 1.2)`, path);
const invalid = (path: string, why: string) => new CapError('CAP_INVALID_VALUE', `${path} ${why}`, path);

function optText(m: Map<string, unknown>, name: string, path: string): string | undefined {
  const v = m.get(name);
  if (v === undefined) return undefined;
  if (Array.isArray(v)) throw invalid(`${path}.${name}`, 'must appear once');
  const t = textOf(v);
  if (t === undefined) throw invalid(`${path}.${name}`, 'must be text, not nested elements');
  return t === '' ? undefined : t;
}

function reqText(m: Map<string, unknown>, name: string, path: string): string {
  const t = optText(m, name, path);
  if (t === undefined) throw missing(`${path}.${name}`);
  return t;
}

function oneOf<T extends string>(value: string, allowed: readonly T[], path: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw invalid(path, `must be one of ${allowed.join(', ')} (got '${value.slice(0, 40)}')`);
  return value as T;
}

function capDate(value: string, path: string): number {
  const ms = parseCapDate(value);
  if (ms === undefined) throw invalid(path, `must be a CAP date-time with a time-zone offset like 2024-09-07T14:30:00+07:00 (got '${value.slice(0, 40)}')`);
  return ms;
}

function coord(lat: number, lon: number, path: string): CapPoint {
  if (!Number.isFinite(lat) || !Number.isFinite(lon) || lat < -90 || lat > 90 || lon < -180 || lon > 180) {
    throw invalid(path, `has a coordinate out of range (${lat},${lon}); WGS 84 latitude is -90..90 and longitude -180..180`);
  }
  return { lat, lon };
}

const NUM = String.raw`[-+]?(?:\d+\.?\d*|\.\d+)`;
const PAIR = new RegExp(`^(${NUM}),(${NUM})$`);

/** CAP 1.2 §3.2.4 polygon: "lat,lon lat,lon …", ≥ 4 pairs, first and last identical. */
export function parsePolygon(s: string, path: string): CapPoint[] {
  const pairs = s.trim().split(/\s+/);
  const pts = pairs.map((p) => {
    const m = PAIR.exec(p);
    if (!m) throw invalid(path, `must be space-separated "lat,lon" pairs (bad pair '${p.slice(0, 40)}')`);
    return coord(Number(m[1]), Number(m[2]), path);
  });
  if (pts.length < 4) throw invalid(path, `needs at least 4 points with the first repeated as the last (got ${pts.length})`);
  const a = pts[0]!; const b = pts[pts.length - 1]!;
  if (a.lat !== b.lat || a.lon !== b.lon) throw invalid(path, 'must be closed: its first and last points must be the same');
  return pts;
}

/** CAP 1.2 §3.2.4 circle: "lat,lon radius" with the radius in kilometres. */
export function parseCircle(s: string, path: string): CapCircle {
  const m = new RegExp(`^(${NUM}),(${NUM})\\s+(${NUM})$`).exec(s.trim());
  if (!m) throw invalid(path, `must be "lat,lon radius_km" (got '${s.slice(0, 60)}')`);
  const radiusKm = Number(m[3]);
  if (!(radiusKm >= 0) || radiusKm > 20_000) throw invalid(path, `radius must be 0..20000 km (got ${m[3]})`);
  return { center: coord(Number(m[1]), Number(m[2]), path), radiusKm };
}

function parseArea(v: unknown, path: string): CapArea {
  const m = children(v);
  const areaDesc = reqText(m, 'areaDesc', path);
  const polygons = list(m.get('polygon')).map((p, i) => {
    const t = textOf(p);
    if (!t) throw invalid(`${path}.polygon[${i}]`, 'is empty');
    return parsePolygon(t, `${path}.polygon[${i}]`);
  });
  const circles = list(m.get('circle')).map((c, i) => {
    const t = textOf(c);
    if (!t) throw invalid(`${path}.circle[${i}]`, 'is empty');
    return parseCircle(t, `${path}.circle[${i}]`);
  });
  const geocodes = list(m.get('geocode')).map((g, i) => {
    const gm = children(g);
    return { valueName: reqText(gm, 'valueName', `${path}.geocode[${i}]`), value: reqText(gm, 'value', `${path}.geocode[${i}]`) };
  });
  return { areaDesc, polygons, circles, geocodes };
}

function parseInfo(v: unknown, path: string): CapInfo {
  const m = children(v);
  const category = list(m.get('category')).map((c, i) => oneOf(textOf(c) ?? '', CATEGORIES, `${path}.category[${i}]`));
  if (category.length === 0) throw missing(`${path}.category`);
  const info: CapInfo = {
    // CAP 1.2 §3.2.2: language defaults to en-US when absent.
    language: optText(m, 'language', path) ?? 'en-US',
    category,
    event: reqText(m, 'event', path),
    urgency: oneOf(reqText(m, 'urgency', path), URGENCIES, `${path}.urgency`),
    severity: oneOf(reqText(m, 'severity', path), SEVERITIES, `${path}.severity`),
    certainty: oneOf(reqText(m, 'certainty', path), CERTAINTIES, `${path}.certainty`),
    areas: list(m.get('area')).map((a, i) => parseArea(a, `${path}.area[${i}]`)),
  };
  for (const k of ['senderName', 'headline', 'description', 'instruction'] as const) {
    const t = optText(m, k, path);
    if (t !== undefined) info[k] = t;
  }
  for (const k of ['effective', 'onset', 'expires'] as const) {
    const t = optText(m, k, path);
    if (t === undefined) continue;
    const ms = capDate(t, `${path}.${k}`);
    info[k] = t;
    if (k === 'expires') info.expiresMs = ms;
  }
  return info;
}

/** CAP 1.2 §3.2.1 references: space-separated "sender,identifier,sent" triples. */
function parseReferences(s: string, path: string): CapReference[] {
  return s.trim().split(/\s+/).map((t, i) => {
    const parts = t.split(',');
    if (parts.length !== 3 || parts.some((p) => p === '')) throw invalid(`${path}[${i}]`, `must be "sender,identifier,sent" (got '${t.slice(0, 80)}')`);
    const [sender, identifier, sent] = parts as [string, string, string];
    return { sender, identifier, sent, sentMs: capDate(sent, `${path}[${i}] sent`) };
  });
}

/**
 * Parse and validate one CAP 1.2 alert. Throws CapError with a message naming the element at fault.
 * Refuses: non-XML, malformed XML, any DOCTYPE (so no entity can expand), a root other than
 * `alert` in the CAP 1.2 namespace, missing/invalid required fields, an alert whose every info block has
 * expired, and `sent` too far in the future.
 */
export function parseCap(xml: string, opts: CapParseOptions): CapAlert {
  if (Buffer.byteLength(xml, 'utf8') > CAP_MAX_BYTES) throw new CapError('CAP_TOO_LARGE', `CAP message is larger than ${CAP_MAX_BYTES} bytes`, undefined, 413);
  const body = xml.replace(/^\uFEFF/, '').trim();
  if (!body.startsWith('<')) throw new CapError('CAP_NOT_XML', 'body is not XML: a CAP 1.2 <alert> document was expected');
  // No DTD at all: CAP needs none, and a DOCTYPE is how entity bombs and external entities get in.
  if (/<!DOCTYPE|<!ENTITY/i.test(body)) throw new CapError('CAP_DTD_FORBIDDEN', 'DOCTYPE/ENTITY declarations are not allowed in a CAP message');
  const ok = XMLValidator.validate(body, { allowBooleanAttributes: false });
  if (ok !== true) throw new CapError('CAP_MALFORMED_XML', `malformed XML at line ${ok.err.line}${ok.err.col ? `, column ${ok.err.col}` : ''}: ${ok.err.msg}`);
  let doc: XNode;
  try {
    doc = parser.parse(body) as XNode;
  } catch (e) {
    throw new CapError('CAP_MALFORMED_XML', `malformed XML: ${(e as Error).message}`);
  }
  const roots = Object.keys(doc).filter((k) => !k.startsWith('?') && !k.startsWith('@_') && k !== '#text');
  if (roots.length !== 1) throw new CapError('CAP_WRONG_ROOT', 'a CAP message has exactly one root element, <alert>');
  const rootName = roots[0]!;
  if (localName(rootName) !== 'alert') throw new CapError('CAP_WRONG_ROOT', `root element must be <alert>, got <${rootName}>`, rootName);
  const root = doc[rootName];
  const prefix = rootName.includes(':') ? rootName.slice(0, rootName.indexOf(':')) : undefined;
  const attrs = root && typeof root === 'object' ? (root as XNode) : {};
  const ns = attrs[prefix ? `@_xmlns:${prefix}` : '@_xmlns'];
  if (ns !== CAP_NS) {
    throw new CapError('CAP_WRONG_NAMESPACE', `alert must be in the namespace ${CAP_NS}${typeof ns === 'string' ? ` (got ${ns.slice(0, 100)})` : ' (no namespace declared)'}`, 'alert');
  }

  const m = children(root);
  const p = 'alert';
  const identifier = reqText(m, 'identifier', p);
  const sender = reqText(m, 'sender', p);
  // CAP 1.2 §3.2.1: identifier and sender contain no spaces, commas or restricted characters (< and &).
  if (/[\s,<&]/.test(identifier)) throw invalid(`${p}.identifier`, 'must not contain spaces, commas, < or &');
  if (/[\s,<&]/.test(sender)) throw invalid(`${p}.sender`, 'must not contain spaces, commas, < or &');
  const sent = reqText(m, 'sent', p);
  const sentMs = capDate(sent, `${p}.sent`);
  const status = oneOf(reqText(m, 'status', p), STATUSES, `${p}.status`);
  const msgType = oneOf(reqText(m, 'msgType', p), MSG_TYPES, `${p}.msgType`);
  const scope = oneOf(reqText(m, 'scope', p), SCOPES, `${p}.scope`);
  const alert: CapAlert = { identifier, sender, sent, sentMs, status, msgType, scope, references: [], info: [] };
  for (const k of ['source', 'restriction', 'addresses', 'note'] as const) {
    const t = optText(m, k, p);
    if (t !== undefined) alert[k] = t;
  }
  if (scope === 'Restricted' && !alert.restriction) throw missing(`${p}.restriction`);
  if (scope === 'Private' && !alert.addresses) throw missing(`${p}.addresses`);
  const refs = optText(m, 'references', p);
  if (refs) alert.references = parseReferences(refs, `${p}.references`);
  if ((msgType === 'Update' || msgType === 'Cancel') && alert.references.length === 0) {
    throw new CapError('CAP_MISSING_ELEMENT', `${p}.references is required for msgType ${msgType}: name the earlier alert as "sender,identifier,sent"`, `${p}.references`);
  }
  alert.info = list(m.get('info')).map((v, i) => parseInfo(v, `${p}.info[${i}]`));
  if ((msgType === 'Alert' || msgType === 'Update') && alert.info.length === 0 && (status === 'Actual' || status === 'Exercise' || status === 'Test')) {
    throw new CapError('CAP_MISSING_ELEMENT', `${p}.info is required for msgType ${msgType}: it carries the event, headline and area to announce`, `${p}.info`);
  }

  const maxFuture = opts.maxFutureMs ?? 15 * 60_000;
  if (sentMs > opts.now + maxFuture) {
    throw new CapError('CAP_SENT_IN_FUTURE', `${p}.sent (${sent}) is more than ${Math.round(maxFuture / 60_000)} minutes ahead of the controller clock`, `${p}.sent`, 422);
  }
  // Expired: every info block carries an expires in the past. An alert without expires does not expire.
  if (msgType !== 'Cancel' && alert.info.length > 0 && alert.info.every((i) => i.expiresMs !== undefined && i.expiresMs <= opts.now)) {
    const e = alert.info.map((i) => i.expires).join(', ');
    throw new CapError('CAP_EXPIRED', `alert has expired (info.expires ${e}); nothing to announce`, `${p}.info.expires`, 422);
  }
  return alert;
}

/** The info block to announce: the first in Vietnamese (vi, vi-VN…), else the first (CAP 1.2 §3.2.2 language). */
export function chooseInfo(alert: CapAlert): CapInfo | undefined {
  return alert.info.find((i) => /^vi(-|$)/i.test(i.language)) ?? alert.info[0];
}
