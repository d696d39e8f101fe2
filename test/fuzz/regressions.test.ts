// The failures the fuzz tests found, replayed as plain tests: each was a 500 (an unhandled
// database error) that Meta or Cloud Tasks would have retried forever.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { pgJson } from '../../src/db/pg-text.ts';
import { signStripePayload } from '../../src/domains/credits/stripe-webhook.ts';
import { ExtractionError, extractArticle } from '../../src/domains/scraper/extract.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';
import { signedWebhookHeaders } from '../helpers/whatsapp-webhooks.ts';

const APP_SECRET = 'meta-app-secret-for-regressions';

describe(`fuzz regressions (${testDbKind})`, () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp({ env: { WHATSAPP_APP_SECRET: APP_SECRET } });
  });
  after(async () => {
    await t.close();
  });
  const webhook = (value: unknown) => {
    const body = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [{ changes: [{ field: 'messages', value }] }],
    });
    return t.app.inject({
      method: 'POST',
      url: '/webhooks/whatsapp',
      headers: signedWebhookHeaders(body, APP_SECRET),
      payload: body,
    });
  };

  test('pgJson turns the escapes jsonb refuses into U+FFFD and leaves an escaped backslash alone', () => {
    assert.equal(
      pgJson({ a: '\u0000', b: '\ud800x', c: '\\u0000', d: '\\\ud800', e: '😀' }),
      '{"a":"\\ufffd","b":"\\ufffdx","c":"\\\\u0000","d":"\\\\\\ufffd","e":"😀"}',
    );
    assert.deepEqual(JSON.parse(pgJson({ c: '\\ud800' })), { c: '\\ud800' });
  });

  test('a webhook whose message carries a lone UTF-16 surrogate is stored (was 500: jsonb refused \\ud800)', async () => {
    const r = await webhook({
      messages: [
        { id: 'wamid.surrogate', from: '15550001', from_user_id: '\ud800', type: 'text', text: { body: 'hi \udfff' } },
      ],
    });
    assert.equal(r.statusCode, 200, r.body);
    const row = await t.db.query<{ payload: { message: { from_user_id: string } } }>(
      "SELECT payload FROM whatsapp_messages WHERE wamid = 'wamid.surrogate'",
    );
    assert.equal(row.rows[0]!.payload.message.from_user_id, '\ufffd');
  });

  test('a webhook with U+0000 in ids and statuses is stored with U+FFFD (was 500: text refuses U+0000)', async () => {
    let r = await webhook({ messages: [{ id: 'wamid.n\u0000ul', from: '15550002', type: 'te\u0000xt' }] });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal(
      (await t.db.query('SELECT 1 FROM whatsapp_messages WHERE wamid = $1', ['wamid.n\ufffdul'])).rows.length,
      1,
    );
    r = await webhook({ statuses: [{ id: 'wamid.s\u0000', status: 'sent\u0000', recipient_id: '\u0000' }] });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal(
      (await t.db.query('SELECT 1 FROM whatsapp_statuses WHERE wamid = $1', ['wamid.s\ufffd'])).rows.length,
      1,
    );
  });

  test('a timestamp past year 9999 is kept as no time (was 500: the database could not read the date)', async () => {
    const r = await webhook({
      messages: [{ id: 'wamid.far', from: '15550003', type: 'text', timestamp: '400000000000' }],
      statuses: [{ id: 'wamid.far2', status: 'sent', timestamp: '999999999999' }],
    });
    assert.equal(r.statusCode, 200, r.body);
    const row = await t.db.query<{ message_at: unknown }>(
      "SELECT message_at FROM whatsapp_messages WHERE wamid = 'wamid.far'",
    );
    assert.equal(row.rows[0]!.message_at, null);
  });

  test('a push whose payload holds U+0000 or a lone surrogate gets an outcome, not an unhandled error', async () => {
    for (const [task, raw] of [
      ['health.check', '{"\\ud800":1}'],
      ['health.check', '{"x":"\\u0000"}'],
      ['whatsapp.process_message', '{"wamid":"\\u0000"}'],
      ['whatsapp.process_message', '{"wamid":"\\ud800"}'],
    ] as const) {
      const r = await push(t.app, t.issuer, task, null, { rawBody: raw, taskName: `reg-${raw.length}-${task}` });
      assert.notEqual(
        (r.body as { error?: { code?: string } }).error?.code,
        'INTERNAL',
        `${task} ${raw}: ${JSON.stringify(r.body)}`,
      );
      assert.ok(r.outcome === 'dead' || r.outcome === 'retry', `${task} ${raw}: ${JSON.stringify(r.body)}`);
    }
  });

  test('a RetryCount header past a PostgreSQL integer is read as absent (was 500: the attempt row could not be written)', async () => {
    for (const count of ['99999999999999999999', '2147483648']) {
      const r = await push(
        t.app,
        t.issuer,
        'health.check',
        {},
        {
          taskName: `reg-retry-${count}`,
          headers: { 'x-cloudtasks-taskretrycount': count },
        },
      );
      assert.equal(r.status, 200, `${count}: ${JSON.stringify(r.body)}`);
      const row = await t.db.query<{ retry_count: number | null }>(
        'SELECT a.retry_count FROM task_attempts a JOIN task_runs r ON r.id = a.run_id WHERE r.cloud_task_name LIKE $1',
        [`%reg-retry-${count}`],
      );
      assert.deepEqual(row.rows, [{ retry_count: null }], count);
    }
  });
});

describe(`fuzz regressions: Stripe (${testDbKind})`, () => {
  let t: TestApp;
  const SECRET = 'whsec_regressions_0123456789';
  before(async () => {
    t = await buildTestApp({ env: { STRIPE_WEBHOOK_SECRET: SECRET } });
  });
  after(async () => {
    await t.close();
  });

  test('a signed event with U+0000 or a lone surrogate in its strings is recorded (was 500)', async () => {
    for (const [n, event] of [
      { id: 'evt_a\u0000b', type: 'checkout.session.completed', data: { object: { id: 'obj_a' } } },
      {
        id: 'evt_c',
        type: 'checkout.session.completed',
        data: { object: { id: 'cs_\u0000', payment_status: 'paid', client_reference_id: '\ud800', '\udc00': 1 } },
      },
    ].entries()) {
      const body = JSON.stringify(event);
      const r = await t.app.inject({
        method: 'POST',
        url: '/webhooks/stripe',
        headers: {
          'content-type': 'application/json',
          'stripe-signature': signStripePayload(body, SECRET, Math.floor(t.clock.now() / 1000)),
        },
        payload: body,
      });
      assert.equal(r.statusCode, 200, `event ${n}: ${r.body}`);
    }
    const ids = await t.db.query<{ event_id: string }>('SELECT event_id FROM stripe_events ORDER BY event_id');
    assert.deepEqual(
      ids.rows.map((r) => r.event_id),
      ['evt_a\ufffdb', 'evt_c'],
    );
  });
});

describe('fuzz regressions: the extractor', () => {
  test('an <html> that is not the root is wrapped like a fragment (was a TypeError from linkedom)', () => {
    assert.throws(() => extractArticle('<template><html>', 'https://example.com/'), ExtractionError);
    assert.equal(extractArticle('<!-- <html> --><p>The text.</p>', 'https://example.com/').text, 'The text.');
  });
});
