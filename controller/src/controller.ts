import fs from 'node:fs';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { AlarmPolicy, ControllerEnv, topicFor, type Telemetry } from '../../schemas/src/index.js';
import { createAlarmEngine } from './alarms.js';
import { createAuth } from './auth.js';
import type { BrokerAccounts } from './broker/accounts.js';
import { createEmbeddedBroker, type EmbeddedBroker } from './broker/embedded.js';
import { createMosquittoAccounts, type MosquittoAccounts } from './broker/mosquitto-accounts.js';
import mqtt, { type MqttClient } from 'mqtt';
import { createCommands } from './commands.js';
import { createEnvelopeFactory } from './envelope.js';
import { createEventBus } from './event-bus.js';
import { createFleetLink, type FleetLink } from './fleet-link.js';
import { buildApp } from './http/app.js';
import { newSecret } from './secrets.js';
import { openDb } from './store/db.js';
import { createStore } from './store/store.js';
import { createWebhooks } from './webhooks.js';
import { createScheduling } from './scheduling/index.js';
import { createMediaService } from './media/media-service.js';
import { createLive, type LiveOptions } from './live/index.js';
import { createScheduledRelays, type ScheduledRelayOptions } from './live/scheduled-relay.js';
import { createZoneStreams, type ZoneStreamOptions } from './streams/zone-stream.js';
import { createListenKeys } from './streams/listen-keys.js';
import { createSupervisor } from '../../audio-pipeline/src/index.js';
import { createTts } from '../../audio-pipeline/src/tts/index.js';
import type { NodeCacheEntry, Services } from './services.js';

export interface ControllerOptions {
  env?: Partial<Record<keyof ControllerEnv, string | number>>;
  alarmPolicy?: Partial<AlarmPolicy>;
  log?: Logger;
  now?: () => number;
  /** Raw telemetry kept at full rate this long, then folded into rollups. */
  telemetryRawRetentionMs?: number;
  telemetryBucketMs?: number;
  /** Embedded mode: how long after start a node that was online before may take to reconnect. */
  commandTtlMs?: number;
  /** Scheduled relay items played through live sessions (tests shorten the lead). */
  scheduledRelay?: Partial<ScheduledRelayOptions>;
  /** Zone pull streams (tests lower the slow-listener limit). */
  streams?: Partial<ZoneStreamOptions>;
  /** Live sessions (tests lower the speak-now quorum). */
  live?: Partial<LiveOptions>;
}


export function loadEnv(env: Record<string, string | number | undefined>): ControllerEnv {
  const r = ControllerEnv.safeParse(env);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid configuration: ${msg}`);
  }
  return r.data;
}

/** Composition root: construct parts, start them one by one (named in logs), stop in reverse. */
export async function createController(opts: ControllerOptions = {}) {
  const raw: Record<string, string | number | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) if (k.startsWith('RADIO_')) raw[k] = v;
  const config = loadEnv({ ...raw, ...(opts.env ?? {}) });
  const policy = AlarmPolicy.parse(opts.alarmPolicy ?? {});
  const now = opts.now ?? (() => performance.timeOrigin + performance.now());
  const nowInt = () => Math.floor(now());
  const log = opts.log ?? pino({ level: config.RADIO_LOG_LEVEL });
  const dataDir = path.resolve(config.RADIO_DATA_DIR);
  fs.mkdirSync(dataDir, { recursive: true });

  const db = openDb(path.join(dataDir, 'radio.db'));
  const store = createStore(db);
  store.ensureCommune(config.RADIO_COMMUNE_ID, config.RADIO_COMMUNE_NAME, nowInt());
  const bus = createEventBus();
  const envelope = createEnvelopeFactory(now);
  const auth = createAuth({ store, log: log.child({ component: 'auth' }), now: nowInt, defaultCommuneId: config.RADIO_COMMUNE_ID });

  // In-memory view of nodes for O(1) hot-path lookups (broker hooks, message handlers).
  const nodes = new Map<string, NodeCacheEntry>();
  const refreshNode = (id: string) => {
    const n = store.getNodeAny(id);
    if (!n) { nodes.delete(id); return; }
    const prev = nodes.get(id);
    nodes.set(id, { communeId: n.communeId, zoneId: n.zoneId, maintenance: n.maintenance, status: prev?.status ?? n.status, seen: prev?.seen ?? n.lastSeenAt !== null });
  };

  const external = config.RADIO_MQTT_URL !== undefined;
  let broker: EmbeddedBroker | undefined;
  let accounts: BrokerAccounts;
  if (!external) {
    broker = createEmbeddedBroker({ port: config.RADIO_MQTT_PORT, log: log.child({ component: 'broker' }), controllerPassword: newSecret() });
    accounts = broker;
  } else {
    // Replaced in start() by the Mosquitto dynamic-security writer; refuses until then.
    const notReady = async () => { throw new Error('broker accounts are not ready (controller not started)'); };
    accounts = { upsertNode: notReady, removeNode: notReady, disconnectNode: notReady };
  }
  let accountsClient: MqttClient | undefined;
  let mosquitto: MosquittoAccounts | undefined;

  const alarms = createAlarmEngine({
    store, bus, log: log.child({ component: 'alarms' }), now: nowInt, policy,
    nodeInfo: (id) => nodes.get(id),
  });
  const webhooks = createWebhooks({ store, bus, log: log.child({ component: 'webhooks' }) });
  let link: FleetLink | undefined;
  const scheduling = createScheduling({
    store, bus, log: log.child({ component: 'scheduling' }), now: nowInt, envelope, link: () => link!, nodes,
    // TTS items of a programme are rendered to media when the programme is saved (ahead of air).
    renderTts: async (communeId, text, voice, actor) => ({ id: (await media.tts(communeId, actor, { text, voice })).media.id }),
  });
  // 2 cores: one normal ffmpeg job at a time, one slot kept for urgent work (emergency TTS, live).
  const supervisor = createSupervisor({ concurrency: 1, urgentSlots: 1, log: log.child({ component: 'supervisor' }) });
  const tts = createTts({
    supervisor, espeak: { tmpDir: path.join(dataDir, 'tmp') },
    ...(config.RADIO_TTS_URL ? { http: { url: config.RADIO_TTS_URL, apiKey: config.RADIO_TTS_KEY, voice: config.RADIO_TTS_VOICE, tmpDir: path.join(dataDir, 'tmp') } } : {}),
  });
  const media = createMediaService({ store, log: log.child({ component: 'media' }), bus, now: nowInt, dataDir, supervisor, tts, isInUse: (c, id) => scheduling.isMediaInUse(c, id) });
  const live = createLive({ config, store, bus, log: log.child({ component: 'live' }), now: nowInt, envelope, link: () => link!, nodes, media, supervisor, ...(opts.live ? { options: opts.live } : {}) });
  // The listen keys' seal key lives beside the database, not in it (streams/listen-keys.ts).
  const listenKeys = createListenKeys({ store, now: nowInt, sealKeyFile: path.join(dataDir, 'listen-keys.seal'), log });
  const streams = createZoneStreams({ store, live, nodes, media, now: nowInt, log, keys: listenKeys, ...(opts.streams ? { options: opts.streams } : {}) });
  const scheduledRelays = createScheduledRelays({
    store, live, scheduling, log: log.child({ component: 'scheduled-relay' }), now: nowInt, ...(opts.scheduledRelay ? { options: opts.scheduledRelay } : {}),
  });
  const commands = createCommands({ store, link: () => link!, bus, log: log.child({ component: 'commands' }), now: nowInt, envelope, ttlMs: opts.commandTtlMs });

  function setStatus(nodeId: string, online: boolean, agentVersion: string | null) {
    const n = nodes.get(nodeId);
    if (!n) return;
    const status = online ? 'online' : 'offline';
    const ts = nowInt();
    if (online) n.seen = true;
    if (n.status !== status) {
      n.status = status;
      statusWrites.push({ nodeId, communeId: n.communeId, status, ts, agentVersion });
      if (statusWrites.length === 1) setImmediate(flushStatus);
      bus.emit(n.communeId, { type: 'node.status', ts, nodeId, zoneId: n.zoneId, status });
    }
    if (n.seen) alarms.onStatus(nodeId, online, ts);
  }

  // Status changes arrive in bursts (a reconnect storm is thousands in a second): they are written in
  // one transaction per event-loop turn instead of two autocommits each. The in-memory view (health,
  // alarms, GET /nodes through the cache) is updated at once.
  let statusWrites: { nodeId: string; communeId: string; status: 'online' | 'offline'; ts: number; agentVersion: string | null }[] = [];
  function flushStatus() {
    const batch = statusWrites;
    statusWrites = [];
    if (batch.length === 0) return;
    try {
      db.transaction(() => {
        for (const w of batch) {
          store.setNodeStatus(w.nodeId, w.status, w.ts, w.status === 'online' ? w.ts : null, w.agentVersion);
          store.addEvent(w.communeId, w.nodeId, w.ts, `node.${w.status}`, undefined);
        }
      })();
    } catch (e) {
      log.error({ err: e, count: batch.length }, 'writing node status changes failed');
    }
  }

  const mqttUrl = external ? config.RADIO_MQTT_URL! : '';
  const ctl: Services & { broker: EmbeddedBroker | undefined; start(): Promise<void>; stop(): Promise<void>; httpPort(): number } = {
    config, log, store, bus, auth, alarms, webhooks, commands, scheduling, media, live, streams, supervisor, nodes, accounts, now: nowInt, envelope, dataDir,
    get broker() { return broker; },
    get link() { return link!; },
    refreshNode,
    publishNodeConfig(id: string) {
      const n = store.getNodeAny(id);
      if (!n) return;
      const body = link!.publish('config', id, {
        ...envelope(), nodeId: n.id, communeId: n.communeId, zoneId: n.zoneId, name: n.name,
        timezone: 'Asia/Ho_Chi_Minh', defaultVolume: 70, maintenance: n.maintenance, httpBase: ctl.httpBase(),
      });
      store.putRetained(topicFor('config', id), n.communeId, body, nowInt());
    },
    clearNodeConfig(id: string) {
      const topic = topicFor('config', id);
      link?.publishRaw(topic, '', true);
      store.putRetained(topic, '', '', nowInt());
    },
    /** Public base URL agents use for HTTP (media downloads). */
    httpBase: () => `http://${config.RADIO_PUBLIC_HOST}:${ctl.httpPort()}`,
    mqttUrlForAgents: () => external ? config.RADIO_MQTT_URL!.replace(/\/\/[^@/]*@/, '//') : `mqtt://${config.RADIO_PUBLIC_HOST}:${broker!.port}`,
    async start() {
      for (const n of store.allNodeAuth()) refreshNode(n.id);
      if (broker) {
        broker.loadAccounts(store.allNodeAuth());
        await broker.start();
        // The embedded broker starts empty: nobody is connected, whatever the database said.
        for (const [id, n] of nodes) if (n.status === 'online') setStatus(id, false, null);
      }
      const url = external ? mqttUrl : `mqtt://127.0.0.1:${broker!.port}`;
      const u = new URL(url);
      if (external) {
        // Node accounts go to Mosquitto's dynamic-security plugin over a connection of their own, so the
        // fleet link never sees $CONTROL responses.
        accountsClient = await mqtt.connectAsync(`${u.protocol}//${u.host}`, {
          clientId: `controller-accounts-${process.pid}`, username: decodeURIComponent(u.username) || undefined,
          password: decodeURIComponent(u.password) || undefined, protocolVersion: 4, clean: true, reconnectPeriod: 1000,
        });
        mosquitto = createMosquittoAccounts({ client: accountsClient, log: log.child({ component: 'mosquitto-accounts' }) });
        await mosquitto.start();
        await mosquitto.ensureDefaultDeny();
        accounts = mosquitto;
      }
      ctl.accounts = accounts;
      link = createFleetLink({
        url: `${u.protocol}//${u.host}`,
        username: external ? decodeURIComponent(u.username) || undefined : broker!.controllerUsername,
        password: external ? decodeURIComponent(u.password) || undefined : broker!.controllerPassword,
        log: log.child({ component: 'fleet-link' }), now, envelope,
        ...(external ? {} : { publishLocal: broker!.publishLocal }),
        handlers: {
          isKnown: (id) => nodes.has(id),
          onStatus: (id, online, p) => setStatus(id, online, p.agentVersion ?? null),
          onTelemetryBatch: (batch) => {
            const writes = [];
            for (const b of batch) {
              const n = nodes.get(b.nodeId);
              if (!n) continue;
              writes.push({ nodeId: b.nodeId, communeId: n.communeId, ts: b.ts, json: b.json });
            }
            store.writeTelemetryBatch(writes);
            for (const b of batch) {
              if (nodes.get(b.nodeId)?.status === 'offline') setStatus(b.nodeId, true, b.t.agentVersion);
              alarms.onTelemetry(b.nodeId, b.t as Telemetry);
            }
          },
          onEvent: (id, e) => {
            const n = nodes.get(id);
            if (!n) return;
            switch (e.kind) {
              case 'fault':
                store.addEvent(n.communeId, id, nowInt(), `fault.${e.fault}.${e.state}`, e);
                alarms.onFault(id, e);
                return;
              case 'cache_missing':
                store.addEvent(n.communeId, id, nowInt(), 'cache.missing', e);
                log.warn({ nodeId: id, airingId: e.airingId, mediaIds: e.mediaIds }, 'airing starting soon is not cached on the node');
                return;
            }
          },
          onReply: (id, r) => commands.onReply(id, r),
          onPlanAck: (id, a) => scheduling.onPlanAck(id, a),
          onLiveStatus: (id, st) => live.onLiveStatus(id, st),
          onReceipts: (id, r) => scheduling.onReceipts(id, r),
        },
      });
      await link.start();
      for (const r of store.allRetained()) link.publishRaw(r.topic, r.payload, true);
      alarms.start();
      webhooks.start();
      supervisor.start();
      await scheduling.start();
      await live.start();
      // After live.start() (which ends what a previous run left on air) and scheduling.start().
      scheduledRelays.start();
      streams.start();
      compactTimer = setInterval(() => {
        try { store.compactTelemetry(nowInt() - (opts.telemetryRawRetentionMs ?? 24 * 3600_000), opts.telemetryBucketMs ?? 300_000); }
        catch (e) { log.error({ err: e }, 'telemetry compaction failed'); }
      }, 600_000);
      compactTimer.unref();
      if (config.RADIO_WEBHOOK_URL && webhooks.list(config.RADIO_COMMUNE_ID).length === 0) {
        webhooks.add(config.RADIO_COMMUNE_ID, config.RADIO_WEBHOOK_URL, undefined, [], nowInt());
      }
      auth.ensureAdmin(config.RADIO_ADMIN_PASSWORD);
      await app.listen({ port: config.RADIO_HTTP_PORT, host: config.RADIO_HTTP_HOST });
      log.info({ http: config.RADIO_HTTP_PORT, mqtt: external ? 'external' : broker!.port, dataDir }, 'controller ready');
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(compactTimer);
      alarms.stop();
      webhooks.stop();
      await streams.stop();
      scheduledRelays.stop();
      await live.stop();
      await scheduling.stop();
      await supervisor.stop();
      for (const [name, fn] of [['http', () => app.close()], ['fleet-link', () => link?.stop()], ['accounts', async () => { await mosquitto?.stop(); await accountsClient?.endAsync(); }], ['broker', () => broker?.stop()]] as const) {
        try { await fn(); } catch (e) { log.error({ err: e, part: name }, 'error while stopping'); }
      }
      flushStatus();
      db.close();
    },
    httpPort: () => (app.server.address() as { port: number } | null)?.port ?? config.RADIO_HTTP_PORT,
  };
  let stopped = false;
  let compactTimer: NodeJS.Timeout | undefined;
  const app = await buildApp(ctl);
  return Object.assign(ctl, { app, scheduledRelays });
}

export type Controller = Awaited<ReturnType<typeof createController>>;
