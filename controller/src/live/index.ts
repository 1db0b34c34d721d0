import type { Logger } from 'pino';
import type { LiveStartRequest, LiveStatus } from '../../../schemas/src/index.js';
import { AppError } from '../errors.js';
import type { EnvelopeFactory } from '../envelope.js';
import type { EventBus } from '../event-bus.js';
import type { FleetLink } from '../fleet-link.js';
import type { MediaService } from '../media/media-service.js';
import type { NodeCacheEntry } from '../services.js';
import type { Store } from '../store/store.js';
import type { Supervisor } from '../../../audio-pipeline/src/index.js';
import type { ControllerEnv } from '../../../schemas/src/index.js';

export interface LiveDeps {
  config: ControllerEnv;
  store: Store;
  bus: EventBus;
  log: Logger;
  now: () => number;
  envelope: EnvelopeFactory;
  link: () => FleetLink;
  nodes: Map<string, NodeCacheEntry>;
  media: MediaService;
  supervisor: Supervisor;
}

export interface LiveSessionInfo {
  sessionId: string;
  communeId: string;
  kind: LiveStartRequest['kind'];
  priority: LiveStartRequest['priority'];
  title: string;
  targets: string[];
  startedAt: number;
  endedAt: number | null;
}

/**
 * Live sessions (voice, relay, file played live, sound card, emergency): placeholder until the live work
 * lands. The contract other services (CAP alerts, the console) code against is this object's methods.
 */
export function createLive(_deps: LiveDeps) {
  return {
    async start() {},
    async stop() {},
    /** Start a session for `actor`; resolves once the announcement is out. */
    async startSession(_communeId: string, _actor: string, _req: LiveStartRequest): Promise<LiveSessionInfo> {
      throw new AppError(501, 'LIVE_NOT_AVAILABLE', 'live sessions are not available in this version yet');
    },
    async stopSession(_communeId: string, _actor: string, _sessionId: string): Promise<LiveSessionInfo> {
      throw new AppError(501, 'LIVE_NOT_AVAILABLE', 'live sessions are not available in this version yet');
    },
    onLiveStatus(_nodeId: string, _s: LiveStatus) {},
  };
}
export type Live = ReturnType<typeof createLive>;
