// The dashboard's accounts, WhatsApp and posts pages on a real database (PGlite and PostgreSQL):
// the right rows in the right order with keyset pages, search by account id, phone and BSUID, the
// Stripe payments that matched no account, an operator's adjustment (applied once under a double
// submit, refused when it would go negative or has no reason, written to the ledger and the audit
// trail, refused without the CSRF token), and every stored value shown as text.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { auditEvents } from '../../src/domains/audit/audit.repository.ts';
import { posts } from '../../src/domains/blog/posts.repository.ts';
import { adjust, balanceOf, createAccount, grantSignup, history } from '../../src/domains/credits/credits.service.ts';
import { handleStripeEvent } from '../../src/domains/credits/stripe-webhook.ts';
import { whatsappContacts, whatsappMessages } from '../../src/domains/whatsapp/whatsapp.repository.ts';
import type { Enqueue } from '../../src/tasks/define-task.ts';
import { type Browser, get, openDashboard, post } from '../helpers/admin-browser.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';

const HOSTILE = '<script>alert("x")</script>';
const ESCAPED = '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;';

function assertEscaped(body: string, what: string): void {
  assert.ok(!body.includes('<script>'), `${what}: no markup from the data`);
  assert.ok(body.includes(ESCAPED), `${what}: the value is shown as text`);
}

/** The adjustment form's fields as the page rendered them. */
function adjustForm(body: string): { key: string } {
  const key = /name="key" value="([^"]+)"/.exec(body)?.[1];
  assert.ok(key, 'the form carries an idempotency key');
  return { key };
}

const count = async (app: TestApp, sql: string, params: unknown[] = []) =>
  Number((await app.db.query<{ n: number }>(sql, params)).rows[0]!.n);

describe('dashboard: accounts, WhatsApp and posts', () => {
  let app: TestApp;
  let browser: Browser;
  let rich: number; // an account with a contact, credits and a long ledger
  const at = new Date('2026-03-01T11:00:00Z');

  before(async () => {
    app = await buildTestApp();
    // 55 accounts (more than a page); the last one gets a contact, a hostile name and 60 entries.
    for (let i = 0; i < 55; i++) await createAccount(app.db, { at });
    rich = await createAccount(app.db, { plan: 'monthly', monthlyCredits: 100, at });
    await whatsappContacts.insert(app.db, {
      accountId: rich,
      phone: '15550001234',
      bsuid: 'US.9988776655',
      name: HOSTILE,
      at,
    });
    await grantSignup(app.db, rich, 10, at);
    for (let i = 1; i <= 60; i++) {
      await adjust(app.db, {
        accountId: rich,
        amount: 1,
        reason: i === 60 ? HOSTILE : `entry ${i}`,
        key: `seed-${i}`,
        at,
      });
    }
    browser = await openDashboard(app, `/admin/accounts/${rich}`);
    assert.ok(browser.csrf, 'the account page carries a CSRF token');
  });

  after(async () => {
    await app?.close();
  });

  const audits = async () => (await auditEvents.list(app.db, { limit: 500 })).reverse();

  test('accounts: newest first in keyset pages, found by account id, phone or BSUID, values escaped', async () => {
    const first = await get(app, browser, '/admin/accounts');
    assert.equal(first.statusCode, 200);
    const ids = [...first.body.matchAll(/<tr data-account="(\d+)"/g)].map((m) => Number(m[1]));
    assert.equal(ids.length, 50);
    assert.equal(ids[0], rich, 'newest first');
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => b - a),
    );
    assert.match(first.body, new RegExp(`<tr data-account="${rich}">[\\s\\S]*?data-balance="70"`));
    assertEscaped(first.body, 'accounts list');
    const next = /href="(\/admin\/accounts\?after=\d+)" rel="next"/.exec(first.body)?.[1];
    assert.ok(next, 'a link to the next page');
    const second = await get(app, browser, next.replaceAll('&amp;', '&'));
    const rest = [...second.body.matchAll(/<tr data-account="(\d+)"/g)].map((m) => Number(m[1]));
    assert.equal(rest.length, 6);
    assert.ok(Math.max(...rest) < Math.min(...ids), 'the next page starts after the last row');
    assert.doesNotMatch(second.body, /rel="next"/);

    for (const q of [String(rich), '+1 555-000 1234', '15550001234', 'US.9988776655']) {
      const found = await get(app, browser, `/admin/accounts?q=${encodeURIComponent(q)}`);
      const rows = [...found.body.matchAll(/<tr data-account="(\d+)"/g)].map((m) => Number(m[1]));
      assert.deepEqual(rows, [rich], `search "${q}"`);
    }
    const none = await get(app, browser, `/admin/accounts?q=${encodeURIComponent(HOSTILE)}`);
    assert.equal([...none.body.matchAll(/<tr data-account=/g)].length, 0);
    assertEscaped(none.body, 'the search box keeps what was typed');
  });

  test('accounts: Stripe payments that matched no account are listed', async () => {
    const enqueue: Enqueue = async () => {
      throw new Error('nothing is enqueued for an unmatched payment');
    };
    const session = (id: string, ref: string | null) => ({
      id: `evt_${id}`,
      type: 'checkout.session.completed',
      livemode: false,
      data: {
        object: {
          id: `cs_${id}`,
          payment_status: 'paid',
          client_reference_id: ref,
          amount_total: 500,
          currency: 'eur',
          metadata: { credits: '50' },
        },
      },
    });
    assert.equal((await handleStripeEvent(app.db, enqueue, session('a', '999999'), at.getTime())).outcome, 'unmatched');
    assert.equal((await handleStripeEvent(app.db, enqueue, session('b', HOSTILE), at.getTime())).outcome, 'unmatched');
    const page = await get(app, browser, '/admin/accounts');
    const table = /<table data-table="unmatched-payments">[\s\S]*?<\/table>/.exec(page.body)?.[0] ?? '';
    assert.match(table, /<tr data-event="evt_a">[\s\S]*?cs_a[\s\S]*?999999[\s\S]*?5\.00 EUR[\s\S]*?no account 999999/);
    assert.match(table, /<tr data-event="evt_b">[\s\S]*?no account id in client_reference_id/);
    assertEscaped(table, 'unmatched payments');
  });

  test("an account's page: balance and ledger newest first, in keyset pages", async () => {
    const page = await get(app, browser, `/admin/accounts/${rich}`);
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /class="stat" data-balance="70"/);
    const entries = [...page.body.matchAll(/<tr data-entry="(\d+)" data-kind="(\w+)"/g)];
    assert.equal(entries.length, 50);
    const ledger = await history(app.db, rich, 100);
    assert.deepEqual(
      entries.map((m) => Number(m[1])),
      ledger.slice(0, 50).map((e) => e.id),
    );
    assertEscaped(page.body, 'ledger reason and contact name');
    const older = /href="(\/admin\/accounts\/\d+\?before=\d+)" rel="next"/.exec(page.body)?.[1];
    assert.ok(older);
    const rest = [...(await get(app, browser, older)).body.matchAll(/<tr data-entry="(\d+)"/g)].map((m) =>
      Number(m[1]),
    );
    assert.deepEqual(
      rest,
      ledger.slice(50).map((e) => e.id),
    );
    assert.equal((await get(app, browser, '/admin/accounts/9999999')).statusCode, 404);
  });

  test('an adjustment applies once under a double submit, and writes the ledger and the audit trail', async () => {
    const account = await createAccount(app.db, { at });
    await grantSignup(app.db, account, 5, at);
    const before = (await audits()).length;
    const { key } = adjustForm((await get(app, browser, `/admin/accounts/${account}`)).body);
    const form = { key, amount: '20', reason: 'goodwill after an outage' };

    const first = await post(app, browser, `/admin/accounts/${account}/adjust`, form);
    assert.equal(first.statusCode, 303, first.body);
    assert.equal(first.headers.location, `/admin/accounts/${account}`);
    const again = await post(app, browser, `/admin/accounts/${account}/adjust`, form);
    assert.equal(again.statusCode, 303);
    assert.equal(await balanceOf(app.db, account), 25);
    const shown = await get(app, browser, `/admin/accounts/${account}`);
    assert.match(shown.body, /already applied/);

    // Two submits at once (a double click): one entry.
    const { key: key2 } = adjustForm(shown.body);
    const both = await Promise.all(
      [1, 2].map(() =>
        post(app, browser, `/admin/accounts/${account}/adjust`, { key: key2, amount: '-5', reason: 'double click' }),
      ),
    );
    assert.deepEqual(
      both.map((r) => r.statusCode),
      [303, 303],
    );
    assert.equal(await balanceOf(app.db, account), 20);

    const adjustments = (await history(app.db, account, 10)).filter((e) => e.kind === 'adjustment');
    assert.deepEqual(
      adjustments.map((e) => [e.amount, e.sourceRef, e.idempotencyKey]),
      [
        [-5, 'double click', `adj:${key2}`],
        [20, 'goodwill after an outage', `adj:${key}`],
      ],
    );
    const trail = (await audits()).slice(before);
    assert.deepEqual(
      trail.map((e) => [e.action, e.actor, e.target, e.detail.amount, e.detail.reason]),
      [
        ['credits.adjust', 'loopback', `account:${account}`, 20, 'goodwill after an outage'],
        ['credits.adjust', 'loopback', `account:${account}`, -5, 'double click'],
      ],
    );
  });

  test('an adjustment is refused when the balance cannot cover it, without a reason, or without the CSRF token', async () => {
    const account = await createAccount(app.db, { at });
    await grantSignup(app.db, account, 5, at);
    const entries = () => count(app, 'SELECT count(*) AS n FROM credit_ledger WHERE account_id = $1', [account]);
    const audited = () => count(app, "SELECT count(*) AS n FROM audit_events WHERE action = 'credits.adjust'");
    const [entriesBefore, auditedBefore] = [await entries(), await audited()];
    const { key } = adjustForm((await get(app, browser, `/admin/accounts/${account}`)).body);
    const url = `/admin/accounts/${account}/adjust`;

    const negative = await post(app, browser, url, { key, amount: '-6', reason: 'too much' });
    assert.equal(negative.statusCode, 422);
    assert.match(negative.body, /Refused: the balance is 5, which cannot cover removing 6/);
    assert.match(negative.body, /name="reason"[^>]*value="too much"/, 'the form keeps what was typed');

    const noReason = await post(app, browser, url, { key, amount: '3', reason: '   ' });
    assert.equal(noReason.statusCode, 422);
    assert.match(noReason.body, /needs a reason/);
    const zero = await post(app, browser, url, { key, amount: '0', reason: 'nothing' });
    assert.equal(zero.statusCode, 422);
    const noKey = await post(app, browser, url, { amount: '3', reason: 'no key' });
    assert.equal(noKey.statusCode, 422);

    const noCsrf = await post(app, browser, url, { key, amount: '3', reason: 'no token' }, false);
    assert.equal(noCsrf.statusCode, 403);
    const wrongCsrf = await post(app, { ...browser, csrf: 'A'.repeat(browser.csrf.length) }, url, {
      key,
      amount: '3',
      reason: 'wrong token',
    });
    assert.equal(wrongCsrf.statusCode, 403);

    assert.equal(await balanceOf(app.db, account), 5);
    assert.equal(await entries(), entriesBefore);
    assert.equal(await audited(), auditedBefore);

    // The same key, now with values the balance covers, applies (nothing was written before).
    const ok = await post(app, browser, url, { key, amount: '-5', reason: 'closing the account' });
    assert.equal(ok.statusCode, 303);
    assert.equal(await balanceOf(app.db, account), 0);
  });

  test('WhatsApp: recent conversations with each message status and error, the offline outbox, one conversation', async () => {
    const account = await createAccount(app.db, { at });
    const contact = await whatsappContacts.insert(app.db, {
      accountId: account,
      phone: '4915112345678',
      bsuid: null,
      name: 'Ada',
      at,
    });
    assert.ok(contact);
    await whatsappMessages.insertInbound(app.db, [
      {
        wamid: 'wamid.in1',
        waUser: '4915112345678',
        phoneNumberId: 'pn1',
        type: 'text',
        body: HOSTILE,
        payload: {},
        messageAt: at,
        at,
      },
    ]);
    await whatsappMessages.markProcessed(app.db, 'wamid.in1', contact.id, at);
    const offline = await whatsappMessages.claimOutbound(app.db, {
      sendKey: 'reply:wamid.in1',
      to: '4915112345678',
      body: 'Here is help',
      phoneNumberId: 'pn1',
      at,
    });
    await whatsappMessages.markOffline(app.db, offline.id, { to: '4915112345678' }, at);
    const failed = await whatsappMessages.claimOutbound(app.db, {
      sendKey: 'reply:wamid.in2',
      to: '4915112345678',
      body: 'Late reply',
      phoneNumberId: 'pn1',
      at,
    });
    await whatsappMessages.markFailed(
      app.db,
      failed.id,
      { message: 'Re-engagement message', httpStatus: 400, code: 131047, details: `outside the window ${HOSTILE}` },
      at,
    );

    const page = await get(app, browser, '/admin/whatsapp');
    assert.equal(page.statusCode, 200);
    const conversations = /<table data-table="conversations">[\s\S]*?<\/table>/.exec(page.body)?.[0] ?? '';
    assert.match(conversations, new RegExp(`<tr data-contact="4915112345678">[\\s\\S]*?/admin/accounts/${account}`));
    assert.match(conversations, /Late reply[\s\S]*?badge failed/);
    const outbox = /<table data-table="offline-outbox">[\s\S]*?<\/table>/.exec(page.body)?.[0] ?? '';
    assert.match(outbox, new RegExp(`<tr data-message="${offline.id}" data-direction="out" data-status="offline">`));
    assert.doesNotMatch(outbox, /Late reply/);
    assertEscaped(page.body, 'WhatsApp page');

    const one = await get(app, browser, `/admin/whatsapp?account=${account}`);
    assert.equal(one.statusCode, 200);
    const rows = [...one.body.matchAll(/<tr data-message="(\d+)" data-direction="(\w+)" data-status="(\w+)">/g)].map(
      (m) => [m[2], m[3]],
    );
    assert.deepEqual(rows, [
      ['out', 'failed'],
      ['out', 'offline'],
      ['in', 'processed'],
    ]);
    assert.match(one.body, /131047 Re-engagement message: outside the window &lt;script&gt;/);
    assertEscaped(one.body, 'conversation');
    assert.equal((await get(app, browser, '/admin/whatsapp?account=99999999')).statusCode, 404);
  });

  test('posts: newest first with link, source, account, writer, tokens and cost; values escaped', async () => {
    const account = await createAccount(app.db, { at });
    // A post written from a page refers to the stored page.
    const pageId = Number(
      (
        await app.db.query<{ id: number }>(
          `INSERT INTO scraped_pages (url, final_url, http_status, content_type, charset, bytes, content_hash, title,
             text, word_count, fetched_at)
           VALUES ('javascript:alert(1)', 'javascript:alert(1)', 200, 'text/html', 'utf-8', 1, 'h', 't', 't', 1, $1)
           RETURNING id`,
          [at],
        )
      ).rows[0]!.id,
    );
    const base = {
      accountId: account,
      pageId: null,
      summary: 's',
      markdown: 'm',
      html: '<p>m</p>',
      lang: 'en',
      credits: 1,
      createdAt: at,
    };
    await posts.insert(app.db, {
      ...base,
      requestId: 'wamid.p1',
      slug: 'tides-explained',
      sourceUrl: null,
      topic: 'the tides',
      title: 'Tides explained',
      model: 'gpt-test',
      offline: false,
      promptTokens: 1200,
      completionTokens: 800,
      costMicros: 4500,
    });
    await posts.insert(app.db, {
      ...base,
      requestId: 'wamid.p2',
      slug: 'hostile-post',
      pageId,
      sourceUrl: 'javascript:alert(1)',
      topic: null,
      title: HOSTILE,
      model: 'offline',
      offline: true,
      promptTokens: 0,
      completionTokens: 0,
      costMicros: 0,
    });
    const page = await get(app, browser, `/admin/posts?account=${account}`);
    assert.equal(page.statusCode, 200);
    const slugs = [...page.body.matchAll(/<tr data-post="([^"]+)">/g)].map((m) => m[1]);
    assert.deepEqual(slugs, ['hostile-post', 'tides-explained']);
    const tides = /<tr data-post="tides-explained">[\s\S]*?<\/tr>/.exec(page.body)?.[0] ?? '';
    assert.match(tides, /href="\/posts\/tides-explained"/);
    assert.match(tides, /topic:<\/span> the tides/);
    assert.match(tides, /<code>gpt-test<\/code>/);
    assert.match(tides, /1,200 \+ 800/);
    assert.match(tides, /\$0\.0045/);
    const hostile = /<tr data-post="hostile-post">[\s\S]*?<\/tr>/.exec(page.body)?.[0] ?? '';
    assert.match(hostile, /badge">offline/);
    assert.doesNotMatch(hostile, /href="javascript:/, 'a source that is not http(s) is no link');
    assertEscaped(page.body, 'posts page');
    const all = await get(app, browser, '/admin/posts');
    assert.match(all.body, /<tr data-post="hostile-post">/);
  });

  test('without a task backend the queues and schedules pages say so, and their actions change nothing', async () => {
    for (const url of ['/admin/queues', '/admin/schedules']) {
      const page = await get(app, browser, url);
      assert.equal(page.statusCode, 200);
      assert.match(page.body, /no task backend/);
    }
    assert.match((await post(app, browser, '/admin/queues/blog/pause')).body, /no task backend/);
    assert.match((await post(app, browser, '/admin/schedules/health-check/run')).body, /no task backend/);
    assert.equal(
      await count(
        app,
        "SELECT count(*) AS n FROM audit_events WHERE action LIKE 'queue.%' OR action LIKE 'schedule.%'",
      ),
      0,
    );
  });
});
