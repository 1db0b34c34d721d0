import { describe, expect, it } from 'vitest';
import {
  ControllerEnv, decodePayload, effectiveVolume, encodePayload, filterFor, MAX_PAYLOAD_BYTES, nodeAcl, parseTopic, preempts, PRIORITIES,
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

describe('live reception in telemetry and the sound-card input variable', () => {
  const base = {
    v: 1, ts: 1_700_000_000_000, uptimeS: 12, agentVersion: '0.1.0', firmwareVersion: 'sim-1',
    amplifier: { power: true, state: 'on', tempC: 35 }, lines: [{ id: 'L1', impedanceOhm: 8, nominalOhm: 8, fault: 'ok' }],
    volume: 60, mute: false, power: { source: 'mains', mainsV: 230, batteryV: 12.8 }, temperatureC: 30,
    modem: { rssiDbm: -70, operator: 'Viettel', tech: '4g' }, gps: null,
    clock: { offsetMs: 1.5, rttMs: 20, driftPpm: 3, synced: true }, cache: { usedBytes: 0, capacityBytes: 1, items: 0, missingSoon: 0 }, playing: null,
  };
  const live = { sessionId: 'live-0123456789abcdef', state: 'playing', packets: 500, lost: 3, late: 1, concealed: 3, recoveredByRed: 20, jitterMs: 4.2, lossPct: 4.5 };
  it('accepts telemetry without `live` (agents that predate it) and with it', () => {
    expect(decodePayload('telemetry', JSON.stringify(base)).ok).toBe(true);
    const r = decodePayload('telemetry', JSON.stringify({ ...base, live }));
    expect(r.ok && r.value).toMatchObject({ live: { sessionId: live.sessionId, lossPct: 4.5 } });
    expect(decodePayload('telemetry', JSON.stringify({ ...base, live: { ...live, state: 'ended', endedAt: 1_700_000_000_500 } })).ok).toBe(true);
  });
  it('rejects a malformed `live` and names the field', () => {
    const bad: [string, unknown][] = [
      ['packets', { ...live, packets: -1 }], ['lost', { ...live, lost: 1.5 }], ['lossPct', { ...live, lossPct: 101 }], ['jitterMs', { ...live, jitterMs: -2 }],
      ['state', { ...live, state: 'buffering' }], ['sessionId', { ...live, sessionId: '' }], ['endedAt', { ...live, endedAt: -5 }],
      ['recoveredByRed', (({ recoveredByRed: _, ...rest }) => rest)(live)],
    ];
    for (const [field, value] of bad) {
      const r = decodePayload('telemetry', JSON.stringify({ ...base, live: value }));
      expect(r.ok, field).toBe(false);
      if (!r.ok) expect(r.error, field).toMatch(new RegExp(field));
    }
    expect(() => encodePayload('telemetry', { ...base, live: { ...live, lossPct: Number.NaN } } as never)).toThrow(/refusing to publish/);
  });
  it('validates RADIO_LIVE_INPUT: alsa:<device> or pulse:<source>, optional', () => {
    expect(ControllerEnv.parse({}).RADIO_LIVE_INPUT).toBeUndefined();
    for (const ok of ['alsa:default', 'alsa:hw:1,0', 'alsa:plughw:CARD=Device,DEV=0', 'pulse:default', 'pulse:alsa_input.usb-Foo.analog-stereo', 'pulse:@DEFAULT_SOURCE@']) {
      expect(ControllerEnv.safeParse({ RADIO_LIVE_INPUT: ok }).success, ok).toBe(true);
    }
    for (const bad of ['default', 'hw:1,0', 'oss:/dev/dsp', 'alsa:', 'alsa:-i', 'alsa:hw 1', 'pulse:a;b', `alsa:${'x'.repeat(200)}`]) {
      const r = ControllerEnv.safeParse({ RADIO_LIVE_INPUT: bad });
      expect(r.success, bad).toBe(false);
      if (!r.success) expect(r.error.issues[0]!.message).toMatch(/RADIO_LIVE_INPUT must be alsa:<device> or pulse:<source>/);
    }
  });
});

describe("the agent's warm-up announcement", () => {
  it('is a valid live announcement, so the warm-up runs the whole validator and not only its error path', async () => {
    const { SAMPLE_ANNOUNCEMENT } = await import('../../edge-agent/src/live.js');
    const r = decodePayload('live', JSON.stringify(SAMPLE_ANNOUNCEMENT));
    expect(r.ok, r.ok ? '' : r.error).toBe(true);
    if (r.ok) expect(r.value.sessionId).toBe(SAMPLE_ANNOUNCEMENT.sessionId);
  });
});
