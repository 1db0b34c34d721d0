import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { haversineKm, pointInCircle, pointInPolygon } from '../../controller/src/cap/geo.js';
import { chooseInfo, parseCap } from '../../controller/src/cap/parse.js';
import { matchTargets, type TargetNode } from '../../controller/src/cap/targeting.js';

const dir = path.join(import.meta.dirname, '../fixtures/cap');
const NOW = Date.parse('2025-09-07T09:05:00+07:00');
const areasOf = (file: string) => chooseInfo(parseCap(fs.readFileSync(path.join(dir, file), 'utf8'), { now: NOW }))!.areas;

/** The fixture commune: two clusters on the north bank (one actual-only), one south, one without GPS. */
const NODES: TargetNode[] = [
  { id: 'n-north', zoneId: 'z-north', position: { lat: 16.48, lon: 107.59 }, actualOnly: false },
  { id: 'n-east', zoneId: 'z-north', position: { lat: 16.485, lon: 107.62 }, actualOnly: true },
  { id: 'n-south', zoneId: 'z-south', position: { lat: 16.44, lon: 107.59 }, actualOnly: false },
  { id: 'n-nopos', zoneId: 'z-river', position: null, actualOnly: false },
];
const opts = { exercise: false, zoneIds: new Set(['z-north', 'z-south', 'z-river']), geocodeZones: {} };

describe('CAP area geometry', () => {
  const square = [{ lat: 0, lon: 0 }, { lat: 0, lon: 1 }, { lat: 1, lon: 1 }, { lat: 1, lon: 0 }, { lat: 0, lon: 0 }];
  it('point in polygon by ray casting', () => {
    expect(pointInPolygon({ lat: 0.5, lon: 0.5 }, square)).toBe(true);
    expect(pointInPolygon({ lat: 1.5, lon: 0.5 }, square)).toBe(false);
    expect(pointInPolygon({ lat: 0.5, lon: -0.1 }, square)).toBe(false);
    // Concave "U": the notch is outside.
    const u = [{ lat: 0, lon: 0 }, { lat: 0, lon: 3 }, { lat: 3, lon: 3 }, { lat: 3, lon: 2 }, { lat: 1, lon: 2 }, { lat: 1, lon: 1 }, { lat: 3, lon: 1 }, { lat: 3, lon: 0 }, { lat: 0, lon: 0 }];
    expect(pointInPolygon({ lat: 2, lon: 1.5 }, u)).toBe(false);
    expect(pointInPolygon({ lat: 2, lon: 0.5 }, u)).toBe(true);
    expect(pointInPolygon({ lat: 0.5, lon: 1.5 }, u)).toBe(true);
  });

  it('haversine distance and circles', () => {
    // One degree of latitude ≈ 111.2 km.
    expect(haversineKm({ lat: 16, lon: 107 }, { lat: 17, lon: 107 })).toBeCloseTo(111.2, 0);
    // Hà Nội → TP Hồ Chí Minh ≈ 1,137 km (great circle).
    expect(haversineKm({ lat: 21.0285, lon: 105.8542 }, { lat: 10.8231, lon: 106.6297 })).toBeGreaterThan(1130);
    expect(pointInCircle({ lat: 16.44, lon: 107.6 }, { center: { lat: 16.44, lon: 107.59 }, radiusKm: 2 })).toBe(true); // ~1.07 km
    expect(pointInCircle({ lat: 16.48, lon: 107.59 }, { center: { lat: 16.44, lon: 107.59 }, radiusKm: 2 })).toBe(false); // ~4.4 km
  });
});

describe('CAP targeting', () => {
  it('a polygon covering only some clusters targets exactly those', () => {
    expect(matchTargets(areasOf('alert-flood-vi.xml'), NODES, opts)).toEqual({ matched: ['n-east', 'n-north'], excludedActualOnly: [], zones: [] });
  });
  it('Test/Exercise leaves actual-only clusters out', () => {
    expect(matchTargets(areasOf('test-polygon.xml'), NODES, { ...opts, exercise: true })).toEqual({ matched: ['n-north'], excludedActualOnly: ['n-east'], zones: [] });
  });
  it('a circle targets the clusters within its radius', () => {
    expect(matchTargets(areasOf('exercise-circle.xml'), NODES, { ...opts, exercise: true }).matched).toEqual(['n-south']);
  });
  it('a geocode naming a zone reaches clusters without GPS; a mapped geocode reaches its zones', () => {
    expect(matchTargets(areasOf('geocode-zone.xml'), NODES, opts).matched).toEqual(['n-nopos']);
    const mapped = [{ areaDesc: 'x', polygons: [], circles: [], geocodes: [{ valueName: 'VN-ADM', value: '19918' }] }];
    expect(matchTargets(mapped, NODES, { ...opts, geocodeZones: { 'VN-ADM=19918': ['z-south', 'z-gone'] } })).toEqual({ matched: ['n-south'], excludedActualOnly: [], zones: ['z-south'] });
    expect(matchTargets(mapped, NODES, opts).matched).toEqual([]);
  });
  it('an area outside the commune, or no area, targets nothing', () => {
    expect(matchTargets(areasOf('no-match.xml'), NODES, opts).matched).toEqual([]);
    expect(matchTargets([], NODES, opts).matched).toEqual([]);
  });
});
