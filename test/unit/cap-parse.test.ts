import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CAP_MAX_BYTES, CapError, chooseInfo, parseCap, parseCapDate } from '../../controller/src/cap/parse.js';
import { spokenText } from '../../controller/src/cap/cap-service.js';

const dir = path.join(import.meta.dirname, '../fixtures/cap');
const fx = (name: string) => fs.readFileSync(path.join(dir, name), 'utf8');
/** Five minutes after the fixtures' last `sent` (the Cancel). */
const NOW = Date.parse('2025-09-07T09:05:00+07:00');
const parse = (xml: string) => parseCap(xml, { now: NOW });

function capError(fn: () => unknown): CapError {
  try { fn(); } catch (e) { if (e instanceof CapError) return e; throw e; }
  throw new Error('expected a CapError');
}

describe('CAP 1.2 parsing', () => {
  it('parses a valid alert and chooses the Vietnamese info block', () => {
    const a = parse(fx('alert-flood-vi.xml'));
    expect(a).toMatchObject({ identifier: 'flood-001', sender: 'pctt.hue.gov.vn', status: 'Actual', msgType: 'Alert', scope: 'Public' });
    expect(a.sentMs).toBe(Date.parse('2025-09-07T01:00:00Z'));
    expect(a.info).toHaveLength(2);
    const info = chooseInfo(a)!;
    expect(info.language).toBe('vi-VN');
    expect(info.headline).toBe('Cảnh báo lũ quét khẩn cấp');
    expect(info.description).toContain('sông Hương dâng nhanh & có'); // &amp; decoded once
    expect(info.areas[0]!.polygons[0]).toHaveLength(5);
    expect(info.areas[0]!.polygons[0]![0]).toEqual({ lat: 16.47, lon: 107.57 });
    const text = spokenText(a, info);
    expect(text).toContain('Cảnh báo lũ quét khẩn cấp');
    expect(text).toContain('Di chuyển ngay lên vùng đất cao');
    expect(text).not.toContain('English');
  });

  it('falls back to the first info block when none is Vietnamese; reads the cap: prefix form and char references', () => {
    const a = parse(fx('alert-prefixed.xml'));
    const info = chooseInfo(a)!;
    expect(info.language).toBe('en-US'); // CAP default when <language> is absent
    expect(info.headline).toBe('Cháy rừng');
    expect(info.areas[0]!.circles[0]).toEqual({ center: { lat: 16.44, lon: 107.59 }, radiusKm: 1.5 });
    expect(a.sentMs).toBe(Date.parse('2025-09-07T01:00:00Z')); // "-00:00" is UTC
  });

  it('parses Update and Cancel references', () => {
    const u = parse(fx('update-flood.xml'));
    expect(u.references).toEqual([{ sender: 'pctt.hue.gov.vn', identifier: 'flood-001', sent: '2025-09-07T08:00:00+07:00', sentMs: Date.parse('2025-09-07T01:00:00Z') }]);
    const c = parse(fx('cancel-flood.xml'));
    expect(c.msgType).toBe('Cancel');
    expect(c.info).toHaveLength(0);
    expect(c.references.map((r) => r.identifier)).toEqual(['flood-002', 'flood-001']);
  });

  it('accepts Test, Exercise and System statuses and a circle area', () => {
    expect(parse(fx('test-polygon.xml')).status).toBe('Test');
    const ex = parse(fx('exercise-circle.xml'));
    expect(ex.status).toBe('Exercise');
    expect(spokenText(ex, chooseInfo(ex)!)).toMatch(/^Đây là tin diễn tập\./);
    expect(chooseInfo(ex)!.areas[0]!.circles[0]!.radiusKm).toBe(2);
    expect(parse(fx('system.xml')).status).toBe('System');
  });

  // Each invalid sample: its own code and a message naming the element at fault.
  const invalid: [file: string, code: string, message: RegExp][] = [
    ['invalid-not-xml.xml', 'CAP_NOT_XML', /not XML/],
    ['invalid-malformed.xml', 'CAP_MALFORMED_XML', /malformed XML at line \d+.*closing tag/],
    ['invalid-namespace.xml', 'CAP_WRONG_NAMESPACE', /urn:oasis:names:tc:emergency:cap:1\.2 \(got urn:oasis:names:tc:emergency:cap:1\.1\)/],
    ['invalid-wrong-root.xml', 'CAP_WRONG_ROOT', /root element must be <alert>, got <feed>/],
    ['invalid-missing-identifier.xml', 'CAP_MISSING_ELEMENT', /^alert\.identifier is required/],
    ['invalid-bad-status.xml', 'CAP_INVALID_VALUE', /^alert\.status must be one of Actual, Exercise, System, Test, Draft \(got 'Real'\)/],
    ['invalid-sent-no-offset.xml', 'CAP_INVALID_VALUE', /^alert\.sent must be a CAP date-time with a time-zone offset/],
    ['invalid-missing-urgency.xml', 'CAP_MISSING_ELEMENT', /^alert\.info\[0\]\.urgency is required/],
    ['invalid-polygon-open.xml', 'CAP_INVALID_VALUE', /^alert\.info\[0\]\.area\[0\]\.polygon\[0\] must be closed/],
    ['invalid-polygon-short.xml', 'CAP_INVALID_VALUE', /^alert\.info\[0\]\.area\[0\]\.polygon\[0\] needs at least 4 points/],
    ['invalid-circle.xml', 'CAP_INVALID_VALUE', /^alert\.info\[0\]\.area\[0\]\.circle\[0\] must be "lat,lon radius_km"/],
    ['invalid-expired.xml', 'CAP_EXPIRED', /expired/],
    ['invalid-future.xml', 'CAP_SENT_IN_FUTURE', /^alert\.sent .* ahead of the controller clock/],
    ['invalid-cancel-no-references.xml', 'CAP_MISSING_ELEMENT', /^alert\.references is required for msgType Cancel/],
    ['invalid-entity-bomb.xml', 'CAP_DTD_FORBIDDEN', /DOCTYPE/],
  ];
  it.each(invalid)('%s → %s', (file, code, message) => {
    const e = capError(() => parse(fx(file)));
    expect(e.code).toBe(code);
    expect(e.message).toMatch(message);
    expect(e.statusCode === 400 || e.statusCode === 422).toBe(true);
  });

  it('refuses oversize bodies and deep nesting without blowing the stack', () => {
    expect(capError(() => parse('<a>' + 'x'.repeat(CAP_MAX_BYTES) + '</a>')).statusCode).toBe(413);
    const deep = `<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">${'<a>'.repeat(5000)}${'</a>'.repeat(5000)}</alert>`;
    expect(capError(() => parse(deep)).code).toBe('CAP_MALFORMED_XML');
  });

  it('refuses out-of-range coordinates and a negative radius', () => {
    const xml = fx('alert-flood-vi.xml').replaceAll('16.50,107.57', '96.50,107.57');
    expect(capError(() => parse(xml)).message).toMatch(/polygon\[0\] has a coordinate out of range/);
    const c = fx('exercise-circle.xml').replace('16.44,107.59 2', '16.44,107.59 -2');
    expect(capError(() => parse(c)).message).toMatch(/circle\[0\] radius must be 0\.\.20000 km/);
  });

  it('requires restriction for Restricted scope and a valid category', () => {
    const r = fx('alert-flood-vi.xml').replace('<scope>Public</scope>', '<scope>Restricted</scope>');
    expect(capError(() => parse(r)).message).toMatch(/^alert\.restriction is required/);
    const c = fx('alert-flood-vi.xml').replace('<category>Met</category>', '<category>Weather</category>');
    expect(capError(() => parse(c)).message).toMatch(/^alert\.info\[0\]\.category\[0\] must be one of Geo, Met/);
  });

  it('parses CAP dates with offsets and rejects impossible ones', () => {
    expect(parseCapDate('2025-09-07T08:00:00+07:00')).toBe(Date.parse('2025-09-07T01:00:00Z'));
    expect(parseCapDate('2025-09-07T01:00:00-05:30')).toBe(Date.parse('2025-09-07T06:30:00Z'));
    expect(parseCapDate('2025-02-31T00:00:00+00:00')).toBeUndefined();
    expect(parseCapDate('2025-09-07 08:00:00+07:00')).toBeUndefined();
    expect(parseCapDate('2025-09-07T08:00:00Z')).toBeUndefined();
  });
});
