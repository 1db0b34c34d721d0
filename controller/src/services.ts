import type { Logger } from 'pino';
import type { ControllerEnv } from '../../schemas/src/index.js';
import type { AlarmEngine } from './alarms.js';
import type { Auth } from './auth.js';
import type { BrokerAccounts } from './broker/accounts.js';
import type { Commands } from './commands.js';
import type { EnvelopeFactory } from './envelope.js';
import type { EventBus } from './event-bus.js';
import type { FleetLink } from './fleet-link.js';
import type { Store } from './store/store.js';
import type { Webhooks } from './webhooks.js';
import type { Scheduling } from './scheduling/index.js';
import type { MediaService } from './media/media-service.js';
import type { Live } from './live/index.js';
import type { ZoneStreams } from './streams/zone-stream.js';
import type { Supervisor } from '../../audio-pipeline/src/index.js';

export interface NodeCacheEntry { communeId: string; zoneId: string; maintenance: boolean; status: 'online' | 'offline'; seen: boolean }

/** What the HTTP layer and later domain services get from the composition root. */
export interface Services {
  config: ControllerEnv;
  log: Logger;
  store: Store;
  bus: EventBus;
  auth: Auth;
  alarms: AlarmEngine;
  webhooks: Webhooks;
  commands: Commands;
  scheduling: Scheduling;
  media: MediaService;
  live: Live;
  /** Pull streams per zone (Ogg/Opus, MP3) for IP speakers and players. */
  streams: ZoneStreams;
  /** The one supervisor every ffmpeg/espeak-ng child of this controller runs under. */
  supervisor: Supervisor;
  nodes: Map<string, NodeCacheEntry>;
  accounts: BrokerAccounts;
  now: () => number;
  envelope: EnvelopeFactory;
  dataDir: string;
  readonly link: FleetLink;
  refreshNode(id: string): void;
  /** (Re)publish the node's retained config (zone, commune…) and keep it for republishing on restart. */
  publishNodeConfig(id: string): void;
  clearNodeConfig(id: string): void;
  httpBase(): string;
  mqttUrlForAgents(): string;
}
