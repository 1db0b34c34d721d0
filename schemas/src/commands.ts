import { z } from 'zod';
import { AgentHeader, Envelope } from './envelope.js';
import { Volume } from './priority.js';

/** Commands a technician sends to a node, a zone or the whole commune. */
export const CommandBody = z.discriminatedUnion('name', [
  z.object({ name: z.literal('set_volume'), params: z.object({ volume: Volume }) }),
  z.object({ name: z.literal('set_mute'), params: z.object({ mute: z.boolean() }) }),
  z.object({ name: z.literal('reboot'), params: z.object({}).default({}) }),
  z.object({
    name: z.literal('test_tone'),
    params: z.object({
      durationMs: z.number().int().min(100).max(30_000).default(2000),
      frequencyHz: z.number().int().min(50).max(8000).default(1000),
    }),
  }),
]);
export type CommandBody = z.infer<typeof CommandBody>;
export type CommandName = CommandBody['name'];
export const COMMAND_NAMES = CommandBody.options.map((o) => o.shape.name.value) as CommandName[];

/** On radio/v1/node|zone|commune/{id}/cmd. `transaction` ties the reply to the request. */
export const Command = Envelope.extend({ transaction: z.string().min(1).max(64) }).and(CommandBody);
export type Command = z.infer<typeof Command>;

/** On radio/v1/node/{id}/reply (zigbee2mqtt-style `{status, data, error?, transaction}`). */
export const CommandReply = AgentHeader.extend({
  transaction: z.string().min(1).max(64),
  status: z.enum(['ok', 'error']),
  data: z.record(z.string(), z.unknown()).optional(),
  error: z.string().max(500).optional(),
});
export type CommandReply = z.infer<typeof CommandReply>;
