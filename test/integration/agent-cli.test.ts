import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestController, type TestController } from '../helpers/controller.js';
import { waitFor } from '../helpers/wait.js';

describe('agent CLI (npm run agent -- --config FILE)', () => {
  let t: TestController;
  beforeAll(async () => { t = await startTestController(); });
  afterAll(async () => { await t.stop(); });

  it('runs one agent from a config file, shows it online, and goes offline cleanly on SIGTERM', async () => {
    await t.api('POST', '/api/v1/zones', { id: 'thon-cli', name: 'CLI' });
    const { body } = await t.api('POST', '/api/v1/nodes', { id: 'cum-cli', name: 'CLI', zoneId: 'thon-cli' });
    const cfg = path.join(t.dir, 'agent.json');
    fs.writeFileSync(cfg, JSON.stringify({ nodeId: 'cum-cli', username: body.credentials.username, password: body.credentials.password, mqttUrl: body.credentials.mqttUrl, telemetryIntervalMs: 1000, hardware: 'sim', dataDir: path.join(t.dir, 'agent') }));
    const child = spawn(process.execPath, ['--import', './deploy/ts-register.mjs', 'edge-agent/src/cli.ts', '--config', cfg], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RADIO_LOG_LEVEL: 'warn' } });
    try {
      await waitFor(() => t.ctl.nodes.get('cum-cli')?.status === 'online', { what: 'cli agent online', timeoutMs: 30_000 });
      await waitFor(async () => (await t.api('GET', '/api/v1/nodes/cum-cli')).body.telemetry, { what: 'telemetry from the cli agent' });
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      await waitFor(() => t.ctl.nodes.get('cum-cli')?.status === 'offline', { what: 'offline after SIGTERM' });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('refuses an invalid config file with a message naming the field', async () => {
    const cfg = path.join(t.dir, 'bad.json');
    fs.writeFileSync(cfg, JSON.stringify({ nodeId: 'Bad Id', username: 'x', password: 'y', mqttUrl: 'not a url' }));
    const child = spawn(process.execPath, ['--import', './deploy/ts-register.mjs', 'edge-agent/src/cli.ts', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(code).toBe(2);
    expect(out).toMatch(/nodeId/);
    expect(out).toMatch(/mqttUrl/);
  });
});
