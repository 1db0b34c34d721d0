import { describe, expect, it } from 'vitest';
import {
  decodePayload, effectiveVolume, encodePayload, filterFor, MAX_PAYLOAD_BYTES, nodeAcl, parseTopic, preempts, PRIORITIES,
  priorityRank, topicFor, TOPICS, type TopicName,
} from '../../schemas/src/index.js';

describe('topic table', () => {
  it('builds and parses every topic kind symmetrically', () => {
    for (const name of Object.keys(TOPICS) as TopicName[]) {
      const t = topicFor(name, 'abc-1');
      expect(t.startsWith('radio/v1/')).toBe(true);
      expect(parseTopic(t)).toEqual({ name, scope: TOPICS[name].scope, id: 'abc-1' });
    }
  });
  it('refuses ids that would inject topic levels or wildcards', () => {
    for (const bad of ['a/b', '+', '#', '', 'A', 'x'.repeat(65), '-lead']) expect(() => topicFor('telemetry', bad)).toThrow(/invalid/);
  });
  it('rejects topics outside the table or of another protocol version', () => {
    expect(parseTopic('radio/v2/node/a/telemetry')).toBeUndefined();
    expect(parseTopic('radio/v1/node/a/unknown')).toBeUndefined();
    expect(parseTopic('radio/v1/node/A/telemetry')).toBeUndefined();
    expect(parseTopic('radio/v1/node')).toBeUndefined();
  });
  it('gives wildcard filters per kind', () => {
    expect(filterFor('telemetry')).toBe('radio/v1/node/+/telemetry');
    expect(filterFor('zoneCommand')).toBe('radio/v1/zone/+/cmd');
  });
  it('derives the node ACL from the table: own up-topics to publish, own/zone/commune roots to subscribe', () => {
    const acl = nodeAcl('n1', 'z1', 'c1');
    expect(acl.publish).toContain('radio/v1/node/n1/telemetry');
    expect(acl.publish).toContain('radio/v1/node/n1/status');
    expect(acl.publish).not.toContain('radio/v1/node/n1/cmd');
    expect(acl.publish.every((t) => t.startsWith('radio/v1/node/n1/'))).toBe(true);
    expect(acl.subscribe).toEqual(['radio/v1/node/n1/#', 'radio/v1/commune/c1/#', 'radio/v1/zone/z1/#']);
  });
});

describe('payload codec', () => {
  it('names the invalid field', () => {
    const r = decodePayload('status', JSON.stringify({ v: 1, ts: 5, state: 'sleeping' }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/state/);
  });
  it('refuses oversized payloads before parsing them', () => {
    const r = decodePayload('telemetry', Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 32));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/exceeds/);
  });
  it('refuses an unknown protocol version and non-JSON', () => {
    expect(decodePayload('status', '{"v":2,"ts":1,"state":"online"}').ok).toBe(false);
    expect(decodePayload('status', '{nope').ok).toBe(false);
  });
  it('round-trips a command through the discriminated union and rejects bad params', () => {
    const cmd = { v: 1 as const, msgId: 'abcdefgh12', issuedAt: 1, seq: 1, transaction: 't1', name: 'set_volume' as const, params: { volume: 40 } };
    const r = decodePayload('nodeCommand', encodePayload('nodeCommand', cmd));
    expect(r.ok && r.value).toMatchObject({ name: 'set_volume', params: { volume: 40 } });
    expect(decodePayload('nodeCommand', JSON.stringify({ ...cmd, params: { volume: 101 } })).ok).toBe(false);
    expect(decodePayload('nodeCommand', JSON.stringify({ ...cmd, name: 'self_destruct' })).ok).toBe(false);
    expect(() => encodePayload('nodeCommand', { ...cmd, params: { volume: -1 } })).toThrow(/refusing to publish/);
  });
});

describe('priority and volume precedence', () => {
  it('orders emergency > priority > normal', () => {
    expect(PRIORITIES.map(priorityRank)).toEqual([0, 1, 2]);
    expect(preempts({ priority: 'emergency', origin: 'scheduled' }, { priority: 'priority', origin: 'live' })).toBe(true);
    expect(preempts({ priority: 'normal', origin: 'live' }, { priority: 'priority', origin: 'scheduled' })).toBe(false);
  });
  it('lets live preempt scheduled at equal level, never the reverse, and never an equal incumbent', () => {
    expect(preempts({ priority: 'normal', origin: 'live' }, { priority: 'normal', origin: 'scheduled' })).toBe(true);
    expect(preempts({ priority: 'normal', origin: 'scheduled' }, { priority: 'normal', origin: 'live' })).toBe(false);
    expect(preempts({ priority: 'priority', origin: 'scheduled' }, { priority: 'priority', origin: 'scheduled' })).toBe(false);
  });
  it('applies emergency forced volume > technician mute/volume > programme volume > default', () => {
    expect(effectiveVolume({ emergencyForced: 90, technicianMute: true, technicianVolume: 10, programmeVolume: 50, defaultVolume: 70 })).toBe(90);
    expect(effectiveVolume({ technicianMute: true, technicianVolume: 10, programmeVolume: 50, defaultVolume: 70 })).toBe(0);
    expect(effectiveVolume({ technicianVolume: 10, programmeVolume: 50, defaultVolume: 70 })).toBe(10);
    expect(effectiveVolume({ programmeVolume: 50, defaultVolume: 70 })).toBe(50);
    expect(effectiveVolume({ defaultVolume: 70 })).toBe(70);
  });
});
