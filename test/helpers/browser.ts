import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** The system Chromium (Debian package `chromium`); playwright-core never downloads a browser here. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Flags for a quiet, self-contained headless run: no sandbox (tests run as root in containers), no
 * GPU, and no background traffic to Google services (component updates, sync, QUIC probes), so the
 * only network use is the test's own loopback server.
 */
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic',
];

/** Why the browser tests cannot run here, or undefined when they can. */
export function chromiumMissingReason(): string | undefined {
  try {
    fs.accessSync(CHROMIUM_PATH, fs.constants.X_OK);
    return undefined;
  } catch {
    return `no Chromium at ${CHROMIUM_PATH} (apt-get install chromium, or set CHROMIUM_PATH)`;
  }
}

export interface TestBrowser {
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught page errors seen so far (a clean console is part of the contract). */
  errors: string[];
  close(): Promise<void>;
}

/** Launch headless Chromium with a fresh profile directory (removed on close) and open one page. */
export async function launchBrowser(o: { viewport?: { width: number; height: number }; locale?: string; timezoneId?: string } = {}): Promise<TestBrowser> {
  const reason = chromiumMissingReason();
  if (reason) throw new Error(reason);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'radio-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: o.viewport ?? { width: 1280, height: 900 },
      locale: o.locale ?? 'vi-VN',
      timezoneId: o.timezoneId ?? 'Asia/Ho_Chi_Minh',
      timeout: 30_000,
    });
  } catch (e) {
    fs.rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  const page = context.pages()[0] ?? await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  let closed = false;
  return {
    context, page, errors,
    async close() {
      if (closed) return;
      closed = true;
      await context.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
