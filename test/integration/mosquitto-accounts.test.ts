/**
 * External-broker accounts: a real Mosquitto 2.x with the dynamic-security plugin, node accounts and ACLs
 * written by createMosquittoAccounts() through the controller's own account, real MQTT.js clients.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createMosquittoAccounts,
  DynsecError,
  nodeRoleName,
  type MosquittoAccounts,
} from '../../controller/src/broker/mosquitto-accounts.js';
import { topicFor } from '../../schemas/src/topics.js';
import { hasMosquitto, mosquittoUnavailableReason, startMosquitto, type MosquittoHandle } from '../helpers/mosquitto.js';

// CI installs mosquitto (.ci/run): there a missing broker is a failure (startMosquitto throws the
// reason), not a silent skip.
const available = hasMosquitto() || process.env.CI !== undefined;
const COMMUNE = 'c1';
// MQTT 3.1.1 CONNACK return code 5 / MQTT 5 reason code 0x87: not authorised (Mosquitto uses it for a bad
// password and for anonymous clients alike). SUBACK failure: 0x80 (3.1.1) / 0x87 (5).
const CONNACK_NOT_AUTHORIZED_V4 = 5;
const RC_NOT_AUTHORIZED_V5 = 0x87;
const SUBACK_FAILURE_V4 = 0x80;

interface Received {
  topic: string;
  payload: string;
}

/** Records every message a client receives and lets a test await one by predicate (bounded). */
function recorder(client: MqttClient) {
  const seen: Received[] = [];
  const waiters: { pred: (m: Received) => boolean; resolve: (m: Received) => void }[] = [];
  client.on('message', (topic, payload) => {
    const m = { topic, payload: payload.toString('utf8') };
    seen.push(m);
    for (const w of [...waiters]) {
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  return {
    seen,
    async next(pred: (m: Received) => boolean, timeoutMs = 5_000): Promise<Received> {
      const hit = seen.find(pred);
      if (hit) return hit;
      let timer: NodeJS.Timeout | undefined;
      try {
        return await new Promise<Received>((resolve, reject) => {
          waiters.push({ pred, resolve });
          timer = setTimeout(() => reject(new Error(`no matching message within ${timeoutMs} ms; saw ${JSON.stringify(seen.slice(-5))}`)), timeoutMs);
        });
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

async function closed(client: MqttClient, timeoutMs = 5_000): Promise<void> {
  if (!client.connected) return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('close', () => resolve());
      timer = setTimeout(() => reject(new Error('client was not disconnected')), timeoutMs);
    });
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(!available)(
  available ? 'mosquitto dynamic-security accounts' : `mosquitto accounts (skipped: ${mosquittoUnavailableReason()})`,
  () => {
    let broker: MosquittoHandle;
    let controller: MqttClient;
    let monitor: ReturnType<typeof recorder>;
    let accounts: MosquittoAccounts;
    const clients: MqttClient[] = [];

    const connectNode = async (nodeId: string, password: string, extra: IClientOptions = {}): Promise<MqttClient> => {
      const c = await mqtt.connectAsync(broker.url, {
        username: nodeId,
        password,
        clientId: nodeId,
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 5_000,
        ...extra,
      });
      clients.push(c);
      return c;
    };
    /** Resolves with the CONNACK code of a refused connection (fails the test if it is accepted). */
    const refusedCode = async (opts: IClientOptions): Promise<number | undefined> => {
      try {
        const c = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
        await c.endAsync();
      } catch (e) {
        return (e as { code?: number }).code;
      }
      throw new Error(`connection unexpectedly accepted: ${JSON.stringify({ ...opts, password: '…' })}`);
    };
    const subackCode = async (c: MqttClient, filter: string): Promise<number> => {
      try {
        const granted = await c.subscribeAsync(filter, { qos: 1 });
        return granted[0]?.qos ?? -1;
      } catch (e) {
        // MQTT.js rejects with the SUBACK attached when a return code has the failure bit (0x80) set.
        const err = e as { code?: number; packet?: { granted?: number[] } };
        return err.packet?.granted?.[0] ?? err.code ?? -1;
      }
    };

    beforeAll(async () => {
      broker = await startMosquitto();
      // The controller's own account, created by ensureControllerAccount() in the helper: it provisions
      // nodes through dynsec and subscribes to everything under radio/v1 on one connection.
      controller = await mqtt.connectAsync(broker.controllerUrl!, { protocolVersion: 5, reconnectPeriod: 200 });
      monitor = recorder(controller);
      await controller.subscribeAsync('radio/v1/#', { qos: 1 });
      accounts = createMosquittoAccounts({ client: controller, timeoutMs: 5_000 });
      await accounts.start();
    });

    afterAll(async () => {
      await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
      await accounts?.stop();
      await controller?.endAsync(true);
      await broker?.stop();
    });

    it('a provisioned node connects with its password; wrong password, anonymous and a foreign client id are refused', async () => {
      await accounts.upsertNode({ nodeId: 'n1', zoneId: 'z1', communeId: COMMUNE, password: 'pw-n1' });
      const n1 = await connectNode('n1', 'pw-n1');
      expect(n1.connected).toBe(true);

      expect(await refusedCode({ username: 'n1', password: 'wrong', protocolVersion: 4 })).toBe(CONNACK_NOT_AUTHORIZED_V4);
      expect(await refusedCode({ username: 'n1', password: 'wrong', protocolVersion: 5 })).toBe(RC_NOT_AUTHORIZED_V5);
      expect(await refusedCode({ protocolVersion: 4 })).toBe(CONNACK_NOT_AUTHORIZED_V4);
      expect(await refusedCode({ protocolVersion: 5 })).toBe(RC_NOT_AUTHORIZED_V5);
      expect(await refusedCode({ username: 'nobody', password: 'pw-n1', protocolVersion: 4 })).toBe(CONNACK_NOT_AUTHORIZED_V4);
      // Client id pinned to the node id: n1's password cannot open (and so steal) another node's session.
      expect(await refusedCode({ username: 'n1', password: 'pw-n1', clientId: 'n2', protocolVersion: 4 })).toBe(CONNACK_NOT_AUTHORIZED_V4);
    });

    it('a node publishes its own topics; a publish on another node\'s topic never reaches the controller', async () => {
      await accounts.upsertNode({ nodeId: 'n2', zoneId: 'z1', communeId: COMMUNE, password: 'pw-n2' });
      const n2 = await connectNode('n2', 'pw-n2');
      await n2.publishAsync(topicFor('status', 'n2'), '{"state":"online"}', { qos: 1, retain: true });
      const status = await monitor.next((m) => m.topic === topicFor('status', 'n2'));
      expect(status.payload).toBe('{"state":"online"}');

      // QoS 0 from one client arrives in order: once the later allowed marker is in, the forbidden
      // earlier message would have been too — so its absence proves the broker dropped it.
      const forbidden = [topicFor('telemetry', 'n1'), topicFor('zoneCommand', 'z1'), topicFor('communeCommand', COMMUNE), 'other/app/topic'];
      for (const t of forbidden) n2.publish(t, 'forged', { qos: 0 });
      n2.publish(topicFor('telemetry', 'n2'), 'marker-b', { qos: 0 });
      await monitor.next((m) => m.topic === topicFor('telemetry', 'n2') && m.payload === 'marker-b');
      expect(monitor.seen.filter((m) => m.payload === 'forged')).toEqual([]);

      // MQTT 5 makes the refusal visible: PUBACK 0x87, including on the dynsec control topic.
      const n2v5 = await connectNode('n2', 'pw-n2', { protocolVersion: 5 }); // takes over n2's session
      await expect(n2v5.publishAsync(topicFor('telemetry', 'n1'), 'forged', { qos: 1 })).rejects.toMatchObject({ code: RC_NOT_AUTHORIZED_V5 });
      await expect(
        n2v5.publishAsync('$CONTROL/dynamic-security/v1', JSON.stringify({ commands: [{ command: 'deleteClient', username: 'n1' }] }), { qos: 1 }),
      ).rejects.toMatchObject({ code: RC_NOT_AUTHORIZED_V5 });
      await expect(n2v5.publishAsync(topicFor('reply', 'n2'), '{}', { qos: 1 })).resolves.toBeDefined();
    });

    it('a node subscribes to its own, its zone\'s and its commune\'s topics only', async () => {
      await accounts.upsertNode({ nodeId: 'n3', zoneId: 'z1', communeId: COMMUNE, password: 'pw-n3' });
      const n3 = await connectNode('n3', 'pw-n3');
      expect(await subackCode(n3, topicFor('nodeCommand', 'n3'))).toBe(1);
      expect(await subackCode(n3, topicFor('timeResponse', 'n3'))).toBe(1);
      expect(await subackCode(n3, topicFor('zoneCommand', 'z1'))).toBe(1);
      expect(await subackCode(n3, topicFor('communeCommand', COMMUNE))).toBe(1);
      expect(await subackCode(n3, 'radio/v1/zone/z1/#')).toBe(1);

      for (const filter of [
        topicFor('nodeCommand', 'n1'),
        topicFor('zoneCommand', 'z2'),
        'radio/v1/node/+/cmd',
        'radio/v1/#',
        '#',
        '$SYS/#',
        '$CONTROL/dynamic-security/#',
        `$share/g/${topicFor('nodeCommand', 'n1')}`,
      ]) {
        expect({ filter, code: await subackCode(n3, filter) }).toEqual({ filter, code: SUBACK_FAILURE_V4 });
      }
      const n3v5 = await mqtt.connectAsync(broker.url, { username: 'n3', password: 'pw-n3', clientId: 'n3', protocolVersion: 5, reconnectPeriod: 0 });
      clients.push(n3v5);
      expect(await subackCode(n3v5, topicFor('nodeCommand', 'n1'))).toBe(RC_NOT_AUTHORIZED_V5);
      await n3v5.endAsync();

      // Delivery on an allowed subscription, from the controller account.
      const n3b = await connectNode('n3', 'pw-n3');
      const inboxB = recorder(n3b);
      await n3b.subscribeAsync(topicFor('zoneCommand', 'z1'), { qos: 1 });
      await controller.publishAsync(topicFor('zoneCommand', 'z1'), 'to-z1', { qos: 1 });
      expect((await inboxB.next((m) => m.payload === 'to-z1')).topic).toBe(topicFor('zoneCommand', 'z1'));
    });

    it('moving a node to another zone disconnects it; after reconnecting it gets the new zone and is refused the old', async () => {
      await accounts.upsertNode({ nodeId: 'n4', zoneId: 'z1', communeId: COMMUNE, password: 'pw-n4' });
      // A persistent session keeps its old subscriptions across the reconnect: delivery must still stop.
      const opts: IClientOptions = { clean: false };
      const first = await connectNode('n4', 'pw-n4', opts);
      const firstInbox = recorder(first);
      await first.subscribeAsync([topicFor('zoneCommand', 'z1'), topicFor('nodeCommand', 'n4')], { qos: 1 });
      await controller.publishAsync(topicFor('zoneCommand', 'z1'), 'z1-before', { qos: 1 });
      await firstInbox.next((m) => m.payload === 'z1-before');

      const gone = closed(first);
      await accounts.upsertNode({ nodeId: 'n4', zoneId: 'z2', communeId: COMMUNE });
      await accounts.disconnectNode('n4');
      await gone;
      expect(first.connected).toBe(false);

      const again = await connectNode('n4', 'pw-n4', opts);
      const inbox = recorder(again);
      expect(await subackCode(again, topicFor('zoneCommand', 'z2'))).toBe(1);
      expect(await subackCode(again, topicFor('zoneCommand', 'z1'))).toBe(SUBACK_FAILURE_V4);
      // Same publisher, same QoS: ordered. The old-zone message goes first, the marker on the node's own
      // topic second; the marker arriving without it proves the stale session subscription is dead.
      await controller.publishAsync(topicFor('zoneCommand', 'z1'), 'z1-after', { qos: 1 });
      await controller.publishAsync(topicFor('zoneCommand', 'z2'), 'z2-after', { qos: 1 });
      await controller.publishAsync(topicFor('nodeCommand', 'n4'), 'marker-d', { qos: 1 });
      await inbox.next((m) => m.payload === 'marker-d');
      expect((await inbox.next((m) => m.payload === 'z2-after')).topic).toBe(topicFor('zoneCommand', 'z2'));
      expect(inbox.seen.map((m) => m.payload)).not.toContain('z1-after');

      // disconnectNode on its own (no ACL change) drops the session and lets it straight back in.
      const dropped = closed(again);
      await accounts.disconnectNode('n4');
      await dropped;
      expect((await connectNode('n4', 'pw-n4')).connected).toBe(true);
    });

    it('re-upserting an unchanged node is a no-op that keeps it connected; a new password replaces the old', async () => {
      await accounts.upsertNode({ nodeId: 'n5', zoneId: 'z1', communeId: COMMUNE, password: 'pw-n5' });
      const n5 = await connectNode('n5', 'pw-n5');
      let dropped = false;
      n5.on('close', () => (dropped = true));
      await accounts.upsertNode({ nodeId: 'n5', zoneId: 'z1', communeId: COMMUNE });
      await Promise.all([
        accounts.upsertNode({ nodeId: 'n5', zoneId: 'z1', communeId: COMMUNE }),
        accounts.upsertNode({ nodeId: 'n5', zoneId: 'z1', communeId: COMMUNE }),
      ]);
      // The broker handles the dynsec commands before this PUBACK on the same broker loop: a kick would
      // have closed the socket first.
      await n5.publishAsync(topicFor('event', 'n5'), '{}', { qos: 1 });
      expect(dropped).toBe(false);
      expect(n5.connected).toBe(true);

      const gone = closed(n5);
      await accounts.upsertNode({ nodeId: 'n5', zoneId: 'z1', communeId: COMMUNE, password: 'pw-n5-new' });
      await gone; // Mosquitto drops a session whose password changed
      expect(await refusedCode({ username: 'n5', password: 'pw-n5', clientId: 'n5', protocolVersion: 4 })).toBe(CONNACK_NOT_AUTHORIZED_V4);
      expect((await connectNode('n5', 'pw-n5-new')).connected).toBe(true);

      // A lost enableClient (controller crash mid-disconnect) is repaired by the next upsert.
      await accounts.send([{ command: 'disableClient', username: 'n5' }]);
      await accounts.upsertNode({ nodeId: 'n5', zoneId: 'z1', communeId: COMMUNE });
      expect((await connectNode('n5', 'pw-n5-new')).connected).toBe(true);
    });

    it('removeNode drops the session and makes the password stop working', async () => {
      await accounts.upsertNode({ nodeId: 'n6', zoneId: 'z1', communeId: COMMUNE, password: 'pw-n6' });
      const n6 = await connectNode('n6', 'pw-n6');
      const gone = closed(n6);
      await accounts.removeNode('n6');
      await gone;
      expect(await refusedCode({ username: 'n6', password: 'pw-n6', clientId: 'n6', protocolVersion: 4 })).toBe(CONNACK_NOT_AUTHORIZED_V4);
      const [client, role] = await accounts.send([
        { command: 'getClient', username: 'n6' },
        { command: 'getRole', rolename: nodeRoleName('n6') },
      ]);
      expect(client?.error).toMatch(/not found/i);
      expect(role?.error).toMatch(/not found/i);
      // Idempotent, and disconnecting an unknown node is a no-op.
      await accounts.removeNode('n6');
      await accounts.disconnectNode('n6');
    });

    it('rejects bad input and a zone change for a node the broker does not know, with a code', async () => {
      await expect(accounts.upsertNode({ nodeId: 'n7', zoneId: '+', communeId: COMMUNE, password: 'x' })).rejects.toMatchObject({
        code: 'DYNSEC_BAD_INPUT',
      });
      await expect(accounts.upsertNode({ nodeId: 'n7', zoneId: 'z1', communeId: 'c/#', password: 'x' })).rejects.toBeInstanceOf(DynsecError);
      await expect(accounts.upsertNode({ nodeId: 'ghost', zoneId: 'z1', communeId: COMMUNE })).rejects.toMatchObject({
        code: 'DYNSEC_NO_ACCOUNT',
      });
    });

    it('keeps nodes fenced in even when the broker default ACL access is allow, and ensureDefaultDeny restores deny', async () => {
      const [set] = await accounts.send([
        {
          command: 'setDefaultACLAccess',
          acls: [
            { acltype: 'publishClientSend', allow: true },
            { acltype: 'subscribe', allow: true },
          ],
        },
      ]);
      expect(set?.error).toBeUndefined();
      try {
        await accounts.upsertNode({ nodeId: 'n8', zoneId: 'z1', communeId: COMMUNE, password: 'pw-n8' });
        const n8 = await connectNode('n8', 'pw-n8');
        expect(await subackCode(n8, topicFor('nodeCommand', 'n1'))).toBe(SUBACK_FAILURE_V4);
        n8.publish(topicFor('telemetry', 'n1'), 'forged-open', { qos: 0 });
        n8.publish(topicFor('telemetry', 'n8'), 'marker-open', { qos: 0 });
        await monitor.next((m) => m.payload === 'marker-open');
        expect(monitor.seen.filter((m) => m.payload === 'forged-open')).toEqual([]);
      } finally {
        await accounts.ensureDefaultDeny();
      }
      const [get] = await accounts.send([{ command: 'getDefaultACLAccess' }]);
      const acls = (get?.data as { acls: { acltype: string; allow: boolean }[] }).acls;
      expect(Object.fromEntries(acls.map((a) => [a.acltype, a.allow]))).toMatchObject({ publishClientSend: false, subscribe: false });
    });

    it('times out with a clear error when the account may not publish to the dynsec API', async () => {
      // A client allowed to read the response topic but not to send commands; with MQTT 3.1.1 the
      // broker drops the command silently, so only the timeout can tell.
      const [role, client] = await accounts.send([
        {
          command: 'createRole',
          rolename: 'listener',
          acls: [{ acltype: 'subscribePattern', topic: '$CONTROL/dynamic-security/#', allow: true, priority: 1 }],
        },
        { command: 'createClient', username: 'listener', password: 'pw-l', roles: [{ rolename: 'listener' }] },
      ]);
      expect([role?.error, client?.error]).toEqual([undefined, undefined]);
      const listener = await mqtt.connectAsync(broker.url, { username: 'listener', password: 'pw-l', protocolVersion: 4, reconnectPeriod: 0 });
      clients.push(listener);
      const weak = createMosquittoAccounts({ client: listener, timeoutMs: 300 });
      await expect(weak.disconnectNode('n1')).rejects.toMatchObject({ code: 'DYNSEC_TIMEOUT' });
      await weak.stop();
      await expect(weak.disconnectNode('n1')).rejects.toMatchObject({ code: 'DYNSEC_STOPPED' });

      // A node account cannot even subscribe to the response topic.
      await accounts.upsertNode({ nodeId: 'n9', zoneId: 'z1', communeId: COMMUNE, password: 'pw-n9' });
      const n9 = await connectNode('n9', 'pw-n9', { protocolVersion: 5 });
      const asNode = createMosquittoAccounts({ client: n9, timeoutMs: 1_000 });
      await expect(asNode.start()).rejects.toMatchObject({ code: 'DYNSEC_PUBLISH_FAILED' });
      await asNode.stop();
    });

    it('accounts survive a broker restart and the controller keeps provisioning after reconnecting', async () => {
      await accounts.upsertNode({ nodeId: 'n10', zoneId: 'z1', communeId: COMMUNE, password: 'pw-n10' });
      await broker.restart();
      // MQTT.js reconnects on its own (reconnectPeriod) and resubscribes the response topic.
      await accounts.upsertNode({ nodeId: 'n11', zoneId: 'z2', communeId: COMMUNE, password: 'pw-n11' });
      expect((await connectNode('n10', 'pw-n10')).connected).toBe(true);
      const n11 = await connectNode('n11', 'pw-n11');
      expect(await subackCode(n11, topicFor('zoneCommand', 'z2'))).toBe(1);
      expect(await subackCode(n11, topicFor('zoneCommand', 'z1'))).toBe(SUBACK_FAILURE_V4);
    });
  },
);
