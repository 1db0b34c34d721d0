import { z } from 'zod';
import { AgentHeader, Envelope, EpochMs, Id } from './envelope.js';
import { Priority, Volume } from './priority.js';

export const LiveKind = z.enum(['voice', 'relay', 'file', 'soundcard', 'emergency']);
export type LiveKind = z.infer<typeof LiveKind>;

/**
 * Retained on radio/v1/node/{id}/live: the live session this node must carry (or `state: 'ended'`).
 * Per node, because the token is per node: the agent's first RTP/RTCP packet from its receive socket
 * carries it, so only that agent can open its path (symmetric RTP, works behind NAT/4G).
 * Timing: a sample at RTP timestamp ts sounds at baseControllerMs + (ts − baseTimestamp − codecDelay)/48
 * + delayMs, in controller time (audio-pipeline/src/live/jitter-buffer.ts).
 */
export const LiveAnnouncement = Envelope.extend({
  sessionId: z.string().min(8).max(64),
  state: z.enum(['active', 'ended']),
  kind: LiveKind,
  priority: Priority,
  title: z.string().max(200),
  /** Controller's RTP socket (RADIO_PUBLIC_HOST, RADIO_RTP_PORT). */
  rtp: z.object({ host: z.string().min(1).max(255), port: z.number().int().min(1).max(65535) }),
  token: z.string().min(16).max(128),
  ssrc: z.number().int().min(0).max(0xffffffff),
  payloadType: z.number().int().min(96).max(127),
  redPayloadType: z.number().int().min(96).max(127).nullable(),
  timing: z.object({ baseTimestamp: z.number().int().min(0).max(0xffffffff), baseControllerMs: EpochMs, codecDelaySamples: z.number().int().min(0) }),
  /** Playout delay D, ms. */
  delayMs: z.number().int().min(20).max(5000),
  /** Forced volume (emergency); overrides technician mute/volume (schemas effectiveVolume). */
  forcedVolume: Volume.optional(),
  /** Play an attention chime while a cold amplifier warms up. */
  chime: z.boolean().default(true),
  startedAt: EpochMs,
  endedAt: EpochMs.optional(),
  /** CAP Test/Exercise: clusters marked actual-only must not sound. */
  exercise: z.boolean().default(false),
  /**
   * A scheduled relay: this session carries item `itemIndex` (0-based, of the airing's `items`) of airing
   * `airingId` of the node's plan. The agent does not claim the speakers for it: it joins and hands the
   * audio to that airing, which plays it at the item's slot (first sample at the item's start, controller
   * time) and plays silence of the item's length if no audio came.
   */
  airing: z.object({ airingId: z.string().min(8).max(80), itemIndex: z.number().int().min(0).max(199) }).optional(),
});
export type LiveAnnouncement = z.infer<typeof LiveAnnouncement>;

/** A live session's state on one node. */
export const LiveNodeState = z.enum(['joining', 'ready', 'playing', 'ended', 'refused', 'failed']);

/** Reception figures of a live session on one node (LiveStatus reports, node telemetry). */
export const LiveReceptionStats = z.object({
  /** RTP packets accepted. */
  packets: z.number().int().nonnegative(),
  /** 20 ms frames the listener did not get (concealed by Opus PLC or silent). */
  lost: z.number().int().nonnegative(),
  /** Packets that arrived after their playout instant. */
  late: z.number().int().nonnegative(),
  concealed: z.number().int().nonnegative(),
  /** Frames whose own packet was missing, played from the next packet's RED copy (RFC 2198). */
  recoveredByRed: z.number().int().nonnegative(),
  /** Interarrival jitter (RFC 3550 §6.4.1), ms. */
  jitterMs: z.number().nonnegative(),
});

/** On radio/v1/node/{id}/live/status: readiness and reach of a live session on this node. */
export const LiveStatus = AgentHeader.extend({
  sessionId: z.string().min(8).max(64),
  state: LiveNodeState,
  reason: z.string().max(200).optional(),
  stats: LiveReceptionStats.optional(),
});
export type LiveStatus = z.infer<typeof LiveStatus>;

/** HTTP: start a live session (voice from the console, relay, file played live, sound card, emergency). */
export const LiveStartRequest = z.object({
  kind: LiveKind,
  title: z.string().trim().min(1).max(200),
  priority: Priority.default('priority'),
  targets: z.object({
    commune: z.boolean().default(false),
    zones: z.array(Id).max(500).default([]),
    nodes: z.array(Id).max(5000).default([]),
  }).refine((t) => t.commune || t.zones.length > 0 || t.nodes.length > 0, 'choose at least one target: the commune, a zone or a node'),
  /** relay: stream URL (Icecast/HTTP MP3/AAC, HLS); file: media id; emergency: media id or TTS text. */
  url: z.string().url().optional(),
  mediaId: z.string().max(64).optional(),
  text: z.string().max(5000).optional(),
  voice: z.string().max(64).optional(),
  durationMs: z.number().int().positive().max(6 * 3600_000).optional(),
  repeat: z.number().int().min(1).max(10).default(1),
  forcedVolume: Volume.optional(),
  delayMs: z.number().int().min(40).max(5000).optional(),
});
export type LiveStartRequest = z.infer<typeof LiveStartRequest>;
