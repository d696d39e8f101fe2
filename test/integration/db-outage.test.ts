// A database outage, end to end through the real driver and pool: the service reaches this test's
// PostgreSQL database through a TCP proxy the test owns. Cutting the proxy (open connections
// destroyed, new ones refused) is PostgreSQL going away; restoring it is PostgreSQL coming back.
// While it is cut, pushes and webhooks get a fast 503 with Retry-After and nothing is recorded;
// once it is back, the same app (no restart, the same pool) serves the same deliveries once, and
// everything accepted before the cut, or caught by it half-way, has run exactly once.
import assert from 'node:assert/strict';
import net from 'node:net';
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

const APP_SECRET = 'db-outage-app-secret';
const STRIPE_SECRET = 'whsec_db_outage_secret';
/** A refused request must be answered well within the pool's 5 s wait for a connection. */
const FAST_MS = 2_000;

/** A TCP proxy to PostgreSQL that the test can cut (every socket destroyed, port closed) and restore. */
class CuttableProxy {
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | undefined;
  port = 0;

  constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  async open(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.#target);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.#server = server;
  }

  /** PostgreSQL gone: open connections drop, new ones are refused. */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  /** PostgreSQL back, on the same port. */
  restore(): Promise<void> {
    return this.open();
  }
}

let seq = 0;
const effectRan: string[] = [];
let holdInFlight: Promise<void> | undefined;
let reachedInFlight: (() => void) | undefined;

// A plain task and a transactional one, each writing one row per run to test_effects, so "ran
// exactly once" is a count. A payload with hold: true waits mid-handler, before its write.
const effect = defineTask({
  name: 'test.effect',
  queue: 'q',
  payload: z.object({ id: z.string(), hold: z.boolean().optional() }),
  idempotencyKey: (p) => p.id,
  deadlineSeconds: 30,
  async handler(ctx) {
    if (ctx.payload.hold && ctx.attempt === 1) {
      reachedInFlight?.();
      await holdInFlight;
    }
    await ctx.db.query('INSERT INTO test_effects (key) VALUES ($1)', [ctx.payload.id]);
    effectRan.push(ctx.payload.id);
    return {};
  },
});
const effectTx = defineTask({
  name: 'test.effect_tx',
  queue: 'q',
  payload: z.object({ id: z.string(), hold: z.boolean().optional() }),
  idempotencyKey: (p) => p.id,
  deadlineSeconds: 30,
  transactional: true,
  async handler(ctx) {
    await ctx.db.query('INSERT INTO test_effects (key) VALUES ($1)', [ctx.payload.id]);
    if (ctx.payload.hold && ctx.attempt === 1) {
      reachedInFlight?.();
      await holdInFlight;
    }
    return {};
  },
});
const registry = createRegistry({
  tasks: [effect, effectTx],
  queues: [{ name: 'q', retryConfig: { maxAttempts: 10 } }],
  schedules: [],
});

describe(`a database outage (${testDbKind})`, {
  skip:
    testDbKind !== 'postgres' &&
    'PGlite runs inside the process: there is no connection to cut (the PostgreSQL leg covers it)',
}, () => {
  let t: TestApp;
  let direct: TestDb;
  let proxy: CuttableProxy;
  let accountId: number;

  before(async () => {
    direct = await createTestDb();
    await direct.query('CREATE TABLE test_effects (key text NOT NULL)');
    const url = new URL(direct.url!);
    proxy = new CuttableProxy({ host: url.hostname, port: Number(url.port || 5432) });
    await proxy.open();
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    // The production pool's settings (10 connections, 5 s wait for one), through the proxy.
    const service = openPostgres({ url: url.toString() });
    const db: TestDb = {
      ...service,
      url: url.toString(),
      async close() {
        await service.close();
        await proxy.cut();
        await direct.close();
      },
    };
    t = await buildTestApp({
      registry,
      db,
      env: { WHATSAPP_APP_SECRET: APP_SECRET, STRIPE_WEBHOOK_SECRET: STRIPE_SECRET },
    });
    accountId = await createAccount(direct);
  });
  after(() => t?.close());

  const whatsapp = (wamid: string) => {
    const body = textWebhook([{ from: '15550002222', text: 'hello', wamid }]);
    return t.app.inject({
      method: 'POST',
      url: '/webhooks/whatsapp',
      headers: signedWebhookHeaders(body, APP_SECRET),
      payload: body,
    });
  };
  const stripe = (id: string) => {
    const body = JSON.stringify(sessionEvent(id, accountId));
    const signature = signStripePayload(body, STRIPE_SECRET, Math.floor(t.clock.now() / 1000));
    return t.app.inject({
      method: 'POST',
      url: '/webhooks/stripe',
      headers: { 'content-type': 'application/json', 'stripe-signature': signature },
      payload: body,
    });
  };
  /** Read through the direct connection, which the cut does not touch. */
  const n = async (sql: string, values: unknown[] = []) =>
    (await direct.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, values)).rows[0]!.n;
  const timed = async <T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> => {
    const started = performance.now();
    const value = await fn();
    return { value, ms: performance.now() - started };
  };

  test('cut: 503 fast with nothing recorded; restored: the same deliveries run once, the earlier ones are not run again', async (ctx) => {
    const wamidBefore = `wamid.OUTAGE_BEFORE_${++seq}`;
    const wamidDuring = `wamid.OUTAGE_DURING_${seq}`;

    // Before the cut: accepted and done.
    assert.equal((await push(t.app, t.issuer, 'test.effect', { id: 'before-plain' })).status, 200);
    assert.equal((await push(t.app, t.issuer, 'test.effect_tx', { id: 'before-tx' })).status, 200);
    assert.equal((await whatsapp(wamidBefore)).statusCode, 200);
    assert.equal((await stripe('evt_outage_before')).statusCode, 200);

    // Two deliveries caught half-way by the cut: a plain task between its claim and its write, a
    // transactional one inside its open transaction (its connection is the one that drops).
    const hold = gate();
    holdInFlight = hold.promise;
    const reached = [gate(), gate()];
    reachedInFlight = () => reached.shift()?.open();
    const [first, second] = reached;
    const plainInFlight = push(t.app, t.issuer, 'test.effect', { id: 'inflight-plain', hold: true }, { taskName: 'p' });
    await first!.promise;
    const txInFlight = push(t.app, t.issuer, 'test.effect_tx', { id: 'inflight-tx', hold: true }, { taskName: 'x' });
    await second!.promise;

    await proxy.cut();
    hold.open();
    for (const r of [await plainInFlight, await txInFlight]) {
      assert.equal(r.status, 503, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'DATABASE_UNAVAILABLE');
      assert.equal(r.response.headers['retry-after'], '10');
    }

    // While cut: every push and webhook is refused fast, with Retry-After.
    const pushes = [
      await timed(() => push(t.app, t.issuer, 'test.effect', { id: 'during-plain' })),
      await timed(() => push(t.app, t.issuer, 'test.effect_tx', { id: 'during-tx' })),
      await timed(() => push(t.app, t.issuer, 'test.effect', { id: 'before-plain' }, { retryCount: 1 })),
    ];
    for (const { value: r, ms } of pushes) {
      assert.equal(r.status, 503, JSON.stringify(r.body));
      assert.equal(r.outcome, 'retry');
      assert.equal(r.body.error.code, 'DATABASE_UNAVAILABLE');
      assert.equal(r.response.headers['retry-after'], '10');
      assert.ok(ms < FAST_MS, `answered in ${Math.round(ms)} ms`);
    }
    const webhooks = [await timed(() => whatsapp(wamidDuring)), await timed(() => stripe('evt_outage_during'))];
    for (const { value: r, ms } of webhooks) {
      assert.equal(r.statusCode, 503, r.body);
      assert.equal(r.json().error.code, 'DATABASE_UNAVAILABLE');
      assert.equal(r.headers['retry-after'], '10');
      assert.ok(ms < FAST_MS, `answered in ${Math.round(ms)} ms`);
    }
    const slowest = Math.max(...[...pushes, ...webhooks].map((r) => r.ms));
    ctx.diagnostic(`while cut, the slowest refusal took ${slowest.toFixed(1)} ms`);
    assert.equal((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    const ready = await timed(() => t.app.inject({ method: 'GET', url: '/readyz' }));
    assert.equal(ready.value.statusCode, 503);
    assert.ok(ready.ms < FAST_MS);

    // Nothing of what was refused was recorded.
    assert.equal(await n("task_runs WHERE idempotency_key IN ('during-plain', 'during-tx', 'inflight-tx')"), 0);
    assert.equal(await n('whatsapp_messages WHERE wamid = $1', [wamidDuring]), 0);
    assert.equal(await n("stripe_events WHERE event_id = 'evt_outage_during'"), 0);
    assert.equal(await n("test_effects WHERE key LIKE 'inflight-%' OR key LIKE 'during-%'"), 0);

    // Restored: the same app and pool serve again, without a restart.
    await proxy.restore();
    const enqueuedBefore = t.enqueued.length;
    assert.equal(
      (await push(t.app, t.issuer, 'test.effect', { id: 'during-plain' }, { retryCount: 1 })).outcome,
      'succeeded',
    );
    assert.equal(
      (await push(t.app, t.issuer, 'test.effect_tx', { id: 'during-tx' }, { retryCount: 1 })).outcome,
      'succeeded',
    );
    assert.equal((await whatsapp(wamidDuring)).statusCode, 200);
    assert.equal((await stripe('evt_outage_during')).statusCode, 200);
    assert.equal((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
    // The caught transactional delivery rolled back with its claim: its retry runs at once.
    const txRetry = await push(
      t.app,
      t.issuer,
      'test.effect_tx',
      { id: 'inflight-tx', hold: true },
      { retryCount: 1, taskName: 'x' },
    );
    assert.equal(txRetry.outcome, 'succeeded');
    // The caught plain delivery's claim was committed: its run stays leased (409) until the lease
    // ends, then the retry takes it over and runs it.
    const early = await push(
      t.app,
      t.issuer,
      'test.effect',
      { id: 'inflight-plain', hold: true },
      { retryCount: 1, taskName: 'p' },
    );
    assert.equal(early.status, 409, JSON.stringify(early.body));
    t.clock.advance(91_000);
    const late = await push(
      t.app,
      t.issuer,
      'test.effect',
      { id: 'inflight-plain', hold: true },
      { retryCount: 2, taskName: 'p' },
    );
    assert.equal(late.outcome, 'succeeded');

    // Redeliveries of what was accepted before the cut are duplicates: nothing runs twice.
    assert.equal(
      (await push(t.app, t.issuer, 'test.effect', { id: 'before-plain' }, { retryCount: 2 })).outcome,
      'duplicate',
    );
    assert.equal(
      (await push(t.app, t.issuer, 'test.effect_tx', { id: 'before-tx' }, { retryCount: 1 })).outcome,
      'duplicate',
    );
    assert.equal((await whatsapp(wamidBefore)).statusCode, 200);
    assert.equal((await stripe('evt_outage_before')).statusCode, 200);

    // Exactly once, everything: one effect per key, one message and one enqueue per wamid, one event each.
    const rows = (
      await direct.query<{ key: string; n: number }>(
        'SELECT key, count(*)::int AS n FROM test_effects GROUP BY key ORDER BY key',
      )
    ).rows;
    assert.deepEqual(rows, [
      { key: 'before-plain', n: 1 },
      { key: 'before-tx', n: 1 },
      { key: 'during-plain', n: 1 },
      { key: 'during-tx', n: 1 },
      { key: 'inflight-plain', n: 1 },
      { key: 'inflight-tx', n: 1 },
    ]);
    assert.equal(await n('whatsapp_messages WHERE wamid IN ($1, $2)', [wamidBefore, wamidDuring]), 2);
    const processEnqueues = t.enqueued.filter((c) => c.task === 'whatsapp.process_message');
    assert.deepEqual(
      processEnqueues.map((c) => (c.payload as { wamid: string }).wamid).sort(),
      [wamidBefore, wamidDuring].sort(),
    );
    assert.ok(t.enqueued.length > enqueuedBefore);
    assert.equal(await n("stripe_events WHERE event_id IN ('evt_outage_before', 'evt_outage_during')"), 2);
    assert.equal(await n("task_runs WHERE status = 'succeeded'"), 6);
  });
});
