import { describe, expect, it } from 'vitest';
import { inQuietHours, isValidTimeZone, minuteOfDay, overlapsQuietHours, quietHoursVerdict } from '../../edge-agent/src/quiet-hours.js';

const HCM = 'Asia/Ho_Chi_Minh'; // UTC+7, no DST
const q = { start: '21:30', end: '05:00' };
/** Epoch ms of a wall-clock time in Ho Chi Minh City (UTC+7). */
const hcm = (iso: string) => Date.parse(`${iso}+07:00`);

describe('agent quiet hours', () => {
  it('reads the local time of day in the commune timezone, not the machine one', () => {
    expect(minuteOfDay(hcm('2025-03-10T03:15:00'), HCM)).toBeCloseTo(3 * 60 + 15, 6);
    // The same instant in New York is the previous afternoon (EDT, UTC-4 on 9 March 2025 onwards).
    expect(minuteOfDay(hcm('2025-03-10T03:15:00'), 'America/New_York')).toBeCloseTo(16 * 60 + 15, 6);
    expect(minuteOfDay(hcm('2025-03-10T00:00:00.500'), HCM)).toBeCloseTo(0.5 / 60, 6);
  });

  it('refuses 03:15 (the incident) and applies the window across midnight with exact edges', () => {
    expect(inQuietHours(hcm('2025-03-10T03:15:00'), q, HCM)).toBe(true);
    expect(inQuietHours(hcm('2025-03-10T21:29:59.999'), q, HCM)).toBe(false);
    expect(inQuietHours(hcm('2025-03-10T21:30:00'), q, HCM)).toBe(true);
    expect(inQuietHours(hcm('2025-03-10T23:59:59'), q, HCM)).toBe(true);
    expect(inQuietHours(hcm('2025-03-11T00:00:00'), q, HCM)).toBe(true);
    expect(inQuietHours(hcm('2025-03-11T04:59:59.999'), q, HCM)).toBe(true);
    expect(inQuietHours(hcm('2025-03-11T05:00:00'), q, HCM)).toBe(false);
    expect(inQuietHours(hcm('2025-03-11T06:00:00'), q, HCM)).toBe(false);
    expect(inQuietHours(hcm('2025-03-11T17:00:00'), q, HCM)).toBe(false);
  });

  it('handles a window that does not cross midnight', () => {
    const lunch = { start: '11:30', end: '13:30' };
    expect(inQuietHours(hcm('2025-03-10T12:00:00'), lunch, HCM)).toBe(true);
    expect(inQuietHours(hcm('2025-03-10T13:30:00'), lunch, HCM)).toBe(false);
    expect(inQuietHours(hcm('2025-03-10T23:00:00'), lunch, HCM)).toBe(false);
  });

  it('refuses an airing that starts outside but runs into the window, on either side of midnight', () => {
    expect(overlapsQuietHours(hcm('2025-03-10T21:00:00'), 45 * 60_000, q, HCM)).toBe(true);
    expect(overlapsQuietHours(hcm('2025-03-10T21:00:00'), 30 * 60_000, q, HCM)).toBe(false); // ends exactly at 21:30
    expect(overlapsQuietHours(hcm('2025-03-10T20:00:00'), 30 * 60_000, q, HCM)).toBe(false);
    expect(overlapsQuietHours(hcm('2025-03-10T04:59:00'), 5 * 60_000, q, HCM)).toBe(true);
    expect(overlapsQuietHours(hcm('2025-03-10T05:00:00'), 16 * 3600_000, q, HCM)).toBe(false); // 05:00-21:00
    expect(overlapsQuietHours(hcm('2025-03-10T05:00:00'), 17 * 3600_000, q, HCM)).toBe(true); // 05:00-22:00
    expect(overlapsQuietHours(hcm('2025-03-10T12:00:00'), 25 * 3600_000, q, HCM)).toBe(true);
  });

  it('judges the same UTC instant by the commune timezone it is given', () => {
    const t = Date.parse('2025-07-01T20:00:00Z'); // 03:00 in Ho Chi Minh, 16:00 in New York (EDT)
    expect(inQuietHours(t, q, HCM)).toBe(true);
    expect(inQuietHours(t, q, 'America/New_York')).toBe(false);
  });

  it('lets emergency and overridden airings through, refuses the rest with a reason', () => {
    const a = { startAt: hcm('2025-03-10T03:15:00'), durationMs: 60_000, priority: 'normal' as const, quietOverride: false };
    const v = quietHoursVerdict(a, q, HCM);
    expect(v.allowed).toBe(false);
    if (!v.allowed) expect(v.detail).toContain('21:30-05:00');
    expect(quietHoursVerdict({ ...a, priority: 'priority' }, q, HCM).allowed).toBe(false);
    expect(quietHoursVerdict({ ...a, priority: 'emergency' }, q, HCM).allowed).toBe(true);
    expect(quietHoursVerdict({ ...a, quietOverride: true }, q, HCM).allowed).toBe(true);
    expect(quietHoursVerdict({ ...a, startAt: hcm('2025-03-10T06:00:00') }, q, HCM).allowed).toBe(true);
  });

  it('knows valid and invalid timezones', () => {
    expect(isValidTimeZone(HCM)).toBe(true);
    expect(isValidTimeZone('Mars/Olympus_Mons')).toBe(false);
  });
});
