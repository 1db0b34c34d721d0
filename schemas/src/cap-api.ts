import { z } from 'zod';
import { EpochMs, Id } from './envelope.js';
import { Volume } from './priority.js';

/**
 * HTTP bodies of the OASIS CAP 1.2 alert ingest (controller/src/cap). The alert itself arrives as XML
 * (application/xml or application/cap+xml); these are the JSON shapes around it.
 */

export const CapStatus = z.enum(['Actual', 'Exercise', 'System', 'Test', 'Draft']);
export type CapStatus = z.infer<typeof CapStatus>;
export const CapMsgType = z.enum(['Alert', 'Update', 'Cancel', 'Ack', 'Error']);
export type CapMsgType = z.infer<typeof CapMsgType>;
export const CapScope = z.enum(['Public', 'Restricted', 'Private']);
export type CapScope = z.infer<typeof CapScope>;

/** An allow-listed CAP sender: a machine (provincial warning centre…) with its own bearer token. */
export const CapSender = z.object({
  id: z.string(),
  communeId: z.string(),
  name: z.string(),
  /** The CAP <sender> value this token may post (CAP 1.2 §3.2.1 `sender`); other values are refused. */
  capSender: z.string(),
  enabled: z.boolean(),
  createdAt: EpochMs,
  createdBy: z.string(),
  lastUsedAt: EpochMs.nullable(),
});
export type CapSender = z.infer<typeof CapSender>;

export const CapSenderCreate = z.object({
  name: z.string().trim().min(1).max(200),
  capSender: z.string().trim().min(1).max(255).regex(/^[^\s,<&]+$/, 'a CAP sender has no spaces, commas, < or & (CAP 1.2 §3.2.1)'),
});
export type CapSenderCreate = z.infer<typeof CapSenderCreate>;

/** Reply to creating a sender: the token is shown once, only its hash is kept. */
export const CapSenderCreated = z.object({ sender: CapSender, token: z.string() });
export type CapSenderCreated = z.infer<typeof CapSenderCreated>;

export const CapSenderUpdate = z.object({ enabled: z.boolean() });
export type CapSenderUpdate = z.infer<typeof CapSenderUpdate>;

/**
 * Per-commune CAP settings. `geocodeZones` maps a CAP geocode, written `valueName=value`
 * (e.g. `"SAME=048113"` or `"VN-ADM=26266"`), to zone ids of the commune; a geocode whose value is itself
 * a zone id matches that zone without any mapping.
 */
export const CapSettings = z.object({
  repeat: z.number().int().min(1).max(10).default(2),
  forcedVolume: Volume.default(90),
  geocodeZones: z.record(z.string().min(1).max(300), z.array(Id).max(500)).default({}),
});
export type CapSettings = z.infer<typeof CapSettings>;

export const CapAlertState = z.enum([
  /** A session was started and has not been cancelled or replaced. */
  'active',
  /** Valid, but no area matched a cluster (or every match was actual-only): nothing sounded. */
  'no_targets',
  /** Recorded only: status System/Draft, or msgType Ack/Error, or a Cancel/Update applied to others. */
  'recorded',
  /** Stopped by a later Cancel. */
  'cancelled',
  /** Replaced by a later Update. */
  'superseded',
  /** The live session could not be started; posting the same alert again retries. */
  'failed',
  /** Being processed right now (a concurrent duplicate sees this). */
  'processing',
]);
export type CapAlertState = z.infer<typeof CapAlertState>;

/** What the controller did with one CAP message (the reply to POST /cap/alerts, kept for duplicates). */
export const CapAlertResult = z.object({
  id: z.number().int(),
  identifier: z.string(),
  sender: z.string(),
  sent: z.string(),
  status: CapStatus,
  msgType: CapMsgType,
  action: z.enum(['start', 'update', 'cancel', 'none']),
  state: CapAlertState,
  /** Test/Exercise: clusters marked actual-only were left out. */
  exercise: z.boolean(),
  event: z.string().nullable(),
  headline: z.string().nullable(),
  language: z.string().nullable(),
  matchedNodes: z.array(z.string()),
  excludedActualOnly: z.array(z.string()),
  sessionId: z.string().nullable(),
  stoppedSessions: z.array(z.string()),
  /** `sender,identifier,sent` references that named no alert we know. */
  referencesNotFound: z.array(z.string()),
  message: z.string(),
  receivedAt: EpochMs,
  /** True when this reply repeats the result of an earlier identical post (same sender, identifier, sent). */
  duplicate: z.boolean().default(false),
});
export type CapAlertResult = z.infer<typeof CapAlertResult>;

/** A stored alert as the console lists it: its result, with the current state. */
export const CapAlertRecord = CapAlertResult.extend({
  senderId: z.string(),
  expires: z.string().nullable(),
  areaDesc: z.string().nullable(),
});
export type CapAlertRecord = z.infer<typeof CapAlertRecord>;

export const CapAlertQuery = z.object({
  state: CapAlertState.optional(),
  status: CapStatus.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});
export type CapAlertQuery = z.infer<typeof CapAlertQuery>;
