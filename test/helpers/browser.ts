// Chromium for the browser tests: Debian's own `chromium` driven by playwright-core (never a browser
// downloaded by Playwright), one browser per test file, and each page's screenshot saved under
// test-results/screenshots/ so a run leaves pictures a person can look at.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

export type { Browser, BrowserContext, Page } from 'playwright-core';

/** The system's Chromium (`.ci/run` installs Debian's package when it is missing). */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const VIEWPORT = { width: 1280, height: 800 } as const;

export const SCREENSHOT_DIR = fileURLToPath(new URL('../../test-results/screenshots/', import.meta.url));

/** Headless Chromium without anything that phones home (updates, sync, first-run pages). */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/** A fresh browser profile (its own cookies) with the README's viewport, in light mode. */
export function newContext(browser: Browser, options: { javaScriptEnabled?: boolean } = {}): Promise<BrowserContext> {
  return browser.newContext({
    viewport: VIEWPORT,
    colorScheme: 'light',
    javaScriptEnabled: options.javaScriptEnabled ?? true,
  });
}

/** Saves what the page shows (the viewport) as test-results/screenshots/{name}.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/**
 * Reloads the page until `done` says what it shows is ready, or fails after `timeoutMs` naming
 * `what`. For work that finishes in another process (a task pushed by the emulator), where the
 * test has no event to await: the page itself is what is awaited, with a bound.
 */
export async function reloadUntil(
  page: Page,
  done: () => Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await done()) return;
    if (performance.now() > deadline) {
      throw new Error(`after ${timeoutMs} ms the page at ${page.url()} still did not show ${what}`);
    }
    await page.waitForTimeout(150);
    await page.reload();
  }
}

/** The page's visible text, whitespace collapsed (for assertions on what a person reads). */
export async function visibleText(page: Page, selector = 'body'): Promise<string> {
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator; the rendered text is the point
  return (await page.locator(selector).innerText()).replace(/\s+/g, ' ').trim();
}

/** The promise, or a failure naming `what` after `ms` (events awaited from a browser test). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
