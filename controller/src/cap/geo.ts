import type { CapArea, CapCircle, CapPoint } from './parse.js';

/** Mean Earth radius, km (IUGG), as used by the haversine formula. */
const EARTH_RADIUS_KM = 6371.0088;

/** Great-circle distance between two WGS 84 points, km (haversine). */
export function haversineKm(a: CapPoint, b: CapPoint): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

/**
 * Point in polygon by ray casting (even-odd rule) in the lat/lon plane. Fine at commune scale (a few km,
 * far from the poles and the antimeridian); a point exactly on an edge may fall either way.
 */
export function pointInPolygon(p: CapPoint, ring: readonly CapPoint[]): boolean {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const a = ring[i]!; const b = ring[j]!;
    if ((a.lat > p.lat) !== (b.lat > p.lat)) {
      const lonAtLat = a.lon + ((p.lat - a.lat) / (b.lat - a.lat)) * (b.lon - a.lon);
      if (p.lon < lonAtLat) inside = !inside;
    }
  }
  return inside;
}

export function pointInCircle(p: CapPoint, c: CapCircle): boolean {
  return haversineKm(p, c.center) <= c.radiusKm;
}

/** Does a position fall in any polygon or circle of the area? (Geocodes are matched by zone, elsewhere.) */
export function pointInArea(p: CapPoint, area: CapArea): boolean {
  return area.polygons.some((r) => pointInPolygon(p, r)) || area.circles.some((c) => pointInCircle(p, c));
}
