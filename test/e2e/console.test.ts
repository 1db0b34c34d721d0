import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisionFleet, runFleet, type RunningFleet } from '../../firmware-sim/src/fleet.js';
import { chromiumMissingReason, launchBrowser, type TestBrowser } from '../helpers/browser.js';
import { startTestController, type TestController } from '../helpers/controller.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The technician console in a real headless Chromium against a real controller (embedded broker,
 * SQLite) and four simulated clusters in two villages. Cluster 0 has an open speaker line from
 * power-on. Playwright locators auto-wait; nothing here sleeps.
 */

const skipReason = chromiumMissingReason();

/** GET with the path sent byte for byte (fetch would normalise `..` and `%2e%2e` away). */
function rawGet(base: string, rawPath: string, headers: Record<string, string> = {}) {
  const u = new URL(base);
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method: 'GET', path: rawPath, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('web console: static files', () => {
  let t: TestController;
  beforeAll(async () => { t = await startTestController(); });
  afterAll(async () => { await t?.stop(); });

  it('serves index.html at / and assets under /web with their types, ETag revalidation and no traversal', async () => {
    const index = await rawGet(t.base, '/');
    expect(index.status).toBe(200);
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(index.headers['cache-control']).toBe('no-cache');
    expect(index.headers['content-security-policy']).toContain("script-src 'self'");
    expect(index.body).toContain('<script type="module" src="/web/app.js">');

    const js = await rawGet(t.base, '/web/app.js');
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect((await rawGet(t.base, '/web/styles.css')).headers['content-type']).toBe('text/css; charset=utf-8');
    expect((await rawGet(t.base, '/web/icon.svg')).headers['content-type']).toBe('image/svg+xml');

    const etag = js.headers.etag!;
    expect(etag).toMatch(/^"[\w-]+"$/);
    const again = await rawGet(t.base, '/web/app.js', { 'if-none-match': etag });
    expect(again.status).toBe(304);
    expect(again.body).toBe('');

    for (const p of ['/web/../package.json', '/web/..%2f..%2fpackage.json', '/web/%2e%2e/%2e%2e/package.json', '/web/..%5c..%5cpackage.json',
      '/web/%2fetc%2fpasswd', '/web/', '/web/nope.js', '/web/.hidden', '/web/i18n.js%00.css']) {
      const r = await rawGet(t.base, p);
      expect(r.status, p).toBe(404);
      expect(r.body, p).not.toContain('"name"');
      expect(r.body, p).not.toContain('root:');
    }
    // The API keeps its own auth and 404 semantics.
    expect((await rawGet(t.base, '/api/v1/nodes')).status).toBe(401);
  });
});

describe.skipIf(skipReason !== undefined)(`web console in headless Chromium${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let t: TestController;
  let fleet: RunningFleet;
  let b: TestBrowser;

  beforeAll(async () => {
    t = await startTestController();
    const specs = await provisionFleet({ base: t.base, token: t.token, count: 4, villages: 2, prefix: 'e2e' });
    fleet = await runFleet(specs, { telemetryIntervalMs: 500, hardware: (_s, i) => (i === 0 ? { faults: [{ kind: 'line_open' }] } : {}) });
    b = await launchBrowser();
  });

  afterAll(async () => {
    await b?.close();
    await fleet?.stop();
    await t?.stop();
  });

  it('logs in, shows the fleet live, acknowledges an alarm, sets a volume, sees a cluster die, switches language', async () => {
    const { page } = b;
    const [a0, a1, a2, a3] = [fleet.agents[0]!, fleet.agents[1]!, fleet.agents[2]!, fleet.agents[3]!];
    // Every cluster has reported telemetry before the page loads it once.
    await waitFor(async () => {
      const all = await Promise.all(fleet.agents.map((f) => t.api('GET', `/api/v1/nodes/${f.spec.nodeId}`)));
      return all.every((r) => r.body.telemetry !== null);
    }, { what: 'telemetry from every cluster' });
    await page.goto(`${t.base}/`);
    // Polling off: from here on, every change the page shows must come through the WebSocket.
    await page.evaluate("localStorage.setItem('radio.refreshMs', '0')");

    // Login form in Vietnamese.
    await page.getByLabel('Tên đăng nhập').fill('admin');
    await page.getByLabel('Mật khẩu').fill('wrong-password');
    await page.getByRole('button', { name: 'Đăng nhập' }).click();
    // The API's own message is shown for a failed login.
    await page.locator('#login-error').filter({ hasText: /\S/ }).waitFor();
    await page.getByLabel('Mật khẩu').fill('test-password');
    await page.getByRole('button', { name: 'Đăng nhập' }).click();

    // Overview: four clusters, all online, grouped by village; cards carry telemetry.
    await page.getByTestId('count-total').filter({ hasText: /^4$/ }).waitFor();
    await page.getByTestId('count-online').filter({ hasText: /^4$/ }).waitFor();
    await page.getByTestId('count-offline').filter({ hasText: /^0$/ }).waitFor();
    await page.locator('#live[data-state="on"]').waitFor(); // the WebSocket is up
    await page.getByRole('heading', { name: /Thôn Đông/ }).waitFor();
    await page.getByRole('heading', { name: /Thôn Tây/ }).waitFor();
    for (const f of fleet.agents) {
      const card = page.getByTestId(`node-${f.spec.nodeId}`);
      await card.filter({ hasText: 'Trực tuyến' }).waitFor();
      await card.filter({ hasText: 'Lưới điện' }).waitFor(); // telemetry arrived: power source translated
    }
    expect(await page.getByTestId('zone-e2e-thon-1').getByRole('article').count()).toBe(2);
    // A marker that a reload would wipe (the test file has no DOM types, hence the string form).
    await page.evaluate('window.noReload = true');

    // The open-line alarm of cluster 0, in Vietnamese.
    const alarms = page.getByRole('region', { name: /Cảnh báo đang mở/ });
    const openLine = alarms.getByRole('listitem').filter({ hasText: 'Đứt dây loa' });
    await openLine.filter({ hasText: a0.spec.name }).waitFor();

    // A fault raised while the page is open arrives over the WebSocket.
    a2.hardware.inject({ kind: 'line_short' });
    await alarms.getByRole('listitem').filter({ hasText: 'Chập dây loa' }).filter({ hasText: a2.spec.name }).waitFor();

    // Acknowledge the open line: the row says who acknowledged, the controller agrees.
    await openLine.getByRole('button', { name: /Xác nhận/ }).click();
    await openLine.filter({ hasText: 'Đã xác nhận bởi admin' }).waitFor();
    const acked = await t.api<any[]>('GET', '/api/v1/alarms?state=active');
    expect(acked.body.find((a) => a.type === 'line_open' && a.nodeId === a0.spec.nodeId)?.ackedBy).toBe('admin');

    // Node detail: telemetry, the open line in the speaker-line table, then set volume 33.
    await page.getByTestId(`node-${a0.spec.nodeId}`).getByRole('button', { name: a0.spec.name }).click();
    const dialog = page.getByRole('dialog', { name: a0.spec.name });
    await dialog.waitFor();
    await dialog.getByRole('table').getByRole('row').filter({ hasText: 'Đứt dây' }).waitFor();
    await dialog.getByText(a0.hardware.status().modem.operator, { exact: true }).waitFor();
    await dialog.getByRole('spinbutton', { name: 'Âm lượng (0–100)' }).fill('33');
    await dialog.getByRole('button', { name: 'Áp dụng' }).click();
    await dialog.locator('#nd-result').filter({ hasText: /Đặt âm lượng: Thành công/ }).waitFor();
    expect(a0.hardware.status().volume).toBe(33);

    // Mute and unmute round trip through the agent.
    await dialog.getByRole('button', { name: 'Tắt tiếng' }).click();
    await dialog.getByRole('button', { name: 'Bật tiếng' }).waitFor();
    expect(a0.hardware.status().mute).toBe(true);
    await dialog.getByRole('button', { name: 'Bật tiếng' }).click();
    await dialog.getByRole('button', { name: 'Tắt tiếng' }).waitFor();
    expect(a0.hardware.status().mute).toBe(false);
    await dialog.getByRole('button', { name: 'Đóng' }).click();
    await dialog.waitFor({ state: 'hidden' });

    // Kill a cluster abruptly: the broker publishes its will, the page turns it offline without reload.
    await a1.agent.kill();
    const dead = page.getByTestId(`node-${a1.spec.nodeId}`);
    await dead.filter({ hasText: 'Ngoại tuyến' }).waitFor();
    expect(await dead.getAttribute('data-status')).toBe('offline');
    await page.getByTestId('count-online').filter({ hasText: /^3$/ }).waitFor();
    await alarms.getByRole('listitem').filter({ hasText: 'Mất kết nối' }).filter({ hasText: a1.spec.name }).waitFor();
    expect(await page.evaluate('window.noReload')).toBe(true);

    // Drop the console's WebSocket from the server side: it reconnects with backoff and catches up
    // on what happened meanwhile (here an open line on another cluster).
    for (const c of t.ctl.app.websocketServer.clients) c.terminate();
    a3.hardware.inject({ kind: 'line_open' });
    await page.locator('#live[data-reconnects="1"][data-state="on"]').waitFor();
    await alarms.getByRole('listitem').filter({ hasText: 'Đứt dây loa' }).filter({ hasText: a3.spec.name }).waitFor();

    // Zone command: one of the two clusters of Thôn Tây is dead, so the result names it.
    const zone = page.getByTestId(`zone-${a1.spec.zoneId}`);
    await zone.getByRole('spinbutton').fill('40');
    await zone.getByRole('button', { name: 'Đặt âm lượng' }).click();
    await page.getByRole('dialog', { name: 'Xác nhận thao tác' }).getByRole('button', { name: 'Đồng ý' }).click();
    await zone.locator('output').filter({ hasText: '1/2 cụm loa thành công' }).filter({ hasText: a1.spec.name }).waitFor();
    expect(a3.hardware.status().volume).toBe(40);

    // English, remembered across a reload.
    await page.getByRole('button', { name: 'English' }).click();
    await page.getByTestId('count-online').filter({ hasText: /^3$/ }).waitFor();
    await page.getByText('Clusters by village').waitFor();
    await page.getByRole('region', { name: /Active alarms/ }).getByRole('listitem').filter({ hasText: 'Speaker line open' }).filter({ hasText: a0.spec.name }).waitFor();
    await dead.filter({ hasText: 'Offline' }).waitFor();
    await page.getByRole('button', { name: 'Tiếng Việt' }).waitFor();
    expect(await page.evaluate("localStorage.getItem('radio.lang')")).toBe('en');
    expect(await page.evaluate('document.documentElement.lang')).toBe('en');

    // The session (sessionStorage) and the language (localStorage) survive a reload.
    await page.reload();
    await page.getByTestId('count-online').filter({ hasText: /^3$/ }).waitFor();
    await page.getByText('Clusters by village').waitFor();
    await page.getByTestId(`node-${a0.spec.nodeId}`).filter({ hasText: 'Mains' }).waitFor();
    await page.screenshot({ path: '/tmp/console.png', fullPage: true });

    // Log out: back to the login form, token gone.
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Username').waitFor();
    expect(await page.evaluate("sessionStorage.getItem('radio.session')")).toBeNull();

    // The failed login's 401 is the only console error the page may have produced.
    expect(b.errors.filter((e) => !/status of 401/.test(e))).toEqual([]);
  });
});
