import type { Logger } from 'pino';
import type { PlanAck, Receipt } from '../../../schemas/src/index.js';
import type { EventBus } from '../event-bus.js';
import type { EnvelopeFactory } from '../envelope.js';
import type { FleetLink } from '../fleet-link.js';
import type { NodeCacheEntry } from '../services.js';
import type { Store } from '../store/store.js';

export interface SchedulingDeps {
  store: Store;
  bus: EventBus;
  log: Logger;
  /** Controller time (injectable: tests step it to compress a day). */
  now: () => number;
  envelope: EnvelopeFactory;
  link: () => FleetLink;
  nodes: Map<string, NodeCacheEntry>;
  /** Render TTS text to a media item (id) ahead of air; provided by the media service. */
  renderTts?: (communeId: string, text: string, voice: string | undefined, actor: string) => Promise<{ id: string }>;
}

/**
 * Programmes, schedules, expansion into airings, conflicts and quiet hours, per-node 48 h plans and
 * receipts. Placeholder until the scheduling work lands: it stores nothing and plans nothing.
 */
export function createScheduling(_deps: SchedulingDeps) {
  return {
    async start() {},
    async stop() {},
    onPlanAck(_nodeId: string, _a: PlanAck) {},
    /** Store receipts exactly once; return the ids committed. */
    onReceipts(_nodeId: string, _r: Receipt[]): string[] { return []; },
    /** Is this media item used by a programme or schedule (then it cannot be deleted)? */
    isMediaInUse(_communeId: string, _mediaId: string): boolean { return false; },
    /** A node was created, moved or deleted: re-plan it. */
    onNodeChanged(_nodeId: string) {},
  };
}
export type Scheduling = ReturnType<typeof createScheduling>;
