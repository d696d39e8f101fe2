// The first run as a new user tries it: `backend serve` (what `npm start` runs) with no
// configuration at all, a task enqueued from a second terminal, and the dashboard URL the start
// banner printed opened in a real Chromium on the same machine: the run is there, succeeded.
// Always embedded PGlite in a fresh DATA_DIR (a first run has no DATABASE_URL), whatever the leg.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Browser, launchChromium, newContext, reloadUntil, screenshot, visibleText } from '../helpers/browser.ts';
import { freePort, type RunningBackend, runBackend, startBackend } from '../helpers/cli-process.ts';

describe('first run: npm start, then the dashboard URL it prints', () => {
  let browser: Browser;
  let service: RunningBackend;
  let env: Record<string, string>;

  before(async () => {
    // Only what keeps parallel tests apart: ports and the data directory. No HOST, no
    // PUBLIC_BASE_URL, no login settings: the defaults a person gets from `npm start`.
    env = {
      DATA_DIR: mkdtempSync(join(tmpdir(), 'backend-first-run-')),
      PORT: String(await freePort()),
      EMULATOR_GRPC_PORT: String(await freePort()),
      EMULATOR_HTTP_PORT: String(await freePort()),
    };
    // Chromium first: a backend started beside a launch that fails would keep this file's process
    // alive (and the run waiting) instead of failing at once.
    browser = await launchChromium();
    service = startBackend(['serve'], env);
  });
  after(async () => {
    await browser?.close();
    service?.child.kill('SIGTERM');
    await service?.exit;
    rmSync(env.DATA_DIR!, { recursive: true, force: true });
  });

  test('the printed dashboard URL, opened on this machine, shows health.check just enqueued as succeeded', async () => {
    await service.waitForLine(/backend is running on/);
    const dashboard = /^\s*dashboard\s+(http:\/\/\S+\/admin)\b/m.exec(service.output())?.[1];
    assert.ok(dashboard, `the start banner names no dashboard URL:\n${service.output()}`);
    assert.equal(dashboard, `http://localhost:${env.PORT}/admin`);

    const enqueued = await runBackend(['enqueue', 'health.check', '{}'], env);
    assert.equal(enqueued.code, 0, enqueued.stderr);

    const context = await newContext(browser);
    const page = await context.newPage();
    const response = await page.goto(dashboard);
    assert.equal(response?.status(), 200);
    // Open without a login, and saying so (loopback only).
    assert.match(await visibleText(page), /No login is configured/);

    await page.getByRole('navigation', { name: 'Dashboard' }).getByRole('link', { name: 'Runs' }).click();
    assert.equal(new URL(page.url()).pathname, '/admin/runs');
    const succeeded = page.locator('tr', { hasText: 'health.check' }).filter({ hasText: 'succeeded' });
    await reloadUntil(page, async () => (await succeeded.count()) > 0, 'a succeeded health.check run', 30_000);
    await screenshot(page, 'first-run-runs');
    await context.close();
  });
});
