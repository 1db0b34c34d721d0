import { z } from 'zod';

/**
 * The three bulletin levels of Vietnamese regulation, lowest first. The order of this tuple IS the
 * precedence: emergency > priority > normal.
 */
export const PRIORITIES = ['normal', 'priority', 'emergency'] as const;
export const Priority = z.enum(PRIORITIES);
export type Priority = z.infer<typeof Priority>;

export function priorityRank(p: Priority): number {
  return PRIORITIES.indexOf(p);
}

/** What produces the audio: a scheduled airing from the plan, or a live session (voice, relay, emergency). */
export const AudioOrigin = z.enum(['scheduled', 'live']);
export type AudioOrigin = z.infer<typeof AudioOrigin>;

export interface Claim {
  priority: Priority;
  origin: AudioOrigin;
}

/**
 * Does `challenger` take the speakers from `current`? Higher priority wins; at equal priority a live
 * session preempts scheduled audio; otherwise the incumbent keeps playing.
 */
export function preempts(challenger: Claim, current: Claim): boolean {
  const d = priorityRank(challenger.priority) - priorityRank(current.priority);
  if (d !== 0) return d > 0;
  return challenger.origin === 'live' && current.origin === 'scheduled';
}

/** Volume is 0..100 (percent of the amplifier's calibrated maximum). */
export const Volume = z.number().int().min(0).max(100);

export interface VolumeInputs {
  /** Forced volume of an emergency session, if one plays and sets it. */
  emergencyForced?: number | undefined;
  /** Technician's mute. Emergency audio is never muted. */
  technicianMute?: boolean | undefined;
  /** Technician's volume set on the node. */
  technicianVolume?: number | undefined;
  /** Volume set by the programme/airing. */
  programmeVolume?: number | undefined;
  /** Used when nothing else sets one. */
  defaultVolume: number;
}

/**
 * Volume precedence (contract): emergency forced volume > technician mute/volume > programme volume.
 */
export function effectiveVolume(v: VolumeInputs): number {
  if (v.emergencyForced !== undefined) return v.emergencyForced;
  if (v.technicianMute) return 0;
  if (v.technicianVolume !== undefined) return v.technicianVolume;
  if (v.programmeVolume !== undefined) return v.programmeVolume;
  return v.defaultVolume;
}
