// From a WhatsApp message to a published post, inside the app: process_message → scrape_page →
// generate_post → the reply, delivered as Cloud Tasks would, against a local page server and a
// fake OpenAI-compatible server; the credits ledger checked at every step.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, beforeEach, describe, test } from 'node:test';
import { adjust, balanceOf, history } from '../../src/domains/credits/credits.service.ts';
import { textWebhook } from '../../src/domains/whatsapp/webhook.ts';
import { taskRuns } from '../../src/tasks/task-runs.repository.ts';
import type { FakeOpenAI } from '../helpers/fake-openai.ts';
import { type PageAnswer, type PageServer, startPageServer } from '../helpers/page-server.ts';
import { type PostApp, startPostApp } from '../helpers/post-app.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';
import { signedWebhookHeaders } from '../helpers/whatsapp-webhooks.ts';

const APP_SECRET = 'posts-test-secret';
const ARTICLE = readFileSync(new URL('../fixtures/pages/blog-post.html', import.meta.url));
let seq = 0;
const wamid = () => `wamid.POST${++seq}x${Date.now().toString(36)}`;
let phones = 0;
const phone = () => `1555020${String(++phones).padStart(4, '0')}`;

function page(path: string): PageAnswer {
  if (path === '/article') return { body: ARTICLE };
  if (path === '/broken') return { status: 503, type: 'text/html', body: '<h1>down</h1>' };
  if (path === '/file.pdf') return { type: 'application/pdf', body: '%PDF-1.7' };
  return { status: 404, type: 'text/html', body: '<h1>not found</h1>' };
}

describe(`posts from WhatsApp messages (${testDbKind})`, () => {
  let harness: PostApp;
  let t: TestApp;
  let llm: FakeOpenAI;
  let pages: PageServer;
  before(async () => {
    harness = await startPostApp({ appSecret: APP_SECRET, page });
    ({ t, llm, pages } = harness);
  });
  after(() => harness.close());
  beforeEach(() => harness.reset());

  const webhook = (from: string, text: string, id = wamid()) => harness.webhook(from, text, id);
  const deliver = (tasks: string[], o: { retryCount?: number } = {}) => harness.deliver(tasks, o);
  const replies = () =>
    t.enqueued.filter((c) => c.task === 'whatsapp.send_message').map((c) => (c.payload as { text: string }).text);
  const ledgerSum = async (accountId: number) => (await history(t.db, accountId)).reduce((s, e) => s + e.amount, 0);
  const accountOf = (from: string) => harness.accountOf(from);

  test('a URL: the page stored, a post at /posts/{slug}, one reply with its link, one charge; the same webhook again changes nothing', async () => {
    const from = phone();
    const id = wamid();
    const url = `${pages.url}/article`;
    assert.equal((await webhook(from, `Please write about ${url}.`, id)).statusCode, 200);
    const [processed] = await deliver(['whatsapp.process_message']);
    assert.equal(processed!.outcome, 'succeeded');
    assert.match(replies()[0]!, /On it: reading http:\/\/127\.0\.0\.1:\d+\/article and writing your post/);
    const [scraped] = await deliver(['scraper.scrape_page']);
    assert.equal(scraped!.outcome, 'succeeded', JSON.stringify(scraped!.body));
    assert.equal(scraped!.payload.url, url, 'the trailing full stop is not part of the URL');
    const page = await t.db.query<{ title: string; text: string; http_status: number; content_hash: string }>(
      'SELECT title, text, http_status, content_hash FROM scraped_pages WHERE url = $1',
      [url],
    );
    assert.equal(page.rows.length, 1);
    assert.equal(page.rows[0]!.http_status, 200);
    assert.match(page.rows[0]!.content_hash, /^[0-9a-f]{64}$/);
    assert.ok(page.rows[0]!.text.length > 500);

    const [generated] = await deliver(['blog.generate_post']);
    assert.equal(generated!.outcome, 'succeeded', JSON.stringify(generated!.body));
    assert.equal(llm.requests.length, 1);
    assert.equal(llm.requests[0]!.body.model, 'test-model');
    assert.equal(llm.requests[0]!.headers.authorization, 'Bearer sk-test');
    assert.match(JSON.stringify(llm.requests[0]!.body.messages), new RegExp(page.rows[0]!.title.slice(0, 20)));
    const post = await t.db.query<{
      slug: string;
      title: string;
      model: string;
      prompt_tokens: number;
      credits: number;
    }>('SELECT slug, title, model, prompt_tokens, credits FROM posts WHERE request_id = $1', [id]);
    assert.equal(post.rows.length, 1);
    const { slug, title } = post.rows[0]!;
    assert.equal(post.rows[0]!.prompt_tokens, 1200);
    assert.equal(post.rows[0]!.credits, 2);
    const ready = replies().filter((r) => r.includes('/posts/'));
    assert.equal(ready.length, 1);
    assert.ok(ready[0]!.includes(`https://svc.example.run.app/posts/${slug}`));
    assert.ok(ready[0]!.includes(title));

    const accountId = await accountOf(from);
    assert.deepEqual((await history(t.db, accountId)).map((e) => [e.kind, e.amount]).reverse(), [
      ['signup_grant', 3],
      ['charge', -2],
    ]);
    assert.equal(await balanceOf(t.db, accountId), 1);
    assert.equal(await ledgerSum(accountId), 1);

    const html = await t.app.inject({ method: 'GET', url: `/posts/${slug}` });
    assert.equal(html.statusCode, 200);
    assert.match(String(html.headers['content-type']), /^text\/html/);
    assert.match(String(html.headers['content-security-policy']), /default-src 'none'/);
    assert.ok(html.body.includes('<h1'));
    assert.ok(html.body.includes(url), 'links the source');
    assert.doesNotMatch(html.body, /<script/i);

    // The same webhook again: no task, no page, no post, no charge.
    t.enqueued.length = 0;
    assert.equal((await webhook(from, `Please write about ${url}.`, id)).statusCode, 200);
    assert.equal(t.enqueued.length, 0);
    assert.equal((await history(t.db, accountId)).length, 2);
    // A redelivered generate_post task finds the post and changes nothing either.
    const again = await push(t.app, t.issuer, 'blog.generate_post', generated!.payload, {
      headers: { 'x-task-key': id },
      retryCount: 1,
    });
    assert.equal(again.outcome, 'duplicate');
    assert.equal(await balanceOf(t.db, accountId), 1);
  });

  test('blog <topic>: a post on the topic; a recent page is reused, not fetched again', async () => {
    const from = phone();
    await webhook(from, 'Blog the history of sourdough bread');
    await deliver(['whatsapp.process_message']);
    const [generated] = await deliver(['blog.generate_post']);
    assert.equal(generated!.outcome, 'succeeded', JSON.stringify(generated!.body));
    assert.equal(generated!.payload.topic, 'the history of sourdough bread');
    const post = await t.db.query<{ topic: string; page_id: number | null }>(
      'SELECT topic, page_id FROM posts WHERE request_id = $1',
      [generated!.payload.requestId],
    );
    assert.deepEqual(post.rows, [{ topic: 'the history of sourdough bread', page_id: null }]);

    const hitsBefore = pages.hits.length;
    await webhook(phone(), `${pages.url}/article`);
    await deliver(['whatsapp.process_message']);
    const [scraped] = await deliver(['scraper.scrape_page']);
    assert.equal(scraped!.outcome, 'succeeded');
    const run = await t.db.query<{ result: { reused: boolean } }>('SELECT result FROM task_runs WHERE id = $1', [
      scraped!.body.runId,
    ]);
    assert.equal(run.rows[0]!.result.reused, true);
    assert.equal(pages.hits.length, hitsBefore, 'no new request to the page server');
  });

  test('not enough credits: a reply with the balance and how to top up; nothing enqueued or charged', async () => {
    const from = phone();
    await webhook(from, 'hi');
    await deliver(['whatsapp.process_message']);
    const accountId = await accountOf(from);
    await adjust(t.db, { accountId, amount: -2, reason: 'test: leave 1 credit' });
    t.enqueued.length = 0;
    await webhook(from, `${pages.url}/article`);
    await deliver(['whatsapp.process_message']);
    assert.deepEqual(
      t.enqueued.map((c) => c.task),
      ['whatsapp.send_message'],
    );
    assert.match(replies()[0]!, /A post costs 2 credits and you have 1 credit.*nothing was charged.*topup/s);
    assert.equal(await balanceOf(t.db, accountId), 1);
    assert.equal(await ledgerSum(accountId), 1);
  });

  test('the model failing for good releases the reservation and tells the user; the ledger sums to the balance', async () => {
    const from = phone();
    await webhook(from, 'blog tides');
    await deliver(['whatsapp.process_message']);
    const accountId = await accountOf(from);
    t.enqueued.length = 0;
    // A 500 (and the SDK's one retry) on a first attempt: retried later, the credits stay reserved.
    llm.script({ status: 500 }, { status: 500 });
    const generate = (retryCount: number) => deliver(['blog.generate_post'], { retryCount });
    await webhook(from, 'blog tides again');
    await deliver(['whatsapp.process_message']);
    t.enqueued.splice(0, t.enqueued.length, ...t.enqueued.filter((c) => c.task === 'blog.generate_post'));
    const pending = [...t.enqueued];
    const [first] = await generate(0);
    assert.equal(first!.status, 500);
    assert.equal(await balanceOf(t.db, accountId), 1, 'reserved while retrying');
    // The model then answers with something that is not a post: failing for good.
    t.enqueued.push(...pending);
    llm.script('schema-invalid');
    const [last] = await generate(1);
    assert.equal(last!.outcome, 'dead', JSON.stringify(last!.body));
    assert.equal(await balanceOf(t.db, accountId), 3);
    assert.equal(await ledgerSum(accountId), 3);
    assert.deepEqual((await history(t.db, accountId)).map((e) => [e.kind, e.amount]).reverse(), [
      ['signup_grant', 3],
      ['charge', -2],
      ['refund', 2],
    ]);
    assert.match(replies().at(-1)!, /couldn't write your post.*2 credits were returned/s);
    assert.equal(
      await t.db.query('SELECT 1 FROM posts WHERE topic = $1', ['tides again']).then((r) => r.rows.length),
      0,
    );
    // An operator's replay of that dead run (`runs replay`) does not write a post for free.
    assert.ok(await taskRuns.markForReplay(t.db, (last!.body as { runId: number }).runId, new Date(t.clock.now())));
    const replay = await push(t.app, t.issuer, 'blog.generate_post', pending[0]!.payload, { taskName: 'replayed' });
    assert.equal(replay.outcome, 'dead', JSON.stringify(replay.body));
    assert.equal(await balanceOf(t.db, accountId), 3);
  });

  test('retryable model failures on the last attempt also release and tell', async () => {
    const from = phone();
    await webhook(from, 'blog kites');
    await deliver(['whatsapp.process_message']);
    const accountId = await accountOf(from);
    llm.script({ status: 503 }, { status: 503 });
    // The blog queue allows 5 attempts: retry count 4 is the last.
    const [last] = await deliver(['blog.generate_post'], { retryCount: 4 });
    assert.equal(last!.outcome, 'dead');
    assert.match(String((last!.body as { error: string }).error), /gave up after attempt 5/);
    assert.equal(await balanceOf(t.db, accountId), 3);
    assert.match(replies().at(-1)!, /couldn't write your post.*2 credits were returned/s);
  });

  test('pages the user got wrong are refused with plain words; a 5xx is retried, then told on the last attempt', async () => {
    const from = phone();
    for (const [path, words] of [
      ['/missing', /wasn't found \(error 404\)/],
      ['/file.pdf', /isn't a web page/],
    ] as const) {
      t.enqueued.length = 0;
      await webhook(from, `${pages.url}${path}`);
      await deliver(['whatsapp.process_message']);
      t.enqueued.splice(0, t.enqueued.length, ...t.enqueued.filter((c) => c.task === 'scraper.scrape_page'));
      const [scraped] = await deliver(['scraper.scrape_page']);
      assert.equal(scraped!.outcome, 'dead', path);
      assert.match(replies()[0]!, words);
    }
    t.enqueued.length = 0;
    await webhook(from, `${pages.url}/broken`);
    await deliver(['whatsapp.process_message']);
    const task = t.enqueued.find((c) => c.task === 'scraper.scrape_page')!;
    t.enqueued.length = 0;
    t.enqueued.push(task);
    const [first] = await deliver(['scraper.scrape_page']);
    assert.equal(first!.status, 500);
    assert.equal(replies().length, 0, 'nothing told while retrying');
    t.enqueued.push(task);
    const [last] = await deliver(['scraper.scrape_page'], { retryCount: 4 });
    assert.equal(last!.outcome, 'dead');
    assert.match(replies()[0]!, /having trouble/);
  });

  test('unknown or malformed slugs get the HTML 404 page', async () => {
    for (const url of ['/posts/no-such-post', '/posts/%3Cscript%3E', '/posts/-x-', `/posts/${'a'.repeat(99)}`]) {
      const r = await t.app.inject({ method: 'GET', url });
      assert.equal(r.statusCode, 404, url);
      assert.match(String(r.headers['content-type']), /^text\/html/);
      assert.doesNotMatch(r.body, /<script/i);
    }
  });
});

describe(`scraping private addresses (${testDbKind})`, () => {
  test('refused with a reason the user understands, and no request reaches the server', async () => {
    const pages = await startPageServer(page);
    const t = await buildTestApp({ env: { WHATSAPP_APP_SECRET: APP_SECRET } });
    try {
      const body = textWebhook([{ from: '15550299999', text: `${pages.url}/article`, wamid: wamid() }]);
      await t.app.inject({
        method: 'POST',
        url: '/webhooks/whatsapp',
        headers: signedWebhookHeaders(body, APP_SECRET),
        payload: body,
      });
      const process = t.enqueued.shift()!;
      await push(t.app, t.issuer, process.task, process.payload);
      const scrape = t.enqueued.find((c) => c.task === 'scraper.scrape_page')!;
      t.enqueued.length = 0;
      const r = await push(t.app, t.issuer, scrape.task, scrape.payload);
      assert.equal(r.outcome, 'dead');
      assert.match(r.body.error, /blocked|private|loopback/i);
      assert.equal(pages.hits.length, 0);
      const told = t.enqueued.map((c) => (c.payload as { text: string }).text);
      assert.equal(told.length, 1);
      assert.match(told[0]!, /points to a private network/);
    } finally {
      await t.close();
      await pages.close();
    }
  });
});
