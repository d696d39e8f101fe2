// A post from a WhatsApp message through the whole service as `npm start` runs it: the fake Graph
// API for WhatsApp, a local page server, and the built-in offline writer (no LLM configured).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { textWebhook } from '../../src/domains/whatsapp/webhook.ts';
import { runBackend } from '../helpers/cli-process.ts';
import { startPageServer } from '../helpers/page-server.ts';
import { startServiceProcess } from '../helpers/service-process.ts';
import { testDbKind } from '../helpers/test-db.ts';

const APP_SECRET = 'e2e-posts-secret';
const ARTICLE = readFileSync(new URL('../fixtures/pages/news-article.html', import.meta.url));

test(`a page URL on WhatsApp → a stored page, a post at /posts/{slug}, one reply with its link, one charge (${testDbKind})`, async () => {
  const pages = await startPageServer(() => ({ body: ARTICLE }));
  const pageUrl = `${pages.url}/news/harbour`;
  const running = await startServiceProcess({
    appSecret: APP_SECRET,
    env: { SCRAPER_ALLOW_PRIVATE_NETWORKS: 'true', SIGNUP_CREDITS: '5', POST_COST_CREDITS: '2' },
  }).catch(async (err) => {
    await pages.close();
    throw err;
  });
  const { graph, service, env, base } = running;
  const post = running.postWebhook;
  const textOf = (r: { body: Record<string, unknown> }) => (r.body.text as { body: string }).body;
  try {
    await running.ready;
    const from = '15550301234';
    const body = textWebhook([{ from, text: `Write a post from ${pageUrl} please`, wamid: 'wamid.E2EPOST1' }]);
    assert.equal((await post(body)).status, 200);
    const sent = await graph.waitForSent(2);
    assert.match(textOf(sent[0]!), /Welcome!.*On it: reading/s);
    const ready = textOf(sent[1]!);
    assert.match(ready, /Your post is ready/);
    const link = new RegExp(`${base}/posts/[a-z0-9-]+`).exec(ready)?.[0];
    assert.ok(link, ready);
    assert.equal(pages.hits.length, 1);

    const page = await fetch(link);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(html, /<h1[^>]*>[^<]+<\/h1>/);
    assert.ok(html.includes(pageUrl), 'links the source');
    assert.match(html, /offline writer/i);

    const conversations = await runBackend(['whatsapp', 'conversations', '--user', from, '--json'], env);
    assert.equal(conversations.code, 0, conversations.stderr);
    const accountId = JSON.parse(conversations.stdout.trim().split('\n')[0]!).accountId as number;
    const ledger = async () => {
      const r = await runBackend(['credits', 'history', String(accountId)], env);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout;
    };
    const before = await ledger();
    assert.match(before, /balance 3/);
    assert.equal((before.match(/ charge /g) ?? []).length, 1);
    assert.equal((before.match(/ signup_grant /g) ?? []).length, 1);

    // The same webhook again changes nothing: a later message is the only other reply.
    assert.equal((await post(body)).status, 200);
    await service.waitForLine(/whatsapp webhook: 0 new, 1 duplicate/);
    await post(textWebhook([{ from, text: 'balance', wamid: 'wamid.E2EPOST2' }]));
    const all = await graph.waitForSent(3);
    assert.equal(textOf(all[2]!), 'You have 3 credits.');
    assert.equal(graph.sent().length, 3);
    assert.equal(await ledger(), before);
    assert.equal(pages.hits.length, 1);
  } finally {
    await running.close();
    await pages.close();
  }
});
