import { createUdpProxy, type ImpairmentProxy } from '../../firmware-sim/src/impairment-proxy.js';
import type { LiveAnnouncement } from '../../schemas/src/index.js';
import type { TestController } from './controller.js';

/**
 * A one-way path for one cluster: its session announcements name, as the controller's RTP address, a UDP
 * proxy in front of the real one that loses everything toward the agent (its hello arrives, our packets
 * do not). `proxy.set({ down: { lossPct: 0 } })` repairs it.
 */
export async function oneWayPathFor(t: TestController, nodeId: string, seed: string): Promise<ImpairmentProxy> {
  const proxy = await createUdpProxy({ target: { host: '127.0.0.1', port: t.ctl.live.rtpPort() }, down: { lossPct: 100 }, seed });
  const link = t.ctl.link;
  const publish = link.publish.bind(link);
  (link as { publish: (...a: unknown[]) => string }).publish = (name: unknown, id: unknown, payload: unknown, opts: unknown) => {
    if (name === 'live' && id === nodeId) payload = { ...(payload as LiveAnnouncement), rtp: { host: proxy.host, port: proxy.port } };
    return publish(name as 'live', id as string, payload as LiveAnnouncement, opts as undefined);
  };
  return proxy;
}
