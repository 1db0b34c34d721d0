import { z } from 'zod';
import { Envelope, Id } from './envelope.js';
import { Volume } from './priority.js';

/**
 * Retained on radio/v1/node/{id}/config: who the node is in the commune. The agent subscribes to its zone's
 * and commune's broadcast topics from this; on a zone move the controller updates it and drops the
 * node's connection so the agent resubscribes.
 */
export const NodeConfig = Envelope.extend({
  nodeId: Id,
  communeId: Id,
  zoneId: Id,
  name: z.string().max(120),
  timezone: z.string().default('Asia/Ho_Chi_Minh'),
  /** Volume when nothing else sets one (see effectiveVolume). */
  defaultVolume: Volume.default(70),
  telemetryIntervalMs: z.number().int().min(500).max(3_600_000).optional(),
  maintenance: z.boolean().default(false),
  /** Base URL of the controller's HTTP API for media downloads (node credentials, HTTP Basic). */
  httpBase: z.string().url().optional(),
});
export type NodeConfig = z.infer<typeof NodeConfig>;
