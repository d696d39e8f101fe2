// A browser on the dashboard through app.inject: a loopback client (Host: localhost) that keeps
// its cookies as a browser would, and sends the CSRF token the pages carry with its forms.
import assert from 'node:assert/strict';
import type { TestApp } from './test-app.ts';

const LOCAL = { host: 'localhost' };

/** A browser on the dashboard: its cookies (kept as a browser keeps them) and the pages' CSRF token. */
export interface Browser {
  cookies: Map<string, string>;
  csrf: string;
}

type Reply = Awaited<ReturnType<TestApp['app']['inject']>>;

function keepCookies(browser: Browser, res: Reply): Reply {
  for (const c of res.cookies) {
    if (c.maxAge === 0 || (c.expires && c.expires.getTime() <= Date.now())) browser.cookies.delete(c.name);
    else browser.cookies.set(c.name, c.value);
  }
  return res;
}

const cookieHeader = (b: Browser) => [...b.cookies].map(([k, v]) => `${k}=${v}`).join('; ');

export async function openDashboard(app: TestApp, url = '/admin/queues'): Promise<Browser> {
  const browser: Browser = { cookies: new Map(), csrf: '' };
  const res = keepCookies(browser, await app.app.inject({ method: 'GET', url, headers: LOCAL }));
  assert.equal(res.statusCode, 200, res.body);
  browser.csrf = /name="_csrf" value="([^"]+)"/.exec(res.body)?.[1] ?? '';
  return browser;
}

export async function get(app: TestApp, browser: Browser, url: string): Promise<Reply> {
  return keepCookies(
    browser,
    await app.app.inject({ method: 'GET', url, headers: { ...LOCAL, cookie: cookieHeader(browser) } }),
  );
}

export async function post(
  app: TestApp,
  browser: Browser,
  url: string,
  form: Record<string, string> = {},
  csrf = true,
): Promise<Reply> {
  const body = new URLSearchParams({ ...(csrf ? { _csrf: browser.csrf } : {}), ...form }).toString();
  const res = await app.app.inject({
    method: 'POST',
    url,
    headers: { ...LOCAL, cookie: cookieHeader(browser), 'content-type': 'application/x-www-form-urlencoded' },
    payload: body,
  });
  return keepCookies(browser, res);
}
