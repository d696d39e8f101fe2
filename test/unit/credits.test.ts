import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { balanceReply, topupReply } from '../../src/domains/credits/credits.replies.ts';
import { signStripePayload, verifyStripeSignature } from '../../src/domains/credits/stripe-webhook.ts';
import { registry } from '../../src/task-registry.ts';

test('balance reply', () => {
  assert.equal(balanceReply(0), 'You have 0 credits.');
  assert.equal(balanceReply(1), 'You have 1 credit.');
  assert.equal(balanceReply(42), 'You have 42 credits.');
});

test('topup reply: the Payment Link with client_reference_id, or how to get credits', () => {
  assert.match(
    topupReply(17, 'https://buy.stripe.com/test_abc'),
    /^Buy credits here: https:\/\/buy\.stripe\.com\/test_abc\?client_reference_id=17\n/,
  );
  assert.match(topupReply(17, 'https://buy.stripe.com/x?locale=de'), /\?locale=de&client_reference_id=17/);
  const offline = topupReply(17, undefined);
  assert.doesNotMatch(offline, /http/);
  assert.match(offline, /credits/);
});

test('Stripe-Signature: valid, tampered, stale, at the tolerance edge, wrong secret, no v1', () => {
  const body = Buffer.from('{"id":"evt_1"}');
  const now = 1_780_000_000_000;
  const t = Math.floor(now / 1000);
  const header = signStripePayload(body, 'whsec_a', t);
  assert.deepEqual(verifyStripeSignature(body, header, 'whsec_a', now), { ok: true });
  assert.equal(verifyStripeSignature(Buffer.from('{"id":"evt_2"}'), header, 'whsec_a', now).ok, false);
  assert.equal(verifyStripeSignature(body, header, 'whsec_b', now).ok, false);
  assert.equal(verifyStripeSignature(body, header, 'whsec_a', now + 301_000).ok, false);
  assert.equal(verifyStripeSignature(body, header, 'whsec_a', now + 300_000).ok, true);
  assert.equal(verifyStripeSignature(body, undefined, 'whsec_a', now).ok, false);
  assert.equal(verifyStripeSignature(body, `t=${t},v1=zz`, 'whsec_a', now).ok, false);
  assert.equal(verifyStripeSignature(body, header.replace('v1=', 'v0='), 'whsec_a', now).ok, false);
});

test('Stripe-Signature: each refusal names its check; rotation, spacing, other schemes and tolerance 0', () => {
  const body = Buffer.from('{"id":"evt_1"}');
  const now = 1_780_000_000_000;
  const t = Math.floor(now / 1000);
  const sig = signStripePayload(body, 'whsec_a', t).split('v1=')[1]!;
  const other = signStripePayload(body, 'whsec_old', t).split('v1=')[1]!;
  const check = (header: string | undefined, tolerance?: number) =>
    verifyStripeSignature(body, header, 'whsec_a', now, tolerance);
  const noMatch = { ok: false, reason: 'no v1 signature matches the payload' };
  assert.deepEqual(check(undefined), { ok: false, reason: 'no Stripe-Signature header' });
  assert.deepEqual(check(''), { ok: false, reason: 'no Stripe-Signature header' });
  assert.deepEqual(check(`v1=${sig}`), { ok: false, reason: 'no timestamp in Stripe-Signature' });
  // t must be all digits: neither a suffix nor a prefix makes one.
  assert.deepEqual(check(`t=${t}x,v1=${sig}`), { ok: false, reason: 'no timestamp in Stripe-Signature' });
  assert.deepEqual(check(`t=x${t},v1=${sig}`), { ok: false, reason: 'no timestamp in Stripe-Signature' });
  assert.deepEqual(check(`t=${t}`), { ok: false, reason: 'no v1 signature in Stripe-Signature' });
  assert.deepEqual(check(`t=${t},v0=${sig}`), { ok: false, reason: 'no v1 signature in Stripe-Signature' });
  // Secret rotation: any one v1 matching is enough, whichever comes first.
  assert.deepEqual(check(`t=${t},v1=${other},v1=${sig}`), { ok: true });
  assert.deepEqual(check(`t=${t},v1=${sig},v1=${other}`), { ok: true });
  // Another scheme's digits do not replace the timestamp.
  assert.deepEqual(check(`t=${t},v1=${sig},v0=12345`), { ok: true });
  // Spaces around names and values are ignored.
  assert.deepEqual(check(` t = ${t} , v1 = ${sig} `), { ok: true });
  // A v1 must be exactly 64 hex digits: trailing or leading junk refuses (never a thrown error).
  assert.deepEqual(check(`t=${t},v1=${sig}zz`), noMatch);
  assert.deepEqual(check(`t=${t},v1=zz${sig}`), noMatch);
  assert.deepEqual(check(`t=${t},v1=${sig.slice(2)}`), noMatch);
  // Stale: refused by default, accepted when the tolerance is 0 (the check is off).
  const stale = signStripePayload(body, 'whsec_a', t - 3600);
  assert.deepEqual(check(stale), { ok: false, reason: 'timestamp outside the tolerance zone' });
  assert.deepEqual(check(stale, 0), { ok: true });
});

test('credits.monthly_grant is scheduled at 00:00 UTC on the 1st, on the credits queue', () => {
  const schedule = registry.schedules.find((s) => s.task === 'credits.monthly_grant');
  assert.ok(schedule);
  assert.equal(schedule.cron, '0 0 1 * *');
  assert.equal(schedule.timeZone, 'UTC');
  assert.equal(schedule.retryCount, 5);
  assert.equal(registry.tasks.get('credits.monthly_grant')?.queue, 'credits');
  assert.equal(registry.tasks.get('credits.topup')?.transactional, true);
});

test('SIGNUP_CREDITS, MONTHLY_GRANT_BATCH_SIZE and POST_COST_CREDITS: defaults, values, a clear error', () => {
  assert.deepEqual(loadConfig({}).credits, { signupCredits: 10, monthlyGrantBatchSize: 500, postCost: 1 });
  assert.deepEqual(
    loadConfig({ SIGNUP_CREDITS: '0', MONTHLY_GRANT_BATCH_SIZE: '50', POST_COST_CREDITS: '3' }).credits,
    { signupCredits: 0, monthlyGrantBatchSize: 50, postCost: 3 },
  );
  assert.throws(
    () => loadConfig({ POST_COST_CREDITS: '0' }),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.issues[0] === 'POST_COST_CREDITS="0" is not valid: expected an integer from 1 to 1000',
  );
  assert.throws(
    () => loadConfig({ SIGNUP_CREDITS: 'many' }),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.issues[0] === 'SIGNUP_CREDITS="many" is not valid: expected an integer from 0 to 1000000',
  );
});
