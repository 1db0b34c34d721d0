import dgram from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { ipLiteralLookup } from '../../audio-pipeline/src/live/index.js';

/*
 * The controller's RTP socket resolves its destinations with ipLiteralLookup: IP literals at once (no
 * deferred callback per datagram), host names through dns.lookup. A real socket with it delivers.
 */
describe('ipLiteralLookup', () => {
  it('answers IPv4 and IPv6 literals synchronously, with their family', () => {
    const got: [string, number][] = [];
    ipLiteralLookup('127.0.0.1', 4, (err, a, f) => { expect(err).toBeNull(); got.push([a, f]); });
    ipLiteralLookup('::1', 6, (err, a, f) => { expect(err).toBeNull(); got.push([a, f]); });
    expect(got).toEqual([['127.0.0.1', 4], ['::1', 6]]);
  });

  it('resolves a host name through dns.lookup (asynchronously), and reports a name that does not resolve', async () => {
    let sync = true;
    const r = await new Promise<[NodeJS.ErrnoException | null, string, number, boolean]>((resolve) => {
      ipLiteralLookup('localhost', 4, (err, a, f) => resolve([err, a, f, sync]));
      sync = false;
    });
    expect(r[0]).toBeNull();
    expect(r[1]).toBe('127.0.0.1');
    expect(r[2]).toBe(4);
    expect(r[3]).toBe(false);
    const bad = await new Promise<NodeJS.ErrnoException | null>((resolve) => ipLiteralLookup('no-such-host.invalid', 4, (err) => resolve(err)));
    expect(bad?.code).toMatch(/ENOTFOUND|EAI_AGAIN/);
  });

  it('lets a dgram socket send to an address without a callback', async () => {
    const rx = dgram.createSocket('udp4');
    await new Promise<void>((r) => rx.bind(0, '127.0.0.1', () => r()));
    const got = new Promise<Buffer>((resolve) => rx.once('message', (m) => resolve(m)));
    const tx = dgram.createSocket({ type: 'udp4', lookup: ipLiteralLookup as never });
    tx.send(Buffer.from('hello'), rx.address().port, '127.0.0.1');
    expect((await got).toString()).toBe('hello');
    tx.close();
    rx.close();
  });
});
