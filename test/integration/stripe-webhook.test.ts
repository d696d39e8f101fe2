// POST /webhooks/stripe: signature over the raw bytes (signed in tests by the official stripe
// package, as Stripe would), dedup by event id, one credit per payment.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import Stripe from 'stripe';
import { balanceOf, createAccount } from '../../src/domains/credits/credits.service.ts';
import { push } from '../helpers/push.ts';
import { sessionEvent } from '../helpers/stripe-events.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

const SECRET = 'whsec_test_secret_for_the_webhook_route';

describe(`POST /webhooks/stripe (${testDbKind})`, () => {
  let t: TestApp;
  let accountId: number;
  before(async () => {
    t = await buildTestApp({ env: { STRIPE_WEBHOOK_SECRET: SECRET } });
  });
  after(() => t.close());
  beforeEach(async () => {
    accountId = await createAccount(t.db);
    t.enqueued.length = 0;
  });

  const nowSeconds = () => Math.floor(t.clock.now() / 1000);
  const send = (body: string, signature: string | undefined) =>
    t.app.inject({
      method: 'POST',
      url: '/webhooks/stripe',
      headers: { 'content-type': 'application/json', ...(signature ? { 'stripe-signature': signature } : {}) },
      payload: body,
    });
  /** The Stripe-Signature header Stripe would send, made by the official package. */
  const header = (payload: string, secret: string, timestamp: number) =>
    Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp });
  const signed = (event: unknown, o: { secret?: string; at?: number } = {}) => {
    const body = JSON.stringify(event);
    return { body, signature: header(body, o.secret ?? SECRET, o.at ?? nowSeconds()) };
  };
  /** Delivers what the route enqueued, as Cloud Tasks would. */
  const deliverEnqueued = async () => {
    for (const call of t.enqueued.splice(0)) {
      const r = await push(t.app, t.issuer, call.task, call.payload);
      assert.ok(['succeeded', 'duplicate'].includes(String(r.outcome)), JSON.stringify(r.body));
    }
  };
  const eventCount = async () =>
    Number((await t.db.query<{ n: number }>('SELECT COUNT(*) AS n FROM stripe_events')).rows[0]!.n);

  test('a genuine signed event is accepted and credits the account through credits.topup', async () => {
    const { body, signature } = signed(sessionEvent('evt_ok', accountId));
    const r = await send(body, signature);
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual(r.json(), { received: true, outcome: 'topup_enqueued' });
    assert.equal(t.enqueued.length, 1);
    assert.equal(t.enqueued[0]!.task, 'credits.topup');
    assert.ok(t.enqueued[0]!.options?.tx, 'enqueued through the outbox, in the transaction');
    assert.deepEqual(t.enqueued[0]!.payload, { accountId, credits: 50, paymentIntentId: 'pi_evt_ok' });
    await deliverEnqueued();
    assert.equal(await balanceOf(t.db, accountId), 50);
  });

  test('several v1 signatures (secret rotation): one matching is enough', async () => {
    const body = JSON.stringify(sessionEvent('evt_rot', accountId));
    const good = header(body, SECRET, nowSeconds());
    const old = header(body, 'whsec_the_old_secret', nowSeconds()).split(',')[1];
    const r = await send(body, `${good.split(',')[0]},${old},v0=abc,${good.split(',')[1]}`);
    assert.equal(r.statusCode, 200, r.body);
  });

  test('tampered body, old timestamp, wrong secret, missing or garbled header: 400 and nothing changes', async () => {
    const event = sessionEvent('evt_bad', accountId);
    const { body, signature } = signed(event);
    const cases: Array<[string, string, string | undefined]> = [
      ['tampered body', body.replace('"50"', '"5000"'), signature],
      ['trailing space', `${body} `, signature],
      ['old timestamp', body, signed(event, { at: nowSeconds() - 301 }).signature],
      ['wrong secret', body, signed(event, { secret: 'whsec_wrong' }).signature],
      ['missing header', body, undefined],
      ['no v1', body, `t=${nowSeconds()}`],
      ['garbled', body, 'nonsense'],
    ];
    for (const [name, b, sig] of cases) {
      const r = await send(b, sig);
      assert.equal(r.statusCode, 400, name);
      assert.equal(r.json().error.code, 'INVALID_SIGNATURE', name);
    }
    assert.equal(t.enqueued.length, 0);
    assert.equal((await t.db.query("SELECT 1 FROM stripe_events WHERE event_id = 'evt_bad'")).rowCount, 0);
    assert.equal(await balanceOf(t.db, accountId), 0);
    // Within the tolerance it is accepted.
    const recent = signed(event, { at: nowSeconds() - 299 });
    assert.equal((await send(recent.body, recent.signature)).statusCode, 200);
  });

  test('the same event twice credits once', async () => {
    const { body, signature } = signed(sessionEvent('evt_twice', accountId));
    const first = await send(body, signature);
    const second = await send(body, signature);
    assert.equal(first.json().outcome, 'topup_enqueued');
    assert.equal(second.statusCode, 200);
    assert.equal(second.json().outcome, 'duplicate');
    assert.equal(t.enqueued.length, 1);
    await deliverEnqueued();
    assert.equal(await balanceOf(t.db, accountId), 50);
  });

  test('checkout.session.completed and payment_intent.succeeded for one payment credit once', async () => {
    const session = signed(sessionEvent('evt_cs', accountId, { payment_intent: 'pi_shared' }));
    const intent = signed({
      id: 'evt_pi',
      type: 'payment_intent.succeeded',
      livemode: false,
      data: {
        object: {
          id: 'pi_shared',
          object: 'payment_intent',
          metadata: { account_id: String(accountId), credits: '50' },
        },
      },
    });
    // Order is not guaranteed: the payment intent first.
    assert.equal((await send(intent.body, intent.signature)).json().outcome, 'topup_enqueued');
    assert.equal((await send(session.body, session.signature)).json().outcome, 'topup_enqueued');
    assert.equal(t.enqueued.length, 2);
    await deliverEnqueued();
    assert.equal(await balanceOf(t.db, accountId), 50);
    const { rows } = await t.db.query('SELECT idempotency_key FROM credit_ledger WHERE account_id = $1', [accountId]);
    assert.deepEqual(rows, [{ idempotency_key: 'stripe:pi:pi_shared' }]);
  });

  test('a session without a payment intent is keyed on the session', async () => {
    const { body, signature } = signed(sessionEvent('evt_nopi', accountId, { payment_intent: null }));
    assert.equal((await send(body, signature)).json().outcome, 'topup_enqueued');
    assert.deepEqual(t.enqueued[0]!.payload, { accountId, credits: 50, checkoutSessionId: 'cs_evt_nopi' });
    await deliverEnqueued();
    const { rows } = await t.db.query('SELECT idempotency_key FROM credit_ledger WHERE account_id = $1', [accountId]);
    assert.deepEqual(rows, [{ idempotency_key: 'stripe:cs:cs_evt_nopi' }]);
  });

  test('a payment_intent.succeeded without account metadata is acknowledged and ignored', async () => {
    const { body, signature } = signed({
      id: 'evt_pi_plain',
      type: 'payment_intent.succeeded',
      livemode: false,
      data: { object: { id: 'pi_plain', metadata: {} } },
    });
    const r = await send(body, signature);
    assert.equal(r.json().outcome, 'ignored');
    assert.equal(t.enqueued.length, 0);
  });

  test('a session naming no known account is recorded for an operator and acknowledged', async () => {
    for (const [id, ref] of [
      ['evt_unknown', '987654321'],
      ['evt_noref', 'someone@example.com'],
    ] as const) {
      const { body, signature } = signed(sessionEvent(id, ref));
      const r = await send(body, signature);
      assert.equal(r.statusCode, 200);
      assert.equal(r.json().outcome, 'unmatched');
    }
    const { rows } = await t.db.query<{ event_id: string; object_id: string; client_reference_id: string }>(
      "SELECT event_id, object_id, client_reference_id FROM stripe_unmatched_payments WHERE event_id IN ('evt_unknown', 'evt_noref') ORDER BY event_id",
    );
    assert.deepEqual(rows, [
      { event_id: 'evt_noref', object_id: 'cs_evt_noref', client_reference_id: 'someone@example.com' },
      { event_id: 'evt_unknown', object_id: 'cs_evt_unknown', client_reference_id: '987654321' },
    ]);
    assert.equal(t.enqueued.length, 0);
  });

  test('unpaid sessions and other event types are acknowledged and ignored; the async success credits', async () => {
    const unpaid = signed(
      sessionEvent('evt_unpaid', accountId, { payment_status: 'unpaid', payment_intent: 'pi_async' }),
    );
    assert.equal((await send(unpaid.body, unpaid.signature)).json().outcome, 'ignored');
    const other = signed({
      id: 'evt_other',
      type: 'customer.created',
      livemode: false,
      data: { object: { id: 'cus_1' } },
    });
    assert.equal((await send(other.body, other.signature)).json().outcome, 'ignored');
    assert.equal(t.enqueued.length, 0);
    const asyncOk = signed({
      ...sessionEvent('evt_async', accountId, { payment_intent: 'pi_async' }),
      type: 'checkout.session.async_payment_succeeded',
    });
    assert.equal((await send(asyncOk.body, asyncOk.signature)).json().outcome, 'topup_enqueued');
    await deliverEnqueued();
    assert.equal(await balanceOf(t.db, accountId), 50);
  });

  test('a signed body that is not a Stripe event is 400 and records nothing', async () => {
    const before = await eventCount();
    const notJson = 'not json';
    const r1 = await send(notJson, header(notJson, SECRET, nowSeconds()));
    assert.equal(r1.statusCode, 400);
    assert.equal(r1.json().error.code, 'MALFORMED_JSON');
    const { body, signature } = signed({ hello: 'world' });
    const r2 = await send(body, signature);
    assert.equal(r2.statusCode, 400);
    assert.equal(r2.json().error.code, 'BAD_REQUEST');
    assert.equal(await eventCount(), before);
  });
});

describe(`POST /webhooks/stripe without STRIPE_WEBHOOK_SECRET (${testDbKind})`, () => {
  test('the route does not exist: 404', async () => {
    const t = await buildTestApp();
    try {
      const r = await t.app.inject({ method: 'POST', url: '/webhooks/stripe', payload: '{}' });
      assert.equal(r.statusCode, 404);
      assert.equal(r.json().error.code, 'NOT_FOUND');
    } finally {
      await t.close();
    }
  });
});
