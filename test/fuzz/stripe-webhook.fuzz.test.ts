// Property-based fuzzing of POST /webhooks/stripe: a missing, malformed, stale or wrong
// Stripe-Signature is 400 and changes nothing; a signed body of any shape (events with nasty
// objects included) is 200, 400 or 409, never a 5xx; a 400 changes nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { createAccount } from '../../src/domains/credits/credits.service.ts';
import { signStripePayload } from '../../src/domains/credits/stripe-webhook.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';
import { anyJson, fingerprint, headerValue, malformedJson, nastyString, params } from './fuzz.ts';

const SECRET = 'whsec_fuzzing_secret_0123456789';
const TYPES = [
  'checkout.session.completed',
  'checkout.session.async_payment_succeeded',
  'payment_intent.succeeded',
  'charge.refunded',
  'charge.dispute.created',
  'charge.dispute.closed',
  'customer.created',
];

const leaf = fc.oneof(nastyString, anyJson);
const mostly = <T>(valid: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 8, arbitrary: valid as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: leaf });
const amount = fc.oneof(fc.nat(), fc.constantFrom(-1, 0.5, 2 ** 53, 1e21));
const id = (prefix: string) =>
  fc.oneof(
    fc.stringMatching(/^[A-Za-z0-9]{1,12}$/).map((s) => `${prefix}_${s}`),
    nastyString,
  );
const object = fc.record(
  {
    id: mostly(id('obj')),
    payment_status: mostly(fc.constantFrom('paid', 'unpaid', 'no_payment_required')),
    client_reference_id: mostly(fc.oneof(fc.constantFrom('1', '2', '0', '01', '9999999999999999'), nastyString)),
    payment_intent: mostly(fc.oneof(id('pi'), fc.record({ id: id('pi') }), fc.constant(null))),
    amount_total: mostly(amount),
    amount: mostly(amount),
    amount_received: mostly(amount),
    amount_refunded: mostly(amount),
    currency: mostly(fc.constantFrom('eur', 'usd', 'EUR')),
    status: mostly(fc.constantFrom('won', 'lost', 'needs_response')),
    metadata: mostly(
      fc.record(
        {
          credits: mostly(fc.oneof(fc.constantFrom('1', '10', '999999999', '1000000000', '0'), nastyString)),
          account_id: mostly(fc.constantFrom('1', '2', '3')),
        },
        { requiredKeys: [] },
      ),
    ),
  },
  { requiredKeys: ['id'] },
);
const event = fc.record(
  {
    id: mostly(id('evt')),
    type: mostly(fc.constantFrom(...TYPES)),
    livemode: mostly(fc.boolean()),
    data: mostly(fc.record({ object: mostly(object) })),
  },
  { requiredKeys: ['id', 'type', 'data'] },
);

describe(`fuzz: Stripe webhook (${testDbKind})`, () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp({ env: { STRIPE_WEBHOOK_SECRET: SECRET } });
    // Accounts 1 to 3 exist, so that top-ups, refunds and disputes reach the ledger.
    for (let i = 0; i < 3; i++) await createAccount(t.db);
  });
  after(async () => {
    await t.close();
  });
  const now = () => Math.floor(t.clock.now() / 1000);
  const post = (payload: string, signature: string | undefined) =>
    t.app.inject({
      method: 'POST',
      url: '/webhooks/stripe',
      headers: {
        'content-type': 'application/json',
        ...(signature === undefined ? {} : { 'stripe-signature': signature }),
      },
      payload,
    });

  test('a missing, malformed, stale or wrong Stripe-Signature is 400 and changes nothing', async () => {
    const body = fc.oneof(
      event.map((e) => JSON.stringify(e)),
      malformedJson(fc.json()),
    );
    const signature = (payload: string) =>
      fc.oneof(
        fc.constant(undefined),
        headerValue,
        fc.constant(signStripePayload(payload, 'whsec_other', now())),
        fc.constant(signStripePayload(payload, SECRET, now() - 301)),
        fc.constant(signStripePayload(`${payload} `, SECRET, now())),
        fc.constant(signStripePayload(payload, SECRET, now()).replace(/^t=\d+/, `t=${now() + 1}`)),
        fc.constant(signStripePayload(payload, SECRET, now()).replace('v1=', 'v0=')),
        fc.constant(`t=${now()},v1=${'0'.repeat(64)}`),
        fc.constant(`t=1e3,v1=${signStripePayload(payload, SECRET, now()).split('v1=')[1]}`),
      );
    await fc.assert(
      fc.asyncProperty(
        body.chain((b) => fc.tuple(fc.constant(b), signature(b))),
        async ([payload, sig]) => {
          const before = await fingerprint(t.db);
          const enqueued = t.enqueued.length;
          const r = await post(payload, sig);
          assert.equal(r.statusCode, 400, r.body.slice(0, 300));
          assert.deepEqual(await fingerprint(t.db), before, 'a refused Stripe webhook changed the database');
          assert.equal(t.enqueued.length, enqueued);
        },
      ),
      params(100),
    );
  });

  test('a signed body of any shape: 200, 400 or 409, never a 5xx; a refusal changes nothing', async () => {
    let recorded = 0;
    const body = fc.oneof(
      { weight: 4, arbitrary: event.map((e) => JSON.stringify(e)) },
      { weight: 1, arbitrary: anyJson.map((v) => JSON.stringify(v)) },
      { weight: 1, arbitrary: malformedJson(fc.json()) },
    );
    await fc.assert(
      fc.asyncProperty(body, async (payload) => {
        const before = await fingerprint(t.db);
        const enqueued = t.enqueued.length;
        const r = await post(payload, signStripePayload(payload, SECRET, now()));
        assert.ok([200, 400, 409].includes(r.statusCode), `status ${r.statusCode}: ${r.body.slice(0, 300)}`);
        const changed = JSON.stringify(await fingerprint(t.db)) !== JSON.stringify(before);
        if (r.statusCode !== 200) {
          assert.ok(!changed, `a refused Stripe webhook (${r.statusCode}) changed the database`);
          assert.equal(t.enqueued.length, enqueued);
        }
        if (changed) recorded++;
      }),
      params(150),
    );
    assert.ok(recorded > 0, 'no generated event was recorded');
  });
});
