/**
 * BrokerAccounts for an external Mosquitto ≥ 2.0 through its dynamic-security plugin ("dynsec").
 *
 * The controller (a client with publish rights on `$CONTROL/dynamic-security/#`) sends command batches to
 * `$CONTROL/dynamic-security/v1` and reads the answers on `…/v1/response`, matched by `correlationData`
 * (https://mosquitto.org/documentation/dynamic-security/ — "Topic API").
 *
 * Per node: a client `username = nodeId` (client id pinned to nodeId by default) bound to
 *  - its role `node-<nodeId>` (priority 10): allow exactly schemas' nodeAcl() — publishClientSend for
 *    its `up` topics, subscribePattern for its node, zone and commune filters;
 *  - the shared role `radio-node-fence` (priority 0): deny every other publish and subscribe, `$` topics
 *    included (`#` does not match them [MQTT-4.7.2-1]), so a node stays fenced in even on a broker whose
 *    default ACL access is "allow".
 * Dynsec checks a client's roles by priority, each role's ACLs by priority, and the first matching ACL
 * decides (docs, "Priorities"). The deny list is shared rather than repeated per node because dynsec
 * rewrites its whole JSON file on every change: per-node bytes make fleet provisioning O(n²).
 *
 * Facts relied on (Mosquitto 2.0.11, checked by test/integration/mosquitto-accounts.test.ts):
 * - modifyRole, addRoleACL, setClientPassword, deleteClient and disableClient disconnect the affected
 *   clients ("disconnected by administrative action"; the client may see the close just after the
 *   command's answer). upsertNode sends a change only when the broker state differs, so reconciling
 *   every node at start-up kicks nobody.
 * - On reconnect with a persistent session, subscriptions the new ACL no longer allows are gone: a node
 *   moved to another zone receives nothing more from the old one.
 * - addClientRole on an already bound role answers "Internal error": bindings are checked first.
 * - modifyRole with `acls` replaces the whole list atomically.
 */
import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import { z } from 'zod';
import { Id, TOPIC_ROOT } from '../../../schemas/src/envelope.js';
import { nodeAcl } from '../../../schemas/src/topics.js';
import type { BrokerAccounts, NodeAccountSpec } from './accounts.js';

export const DYNSEC_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = `${DYNSEC_TOPIC}/response`;
/** Role of the controller's own broker account (see ensureControllerAccount). */
export const CONTROLLER_ROLE = 'radio-controller';

const ALLOW_PRIORITY = 10;
const DENY_PRIORITY = 0;
const ROLE_PRIORITY = 10;
const FENCE_ROLE_PRIORITY = 0;

export type AclType =
  | 'publishClientSend'
  | 'publishClientReceive'
  | 'subscribeLiteral'
  | 'subscribePattern'
  | 'unsubscribeLiteral'
  | 'unsubscribePattern';

export interface DynsecAcl {
  acltype: AclType;
  topic: string;
  allow: boolean;
  priority: number;
}

export const nodeRoleName = (nodeId: string): string => `node-${nodeId}`;
/** Shared deny-all role bound under every node role. */
export const NODE_FENCE_ROLE = 'radio-node-fence';

/** The role ACLs of one node: exactly what nodeAcl() allows (the fence role denies the rest). */
export function nodeRoleAcls(nodeId: string, zoneId: string | null, communeId: string): DynsecAcl[] {
  const acl = nodeAcl(nodeId, zoneId, communeId);
  const allow = (acltype: AclType, topic: string): DynsecAcl => ({ acltype, topic, allow: true, priority: ALLOW_PRIORITY });
  return [...acl.publish.map((t) => allow('publishClientSend', t)), ...acl.subscribe.map((t) => allow('subscribePattern', t))];
}

/** The fence: deny any publish or subscription a node role did not allow first. */
export function nodeFenceAcls(): DynsecAcl[] {
  const out: DynsecAcl[] = [];
  for (const acltype of ['publishClientSend', 'subscribePattern'] as const) {
    for (const topic of ['#', '$CONTROL/#', '$SYS/#']) out.push({ acltype, topic, allow: false, priority: DENY_PRIORITY });
  }
  return out;
}

/** The controller account: everything under the protocol root, and the dynsec API (to provision nodes). */
export function controllerRoleAcls(topicRoot: string = TOPIC_ROOT): DynsecAcl[] {
  const out: DynsecAcl[] = [];
  for (const topic of [`${topicRoot}/#`, '$CONTROL/dynamic-security/#']) {
    for (const acltype of ['publishClientSend', 'publishClientReceive', 'subscribePattern', 'unsubscribePattern'] as const) {
      out.push({ acltype, topic, allow: true, priority: ALLOW_PRIORITY });
    }
  }
  return out;
}

export type DynsecErrorCode =
  | 'DYNSEC_ERROR'
  | 'DYNSEC_TIMEOUT'
  | 'DYNSEC_DISCONNECTED'
  | 'DYNSEC_PUBLISH_FAILED'
  | 'DYNSEC_NO_ACCOUNT'
  | 'DYNSEC_BAD_INPUT'
  | 'DYNSEC_STOPPED';

export class DynsecError extends Error {
  constructor(
    readonly code: DynsecErrorCode,
    message: string,
    /** The dynsec command that failed, when one did. */
    readonly command?: string,
  ) {
    super(message);
    this.name = 'DynsecError';
  }
}

/** One dynsec command; `correlationData` is added by send(). */
export type DynsecCommand = { command: string } & Record<string, unknown>;

const DynsecResponse = z.object({
  command: z.string(),
  error: z.string().optional(),
  correlationData: z.string().optional(),
  data: z.unknown().optional(),
});
export type DynsecResponse = z.infer<typeof DynsecResponse>;
const ResponseMessage = z.object({ responses: z.array(DynsecResponse) });

const AclData = z.object({
  acltype: z.string(),
  topic: z.string(),
  allow: z.boolean(),
  priority: z.number().int().optional(),
});
const GetRoleData = z.object({ role: z.object({ rolename: z.string(), acls: z.array(AclData).default([]) }) });
const GetClientData = z.object({
  client: z.object({
    username: z.string(),
    clientid: z.string().optional(),
    disabled: z.boolean().optional(),
    roles: z.array(z.object({ rolename: z.string(), priority: z.number().optional() })).default([]),
  }),
});
const DefaultAclData = z.object({ acls: z.array(z.object({ acltype: z.string(), allow: z.boolean() })) });

export interface MosquittoAccountsDeps {
  /** Connected MQTT.js client whose account may publish to `$CONTROL/dynamic-security/#`. */
  client: MqttClient;
  log?: Logger;
  /** Per command batch; default 5 000 ms. */
  timeoutMs?: number;
  /**
   * Bind each node account to client id = nodeId (default true). Without it a node could connect with
   * another node's client id and take over that session [MQTT-3.1.4-2], kicking it off the broker.
   */
  pinClientId?: boolean;
}

export interface ControllerAccountSpec {
  username: string;
  /** Set (or reset) the password; omitted keeps an existing account's password. */
  password?: string;
  rolename?: string;
  topicRoot?: string;
}

export interface MosquittoAccounts extends BrokerAccounts {
  /** Subscribes to the response topic. Idempotent; the other methods call it lazily. */
  start(): Promise<void>;
  /** Removes the listener and rejects pending requests; leaves the client connected (caller owns it). Idempotent. */
  stop(): Promise<void>;
  /**
   * Create/update the controller's own account and its role (controllerRoleAcls). Run it with a dynsec
   * admin connection at installation time (docs/mosquitto.md); the controller then connects with it.
   */
  ensureControllerAccount(spec: ControllerAccountSpec): Promise<void>;
  /** Set the broker-wide defaults publishClientSend and subscribe to deny if they are not already. */
  ensureDefaultDeny(): Promise<void>;
  /** Send raw commands in one message; resolves with one response per command, in order (errors not thrown). */
  send(commands: DynsecCommand[]): Promise<DynsecResponse[]>;
}

function aclKey(a: { acltype: string; topic: string; allow: boolean; priority?: number | undefined }): string {
  return `${a.acltype}\u0000${a.topic}\u0000${a.allow}\u0000${a.priority ?? -1}`;
}

function sameAcls(have: readonly z.infer<typeof AclData>[], want: readonly DynsecAcl[]): boolean {
  if (have.length !== want.length) return false;
  const h = new Set(have.map(aclKey));
  return want.every((a) => h.has(aclKey(a)));
}

export function createMosquittoAccounts(deps: MosquittoAccountsDeps): MosquittoAccounts {
  const { client } = deps;
  const log = (deps.log ?? pino({ level: 'silent' })).child({ component: 'mosquitto-accounts' });
  const timeoutMs = deps.timeoutMs ?? 5_000;
  const pinClientId = deps.pinClientId ?? true;

  const pending = new Map<string, (r: DynsecResponse) => void>();
  /** Rejecters of the batches in flight: a lost connection fails them at once (responses are QoS 0). */
  const rejecters = new Set<(e: Error) => void>();
  /** Per-username tail of the operation queue: concurrent upserts of one node must not interleave. */
  const queues = new Map<string, Promise<unknown>>();
  /** Subscription to the response topic on the current connection; undefined while offline. */
  let subscribed: Promise<void> | undefined;
  const readyWaiters = new Set<() => void>();
  let started: Promise<void> | undefined;
  let stopped = false;

  const onMessage = (topic: string, payload: Buffer): void => {
    if (topic !== DYNSEC_RESPONSE_TOPIC) return;
    let json: unknown;
    try {
      json = JSON.parse(payload.toString('utf8'));
    } catch {
      log.warn({ topic }, 'dropping non-JSON dynsec response');
      return;
    }
    const parsed = ResponseMessage.safeParse(json);
    if (!parsed.success) {
      log.warn({ topic, issue: parsed.error.issues[0]?.message }, 'dropping malformed dynsec response');
      return;
    }
    for (const r of parsed.data.responses) {
      // Other admins (mosquitto_ctrl, a second controller) share the response topic: ignore foreign ids.
      const resolve = r.correlationData === undefined ? undefined : pending.get(r.correlationData);
      if (resolve) {
        pending.delete(r.correlationData!);
        resolve(r);
      }
    }
  };

  /**
   * Subscribe on the current connection. Done here on every (re)connect rather than left to MQTT.js's
   * resubscribe, which runs after it flushes the offline queue: a command published first would get its
   * answer before the subscription exists, and lose it.
   */
  function arm(): Promise<void> {
    const p = client.subscribeAsync(DYNSEC_RESPONSE_TOPIC, { qos: 1 }).then(
      () => {
        for (const w of readyWaiters) w();
        readyWaiters.clear();
      },
      (e: unknown) => {
        throw new DynsecError(
          'DYNSEC_PUBLISH_FAILED',
          `cannot subscribe to ${DYNSEC_RESPONSE_TOPIC} (is the MQTT account a dynsec admin?): ${(e as Error).message}`,
        );
      },
    );
    subscribed = p;
    return p;
  }

  const onConnect = (): void => {
    arm().catch((e: unknown) => log.error({ err: e }, 'dynsec response subscription failed after reconnect'));
  };
  const onClose = (): void => {
    subscribed = undefined;
    const err = new DynsecError('DYNSEC_DISCONNECTED', 'MQTT connection lost while waiting for a dynsec response');
    for (const reject of rejecters) reject(err);
  };

  function start(): Promise<void> {
    if (stopped) return Promise.reject(new DynsecError('DYNSEC_STOPPED', 'mosquitto accounts stopped'));
    started ??= (async () => {
      client.on('message', onMessage);
      client.on('connect', onConnect);
      client.on('close', onClose);
      if (!client.connected) return; // armed by onConnect
      try {
        await arm();
      } catch (e) {
        client.removeListener('message', onMessage);
        client.removeListener('connect', onConnect);
        client.removeListener('close', onClose);
        started = undefined;
        throw e;
      }
    })();
    return started;
  }

  /** Resolves once the client is connected and subscribed to the response topic. */
  function ready(): Promise<void> {
    if (client.connected && subscribed) return subscribed;
    return new Promise<void>((resolve) => readyWaiters.add(resolve));
  }

  async function send(commands: DynsecCommand[]): Promise<DynsecResponse[]> {
    if (commands.length === 0) return [];
    await start();
    const batch = commands.map((c) => ({ ...c, correlationData: randomUUID() }));
    const names = batch.map((c) => c.command).join(',');
    let timer: NodeJS.Timeout | undefined;
    let rejectBatch: ((e: Error) => void) | undefined;
    let phase = 'waiting for the connection';
    const failure = new Promise<never>((_, reject) => {
      rejectBatch = reject;
      rejecters.add(reject);
      timer = setTimeout(
        () =>
          reject(
            new DynsecError(
              'DYNSEC_TIMEOUT',
              `no dynsec response to [${names}] within ${timeoutMs} ms (${phase}; client ${client.connected ? 'connected' : 'not connected'}; ` +
                'with MQTT 3.1.1 a publish the account may not make is dropped silently — is it a dynsec admin?)',
            ),
          ),
        timeoutMs,
      );
    });
    failure.catch(() => undefined); // observed by the race below; may settle after it
    try {
      await Promise.race([ready(), failure]);
      phase = 'command sent';
      const answers = batch.map((c) => new Promise<DynsecResponse>((resolve) => pending.set(c.correlationData, resolve)));
      const published = client
        .publishAsync(DYNSEC_TOPIC, JSON.stringify({ commands: batch }), { qos: 1 })
        .catch((e: unknown) => {
          // MQTT 5 answers a forbidden QoS 1 publish with PUBACK 0x87 (not authorised).
          throw new DynsecError('DYNSEC_PUBLISH_FAILED', `publishing to ${DYNSEC_TOPIC} failed: ${(e as Error).message}`);
        });
      const [, responses] = await Promise.race([Promise.all([published, Promise.all(answers)]), failure]);
      return responses;
    } finally {
      clearTimeout(timer);
      if (rejectBatch) rejecters.delete(rejectBatch);
      for (const c of batch) pending.delete(c.correlationData);
    }
  }

  /**
   * Run one account operation, serialised per username, retried when the connection dropped under it.
   * Operations read the broker state before changing it, so a retry converges instead of repeating.
   */
  function serialise<T>(key: string, op: () => Promise<T>): Promise<T> {
    const withRetry = async (): Promise<T> => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await op();
        } catch (e) {
          if (!(e instanceof DynsecError && e.code === 'DYNSEC_DISCONNECTED') || attempt >= 3) throw e;
          log.warn({ key, attempt }, 'dynsec connection lost mid-operation; retrying after reconnect');
        }
      }
    };
    const prev = queues.get(key) ?? Promise.resolve();
    const next = prev.then(withRetry, withRetry);
    const tail = next.catch(() => undefined);
    queues.set(key, tail);
    void tail.then(() => {
      if (queues.get(key) === tail) queues.delete(key);
    });
    return next;
  }

  /** Throws unless the response is a success (or its error matches `tolerated`). */
  function check(r: DynsecResponse | undefined, tolerated?: RegExp): DynsecResponse {
    if (!r) throw new DynsecError('DYNSEC_ERROR', 'missing dynsec response');
    if (r.error !== undefined && !(tolerated && tolerated.test(r.error))) {
      throw new DynsecError('DYNSEC_ERROR', `dynsec ${r.command} failed: ${r.error}`, r.command);
    }
    return r;
  }

  interface AccountSpec {
    username: string;
    password?: string;
    /** The account's own role, whose ACLs this converges. */
    rolename: string;
    acls: DynsecAcl[];
    /** Roles to bind (the own role among them), each with its priority; they must exist. */
    bind: { rolename: string; priority: number }[];
    textname?: string;
    clientid?: string;
  }

  /** Create or converge one role's ACL list; sends a change only when it differs. */
  async function upsertRole(rolename: string, acls: DynsecAcl[]): Promise<void> {
    const [created, got] = await send([
      { command: 'createRole', rolename, acls },
      { command: 'getRole', rolename },
    ]);
    if (check(created, /already exists/i).error === undefined) return;
    const role = GetRoleData.safeParse(check(got).data);
    if (!role.success) throw new DynsecError('DYNSEC_ERROR', `unexpected getRole answer: ${role.error.message}`, 'getRole');
    if (sameAcls(role.data.role.acls, acls)) return;
    const [modified, after] = await send([
      { command: 'modifyRole', rolename, acls },
      { command: 'getRole', rolename },
    ]);
    check(modified);
    verifyAcls(rolename, check(after).data, acls);
    log.info({ rolename }, 'broker role ACLs updated');
  }

  function verifyAcls(rolename: string, data: unknown, acls: DynsecAcl[]): void {
    const after = GetRoleData.safeParse(data);
    if (!after.success || !sameAcls(after.data.role.acls, acls)) {
      throw new DynsecError('DYNSEC_ERROR', `broker did not apply the ACLs of role '${rolename}' (modifyRole with acls needs Mosquitto ≥ 2.0)`, 'modifyRole');
    }
  }

  let fence: Promise<void> | undefined;
  /** The shared fence role, converged once per instance (again after a failure). */
  function ensureFence(): Promise<void> {
    fence ??= upsertRole(NODE_FENCE_ROLE, nodeFenceAcls()).catch((e: unknown) => {
      fence = undefined;
      throw e;
    });
    return fence;
  }

  /** Create-or-converge one client + its role; sends changes only where the broker state differs. */
  async function upsertAccount(spec: AccountSpec): Promise<void> {
    const [createRole, getRole, getClient] = await send([
      { command: 'createRole', rolename: spec.rolename, acls: spec.acls },
      { command: 'getRole', rolename: spec.rolename },
      { command: 'getClient', username: spec.username },
    ]);
    const roleCreated = check(createRole, /already exists/i).error === undefined;
    const role = GetRoleData.safeParse(check(getRole).data);
    if (!role.success) throw new DynsecError('DYNSEC_ERROR', `unexpected getRole answer: ${role.error.message}`, 'getRole');

    const changes: DynsecCommand[] = [];
    const aclsChanged = !roleCreated && !sameAcls(role.data.role.acls, spec.acls);
    // One command replaces the list atomically (and disconnects the role's clients).
    if (aclsChanged) changes.push({ command: 'modifyRole', rolename: spec.rolename, acls: spec.acls });

    if (getClient?.error !== undefined && /not found/i.test(getClient.error)) {
      if (spec.password === undefined) {
        throw new DynsecError(
          'DYNSEC_NO_ACCOUNT',
          `broker has no account '${spec.username}' and no password was given to create it (re-provision the node)`,
        );
      }
      changes.push({
        command: 'createClient',
        username: spec.username,
        password: spec.password,
        ...(spec.textname !== undefined ? { textname: spec.textname } : {}),
        ...(spec.clientid !== undefined ? { clientid: spec.clientid } : {}),
        roles: spec.bind,
      });
    } else {
      const parsed = GetClientData.safeParse(check(getClient).data);
      if (!parsed.success) throw new DynsecError('DYNSEC_ERROR', `unexpected getClient answer: ${parsed.error.message}`, 'getClient');
      const c = parsed.data.client;
      if (spec.password !== undefined) changes.push({ command: 'setClientPassword', username: spec.username, password: spec.password });
      if (spec.clientid !== undefined && c.clientid !== spec.clientid) {
        changes.push({ command: 'modifyClient', username: spec.username, clientid: spec.clientid });
      }
      // addClientRole on a role already bound answers "Internal error" in 2.0.11: only bind what is missing.
      for (const b of spec.bind) {
        if (!c.roles.some((r) => r.rolename === b.rolename)) {
          changes.push({ command: 'addClientRole', username: spec.username, rolename: b.rolename, priority: b.priority });
        }
      }
      // A disconnect interrupted between disableClient and enableClient must not lock the node out.
      if (c.disabled === true) changes.push({ command: 'enableClient', username: spec.username });
    }
    if (changes.length === 0) {
      log.debug({ username: spec.username }, 'broker account already up to date');
      return;
    }
    const verify = aclsChanged ? [{ command: 'getRole', rolename: spec.rolename }] : [];
    const results = await send([...changes, ...verify]);
    for (let i = 0; i < changes.length; i++) check(results[i]);
    if (aclsChanged) verifyAcls(spec.rolename, check(results[changes.length]).data, spec.acls);
    log.info({ username: spec.username, commands: changes.map((c) => c.command) }, 'broker account updated');
  }

  function validId(kind: string, v: string): void {
    if (!Id.safeParse(v).success) {
      // Ids are spliced into ACL topic filters: a '+', '#' or '/' would widen the node's access.
      throw new DynsecError('DYNSEC_BAD_INPUT', `invalid ${kind} ${JSON.stringify(v)} for a broker ACL`);
    }
  }

  const accounts: MosquittoAccounts = {
    start,
    send,

    async upsertNode(spec: NodeAccountSpec): Promise<void> {
      validId('nodeId', spec.nodeId);
      validId('zoneId', spec.zoneId);
      validId('communeId', spec.communeId);
      const acls = nodeRoleAcls(spec.nodeId, spec.zoneId, spec.communeId);
      await ensureFence();
      const rolename = nodeRoleName(spec.nodeId);
      await serialise(spec.nodeId, () =>
        upsertAccount({
          username: spec.nodeId,
          ...(spec.password !== undefined ? { password: spec.password } : {}),
          rolename,
          acls,
          bind: [
            { rolename, priority: ROLE_PRIORITY },
            { rolename: NODE_FENCE_ROLE, priority: FENCE_ROLE_PRIORITY },
          ],
          ...(pinClientId ? { clientid: spec.nodeId } : {}),
        }),
      );
    },

    async removeNode(nodeId: string): Promise<void> {
      validId('nodeId', nodeId);
      await serialise(nodeId, async () => {
        // deleteClient also disconnects a live session with these credentials.
        const [delClient, delRole] = await send([
          { command: 'deleteClient', username: nodeId },
          { command: 'deleteRole', rolename: nodeRoleName(nodeId) },
        ]);
        check(delClient, /not found/i);
        check(delRole, /not found/i);
        log.info({ nodeId }, 'broker account removed');
      });
    },

    async disconnectNode(nodeId: string): Promise<void> {
      validId('nodeId', nodeId);
      await serialise(nodeId, async () => {
        // Dynsec has no "kick": disableClient drops the session, enableClient lets it back in. Both in
        // one message, processed in order, so the node's reconnect is never refused for being disabled.
        const [dis, en] = await send([
          { command: 'disableClient', username: nodeId },
          { command: 'enableClient', username: nodeId },
        ]);
        if (dis?.error !== undefined && /not found/i.test(dis.error)) {
          log.debug({ nodeId }, 'disconnectNode: no broker account, nothing to drop');
          return;
        }
        check(dis);
        check(en);
        log.info({ nodeId }, 'node disconnected to pick up its new ACL');
      });
    },

    async ensureControllerAccount(spec: ControllerAccountSpec): Promise<void> {
      const rolename = spec.rolename ?? CONTROLLER_ROLE;
      await serialise(spec.username, () =>
        upsertAccount({
          username: spec.username,
          ...(spec.password !== undefined ? { password: spec.password } : {}),
          rolename,
          textname: 'radio controller',
          acls: controllerRoleAcls(spec.topicRoot ?? TOPIC_ROOT),
          bind: [{ rolename, priority: ROLE_PRIORITY }],
        }),
      );
    },

    async ensureDefaultDeny(): Promise<void> {
      const [get] = await send([{ command: 'getDefaultACLAccess' }]);
      const parsed = DefaultAclData.safeParse(check(get).data);
      if (!parsed.success) throw new DynsecError('DYNSEC_ERROR', `unexpected getDefaultACLAccess answer: ${parsed.error.message}`);
      const wanted = ['publishClientSend', 'subscribe'];
      const open = parsed.data.acls.filter((a) => wanted.includes(a.acltype) && a.allow);
      if (open.length === 0) return;
      log.warn({ open: open.map((a) => a.acltype) }, 'broker default ACL access was allow; setting deny');
      const [set] = await send([
        { command: 'setDefaultACLAccess', acls: wanted.map((acltype) => ({ acltype, allow: false })) },
      ]);
      check(set);
    },

    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      client.removeListener('message', onMessage);
      client.removeListener('connect', onConnect);
      client.removeListener('close', onClose);
      readyWaiters.clear();
      const err = new DynsecError('DYNSEC_STOPPED', 'mosquitto accounts stopped');
      for (const reject of rejecters) reject(err);
      rejecters.clear();
      pending.clear();
      if (started && client.connected) {
        await started.catch(() => undefined);
        await client.unsubscribeAsync(DYNSEC_RESPONSE_TOPIC).catch(() => undefined);
      }
    },
  };
  return accounts;
}
