// Stripe's money events as Stripe sends them (API version 2025-03-31.basil), signed with the
// official package: paid, free and multi-unit sessions, refunds and disputes taking credits back
// once and never below zero, one WhatsApp confirmation per top-up, and events of the wrong mode.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, beforeEach, describe, test } from 'node:test';
import Stripe from 'stripe';
import type { Queryable } from '../../src/db/db.ts';
import { balanceOf, charge, createAccount } from '../../src/domains/credits/credits.service.ts';
import { textWebhook } from '../../src/domains/whatsapp/webhook.ts';
import { runBackend } from '../helpers/cli-process.ts';
import { type FakeStripe, startFakeStripe } from '../helpers/fake-stripe.ts';
import { push } from '../helpers/push.ts';
import { startServiceProcess } from '../helpers/service-process.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

const SECRET = 'whsec_test_secret_for_the_money_events';

type Json = Record<string, unknown>;
const fixture = (name: string): Json =>
  JSON.parse(readFileSync(new URL(`../fixtures/stripe/${name}.json`, import.meta.url), 'utf8'));

/** A fixture event with its ids made unique and its object's fields replaced. */
function stripeEvent(name: string, id: string, object: Json, top: Json = {}): Json {
  const event = fixture(name);
  const data = event.data as { object: Json };
  return { ...event, id, ...top, data: { ...data, object: { ...data.object, ...object } } };
}

/** The balance equals the ledger's sum and no entry went below zero; returns the balance. */
async function assertConsistent(db: Queryable, accountId: number): Promise<number> {
  const { rows } = await db.query<{ balance: number; total: string | number; negative: number }>(
    `SELECT a.balance, (SELECT COALESCE(SUM(amount), 0) FROM credit_ledger WHERE account_id = a.id) AS total,
            (SELECT COUNT(*) FROM credit_ledger WHERE account_id = a.id AND balance_after < 0) AS negative
       FROM accounts a WHERE a.id = $1`,
    [accountId],
  );
  assert.equal(Number(rows[0]!.total), Number(rows[0]!.balance), 'balance = sum(ledger)');
  assert.equal(Number(rows[0]!.negative), 0, 'no entry below zero');
  return Number(rows[0]!.balance);
}

let seq = 0;
const unique = (prefix: string) => `${prefix}_${process.pid}x${++seq}`;

interface Payment {
  accountId: number;
  session: string;
  intent: string;
  charge: string;
}

describe(`Stripe money events (${testDbKind})`, () => {
  let t: TestApp;
  let fake: FakeStripe;
  before(async () => {
    fake = await startFakeStripe();
    t = await buildTestApp({
      env: { STRIPE_WEBHOOK_SECRET: SECRET, STRIPE_SECRET_KEY: fake.secretKey, STRIPE_API_BASE_URL: fake.baseUrl },
    });
  });
  after(async () => {
    await t.close();
    await fake.close();
  });
  beforeEach(() => {
    t.enqueued.length = 0;
  });

  const send = async (event: Json) => {
    const body = JSON.stringify(event);
    const signature = Stripe.webhooks.generateTestHeaderString({
      payload: body,
      secret: SECRET,
      timestamp: Math.floor(t.clock.now() / 1000),
    });
    return t.app.inject({
      method: 'POST',
      url: '/webhooks/stripe',
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      payload: body,
    });
  };
  /** Delivers an event twice, as Stripe may: the second changes nothing. */
  const sendTwice = async (event: Json): Promise<string> => {
    const first = await send(event);
    assert.equal(first.statusCode, 200, first.body);
    const second = await send(event);
    assert.equal(second.statusCode, 200, second.body);
    assert.equal(second.json().outcome, 'duplicate');
    return first.json().outcome;
  };
  /** Runs what was enqueued, each task delivered twice, as Cloud Tasks may. */
  const runTasks = async () => {
    // A top-up enqueues its confirmation (whatsapp.send_message): run until nothing is left.
    while (t.enqueued.length > 0) {
      for (const call of t.enqueued.splice(0)) {
        const headers = call.options?.key ? { 'x-task-key': call.options.key } : undefined;
        for (const taskName of ['first', 'again']) {
          const r = await push(t.app, t.issuer, call.task, call.payload, { taskName, ...(headers ? { headers } : {}) });
          assert.ok(['succeeded', 'duplicate'].includes(String(r.outcome)), JSON.stringify(r.body));
        }
      }
    }
  };
  const newAccount = async (phone = `1555${String(Date.now()).slice(-7)}${++seq}`) => {
    const accountId = await createAccount(t.db);
    await t.db.query('INSERT INTO whatsapp_contacts (account_id, phone, created_at) VALUES ($1, $2, $3)', [
      accountId,
      phone,
      new Date(t.clock.now()),
    ]);
    return accountId;
  };
  const ledger = async (accountId: number) =>
    (
      await t.db.query<{ kind: string; amount: number }>(
        'SELECT kind, amount FROM credit_ledger WHERE account_id = $1 ORDER BY id',
        [accountId],
      )
    ).rows.map((r) => `${r.kind} ${Number(r.amount)}`);
  const confirmations = async (accountId: number) =>
    (
      await t.db.query<{ body: string; send_key: string }>(
        `SELECT m.body, m.send_key FROM whatsapp_messages m JOIN whatsapp_contacts c ON m.wa_user IN (c.phone, c.bsuid)
          WHERE c.account_id = $1 AND m.send_key LIKE 'topup-confirmed:%' ORDER BY m.id`,
        [accountId],
      )
    ).rows;

  /** A paid one-pack session (500 cents, 50 credits), delivered twice and run. */
  async function paid(accountId: number, o: { credits?: string; amount?: number } = {}): Promise<Payment> {
    const p = { accountId, session: unique('cs_test'), intent: unique('pi'), charge: unique('ch') };
    fake.setLineItems(p.session, [{ quantity: 1, unitAmount: o.amount ?? 500 }]);
    const outcome = await sendTwice(
      stripeEvent('checkout.session.completed', unique('evt'), {
        id: p.session,
        client_reference_id: String(accountId),
        payment_intent: p.intent,
        amount_subtotal: o.amount ?? 500,
        amount_total: o.amount ?? 500,
        metadata: { credits: o.credits ?? '50' },
      }),
    );
    assert.equal(outcome, 'topup_enqueued');
    await runTasks();
    return p;
  }
  const refunded = (p: Payment, amountRefunded: number, eventId = unique('evt')) =>
    stripeEvent('charge.refunded', eventId, {
      id: p.charge,
      payment_intent: p.intent,
      amount: 500,
      amount_captured: 500,
      amount_refunded: amountRefunded,
      refunded: amountRefunded === 500,
    });
  const dispute = (p: Payment, type: 'created' | 'closed', id: string, amount: number, status: string) => {
    const e = stripeEvent('charge.dispute.created', unique('evt'), {
      id,
      charge: p.charge,
      payment_intent: p.intent,
      amount,
      status,
    });
    return { ...e, type: `charge.dispute.${type}` };
  };

  test('a paid session, a partial refund, then a dispute for the rest, each delivered twice: balance and ledger right', async () => {
    const accountId = await newAccount();
    const p = await paid(accountId);
    assert.equal(await balanceOf(t.db, accountId), 50);

    // 200 of 500 refunded: 20 of the 50 credits go back.
    assert.equal(await sendTwice(refunded(p, 200)), 'clawback');
    assert.equal(await balanceOf(t.db, accountId), 30);
    // The same refund told by another event (another id): nothing more is taken.
    assert.equal((await send(refunded(p, 200))).json().outcome, 'ignored');
    assert.equal(await balanceOf(t.db, accountId), 30);

    // A dispute for the remaining 300: the remaining 30.
    const dp = unique('dp');
    assert.equal(await sendTwice(dispute(p, 'created', dp, 300, 'needs_response')), 'clawback');
    assert.equal(await balanceOf(t.db, accountId), 0);
    // Lost: it stays taken.
    assert.equal(await sendTwice(dispute(p, 'closed', dp, 300, 'lost')), 'ignored');

    assert.equal(await assertConsistent(t.db, accountId), 0);
    assert.deepEqual(await ledger(accountId), ['topup 50', 'refund_clawback -20', 'dispute_clawback -30']);
    const { rows } = await t.db.query<{ shortfall: number }>(
      "SELECT SUM(shortfall) AS shortfall FROM stripe_clawbacks WHERE payment_key = 'stripe:pi:' || $1",
      [p.intent],
    );
    assert.equal(Number(rows[0]!.shortfall), 0);
    assert.equal((await confirmations(accountId)).length, 1);
  });

  test('refunds are counted on the cumulative amount refunded: two partial refunds, a late old state, a dispute told twice', async () => {
    const accountId = await newAccount();
    const p = await paid(accountId);
    assert.equal(await sendTwice(refunded(p, 100)), 'clawback');
    assert.equal(await balanceOf(t.db, accountId), 40);
    assert.equal(await sendTwice(refunded(p, 350)), 'clawback');
    assert.equal(await balanceOf(t.db, accountId), 15);
    // Order is not guaranteed: the first state, told again late by another event, takes nothing.
    assert.equal((await send(refunded(p, 100))).json().outcome, 'ignored');
    assert.equal(await balanceOf(t.db, accountId), 15);

    const q = await paid(accountId);
    const dp = unique('dp');
    // One dispute for half, told by two events (another id each): taken once.
    assert.equal(await sendTwice(dispute(q, 'created', dp, 250, 'needs_response')), 'clawback');
    assert.equal((await send(dispute(q, 'created', dp, 250, 'needs_response'))).json().outcome, 'ignored');
    assert.equal(await assertConsistent(t.db, accountId), 40);
    assert.deepEqual(await ledger(accountId), [
      'topup 50',
      'refund_clawback -10',
      'refund_clawback -25',
      'topup 50',
      'dispute_clawback -25',
    ]);
  });

  test('concurrent events telling one dispute and one refund state take credits once each', async () => {
    const accountId = await newAccount();
    const p = await paid(accountId);
    const dp = unique('dp');
    const results = await Promise.all([
      ...Array.from({ length: 6 }, () => send(dispute(p, 'created', dp, 100, 'needs_response'))),
      ...Array.from({ length: 6 }, () => send(refunded(p, 200))),
    ]);
    for (const r of results) assert.equal(r.statusCode, 200, r.body);
    const outcomes = results.map((r) => r.json().outcome as string);
    assert.equal(outcomes.filter((o) => o === 'clawback').length, 2, outcomes.join());
    assert.equal(await assertConsistent(t.db, accountId), 50 - 10 - 20);
  });

  test('refunds never take the balance below zero: the shortfall is recorded for an operator', async () => {
    const accountId = await newAccount();
    const p = await paid(accountId);
    await charge(t.db, { accountId, credits: 45, ref: unique('post') });
    assert.equal(await sendTwice(refunded(p, 500)), 'clawback');
    assert.equal(await assertConsistent(t.db, accountId), 0);
    assert.deepEqual(await ledger(accountId), ['topup 50', 'charge -45', 'refund_clawback -5']);
    const claw = await t.db.query<{ credits_due: number; credits_moved: number; shortfall: number }>(
      'SELECT credits_due, credits_moved, shortfall FROM stripe_clawbacks WHERE ref = $1',
      [`refund:${p.charge}:500`],
    );
    assert.deepEqual(
      claw.rows.map((r) => [Number(r.credits_due), Number(r.credits_moved), Number(r.shortfall)]),
      [[50, 5, 45]],
    );
    const kept = await t.db.query<{ reason: string; client_reference_id: string }>(
      'SELECT reason, client_reference_id FROM stripe_unmatched_payments WHERE object_id = $1',
      [p.charge],
    );
    assert.equal(kept.rows.length, 1);
    assert.match(kept.rows[0]!.reason, /50 credits due, 5 taken back, shortfall 45/);
    assert.equal(kept.rows[0]!.client_reference_id, String(accountId));
    // A later, larger refund state takes nothing more (the payment is fully accounted for).
    assert.equal((await send(refunded(p, 500))).json().outcome, 'ignored');
    assert.equal(await balanceOf(t.db, accountId), 0);
  });

  test('a dispute won gives back what it took, once; a closing that arrives first still nets to zero', async () => {
    const accountId = await newAccount();
    const p = await paid(accountId);
    const dp = unique('dp');
    assert.equal(await sendTwice(dispute(p, 'created', dp, 500, 'needs_response')), 'clawback');
    assert.equal(await balanceOf(t.db, accountId), 0);
    assert.equal(await sendTwice(dispute(p, 'closed', dp, 500, 'won')), 'giveback');
    assert.equal(await balanceOf(t.db, accountId), 50);
    // The same closing told again under another event id: given back once.
    assert.equal((await send(dispute(p, 'closed', dp, 500, 'won'))).json().outcome, 'ignored');

    const q = await paid(accountId);
    const late = unique('dp');
    assert.equal(await sendTwice(dispute(q, 'closed', late, 250, 'won')), 'giveback');
    assert.equal((await send(dispute(q, 'created', late, 250, 'needs_response'))).json().outcome, 'ignored');
    assert.equal(await assertConsistent(t.db, accountId), 100);
    assert.deepEqual(await ledger(accountId), [
      'topup 50',
      'dispute_clawback -50',
      'dispute_reversal 50',
      'topup 50',
      'dispute_clawback -25',
      'dispute_reversal 25',
    ]);
  });

  test('a refund that overtakes its top-up is refused (409) and counts once Stripe redelivers it', async () => {
    const accountId = await newAccount();
    const p = { accountId, session: unique('cs_test'), intent: unique('pi'), charge: unique('ch') };
    fake.setLineItems(p.session, [{ quantity: 1, unitAmount: 500 }]);
    await send(
      stripeEvent('checkout.session.completed', unique('evt'), {
        id: p.session,
        client_reference_id: String(accountId),
        payment_intent: p.intent,
      }),
    );
    const early = refunded(p, 100);
    const r = await send(early);
    assert.equal(r.statusCode, 409, r.body);
    assert.equal((await t.db.query('SELECT 1 FROM stripe_events WHERE event_id = $1', [early.id])).rowCount, 0);
    await runTasks();
    assert.equal(await sendTwice(early), 'clawback');
    assert.equal(await assertConsistent(t.db, accountId), 40);
  });

  test('a free session (100% promotion code) credits, keyed on the session, and is confirmed once', async () => {
    const accountId = await newAccount();
    const session = unique('cs_test');
    fake.setLineItems(session, [{ quantity: 1, unitAmount: 500 }]);
    const outcome = await sendTwice(
      stripeEvent('checkout.session.completed', unique('evt'), {
        id: session,
        client_reference_id: String(accountId),
        payment_intent: null,
        payment_status: 'no_payment_required',
        amount_total: 0,
        total_details: { amount_discount: 500, amount_shipping: 0, amount_tax: 0 },
      }),
    );
    assert.equal(outcome, 'topup_enqueued');
    await runTasks();
    assert.equal(await assertConsistent(t.db, accountId), 50);
    const { rows } = await t.db.query('SELECT idempotency_key FROM credit_ledger WHERE account_id = $1', [accountId]);
    assert.deepEqual(rows, [{ idempotency_key: `stripe:cs:${session}` }]);
    const sent = await confirmations(accountId);
    assert.deepEqual(
      sent.map((m) => m.body),
      ['Payment received: 50 credits added. You have 50 credits.'],
    );
  });

  test('a multi-unit session credits every unit, read from its line items with the secret key', async () => {
    const accountId = await newAccount();
    const session = unique('cs_test');
    fake.setLineItems(session, [{ quantity: 3, unitAmount: 500 }]);
    const before = fake.requests.length;
    const event = stripeEvent('checkout.session.completed', unique('evt'), {
      id: session,
      client_reference_id: String(accountId),
      payment_intent: unique('pi'),
      amount_subtotal: 1500,
      amount_total: 1500,
    });
    assert.equal(await sendTwice(event), 'topup_enqueued');
    // One read (the duplicate is answered before asking Stripe), in the webhook's API version.
    const reads = fake.requests.slice(before);
    assert.equal(reads.length, 1);
    assert.equal(reads[0]!.path, `/v1/checkout/sessions/${session}/line_items`);
    assert.equal(reads[0]!.stripeVersion, '2025-03-31.basil');
    assert.equal(reads[0]!.authorization, `Bearer ${fake.secretKey}`);
    await runTasks();
    assert.equal(await assertConsistent(t.db, accountId), 150);
    assert.deepEqual(
      (await confirmations(accountId)).map((m) => m.body),
      ['Payment received: 150 credits added. You have 150 credits.'],
    );

    // Credits on the price or product win over the session's; items that do not say are not guessed.
    const mixed = unique('cs_test');
    fake.setLineItems(mixed, [
      { quantity: 2, unitAmount: 500, priceCredits: '50' },
      { quantity: 1, unitAmount: 1800, productCredits: '200' },
    ]);
    const unclear = unique('cs_test');
    fake.setLineItems(unclear, [
      { quantity: 1, unitAmount: 500 },
      { quantity: 1, unitAmount: 900 },
    ]);
    const sessionEvent = (id: string) =>
      stripeEvent('checkout.session.completed', unique('evt'), {
        id,
        client_reference_id: String(accountId),
        payment_intent: unique('pi'),
      });
    assert.equal(await sendTwice(sessionEvent(mixed)), 'topup_enqueued');
    assert.equal(await sendTwice(sessionEvent(unclear)), 'unmatched');
    await runTasks();
    assert.equal(await assertConsistent(t.db, accountId), 150 + 300);
    const kept = await t.db.query<{ reason: string }>(
      'SELECT reason FROM stripe_unmatched_payments WHERE object_id = $1',
      [unclear],
    );
    assert.deepEqual(kept.rows, [
      { reason: 'credits not counted: several line items and not every price or product has metadata.credits' },
    ]);
  });

  test('line items Stripe will not give (unknown session) are kept for an operator; a server error is retried by Stripe', async () => {
    const accountId = await newAccount();
    const missing = unique('cs_test');
    const lost = stripeEvent('checkout.session.completed', unique('evt'), {
      id: missing,
      client_reference_id: String(accountId),
      payment_intent: unique('pi'),
    });
    assert.equal(await sendTwice(lost), 'unmatched');
    const kept = await t.db.query<{ reason: string }>(
      'SELECT reason FROM stripe_unmatched_payments WHERE event_id = $1',
      [lost.id],
    );
    assert.match(
      kept.rows[0]!.reason,
      /^credits not counted: line items not readable: Stripe answered 404: No such checkout\.session/,
    );

    const session = unique('cs_test');
    fake.setLineItems(session, [{ quantity: 2, unitAmount: 500 }]);
    const event = stripeEvent('checkout.session.completed', unique('evt'), {
      id: session,
      client_reference_id: String(accountId),
      payment_intent: unique('pi'),
    });
    // The SDK retries once; two failures make the webhook fail, and nothing is recorded.
    fake.failNext(500, 2);
    const failed = await send(event);
    assert.equal(failed.statusCode, 500, failed.body);
    assert.equal((await t.db.query('SELECT 1 FROM stripe_events WHERE event_id = $1', [event.id])).rows.length, 0);
    assert.equal(t.enqueued.length, 0);
    // Stripe's redelivery counts the units.
    assert.equal(await sendTwice(event), 'topup_enqueued');
    await runTasks();
    assert.equal(await assertConsistent(t.db, accountId), 100);
  });

  test('each top-up sends one confirmation, whatever the deliveries of its events and tasks', async () => {
    const accountId = await newAccount();
    const first = await paid(accountId);
    const second = await paid(accountId, { credits: '20', amount: 200 });
    const sent = await confirmations(accountId);
    assert.deepEqual(
      sent.map((m) => [m.send_key, m.body]),
      [
        [`topup-confirmed:stripe:pi:${first.intent}`, 'Payment received: 50 credits added. You have 50 credits.'],
        [`topup-confirmed:stripe:pi:${second.intent}`, 'Payment received: 20 credits added. You have 70 credits.'],
      ],
    );
    // A user known only by a business-scoped user id (no phone number) is told too.
    const bsuid = `US.${process.pid}${++seq}`;
    const bsuidOnly = await createAccount(t.db);
    await t.db.query('INSERT INTO whatsapp_contacts (account_id, bsuid, created_at) VALUES ($1, $2, $3)', [
      bsuidOnly,
      bsuid,
      new Date(t.clock.now()),
    ]);
    const third = await paid(bsuidOnly);
    assert.deepEqual(
      (await confirmations(bsuidOnly)).map((m) => [m.send_key, m.body]),
      [[`topup-confirmed:stripe:pi:${third.intent}`, 'Payment received: 50 credits added. You have 50 credits.']],
    );
    // An account with no WhatsApp contact (created by an operator) is credited and told nothing.
    const silent = await createAccount(t.db);
    const allConfirmations = async () =>
      (await t.db.query("SELECT 1 FROM whatsapp_messages WHERE send_key LIKE 'topup-confirmed:%'")).rows.length;
    const before = await allConfirmations();
    await paid(silent);
    assert.equal(await balanceOf(t.db, silent), 50);
    assert.equal(await allConfirmations(), before);
  });

  test('an event of the other mode than the key (live on sk_test_) is recorded and changes nothing', async () => {
    const accountId = await newAccount();
    const p = await paid(accountId);
    const live = { livemode: true };
    const session = stripeEvent(
      'checkout.session.completed',
      unique('evt'),
      { id: unique('cs_live'), client_reference_id: String(accountId), payment_intent: unique('pi'), livemode: true },
      live,
    );
    const refund: Json = { ...refunded(p, 500), ...live };
    const reads = fake.requests.length;
    assert.equal(await sendTwice(session), 'mode_mismatch');
    assert.equal(await sendTwice(refund), 'mode_mismatch');
    assert.equal(fake.requests.length, reads, 'no API read for an event of the other mode');
    assert.equal(t.enqueued.length, 0);
    assert.equal(await assertConsistent(t.db, accountId), 50);
    const kept = await t.db.query<{ reason: string }>(
      'SELECT reason FROM stripe_unmatched_payments WHERE event_id IN ($1, $2)',
      [session.id, refund.id],
    );
    assert.deepEqual(
      kept.rows.map((r) => r.reason),
      Array(2).fill('a live mode event, and the configured key is a test key'),
    );
  });
});

describe(`Stripe money events without STRIPE_SECRET_KEY (${testDbKind})`, () => {
  test('a multi-unit session credits metadata.credits once (no line items to read), and both modes are accepted', async () => {
    const t = await buildTestApp({ env: { STRIPE_WEBHOOK_SECRET: SECRET } });
    try {
      const accountId = await createAccount(t.db);
      const body = JSON.stringify(
        stripeEvent(
          'checkout.session.completed',
          unique('evt'),
          { id: unique('cs_live'), client_reference_id: String(accountId), amount_total: 1500, livemode: true },
          { livemode: true },
        ),
      );
      const r = await t.app.inject({
        method: 'POST',
        url: '/webhooks/stripe',
        headers: {
          'content-type': 'application/json',
          'stripe-signature': Stripe.webhooks.generateTestHeaderString({
            payload: body,
            secret: SECRET,
            timestamp: Math.floor(t.clock.now() / 1000),
          }),
        },
        payload: body,
      });
      assert.equal(r.json().outcome, 'topup_enqueued');
      assert.equal((t.enqueued[0]!.payload as { credits: number }).credits, 50);
    } finally {
      await t.close();
    }
  });
});

test(`through npm start: three packs credit 150 and are confirmed once on WhatsApp; a partial refund and a dispute for the rest take them back (${testDbKind})`, async () => {
  const fake = await startFakeStripe();
  const running = await startServiceProcess({
    appSecret: 'stripe-money-app-secret',
    env: {
      STRIPE_WEBHOOK_SECRET: SECRET,
      STRIPE_SECRET_KEY: fake.secretKey,
      STRIPE_API_BASE_URL: fake.baseUrl,
      SIGNUP_CREDITS: '5',
    },
  }).catch(async (err) => {
    await fake.close();
    throw err;
  });
  const { graph, env, base } = running;
  const textOf = (r: { body: Record<string, unknown> }) => (r.body.text as { body: string }).body;
  /** Posts a signed Stripe event twice (Stripe's clock is the real one here). */
  const stripeTwice = async (event: Json) => {
    const body = JSON.stringify(event);
    const outcomes: string[] = [];
    for (let i = 0; i < 2; i++) {
      const signature = Stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET });
      const r = await fetch(`${base}/webhooks/stripe`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'stripe-signature': signature },
        body,
      });
      assert.equal(r.status, 200);
      outcomes.push(((await r.json()) as { outcome: string }).outcome);
    }
    return outcomes;
  };
  const balanceLine = async (accountId: number) => {
    const h = await runBackend(['credits', 'history', String(accountId)], env);
    assert.equal(h.code, 0, h.stderr);
    return h.stdout;
  };
  try {
    await running.ready;
    const from = '15550401234';
    const hello = textWebhook([{ from, text: 'balance', wamid: 'wamid.STRIPEMONEY1' }]);
    assert.equal((await running.postWebhook(hello)).status, 200);
    await graph.waitForSent(1);
    const conversations = await runBackend(['whatsapp', 'conversations', '--user', from, '--json'], env);
    assert.equal(conversations.code, 0, conversations.stderr);
    const accountId = JSON.parse(conversations.stdout.trim().split('\n')[0]!).accountId as number;

    const session = 'cs_test_e2e_three_packs';
    fake.setLineItems(session, [{ quantity: 3, unitAmount: 500 }]);
    const paidEvent = stripeEvent('checkout.session.completed', 'evt_e2e_paid', {
      id: session,
      client_reference_id: String(accountId),
      payment_intent: 'pi_e2e_three_packs',
      amount_subtotal: 1500,
      amount_total: 1500,
    });
    assert.deepEqual(await stripeTwice(paidEvent), ['topup_enqueued', 'duplicate']);
    const sent = await graph.waitForSent(2);
    assert.equal(textOf(sent[1]!), 'Payment received: 150 credits added. You have 155 credits.');
    assert.equal(sent[1]!.body.to, from);
    assert.match(await balanceLine(accountId), /balance 155/);

    const charge = {
      id: 'ch_e2e_three_packs',
      payment_intent: 'pi_e2e_three_packs',
      amount: 1500,
      amount_captured: 1500,
    };
    const refund = stripeEvent('charge.refunded', 'evt_e2e_refund', { ...charge, amount_refunded: 500 });
    assert.deepEqual(await stripeTwice(refund), ['clawback', 'duplicate']);
    assert.match(await balanceLine(accountId), /balance 105/);
    const opened = stripeEvent('charge.dispute.created', 'evt_e2e_dispute', {
      id: 'dp_e2e_three_packs',
      charge: charge.id,
      payment_intent: charge.payment_intent,
      amount: 1000,
    });
    assert.deepEqual(await stripeTwice(opened), ['clawback', 'duplicate']);
    const after = await balanceLine(accountId);
    assert.match(after, /balance 5/);
    assert.match(after, /refund_clawback\s+-50\s+105 /);
    assert.match(after, /dispute_clawback\s+-100\s+5 /);
    assert.equal(fake.requests.length, 1, 'the line items were read once');
    assert.equal(graph.sent().length, 2, 'one confirmation, nothing else');
  } finally {
    await running.close();
    await fake.close();
  }
});
