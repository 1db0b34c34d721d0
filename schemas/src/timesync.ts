import { z } from 'zod';
import { AgentHeader, Envelope } from './envelope.js';

/**
 * NTP-style exchange (RFC 5905 §8 on-wire): agent sends t0 (its clock); controller answers with t1
 * (receive) and t2 (transmit) in controller time; the agent notes t3 on arrival.
 * offset = ((t1 − t0) + (t2 − t3)) / 2, delay = (t3 − t0) − (t2 − t1).
 */
export const TimeRequest = AgentHeader.extend({
  id: z.number().int().nonnegative(),
  t0: z.number(),
});
export type TimeRequest = z.infer<typeof TimeRequest>;

export const TimeResponse = Envelope.extend({
  id: z.number().int().nonnegative(),
  t0: z.number(),
  t1: z.number(),
  t2: z.number(),
});
export type TimeResponse = z.infer<typeof TimeResponse>;
