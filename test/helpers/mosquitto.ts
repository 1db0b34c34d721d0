/**
 * A real Mosquitto 2.x broker with the dynamic-security plugin, started by a test on a free loopback
 * port in a temp dir. Used by the external-broker (RADIO_MQTT_URL) suites.
 *
 *   const broker = await startMosquitto();          // admin + controller accounts ready
 *   …mqtt.connectAsync(broker.controllerUrl)…
 *   await broker.stop();
 *
 * Binaries come from PATH or MOSQUITTO_BIN / MOSQUITTO_CTRL_BIN; the plugin from MOSQUITTO_DYNSEC_PLUGIN
 * or the usual Debian/Ubuntu locations. hasMosquitto() lets a suite skip with a reason when absent.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { createMosquittoAccounts, CONTROLLER_ROLE } from '../../controller/src/broker/mosquitto-accounts.js';

const PLUGIN_CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so',
  '/usr/lib/mosquitto_dynamic_security.so',
  '/usr/local/lib/mosquitto_dynamic_security.so',
  '/usr/lib64/mosquitto_dynamic_security.so',
];

interface Tools {
  mosquitto: string;
  ctrl: string;
  plugin: string;
}

/** Finds an executable on PATH (or accepts an absolute/relative path as is). */
function which(bin: string): string | undefined {
  if (bin.includes('/')) return existsSync(bin) ? bin : undefined;
  const dirs = (process.env.PATH ?? '').split(path.delimiter).concat(['/usr/sbin', '/usr/local/sbin', '/sbin']);
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, bin);
    if (existsSync(p)) return p;
  }
  return undefined;
}

let cachedTools: { tools?: Tools; reason?: string } | undefined;

function findTools(): { tools?: Tools; reason?: string } {
  if (cachedTools) return cachedTools;
  const hint = 'install the Debian package `mosquitto` (apt-get install mosquitto)';
  const mosquitto = which(process.env.MOSQUITTO_BIN ?? 'mosquitto');
  const ctrl = which(process.env.MOSQUITTO_CTRL_BIN ?? 'mosquitto_ctrl');
  const plugin = process.env.MOSQUITTO_DYNSEC_PLUGIN ?? PLUGIN_CANDIDATES.find((p) => existsSync(p));
  if (!mosquitto) cachedTools = { reason: `mosquitto binary not found on PATH (or MOSQUITTO_BIN): ${hint}` };
  else if (!ctrl) cachedTools = { reason: `mosquitto_ctrl not found on PATH (or MOSQUITTO_CTRL_BIN): ${hint}` };
  else if (!plugin || !existsSync(plugin))
    cachedTools = { reason: `mosquitto_dynamic_security.so not found (set MOSQUITTO_DYNSEC_PLUGIN): ${hint}` };
  else cachedTools = { tools: { mosquitto, ctrl, plugin } };
  return cachedTools;
}

/** True when mosquitto, mosquitto_ctrl and the dynamic-security plugin are installed. */
export function hasMosquitto(): boolean {
  return findTools().tools !== undefined;
}

/** Why hasMosquitto() is false (undefined when it is true); for skip messages. */
export function mosquittoUnavailableReason(): string | undefined {
  return findTools().reason;
}

export interface StartMosquittoOptions {
  /** Directory for mosquitto.conf and dynamic-security.json; a fresh temp dir (removed on stop) if omitted. */
  dir?: string;
  /**
   * Create the controller's own account (full access to radio/v1/# and the dynsec API) through
   * ensureControllerAccount(). Default true; false gives a broker with only the dynsec admin.
   */
  controller?: boolean;
  /** Extra lines appended to mosquitto.conf. */
  extraConfig?: string[];
  /** Startup deadline; default 10 s. */
  startTimeoutMs?: number;
}

export interface MosquittoHandle {
  /** mqtt://127.0.0.1:PORT (no credentials). */
  url: string;
  port: number;
  dir: string;
  adminUsername: string;
  adminPassword: string;
  controllerUsername?: string;
  controllerPassword?: string;
  /** mqtt://user:pass@127.0.0.1:PORT for the controller account: the RADIO_MQTT_URL form. */
  controllerUrl?: string;
  /** Lines Mosquitto wrote to stderr (its log), newest last; handy in assertion messages. */
  logLines(): string[];
  /** SIGTERM and await exit (SIGKILL after 5 s); removes the temp dir if this helper created it. Idempotent. */
  stop(): Promise<void>;
  /** Stop and start again on the same port and files; accounts persist (dynsec JSON on disk). */
  restart(): Promise<void>;
  /** SIGKILL the broker (a crash), without removing files; restart() brings it back. */
  kill(): Promise<void>;
}

const randomSecret = (): string => randomBytes(18).toString('hex');

async function freeLoopbackPort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function runCtrlInit(ctrl: string, file: string, user: string, password: string): void {
  // `dynsec init <file> <user> <password>` is non-interactive when the password is on the command line
  // (mosquitto_ctrl 2.0); it refuses to overwrite an existing file.
  const r = spawnSync(ctrl, ['dynsec', 'init', file, user, password], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0 || !existsSync(file)) {
    throw new Error(`mosquitto_ctrl dynsec init failed (status ${r.status}): ${r.stderr || r.stdout}`);
  }
}

function buildConfig(opts: { port: number; plugin: string; dynsecFile: string; extra: string[] }): string {
  const lines = [
    '# Written by test/helpers/mosquitto.ts',
    // One global security setting for every listener: recommended with the dynsec plugin.
    'per_listener_settings false',
    `listener ${opts.port} 127.0.0.1`,
    'allow_anonymous false',
    'persistence false',
    // The default (1000) silently drops QoS 1 messages to a slow subscriber under load (the controller's
    // fan-in). Not 0 ("no limit"): Mosquitto 2.0.11 (Debian 12) then disconnects any client whose publish an
    // ACL denies, because handle_publish's `out_packet_count >= max_queued_messages` lacks the `> 0` guard
    // that later releases add. A bound no test reaches avoids both.
    'max_queued_messages 1000000',
    'set_tcp_nodelay true',
    `plugin ${opts.plugin}`,
    `plugin_opt_config_file ${opts.dynsecFile}`,
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
  ];
  // Started as root, mosquitto drops privileges to the `mosquitto` user, which cannot read a 0700 temp
  // dir nor write the dynsec JSON; `user root` keeps it as the invoking user (a test-only setting).
  if (typeof process.getuid === 'function' && process.getuid() === 0) lines.push('user root');
  return [...lines, ...opts.extra, ''].join('\n');
}

/** Starts Mosquitto with dynsec; resolves once it accepts TCP connections (and accounts exist). */
export async function startMosquitto(options: StartMosquittoOptions = {}): Promise<MosquittoHandle> {
  const found = findTools();
  if (!found.tools) throw new Error(found.reason);
  const tools = found.tools;
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'radio-mosquitto-')));
  const confFile = path.join(dir, 'mosquitto.conf');
  const dynsecFile = path.join(dir, 'dynamic-security.json');
  const adminUsername = 'dynsec-admin';
  const adminPassword = randomSecret();
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;

  await rm(dynsecFile, { force: true });
  runCtrlInit(tools.ctrl, dynsecFile, adminUsername, adminPassword);

  const log: string[] = [];
  let child: ChildProcess | undefined;
  let port = 0;
  let stopped = false;
  const killOnExit = (): void => {
    child?.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const spawnBroker = async (): Promise<void> => {
    const proc = spawn(tools.mosquitto, ['-c', confFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    let buf = '';
    const exited = new Promise<never>((_, reject) => {
      proc.once('exit', (code, signal) =>
        reject(new Error(`mosquitto exited during startup (code ${code}, signal ${signal}):\n${log.slice(-20).join('\n')}`)),
      );
      proc.once('error', reject);
    });
    exited.catch(() => undefined); // observed below; avoid an unhandled rejection after startup
    // Mosquitto logs "mosquitto version X running" once every listener is open: an event, not a sleep.
    const running = new Promise<void>((resolve) => {
      proc.stderr?.setEncoding('utf8');
      proc.stderr?.on('data', (chunk: string) => {
        buf += chunk;
        const parts = buf.split('\n');
        buf = parts.pop() ?? '';
        for (const line of parts) {
          log.push(line);
          if (log.length > 500) log.shift();
          if (/mosquitto version \S+ running/.test(line)) resolve();
        }
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`mosquitto did not start within ${startTimeoutMs} ms:\n${log.slice(-20).join('\n')}`)),
        startTimeoutMs,
      );
    });
    try {
      await Promise.race([running, exited, timeout]);
      await Promise.race([tcpReady(port), exited, timeout]);
    } catch (e) {
      proc.kill('SIGKILL');
      throw e;
    } finally {
      clearTimeout(timer);
    }
  };

  const startOnFreePort = async (): Promise<void> => {
    // The free port can be taken between probe and bind by another process: retry with a new one.
    let lastErr: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      port = await freeLoopbackPort();
      await writeFile(
        confFile,
        buildConfig({ port, plugin: tools.plugin, dynsecFile, extra: options.extraConfig ?? [] }),
        'utf8',
      );
      try {
        await spawnBroker();
        return;
      } catch (e) {
        lastErr = e;
        if (!/Address already in use/i.test(String(e))) throw e;
      }
    }
    throw lastErr;
  };

  const terminate = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const done = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    await done;
    clearTimeout(t);
  };

  try {
    await startOnFreePort();
  } catch (e) {
    process.removeListener('exit', killOnExit);
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw e;
  }

  const url = `mqtt://127.0.0.1:${port}`;
  const handle: MosquittoHandle = {
    url,
    port,
    dir,
    adminUsername,
    adminPassword,
    logLines: () => [...log],
    async stop() {
      if (stopped) return;
      stopped = true;
      await terminate('SIGTERM');
      process.removeListener('exit', killOnExit);
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
    async kill() {
      await terminate('SIGKILL');
    },
    async restart() {
      if (stopped) throw new Error('restart() after stop()');
      await terminate('SIGTERM');
      // Same port: clients configured with the URL reconnect to it (Mosquitto binds with SO_REUSEADDR).
      await spawnBroker();
    },
  };

  if (options.controller ?? true) {
    try {
      const username = 'radio-controller';
      const password = randomSecret();
      const admin = await mqtt.connectAsync(url, {
        username: adminUsername,
        password: adminPassword,
        protocolVersion: 5,
        reconnectPeriod: 0,
      });
      try {
        const accounts = createMosquittoAccounts({ client: admin, log: pino({ level: 'silent' }), timeoutMs: 5_000 });
        await accounts.ensureControllerAccount({ username, password, rolename: CONTROLLER_ROLE });
        await accounts.stop();
      } finally {
        await admin.endAsync();
      }
      handle.controllerUsername = username;
      handle.controllerPassword = password;
      handle.controllerUrl = `mqtt://${username}:${password}@127.0.0.1:${port}`;
    } catch (e) {
      await handle.stop();
      throw e;
    }
  }
  return handle;
}

/** Resolves once 127.0.0.1:port accepts a TCP connection (retries only on ECONNREFUSED). */
async function tcpReady(port: number): Promise<void> {
  for (;;) {
    const ok = await new Promise<boolean>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        s.destroy();
        if (err.code === 'ECONNREFUSED') resolve(false);
        else reject(err);
      });
    });
    if (ok) return;
    // Only reached if the "running" line raced the listen(); the caller's deadline bounds this loop.
    await new Promise((r) => setTimeout(r, 20));
  }
}
