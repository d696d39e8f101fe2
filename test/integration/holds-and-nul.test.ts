// Credits holds never stay held, and NUL characters never stop a post: a model answer and a page
// with U+0000 in them end with a post; a generate_post whose final transaction fails on its last
// attempt gives the credits back and tells the user once, and a scrape that dies on its last
// attempt tells the user once; the holds sweep releases an abandoned hold once and leaves a hold
// whose task is still in progress alone. Through the app, as Cloud Tasks delivers (the test clock
// ages the holds), against a local page server and the fake OpenAI-compatible server; the last
// test runs the NUL case through `npm start` against the fake Graph API as well.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, beforeEach, describe, test } from 'node:test';
import { balanceOf, createAccount, grantSignup, history, reserve } from '../../src/domains/credits/credits.service.ts';
import { textWebhook } from '../../src/domains/whatsapp/webhook.ts';
import { HOLD_SWEEP_AFTER_SECONDS, schedules, tasks } from '../../src/task-registry.ts';
import { runBackend } from '../helpers/cli-process.ts';
import { type FakeOpenAI, startFakeOpenAI } from '../helpers/fake-openai.ts';
import { type PageServer, startPageServer } from '../helpers/page-server.ts';
import { type PostApp, startPostApp } from '../helpers/post-app.ts';
import { push } from '../helpers/push.ts';
import { startServiceProcess } from '../helpers/service-process.ts';
import type { TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

const APP_SECRET = 'holds-nul-secret';
const ARTICLE = readFileSync(new URL('../fixtures/pages/blog-post.html', import.meta.url), 'utf8');
// The same article with NUL bytes in its title, its headings and its paragraphs.
const NUL_ARTICLE = Buffer.from(
  ARTICLE.replace('<title>', '<title>\u0000').replaceAll('</h2>', '\u0000</h2>').replaceAll('. ', '.\u0000 '),
  'utf8',
);
let seq = 0;
const wamid = () => `wamid.HOLDNUL${++seq}x${Date.now().toString(36)}`;
let phones = 0;
const phone = () => `1555030${String(++phones).padStart(4, '0')}`;

const page = (path: string) => ({ body: path === '/nul' ? NUL_ARTICLE : ARTICLE });

describe(`credits holds and NUL characters (${testDbKind})`, () => {
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
  const deliver = (names: string[], o: { retryCount?: number } = {}) => harness.deliver(names, o);
  const sent = () =>
    t.enqueued
      .filter((c) => c.task === 'whatsapp.send_message')
      .map((c) => ({ text: (c.payload as { text: string }).text, key: c.options?.key ?? '' }));
  const accountOf = (from: string) => harness.accountOf(from);
  const ledger = async (accountId: number) =>
    (await history(t.db, accountId)).map((e) => [e.kind, e.amount] as const).reverse();
  const holdOf = async (ref: string) =>
    (await t.db.query<{ state: string }>('SELECT state FROM credit_holds WHERE ref = $1', [ref])).rows[0]?.state;
  const sweep = (key: string) =>
    push(
      t.app,
      t.issuer,
      'credits.sweep_holds',
      { olderThanSeconds: HOLD_SWEEP_AFTER_SECONDS },
      {
        headers: { 'x-task-key': key },
      },
    );

  test('a model answer with NUL characters: a post without them, the credits settled, one reply', async () => {
    const from = phone();
    await webhook(from, 'blog the tides of the north sea');
    await deliver(['whatsapp.process_message']);
    const accountId = await accountOf(from);
    llm.script('nul-characters');
    const [generated] = await deliver(['blog.generate_post']);
    assert.equal(generated!.outcome, 'succeeded', JSON.stringify(generated!.body));
    assert.equal(llm.requests.length, 1, 'one model call: nothing retried');
    const requestId = String(generated!.payload.requestId);
    const post = await t.db.query<{ title: string; markdown: string; html: string }>(
      'SELECT title, markdown, html FROM posts WHERE request_id = $1',
      [requestId],
    );
    assert.equal(post.rows.length, 1);
    assert.equal(post.rows[0]!.title, 'Nul What to know about the tides of the north sea');
    assert.match(post.rows[0]!.markdown, /At its core/);
    assert.ok(!Object.values(post.rows[0]!).some((v) => v.includes('\u0000')));
    assert.equal(await holdOf(`post:${requestId}`), 'settled');
    assert.deepEqual(await ledger(accountId), [
      ['signup_grant', 3],
      ['charge', -2],
    ]);
    assert.equal(await balanceOf(t.db, accountId), 1);
    const ready = sent().filter((r) => r.text.includes('/posts/'));
    assert.equal(ready.length, 1);
    assert.ok(!ready[0]!.text.includes('\u0000'));
  });

  test('a page with NUL bytes: stored without them on the first fetch, then a post', async () => {
    const from = phone();
    const url = `${pages.url}/nul`;
    await webhook(from, `write about ${url}`);
    await deliver(['whatsapp.process_message']);
    const [scraped] = await deliver(['scraper.scrape_page']);
    assert.equal(scraped!.outcome, 'succeeded', JSON.stringify(scraped!.body));
    assert.equal(pages.hits.filter((h) => h === '/nul').length, 1, 'fetched once');
    const page = await t.db.query<{ title: string; text: string; excerpt: string | null }>(
      'SELECT title, text, excerpt FROM scraped_pages WHERE url = $1',
      [url],
    );
    assert.equal(page.rows.length, 1);
    assert.ok(page.rows[0]!.text.length > 500);
    assert.ok(!JSON.stringify(page.rows[0]).includes('\\u0000'));
    const [generated] = await deliver(['blog.generate_post']);
    assert.equal(generated!.outcome, 'succeeded', JSON.stringify(generated!.body));
    assert.ok(!JSON.stringify(llm.requests[0]!.body).includes('\\u0000'), 'the prompt has no NUL either');
    const accountId = await accountOf(from);
    assert.equal(await balanceOf(t.db, accountId), 1);
    assert.equal(sent().filter((r) => r.text.includes('/posts/')).length, 1);
    assert.equal(sent().filter((r) => /couldn't/.test(r.text)).length, 0);
  });

  test('the final transaction failing on the last attempt releases the credits and replies once', async () => {
    // The posts insert fails for this topic only, as a database refusing the row would.
    await t.db.exec(`
      CREATE FUNCTION refuse_test_post() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.topic = 'doomed lighthouses' THEN RAISE EXCEPTION 'test: the post row is refused'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_test_post BEFORE INSERT ON posts FOR EACH ROW EXECUTE FUNCTION refuse_test_post();`);
    try {
      const from = phone();
      await webhook(from, 'blog doomed lighthouses');
      await deliver(['whatsapp.process_message']);
      const accountId = await accountOf(from);
      const task = t.enqueued.find((c) => c.task === 'blog.generate_post')!;
      const hold = `post:${(task.payload as { requestId: string }).requestId}`;
      t.enqueued.length = 0;

      // An attempt that is not the last: retried later, the credits stay reserved, nothing told.
      t.enqueued.push(task);
      const [first] = await deliver(['blog.generate_post']);
      assert.equal(first!.status, 500, JSON.stringify(first!.body));
      assert.equal(await holdOf(hold), 'held');
      assert.equal(await balanceOf(t.db, accountId), 1);
      assert.equal(sent().length, 0);

      // The last attempt (the blog queue allows 5): the same failure, and now the credits come back.
      t.enqueued.push(task);
      const [last] = await deliver(['blog.generate_post'], { retryCount: 4 });
      assert.equal(last!.outcome, 'dead', JSON.stringify(last!.body));
      assert.equal(await holdOf(hold), 'released');
      assert.equal(await balanceOf(t.db, accountId), 3);
      assert.deepEqual(await ledger(accountId), [
        ['signup_grant', 3],
        ['charge', -2],
        ['refund', 2],
      ]);
      const told = sent();
      assert.equal(told.length, 1);
      assert.match(told[0]!.text, /couldn't write your post.*2 credits were returned/s);
      assert.equal(told[0]!.key, `post-failed:${(task.payload as { requestId: string }).requestId}`);
      assert.match(String((last!.body as { error: string }).error), /gave up after attempt 5.*refused/);

      // A redelivery of the dead run, and a sweep, change nothing and tell nothing more.
      t.enqueued.push(task);
      const [again] = await deliver(['blog.generate_post'], { retryCount: 4 });
      assert.equal(again!.outcome, 'duplicate');
      t.clock.advance(2 * HOLD_SWEEP_AFTER_SECONDS * 1000);
      const swept = await sweep('sweep-after-final-failure');
      assert.equal(swept.outcome, 'succeeded', JSON.stringify(swept.body));
      assert.equal(await balanceOf(t.db, accountId), 3);
      assert.equal((await history(t.db, accountId)).length, 3);
      assert.equal(sent().length, 1);
      assert.equal(
        await t.db.query('SELECT 1 FROM posts WHERE topic = $1', ['doomed lighthouses']).then((r) => r.rows.length),
        0,
      );
    } finally {
      await t.db.exec('DROP TRIGGER refuse_test_post ON posts; DROP FUNCTION refuse_test_post();');
    }
  });

  test('a scrape that fails on its last attempt for any reason tells the user once', async () => {
    // The page insert fails for this URL only, as a database refusing the row would.
    await t.db.exec(`
      CREATE FUNCTION refuse_test_page() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.url LIKE '%/doomed' THEN RAISE EXCEPTION 'test: the page row is refused'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_test_page BEFORE INSERT ON scraped_pages FOR EACH ROW EXECUTE FUNCTION refuse_test_page();`);
    try {
      const from = phone();
      await webhook(from, `${pages.url}/doomed`);
      await deliver(['whatsapp.process_message']);
      const task = t.enqueued.find((c) => c.task === 'scraper.scrape_page')!;
      t.enqueued.length = 0;
      t.enqueued.push(task);
      const [first] = await deliver(['scraper.scrape_page']);
      assert.equal(first!.status, 500, JSON.stringify(first!.body));
      assert.equal(sent().length, 0, 'nothing told while retrying');
      // The scraper queue allows 5 attempts: retry count 4 is the last.
      t.enqueued.push(task);
      const [last] = await deliver(['scraper.scrape_page'], { retryCount: 4 });
      assert.equal(last!.outcome, 'dead', JSON.stringify(last!.body));
      const told = sent();
      assert.equal(told.length, 1);
      assert.match(told[0]!.text, /couldn't read http:\/\/127\.0\.0\.1:\d+\/doomed\. Something went wrong on my side/);
      assert.equal(told[0]!.key, `scrape-failed:${(task.payload as { requestId: string }).requestId}`);
      assert.equal(t.enqueued.filter((c) => c.task === 'blog.generate_post').length, 0);
      assert.equal(await balanceOf(t.db, await accountOf(from)), 3, 'nothing reserved');
    } finally {
      await t.db.exec('DROP TRIGGER refuse_test_page ON scraped_pages; DROP FUNCTION refuse_test_page();');
    }
  });

  test('the sweep releases an abandoned hold once, tells its user once, and leaves holds in progress alone', async () => {
    assert.equal(HOLD_SWEEP_AFTER_SECONDS, Math.max(...tasks.map((task) => task.deadlineSeconds ?? 120)));
    const scheduled = schedules.find((s) => s.task === 'credits.sweep_holds');
    assert.deepEqual(scheduled?.payload, { olderThanSeconds: HOLD_SWEEP_AFTER_SECONDS });

    const now = () => new Date(t.clock.now());
    const accountId = await createAccount(t.db, { at: now() });
    await grantSignup(t.db, accountId, 10, now());
    const payload = (requestId: string) => ({ requestId, accountId, to: '15550399999', topic: 'kites' });
    /** A generate_post run as the push route leaves it: status, and a lease for a running one. */
    const run = (key: string, status: string, leaseMs: number | null) =>
      t.db.query(
        `INSERT INTO task_runs (task, idempotency_key, status, lease_expires_at, payload, payload_hash, created_at,
                                started_at, updated_at)
         VALUES ('blog.generate_post', $1, $2, $3, $4, 'test', $5, $5, $5)`,
        [key, status, leaseMs === null ? null : new Date(t.clock.now() + leaseMs), JSON.stringify(payload(key)), now()],
      );
    const old = `sweep-old-${testDbKind}`;
    // Opened long ago: its run died on the last attempt without releasing (the process was killed).
    await reserve(t.db, { accountId, credits: 2, ref: `post:${old}-dead`, at: now() });
    await run(`${old}-dead`, 'dead', null);
    // As old, but its run failed and awaits the queue's next attempt, or is running under a live lease.
    await reserve(t.db, { accountId, credits: 2, ref: `post:${old}-retrying`, at: now() });
    await run(`${old}-retrying`, 'failed', null);
    await reserve(t.db, { accountId, credits: 1, ref: `post:${old}-running`, at: now() });
    // As old, its run running but its lease expired: the instance died.
    await reserve(t.db, { accountId, credits: 1, ref: `post:${old}-lost`, at: now() });
    await run(`${old}-lost`, 'running', 1000);
    t.clock.advance(HOLD_SWEEP_AFTER_SECONDS * 1000 + 1000);
    await run(`${old}-running`, 'running', 600_000);
    // Opened a minute ago, and no run at all yet: too young to judge.
    await reserve(t.db, { accountId, credits: 1, ref: `post:sweep-fresh-${testDbKind}`, at: now() });
    t.clock.advance(60_000);
    assert.equal(await balanceOf(t.db, accountId), 10 - 2 - 2 - 1 - 1 - 1);

    const first = await sweep(`sweep-1-${testDbKind}`);
    assert.equal(first.outcome, 'succeeded', JSON.stringify(first.body));
    const result = (
      await t.db.query<{ result: Record<string, number> }>('SELECT result FROM task_runs WHERE id = $1', [
        (first.body as { runId: number }).runId,
      ])
    ).rows[0]!.result;
    assert.equal(result.released, 2);
    assert.equal(result.inProgress, 2);
    assert.equal(await holdOf(`post:${old}-dead`), 'released');
    assert.equal(await holdOf(`post:${old}-lost`), 'released');
    assert.equal(await holdOf(`post:${old}-retrying`), 'held');
    assert.equal(await holdOf(`post:${old}-running`), 'held');
    assert.equal(await holdOf(`post:sweep-fresh-${testDbKind}`), 'held');
    assert.equal(await balanceOf(t.db, accountId), 3 + 2 + 1);
    const refunds = (await history(t.db, accountId)).filter((e) => e.kind === 'refund');
    assert.deepEqual(refunds.map((e) => [e.idempotencyKey, e.amount]).sort(), [
      [`released:post:${old}-dead`, 2],
      [`released:post:${old}-lost`, 1],
    ]);
    const told = sent();
    assert.deepEqual(told.map((r) => r.key).sort(), [`post-failed:${old}-dead`, `post-failed:${old}-lost`]);
    assert.match(told.find((r) => r.key === `post-failed:${old}-dead`)!.text, /2 credits were returned/);

    // A second sweep finds nothing more to do: no ledger entry, no reply.
    const entries = (await history(t.db, accountId)).length;
    const second = await sweep(`sweep-2-${testDbKind}`);
    assert.equal(second.outcome, 'succeeded', JSON.stringify(second.body));
    assert.equal((await history(t.db, accountId)).length, entries);
    assert.equal(await balanceOf(t.db, accountId), 6);
    assert.equal(sent().length, 2);
  });
});

test(`through npm start: a page with NUL bytes and a model answer with NUL characters end with a post and one charge (${testDbKind})`, async () => {
  const llm = await startFakeOpenAI();
  llm.script('nul-characters');
  const pages = await startPageServer(page);
  const running = await startServiceProcess({
    appSecret: APP_SECRET,
    env: {
      SCRAPER_ALLOW_PRIVATE_NETWORKS: 'true',
      LLM_BASE_URL: llm.baseURL,
      LLM_MODEL: 'test-model',
      LLM_API_KEY: 'sk-test',
      SIGNUP_CREDITS: '5',
      POST_COST_CREDITS: '2',
    },
  }).catch(async (err) => {
    await llm.close();
    await pages.close();
    throw err;
  });
  const { graph, env, base } = running;
  const textOf = (r: { body: Record<string, unknown> }) => (r.body.text as { body: string }).body;
  try {
    await running.ready;
    const from = '15550309876';
    const body = textWebhook([{ from, text: `Write a post from ${pages.url}/nul`, wamid: 'wamid.E2ENUL1' }]);
    assert.equal((await running.postWebhook(body)).status, 200);
    const sentMessages = await graph.waitForSent(2);
    const ready = textOf(sentMessages[1]!);
    assert.match(ready, /Your post is ready: \*Nul What to know about /);
    assert.ok(!ready.includes('\u0000'));
    const link = new RegExp(`${base}/posts/[a-z0-9-]+`).exec(ready)?.[0];
    assert.ok(link, ready);
    const html = await (await fetch(link)).text();
    assert.match(html, /At its core/);
    assert.equal(pages.hits.filter((h) => h === '/nul').length, 1, 'the page was fetched once');
    assert.equal(llm.requests.length, 1, 'the model was asked once');

    const conversations = await runBackend(['whatsapp', 'conversations', '--user', from, '--json'], env);
    assert.equal(conversations.code, 0, conversations.stderr);
    const accountId = JSON.parse(conversations.stdout.trim().split('\n')[0]!).accountId as number;
    const history = await runBackend(['credits', 'history', String(accountId)], env);
    assert.equal(history.code, 0, history.stderr);
    assert.match(history.stdout, /balance 3/);
    assert.equal((history.stdout.match(/ charge /g) ?? []).length, 1);
    assert.equal((history.stdout.match(/ refund /g) ?? []).length, 0);
    assert.equal(graph.sent().length, 2);
  } finally {
    await running.close();
    await llm.close();
    await pages.close();
  }
});
