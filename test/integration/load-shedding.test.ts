// Load shedding: while the event loop lags or the database pool has too many calls waiting, task
// pushes get 503 + Retry-After (Cloud Tasks backs off) and the WhatsApp and Stripe webhooks get
// 503 (Meta and Stripe deliver again), before anything is read or written; health checks answer.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import { openPostgres } from '../../src/db/postgres.ts';
import { createAccount } from '../../src/domains/credits/credits.service.ts';
import { signStripePayload } from '../../src/domains/credits/stripe-webhook.ts';
import { textWebhook } from '../../src/domains/whatsapp/webhook.ts';
import { defineTask } from '../../src/tasks/define-task.ts';
import { createRegistry } from '../../src/tasks/registry.ts';
import { gate, push } from '../helpers/push.ts';
import { sessionEvent } from '../helpers/stripe-events.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';
import { signedWebhookHeaders } from '../helpers/whatsapp-webhooks.ts';

const APP_SECRET = 'load-shedding-app-secret';
const STRIPE_SECRET = 'whsec_load_shedding_secret';

const ran: string[] = [];
const effect = defineTask({
  name: 'test.effect',
  queue: 'q',
  payload: z.object({ id: z.string() }),
  idempotencyKey: (p) => p.id,
  async handler(ctx) {
    ran.push(ctx.payload.id);
    return {};
  },
});
const registry = createRegistry({
  tasks: [effect],
  queues: [{ name: 'q', retryConfig: { maxAttempts: 5 } }],
  schedules: [],
});

const env = { WHATSAPP_APP_SECRET: APP_SECRET, STRIPE_WEBHOOK_SECRET: STRIPE_SECRET };

let seq = 0;
function whatsapp(t: TestApp) {
  const body = textWebhook([{ from: '15550001111', text: 'hello', wamid: `wamid.SHED${++seq}` }]);
  return t.app.inject({
    method: 'POST',
    url: '/webhooks/whatsapp',
    headers: signedWebhookHeaders(body, APP_SECRET),
    payload: body,
  });
}
async function stripe(t: TestApp, id: string) {
  const accountId = await createAccount(t.db);
  const body = JSON.stringify(sessionEvent(id, accountId));
  const signature = signStripePayload(body, STRIPE_SECRET, Math.floor(t.clock.now() / 1000));
  return t.app.inject({
    method: 'POST',
    url: '/webhooks/stripe',
    headers: { 'content-type': 'application/json', 'stripe-signature': signature },
    payload: body,
  });
}
const count = async (t: TestApp, table: string) =>
  (await t.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;

/** What shedding must not have touched: no run, no message, no Stripe event, nothing enqueued or run. */
async function nothingRecorded(t: TestApp): Promise<void> {
  assert.equal(await count(t, 'task_runs'), 0);
  assert.equal(await count(t, 'whatsapp_messages'), 0);
  assert.equal(await count(t, 'stripe_events'), 0);
  assert.deepEqual(t.enqueued, []);
  assert.deepEqual(ran, []);
}

function assertShedPush(r: Awaited<ReturnType<typeof push>>): void {
  assert.equal(r.status, 503);
  assert.equal(r.outcome, 'retry');
  assert.equal(r.response.headers['retry-after'], '5');
  assert.equal(r.body.error.code, 'OVERLOADED');
}

describe(`load shedding on event-loop lag (${testDbKind})`, () => {
  let t: TestApp;
  let lagMs = 0;
  before(async () => {
    t = await buildTestApp({
      registry,
      env: { ...env, SHED_EVENT_LOOP_LAG_MS: '200' },
      loadSignals: { eventLoopLagMs: () => lagMs },
    });
  });
  after(() => t.close());

  test('past the limit pushes and webhooks get 503 with nothing recorded, health answers; below it all runs', async () => {
    ran.length = 0;
    lagMs = 201;
    assertShedPush(await push(t.app, t.issuer, 'test.effect', { id: 'lag-1' }));
    const w = await whatsapp(t);
    assert.equal(w.statusCode, 503);
    assert.equal(w.headers['retry-after'], '5');
    assert.equal(w.json().error.code, 'OVERLOADED');
    const s = await stripe(t, 'evt_lag_1');
    assert.equal(s.statusCode, 503);
    assert.equal(s.json().error.code, 'OVERLOADED');
    // Shed before authentication: an unauthenticated push costs no RS256 check either.
    assertShedPush(await push(t.app, t.issuer, 'test.effect', { id: 'lag-1' }, { token: null }));
    const health = await t.app.inject({ method: 'GET', url: '/healthz' });
    assert.equal(health.statusCode, 200);
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200);
    assert.equal(ready.json().status, 'ready');
    // The Meta handshake (a GET) and unknown routes are not shed.
    assert.equal((await t.app.inject({ method: 'GET', url: '/webhooks/whatsapp' })).statusCode, 403);
    await nothingRecorded(t);
    assert.equal(t.logs.find('load shedding started: event_loop_lag 201 > 200').length, 1);

    lagMs = 200; // at the limit: served
    const r = await push(t.app, t.issuer, 'test.effect', { id: 'lag-1' }, { retryCount: 1 });
    assert.equal(r.status, 200);
    assert.equal(r.outcome, 'succeeded');
    assert.deepEqual(ran, ['lag-1']);
    assert.equal((await whatsapp(t)).statusCode, 200);
    assert.equal((await stripe(t, 'evt_lag_1')).statusCode, 200);
    assert.equal(await count(t, 'stripe_events'), 1);
    assert.equal(t.logs.find('load shedding stopped').length, 1);
  });
});

describe(`the event-loop lag probe (${testDbKind})`, () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp({ registry, env: { ...env, SHED_EVENT_LOOP_LAG_MS: '100' } });
  });
  after(() => t.close());

  test('a loop blocked for 300 ms is measured, and the next push is shed', async () => {
    ran.length = 0;
    const until = performance.now() + 300;
    while (performance.now() < until) {
      // Synchronous work: no timer can run, as under a CPU-bound burst.
    }
    assertShedPush(await push(t.app, t.issuer, 'test.effect', { id: 'probe-1' }));
    assert.equal(t.logs.find(/^load shedding started: event_loop_lag \d+ > 100$/).length, 1);
    await nothingRecorded(t);
  });
});

describe(`load shedding on database pool waiters (${testDbKind})`, () => {
  let t: TestApp;
  let waiting = 0;
  before(async () => {
    t = await buildTestApp({
      registry,
      env: { ...env, SHED_DB_WAITING: '2' },
      loadSignals: { dbWaiting: () => waiting },
    });
  });
  after(() => t.close());

  test('more calls waiting for a connection than the limit: pushes and webhooks get 503; then served', async () => {
    ran.length = 0;
    waiting = 3;
    assertShedPush(await push(t.app, t.issuer, 'test.effect', { id: 'pool-1' }));
    assert.equal((await whatsapp(t)).statusCode, 503);
    assert.equal((await stripe(t, 'evt_pool_1')).statusCode, 503);
    assert.equal((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    assert.equal((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
    await nothingRecorded(t);
    waiting = 2;
    assert.equal((await push(t.app, t.issuer, 'test.effect', { id: 'pool-1' })).status, 200);
    assert.deepEqual(ran, ['pool-1']);
  });
});

describe(`load shedding on a real pool held busy (${testDbKind})`, {
  skip: testDbKind !== 'postgres' && 'PGlite has no connection pool',
}, () => {
  // A one-connection pool over this test's database: one transaction held open takes it, and
  // every other call waits for it, as under a burst heavier than the pool.
  let t: TestApp;
  let base: TestDb;
  let tiny: ReturnType<typeof openPostgres>;
  before(async () => {
    base = await createTestDb();
    tiny = openPostgres({ url: base.url!, max: 1 });
    const db: TestDb = {
      ...tiny,
      url: base.url,
      async close() {
        await tiny.close();
        await base.close();
      },
    };
    t = await buildTestApp({ registry, db, env: { ...env, SHED_DB_WAITING: '2' } });
  });
  after(() => t.close());

  test('three calls waiting on a one-connection pool with a limit of two: shed; once released, served', async () => {
    ran.length = 0;
    const hold = gate();
    const holding = tiny.transaction(() => hold.promise);
    const waiters = [1, 2, 3].map(() => tiny.query('SELECT 1'));
    assert.equal(tiny.pool.waitingCount, 3);
    assertShedPush(await push(t.app, t.issuer, 'test.effect', { id: 'busy-1' }));
    assert.equal((await whatsapp(t)).statusCode, 503);
    assert.equal((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    hold.open();
    await holding;
    await Promise.all(waiters);
    assert.equal(tiny.pool.waitingCount, 0);
    await nothingRecorded(t);
    assert.equal((await push(t.app, t.issuer, 'test.effect', { id: 'busy-1' })).status, 200);
    assert.equal((await whatsapp(t)).statusCode, 200);
    assert.deepEqual(ran, ['busy-1']);
  });
});
