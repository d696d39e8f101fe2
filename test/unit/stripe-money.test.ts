// The pure parts of the Stripe money rules: shares of credits, units from line items, key modes,
// and which session states credit.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { proportion } from '../../src/domains/credits/stripe-money.ts';
import { creditsFromLineItems, keyMode, paymentAction } from '../../src/domains/credits/stripe-webhook.ts';

test('proportion: floor of the share, exact for large numbers, all of it for a full or unknown whole', () => {
  assert.equal(proportion(50, 200, 500), 20);
  assert.equal(proportion(3, 100, 500), 0);
  assert.equal(proportion(3, 499, 500), 2);
  assert.equal(proportion(50, 500, 500), 50);
  assert.equal(proportion(50, 600, 500), 50);
  assert.equal(proportion(50, 0, 500), 0);
  assert.equal(proportion(50, 100, 0), 50);
  assert.equal(proportion(999_999_999, 99_999_999_999, 100_000_000_000), 999_999_998);
});

test('creditsFromLineItems: units × credits per unit; never a guess', () => {
  assert.deepEqual(creditsFromLineItems([{ quantity: 3, unitCredits: undefined }], 50), { credits: 150 });
  assert.deepEqual(creditsFromLineItems([{ quantity: 2, unitCredits: '10' }], 50), { credits: 20 });
  assert.deepEqual(
    creditsFromLineItems(
      [
        { quantity: 2, unitCredits: '50' },
        { quantity: 1, unitCredits: '200' },
      ],
      50,
    ),
    { credits: 300 },
  );
  for (const items of [
    [],
    [
      { quantity: 1, unitCredits: undefined },
      { quantity: 1, unitCredits: '5' },
    ],
    [{ quantity: 1, unitCredits: 'ten' }],
    [{ quantity: 0, unitCredits: undefined }],
  ]) {
    assert.ok('reason' in creditsFromLineItems(items, 50), JSON.stringify(items));
  }
});

test('keyMode: live or test from a secret or restricted key, nothing from anything else', () => {
  assert.equal(keyMode('sk_live_abc'), 'live');
  assert.equal(keyMode('rk_test_abc'), 'test');
  assert.equal(keyMode('whsec_abc'), undefined);
  assert.equal(keyMode(undefined), undefined);
});

test('paymentAction: paid and free sessions credit, unpaid ones wait', () => {
  const session = (payment_status: string) => ({
    id: 'evt_1',
    type: 'checkout.session.completed',
    livemode: false,
    data: {
      object: {
        id: 'cs_1',
        payment_status,
        client_reference_id: '7',
        payment_intent: null,
        amount_total: 0,
        metadata: { credits: '50' },
      },
    },
  });
  assert.deepEqual(paymentAction(session('no_payment_required')), {
    kind: 'topup',
    accountId: 7,
    credits: 50,
    checkoutSessionId: 'cs_1',
    amount: 0,
  });
  assert.equal(paymentAction(session('paid')).kind, 'topup');
  assert.equal(paymentAction(session('unpaid')).kind, 'ignore');
});

test('STRIPE_SECRET_KEY: a publishable key is refused by name, without its value', () => {
  assert.throws(
    () => loadConfig({ DATABASE_URL: 'memory://', STRIPE_SECRET_KEY: 'pk_live_51Hsecretvalue' }),
    (err: unknown) =>
      err instanceof ConfigError && /STRIPE_SECRET_KEY/.test(err.message) && !err.message.includes('51Hsecretvalue'),
  );
  const config = loadConfig({ DATABASE_URL: 'memory://', STRIPE_SECRET_KEY: 'sk_test_abc123' });
  assert.equal(config.stripe.secretKey, 'sk_test_abc123');
});
