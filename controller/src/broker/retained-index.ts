import { Readable } from 'node:stream';

interface RetainedPacket { topic: string; payload: Buffer; [k: string]: unknown }
interface PersistenceLike {
  storeRetained(packet: RetainedPacket, cb?: (err: Error | null) => void): unknown;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

const BUCKET_LEVELS = 4;

/** MQTT topic filter match (MQTT 3.1.1 §4.7), including "$-topics never match a leading wildcard". */
export function topicMatches(filter: string[], topic: string[]): boolean {
  if (topic[0]?.startsWith('$') && (filter[0] === '+' || filter[0] === '#')) return false;
  for (let i = 0; i < filter.length; i++) {
    const f = filter[i];
    if (f === '#') return true;
    if (i >= topic.length) return false;
    if (f !== '+' && f !== topic[i]) return false;
  }
  return filter.length === topic.length;
}

/**
 * aedes' in-memory persistence tests EVERY retained message against each new subscription, so with one
 * retained status and config per node, 2,000 agents subscribing costs O(N²) topic matches (measured: most
 * of the controller's CPU during a reconnect storm). This wraps the persistence's retained-message part
 * with an index bucketed by the first four topic levels (radio/v1/node/{id}): a subscription whose first
 * four levels are literal only looks at its bucket; anything else falls back to a full scan.
 * Everything else (subscriptions, wills, QoS queues) stays aedes' own.
 */
export function withRetainedIndex<P extends PersistenceLike>(persistence: P): P {
  const buckets = new Map<string, Map<string, RetainedPacket>>();
  const bucketOf = (levels: string[]) => levels.slice(0, BUCKET_LEVELS).join('/');
  const storeRetained = persistence.storeRetained.bind(persistence);

  persistence.storeRetained = (packet: RetainedPacket, cb?: (err: Error | null) => void) => {
    const levels = packet.topic.split('/');
    const key = bucketOf(levels);
    let b = buckets.get(key);
    if (packet.payload.length === 0) {
      b?.delete(packet.topic);
      if (b && b.size === 0) buckets.delete(key);
    } else {
      if (!b) { b = new Map(); buckets.set(key, b); }
      b.set(packet.topic, Object.assign({}, packet));
    }
    // Keep the original store in step (it is what aedes' own code and tests inspect).
    return storeRetained(packet, cb);
  };

  function* match(patterns: string[]): Generator<RetainedPacket> {
    for (const p of patterns) {
      const f = p.split('/');
      const head = f.slice(0, BUCKET_LEVELS);
      const literal = head.length === BUCKET_LEVELS && head.every((l) => l !== '+' && l !== '#');
      const candidates = literal ? [buckets.get(head.join('/'))] : [...buckets.values()];
      for (const b of candidates) {
        if (!b) continue;
        for (const [topic, packet] of b) if (topicMatches(f, topic.split('/'))) yield packet;
      }
    }
  }

  persistence.createRetainedStream = (pattern: string) => Readable.from(match([pattern]));
  persistence.createRetainedStreamCombi = (patterns: string[]) => Readable.from(match(patterns));
  return persistence;
}
