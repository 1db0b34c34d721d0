/**
 * `npm run agent -- --config agent.json`: run one edge agent. The config file is validated against
 * schemas' AgentConfigFile (nodeId, username, password, mqttUrl, hardware: 'sim' | 'linux', …).
 * `hardware: 'sim'` runs on firmware-sim's simulated cluster (the fake backend shipped as a real option);
 * `hardware: 'linux'` on a field unit: ALSA through aplay, the amplifier relay through gpioset, health
 * from sysfs (edge-agent/src/hardware-linux.ts), configured by the file's `linux` section.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { LinuxHardwareConfig } from '../../schemas/src/agent-hardware-config.js';
import { AgentConfigFile } from '../../schemas/src/index.js';
import { createAgent } from './agent.js';
import type { Hardware } from './hardware.js';

const { values } = parseArgs({ options: { config: { type: 'string', short: 'c' } } });
const log = pino({ level: process.env.RADIO_LOG_LEVEL ?? 'info' });
if (!values.config) {
  log.fatal('usage: npm run agent -- --config agent.json');
  process.exit(2);
}
let raw: unknown;
try {
  raw = JSON.parse(fs.readFileSync(values.config, 'utf8'));
} catch (e) {
  log.fatal({ file: values.config, err: (e as Error).message }, 'cannot read the agent config file');
  process.exit(2);
}
const parsed = AgentConfigFile.safeParse(raw);
if (!parsed.success) {
  log.fatal({ issues: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) }, 'invalid agent config');
  process.exit(2);
}
const cfg = parsed.data;

async function loadHardware(kind: 'sim' | 'linux'): Promise<Hardware> {
  switch (kind) {
    case 'sim': {
      // Dynamic import: edge-agent does not depend on firmware-sim except for this opt-in backend.
      const { createSimHardware } = await import('../../firmware-sim/src/sim-hardware.js');
      return createSimHardware({ nodeId: cfg.nodeId, seed: cfg.nodeId, log });
    }
    case 'linux': {
      // The backend's own section `linux` (schemas/src/agent-hardware-config.ts); AgentConfigFile strips it.
      const section = LinuxHardwareConfig.safeParse((raw as { linux?: unknown }).linux ?? {});
      if (!section.success) {
        log.fatal({ issues: section.error.issues.map((i) => `linux.${i.path.join('.')}: ${i.message}`) }, 'invalid agent config');
        process.exit(2);
      }
      const { createLinuxHardware } = await import('./hardware-linux.js');
      try {
        return await createLinuxHardware({ nodeId: cfg.nodeId, config: section.data, log });
      } catch (e) {
        // A missing aplay/gpioset names its Debian package: say it and stop, systemd will not help.
        log.fatal({ err: (e as Error).message }, 'cannot start the linux hardware backend');
        process.exit(2);
      }
    }
  }
}

const hardware = await loadHardware(cfg.hardware);
let agent = make();
function make() {
  return createAgent({
    nodeId: cfg.nodeId, credentials: { username: cfg.username, password: cfg.password }, brokerUrl: cfg.mqttUrl,
    hardware, log, telemetryIntervalMs: cfg.telemetryIntervalMs, keepaliveS: cfg.keepaliveS,
    // Plans, cached media and queued receipts persist here, so playout survives restarts and outages.
    dataDir: cfg.dataDir, ...(cfg.httpBase ? { httpBase: cfg.httpBase } : {}),
    onReboot: () => { void agent.stop().then(() => { agent.dispose(); agent = make(); return agent.start(); }); },
  });
}
await agent.start();
log.info({ nodeId: cfg.nodeId, broker: cfg.mqttUrl }, 'agent started');
const stop = async () => { await agent.stop(); agent.dispose(); await hardware.close(); process.exit(0); };
process.once('SIGINT', () => { void stop(); });
process.once('SIGTERM', () => { void stop(); });
