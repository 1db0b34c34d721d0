import { z } from 'zod';
import { EpochMs, Id } from './envelope.js';
import { ClockTime, InterruptPolicy, QuietHours, ReceiptState } from './plan.js';
import { Priority, Volume } from './priority.js';

/**
 * HTTP bodies of the scheduling API (programmes, schedules, quiet hours, preview, airings, receipts).
 * Every date and time of day here is the commune's wall clock (Asia/Ho_Chi_Minh), whatever the server's
 * timezone; instants (startAt, at, from, to) are epoch milliseconds.
 */

function validYmd(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false;
  return d <= new Date(Date.UTC(y, m, 0)).getUTCDate();
}

/** A calendar date in the commune's timezone, "YYYY-MM-DD". */
export const LocalDate = z.string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'date must be YYYY-MM-DD')
  .refine((s) => { const [y, m, d] = s.split('-').map(Number) as [number, number, number]; return validYmd(y, m, d); }, 'no such calendar date');
export type LocalDate = z.infer<typeof LocalDate>;

/** A wall-clock date and time in the commune's timezone, "YYYY-MM-DDTHH:MM" (no offset: it is local). */
export const LocalDateTime = z.string()
  .regex(/^\d{4}-\d{2}-\d{2}T([01]\d|2[0-3]):[0-5]\d$/, 'date-time must be YYYY-MM-DDTHH:MM in the commune\'s local time, without an offset')
  .refine((s) => { const [y, m, d] = s.slice(0, 10).split('-').map(Number) as [number, number, number]; return validYmd(y, m, d); }, 'no such calendar date');

// ---------------------------------------------------------------- programmes

/** What the operator sends: TTS text is rendered to a media item when the programme is saved. */
export const ProgrammeItemInput = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('media'), mediaId: z.string().min(1).max(64) }),
  z.object({ kind: z.literal('tts'), text: z.string().trim().min(1, 'tts text must not be empty').max(5000), voice: z.string().min(1).max(64).optional() }),
  z.object({ kind: z.literal('chime'), chime: z.enum(['attention', 'start', 'end']), durationMs: z.number().int().positive().max(10_000).default(3000) }),
  z.object({ kind: z.literal('silence'), durationMs: z.number().int().positive().max(600_000) }),
  z.object({
    kind: z.literal('relay'),
    url: z.string().url().max(500).refine((u) => /^https?:\/\//i.test(u), 'relay url must be http(s) (Icecast/HTTP or HLS)'),
    /** A relay plays for a fixed duration (at most 6 h). */
    durationMs: z.number().int().positive().max(6 * 3600_000),
  }),
]);
export type ProgrammeItemInput = z.infer<typeof ProgrammeItemInput>;

/** A stored programme item, with its duration resolved (media and rendered TTS from the media table). */
export const ProgrammeItem = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('media'), mediaId: z.string(), title: z.string().nullable(), durationMs: z.number().int() }),
  z.object({ kind: z.literal('tts'), text: z.string(), voice: z.string().nullable(), mediaId: z.string(), durationMs: z.number().int() }),
  z.object({ kind: z.literal('chime'), chime: z.enum(['attention', 'start', 'end']), durationMs: z.number().int() }),
  z.object({ kind: z.literal('silence'), durationMs: z.number().int() }),
  z.object({ kind: z.literal('relay'), url: z.string(), durationMs: z.number().int() }),
]);
export type ProgrammeItem = z.infer<typeof ProgrammeItem>;

export const ProgrammeCreate = z.object({
  id: Id.optional(),
  title: z.string().trim().min(1).max(200),
  description: z.string().max(1000).optional(),
  /** Played in order; an empty list is refused with EMPTY_PROGRAMME. */
  items: z.array(ProgrammeItemInput).max(200),
  /** Default priority of new schedules of this programme. */
  priority: Priority.default('normal'),
  volume: Volume.optional(),
  /** What an airing of it does when a higher priority interrupts it. */
  onInterrupt: InterruptPolicy.default('drop'),
});
export type ProgrammeCreate = z.infer<typeof ProgrammeCreate>;

export const ProgrammeUpdate = z.object({
  title: z.string().trim().min(1).max(200).optional(),
  description: z.string().max(1000).nullable().optional(),
  items: z.array(ProgrammeItemInput).max(200).optional(),
  priority: Priority.optional(),
  volume: Volume.nullable().optional(),
  onInterrupt: InterruptPolicy.optional(),
});
export type ProgrammeUpdate = z.infer<typeof ProgrammeUpdate>;

export const Programme = z.object({
  id: Id,
  communeId: Id,
  title: z.string(),
  description: z.string().nullable(),
  items: z.array(ProgrammeItem),
  /** Sum of the items' durations. */
  durationMs: z.number().int(),
  priority: Priority,
  volume: z.number().int().nullable(),
  onInterrupt: InterruptPolicy,
  scheduleCount: z.number().int(),
  createdBy: z.string(),
  createdAt: EpochMs,
  updatedAt: EpochMs,
});
export type Programme = z.infer<typeof Programme>;

// ---------------------------------------------------------------- schedules

export const Weekday = z.enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']);
export type Weekday = z.infer<typeof Weekday>;

const Times = z.array(ClockTime).min(1, 'at least one time of day (HH:MM) is needed').max(48, 'at most 48 times of day');

/**
 * When a schedule sounds, in the commune's timezone.
 * - once: a single local date-time.
 * - daily / weekly (chosen weekdays) / monthly: at each of `times` on the matching days.
 * - monthly `days`: 1..31 or 'last' (the month's last day). A listed day the month lacks (29-31) is
 *   skipped that month (`ifMissing: 'skip'`, the default) or played on the month's last day instead
 *   (`ifMissing: 'last'`); a day is never played twice.
 * - cron: 5 fields (min hour dom month dow) or 6 (with seconds first), node-cron syntax (L, nW, L-n,
 *   d#n, dL). Day-of-month AND day-of-week must both match (node-cron's rule, not Vixie cron's OR).
 */
export const Recurrence = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('once'), at: LocalDateTime }),
  z.object({ kind: z.literal('daily'), times: Times }),
  z.object({ kind: z.literal('weekly'), weekdays: z.array(Weekday).min(1, 'choose at least one weekday').max(7), times: Times }),
  z.object({
    kind: z.literal('monthly'),
    days: z.array(z.union([z.number().int().min(1).max(31), z.literal('last')])).min(1, 'choose at least one day of the month').max(31),
    times: Times,
    ifMissing: z.enum(['skip', 'last']).default('skip'),
  }),
  z.object({ kind: z.literal('cron'), expression: z.string().trim().min(1).max(120) }),
]);
export type Recurrence = z.infer<typeof Recurrence>;

export const ScheduleTarget = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('commune') }),
  z.object({ kind: z.literal('zone'), id: Id }),
  z.object({ kind: z.literal('node'), id: Id }),
]);
export type ScheduleTarget = z.infer<typeof ScheduleTarget>;

const ScheduleFields = {
  programmeId: Id,
  /** Shown instead of the programme's title when set. */
  title: z.string().trim().min(1).max(200).optional(),
  recurrence: Recurrence,
  /** First and last local date on which it may sound (inclusive). */
  validFrom: LocalDate.optional(),
  validUntil: LocalDate.optional(),
  /** Local dates on which it does not sound. */
  exceptions: z.array(LocalDate).max(366).default([]),
  targets: z.array(ScheduleTarget).min(1, 'choose at least one target (commune, zone or node)').max(200),
  /** Defaults to the programme's priority. */
  priority: Priority.optional(),
  /** Operator order among overlapping airings of equal priority (lower plays first). */
  rank: z.number().int().min(-1000).max(1000).optional(),
  volume: Volume.optional(),
  /** Sound inside the commune's quiet hours anyway; needs a reason (recorded in the audit trail). */
  quietOverride: z.boolean().default(false),
  quietOverrideReason: z.string().trim().max(500).optional(),
  enabled: z.boolean().default(true),
};

export const ScheduleCreate = z.object({ id: Id.optional(), ...ScheduleFields });
export type ScheduleCreate = z.infer<typeof ScheduleCreate>;

/** Partial update; the merged schedule is validated as a whole again (quiet hours, dates, targets). */
export const ScheduleUpdate = z.object({
  programmeId: Id.optional(),
  title: z.string().trim().min(1).max(200).nullable().optional(),
  recurrence: Recurrence.optional(),
  validFrom: LocalDate.nullable().optional(),
  validUntil: LocalDate.nullable().optional(),
  exceptions: z.array(LocalDate).max(366).optional(),
  targets: z.array(ScheduleTarget).min(1, 'choose at least one target (commune, zone or node)').max(200).optional(),
  priority: Priority.optional(),
  rank: z.number().int().min(-1000).max(1000).optional(),
  volume: Volume.nullable().optional(),
  quietOverride: z.boolean().optional(),
  quietOverrideReason: z.string().trim().max(500).nullable().optional(),
  enabled: z.boolean().optional(),
});
export type ScheduleUpdate = z.infer<typeof ScheduleUpdate>;

export const Schedule = z.object({
  id: Id,
  communeId: Id,
  programmeId: Id,
  programmeTitle: z.string(),
  title: z.string().nullable(),
  recurrence: Recurrence,
  validFrom: z.string().nullable(),
  validUntil: z.string().nullable(),
  exceptions: z.array(z.string()),
  targets: z.array(ScheduleTarget),
  priority: Priority,
  rank: z.number().int(),
  volume: z.number().int().nullable(),
  quietOverride: z.boolean(),
  quietOverrideReason: z.string().nullable(),
  enabled: z.boolean(),
  durationMs: z.number().int(),
  createdBy: z.string(),
  createdAt: EpochMs,
  updatedBy: z.string(),
  updatedAt: EpochMs,
});
export type Schedule = z.infer<typeof Schedule>;

/** Two airings on the same node overlap: explained, not refused (priority, then rank, decides at air time). */
export const ScheduleConflict = z.object({
  scheduleId: Id,
  programmeId: Id,
  title: z.string(),
  priority: Priority,
  rank: z.number().int(),
  /** This schedule's slot and the other's, epoch ms. */
  thisStartAt: EpochMs,
  thisEndAt: EpochMs,
  otherStartAt: EpochMs,
  otherEndAt: EpochMs,
  nodeIds: z.array(Id),
  zoneIds: z.array(Id),
  /** Which one plays (or keeps playing) where they overlap. */
  winner: z.enum(['this', 'other']),
  reason: z.string(),
  message: z.string(),
});
export type ScheduleConflict = z.infer<typeof ScheduleConflict>;

export const UpcomingAiring = z.object({
  airingId: z.string(),
  startAt: EpochMs,
  startLocal: z.string(),
  durationMs: z.number().int(),
  nodeCount: z.number().int(),
});

export const ScheduleSaveReply = z.object({
  schedule: Schedule,
  /** Overlaps on the same nodes in the next days (see `conflictHorizonDays`); empty when none. */
  conflicts: z.array(ScheduleConflict),
  conflictsTruncated: z.number().int(),
  conflictHorizonDays: z.number().int(),
  /** Other things worth knowing (e.g. it never sounds in its date range, no node is targeted yet). */
  warnings: z.array(z.string()),
  nextAirings: z.array(UpcomingAiring),
});

/** Operator order among equal-priority schedules: the first listed gets the lowest rank (plays first). */
export const ScheduleReorder = z.object({ ids: z.array(Id).min(1).max(200) });

export const ScheduleListQuery = z.object({ programmeId: Id.optional(), enabled: z.enum(['true', 'false']).optional() });

// ---------------------------------------------------------------- quiet hours

export const QuietHoursSetting = z.object({
  start: ClockTime,
  end: ClockTime,
  timezone: z.string(),
  updatedAt: EpochMs.nullable(),
  updatedBy: z.string().nullable(),
});
export const QuietHoursUpdate = QuietHours;

// ---------------------------------------------------------------- preview

export const PreviewQuery = z.object({
  /** Window start (epoch ms); default now. */
  from: z.coerce.number().int().nonnegative().optional(),
  hours: z.coerce.number().int().min(1).max(168).default(24),
  nodeId: Id.optional(),
  zoneId: Id.optional(),
});

export const PreviewAiring = z.object({
  airingId: z.string(),
  scheduleId: Id,
  programmeId: Id,
  title: z.string(),
  startAt: EpochMs,
  endAt: EpochMs,
  startLocal: z.string(),
  endLocal: z.string(),
  durationMs: z.number().int(),
  priority: Priority,
  rank: z.number().int(),
  quietOverride: z.boolean(),
  /** Airings on the same node that overlap this one. */
  overlapsWith: z.array(z.string()),
  /** False when an overlapping airing takes precedence (priority, then rank, then the earlier start). */
  wins: z.boolean(),
});
export const PreviewNode = z.object({ nodeId: Id, name: z.string(), zoneId: Id, airings: z.array(PreviewAiring) });
export const PreviewZone = z.object({
  zoneId: Id,
  name: z.string(),
  nodeCount: z.number().int(),
  airings: z.array(PreviewAiring.omit({ overlapsWith: true, wins: true }).extend({ nodeIds: z.array(Id), nodeCount: z.number().int() })),
});
export const PreviewReply = z.object({
  from: EpochMs,
  to: EpochMs,
  timezone: z.string(),
  quietHours: QuietHours,
  nodes: z.array(PreviewNode),
  zones: z.array(PreviewZone),
});

// ---------------------------------------------------------------- plans, airings and receipts

export const NodePlanStatus = z.object({
  nodeId: Id,
  /** Latest plan version published to the node (0 = none yet). */
  version: z.number().int(),
  ackedVersion: z.number().int().nullable(),
  ackStatus: z.enum(['applied', 'rejected']).nullable(),
  ackError: z.string().nullable(),
  ackedAt: EpochMs.nullable(),
  /** Media of upcoming airings the node reported as not yet cached. */
  missing: z.array(z.string()),
  upToDate: z.boolean(),
  publishedAt: EpochMs.nullable(),
  from: EpochMs.nullable(),
  to: EpochMs.nullable(),
  airingCount: z.number().int(),
  airings: z.array(z.object({ airingId: z.string(), startAt: EpochMs, durationMs: z.number().int(), title: z.string(), priority: Priority })),
});

/** scheduled = no receipt yet and not over; no_receipt = over (plus a grace period) without any receipt. */
export const AiringState = z.enum(['scheduled', 'started', 'finished', 'interrupted', 'failed', 'no_receipt']);
export type AiringState = z.infer<typeof AiringState>;

export const ReceiptRow = z.object({
  id: z.string(),
  nodeId: z.string(),
  airingId: z.string(),
  state: ReceiptState,
  at: EpochMs,
  startErrorMs: z.number().nullable(),
  reason: z.string().nullable(),
  interruptedBy: z.string().nullable(),
  playedMs: z.number().int().nullable(),
  /** planned = the airing was in this node's plan; unknown = no such airing; other_node = planned elsewhere only. */
  airingMatch: z.enum(['planned', 'unknown', 'other_node']),
  receivedAt: EpochMs,
});
export type ReceiptRow = z.infer<typeof ReceiptRow>;

export const AiringRow = z.object({
  airingId: z.string(),
  nodeId: z.string(),
  scheduleId: z.string(),
  programmeId: z.string(),
  title: z.string(),
  startAt: EpochMs,
  startLocal: z.string(),
  durationMs: z.number().int(),
  priority: Priority,
  state: AiringState,
  receipts: z.array(ReceiptRow.pick({ id: true, state: true, at: true, startErrorMs: true, reason: true, playedMs: true })),
});

export const AiringSummary = z.object({
  total: z.number().int(),
  scheduled: z.number().int(),
  started: z.number().int(),
  finished: z.number().int(),
  interrupted: z.number().int(),
  failed: z.number().int(),
  noReceipt: z.number().int(),
});

export const AiringsQuery = z.object({
  from: z.coerce.number().int().nonnegative().optional(),
  to: z.coerce.number().int().nonnegative().optional(),
  nodeId: Id.optional(),
  zoneId: Id.optional(),
  scheduleId: Id.optional(),
  limit: z.coerce.number().int().min(1).max(5000).default(1000),
});
export const AiringsReply = z.object({ from: EpochMs, to: EpochMs, summary: AiringSummary, items: z.array(AiringRow) });

export const ReceiptsQuery = z.object({
  from: z.coerce.number().int().nonnegative().optional(),
  to: z.coerce.number().int().nonnegative().optional(),
  nodeId: Id.optional(),
  airingId: z.string().min(1).max(80).optional(),
  limit: z.coerce.number().int().min(1).max(5000).default(1000),
});
