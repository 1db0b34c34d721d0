import { pointInArea } from './geo.js';
import type { CapArea, CapPoint } from './parse.js';

export interface TargetNode { id: string; zoneId: string; position: CapPoint | null; actualOnly: boolean }

export interface TargetOptions {
  /** CAP status Test or Exercise: clusters marked actual-only must not sound. */
  exercise: boolean;
  /** Zone ids of the commune (a geocode value equal to one matches that zone directly). */
  zoneIds: ReadonlySet<string>;
  /** `valueName=value` → zone ids (CapSettings.geocodeZones). */
  geocodeZones: Readonly<Record<string, readonly string[]>>;
}

export interface TargetResult {
  /** Clusters that will sound, sorted. */
  matched: string[];
  /** Clusters in the area left out because the alert is Test/Exercise and they are actual-only. */
  excludedActualOnly: string[];
  /** Zones named by the areas' geocodes. */
  zones: string[];
}

/** Zones a geocode names: its value when that is a zone id, plus the configured `valueName=value` mapping. */
export function zonesForGeocode(g: { valueName: string; value: string }, opts: Pick<TargetOptions, 'zoneIds' | 'geocodeZones'>): string[] {
  const out = new Set<string>();
  if (opts.zoneIds.has(g.value)) out.add(g.value);
  for (const z of opts.geocodeZones[`${g.valueName}=${g.value}`] ?? []) if (opts.zoneIds.has(z)) out.add(z);
  return [...out];
}

/**
 * Clusters an alert's areas cover. An area is the union of its polygons, circles and geocodes (CAP 1.2
 * §3.2.4); the alert covers the union of its areas. A cluster without a GPS position can only be reached
 * through a geocode that maps to its zone. No area → no target (we never widen to the whole commune).
 */
export function matchTargets(areas: readonly CapArea[], nodes: readonly TargetNode[], opts: TargetOptions): TargetResult {
  const zones = new Set<string>();
  for (const a of areas) for (const g of a.geocodes) for (const z of zonesForGeocode(g, opts)) zones.add(z);
  const matched: string[] = [];
  const excluded: string[] = [];
  for (const n of nodes) {
    const hit = zones.has(n.zoneId) || (n.position !== null && areas.some((a) => pointInArea(n.position!, a)));
    if (!hit) continue;
    if (opts.exercise && n.actualOnly) excluded.push(n.id);
    else matched.push(n.id);
  }
  return { matched: matched.sort(), excludedActualOnly: excluded.sort(), zones: [...zones].sort() };
}
