import net from 'node:net';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import aedesPersistence from 'aedes-persistence';
import type { Logger } from 'pino';
import { nodeAcl } from '../../../schemas/src/index.js';
import { hashSecret, secretMatches } from '../secrets.js';
import type { BrokerAccounts, NodeAccountSpec } from './accounts.js';
import { withRetainedIndex } from './retained-index.js';

interface Account {
  communeId: string;
  zoneId: string;
  secretHash: string;
  publish: Set<string>;
  /** Subscribe prefixes (a node filter `a/b/#` becomes prefix `a/b`). */
  subscribePrefixes: string[];
}

type Principal = { kind: 'controller' } | { kind: 'node'; nodeId: string };
const principals = new WeakMap<Client, Principal>();

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

function withinPrefixes(topic: string, prefixes: string[]): boolean {
  for (const p of prefixes) if (topic === p || topic.startsWith(`${p}/`)) return true;
  return false;
}

export interface EmbeddedBroker extends BrokerAccounts {
  readonly port: number;
  readonly controllerUsername: string;
  readonly controllerPassword: string;
  connectedCount(): number;
  /** Publish as the controller, inside the broker (no MQTT connection); resolves once routed. */
  publishLocal(topic: string, payload: string, qos: 0 | 1, retain: boolean): Promise<void>;
  loadAccounts(rows: { id: string; communeId: string; zoneId: string; secretHash: string }[]): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The embedded aedes broker. Every client authenticates: nodes with their own secret (SHA-256 in memory,
 * O(1) lookup — hooks run on the controller's event loop), the controller with a per-process secret.
 * A node may publish only its own `up` topics and subscribe only under its node, zone and commune roots.
 */
export function createEmbeddedBroker({ port, host = '0.0.0.0', log, controllerPassword }: { port: number; host?: string; log: Logger; controllerPassword: string }): EmbeddedBroker {
  const accounts = new Map<string, Account>();
  const controllerUsername = '$controller';
  let broker: Aedes | undefined;
  let server: net.Server | undefined;
  let boundPort = port;

  function setAccount(nodeId: string, communeId: string, zoneId: string, secretHash: string) {
    const acl = nodeAcl(nodeId, zoneId, communeId);
    accounts.set(nodeId, {
      communeId, zoneId, secretHash,
      publish: new Set(acl.publish),
      subscribePrefixes: acl.subscribe.map((f) => f.replace(/\/#$/, '')),
    });
  }

  const self: EmbeddedBroker = {
    get port() { return boundPort; },
    controllerUsername,
    controllerPassword,
    connectedCount: () => broker?.connectedClients ?? 0,
    publishLocal(topic, payload, qos, retain) {
      const b = broker;
      if (!b) return Promise.reject(new Error('the embedded broker is not running'));
      return new Promise<void>((resolve, reject) => {
        b.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain, dup: false }, (err) => (err ? reject(err) : resolve()));
      });
    },
    loadAccounts(rows) {
      accounts.clear();
      for (const r of rows) setAccount(r.id, r.communeId, r.zoneId, r.secretHash);
    },
    async upsertNode(spec: NodeAccountSpec) {
      const cur = accounts.get(spec.nodeId);
      const secretHash = spec.password !== undefined ? hashSecret(spec.password) : cur?.secretHash;
      if (!secretHash) throw new Error(`no secret known for node ${spec.nodeId}`);
      setAccount(spec.nodeId, spec.communeId, spec.zoneId, secretHash);
    },
    async removeNode(nodeId) {
      accounts.delete(nodeId);
      await self.disconnectNode(nodeId);
    },
    async disconnectNode(nodeId) {
      const c = (broker as unknown as { clients: Record<string, Client> } | undefined)?.clients[nodeId];
      if (c) await new Promise<void>((resolve) => c.close(() => resolve()));
    },
    async start() {
      broker = await Aedes.createBroker({
        // The package is CommonJS (module.exports = factory); its .d.ts declares an ES default export.
        persistence: withRetainedIndex((aedesPersistence as unknown as () => Parameters<typeof withRetainedIndex>[0])()),
        // Bound the time a half-open client holds the broker's write queue.
        drainTimeout: 10_000,
        // mqemitter's in-flight delivery cap (default 100) throttles a fleet-wide reconnect.
        concurrency: 2000,
        authenticate(client, username, password, done) {
          if (username === undefined || password === undefined) {
            return done(authError('anonymous clients are not allowed', 4), false);
          }
          const pw = password.toString('utf8');
          if (username === controllerUsername) {
            if (pw === controllerPassword) { principals.set(client, { kind: 'controller' }); return done(null, true); }
            return done(authError('bad credentials', 4), false);
          }
          const acc = accounts.get(username);
          if (!acc || !secretMatches(pw, acc.secretHash)) {
            log.warn({ username, clientId: client.id }, 'mqtt: refused connect (bad username or password)');
            return done(authError('bad username or password', 4), false);
          }
          if (client.id !== username) {
            log.warn({ username, clientId: client.id }, 'mqtt: refused connect (client id must equal node id)');
            return done(authError('client id must equal the node id', 2), false);
          }
          principals.set(client, { kind: 'node', nodeId: username });
          done(null, true);
        },
        authorizePublish(client, packet, cb) {
          if (!client) return cb(null);
          const p = principals.get(client);
          if (p?.kind === 'controller') return cb(null);
          if (p?.kind === 'node' && accounts.get(p.nodeId)?.publish.has(packet.topic)) return cb(null);
          log.warn({ clientId: client.id, topic: packet.topic }, 'mqtt: refused publish outside the node ACL');
          cb(new Error(`not authorised to publish on ${packet.topic}`));
        },
        authorizeSubscribe(client, sub, cb) {
          const p = principals.get(client);
          if (p?.kind === 'controller') return cb(null, sub);
          if (p?.kind === 'node') {
            const acc = accounts.get(p.nodeId);
            if (acc && withinPrefixes(sub.topic, acc.subscribePrefixes)) return cb(null, sub);
          }
          log.warn({ clientId: client.id, topic: sub.topic }, 'mqtt: refused subscribe outside the node ACL');
          cb(null, null);
        },
        authorizeForward(client, packet) {
          // Belt and braces after a zone move: deliver to a node only what its current ACL allows.
          const p = principals.get(client);
          if (p?.kind !== 'node') return packet;
          const acc = accounts.get(p.nodeId);
          return acc && withinPrefixes(packet.topic, acc.subscribePrefixes) ? packet : null;
        },
      });
      broker.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'mqtt client error'));
      server = net.createServer(broker.handle);
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        // A reconnect storm is thousands of SYNs at once: a short accept backlog drops them and each
        // dropped client waits out a 1 s, 3 s, 7 s SYN retransmit.
        server!.listen({ port, host, backlog: 4096 }, () => { server!.off('error', reject); resolve(); });
      });
      boundPort = (server.address() as net.AddressInfo).port;
      log.info({ port: boundPort }, 'embedded MQTT broker listening');
    },
    async stop() {
      const s = server; const b = broker;
      server = undefined; broker = undefined;
      // Stop accepting, close every client through the broker, then wait for the listener to finish.
      const closed = s ? new Promise<void>((resolve) => { s.close(() => resolve()); }) : Promise.resolve();
      if (b) await new Promise<void>((resolve) => b.close(() => resolve()));
      await closed;
    },
  };
  return self;
}
