import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import type { Queryable } from '../../src/db/db.ts';
import { defineTask } from '../../src/tasks/define-task.ts';
import { payloadHash } from '../../src/tasks/push-route.ts';
import { createRegistry } from '../../src/tasks/registry.ts';
import { NonRetryableError, RetryAfterError } from '../../src/tasks/task-errors.ts';
import type { AttemptEntry, ClaimInput } from '../../src/tasks/task-runs.repository.ts';
import { TaskRunBatcher } from '../../src/tasks/task-runs-batch.ts';
import { gate, push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';

// Group commit on the push path: concurrent deliveries share claim and completion statements. The
// same deliveries sent all at once and sent one at a time must leave every run in the same state,
// and a statement that fails for one row must not fail the others.

/** Handler calls by task, key and attempt, for the scenario being run. */
let calls = new Map<string, number>();
let held = gate();
const called = (name: string, id: string, attempt: number) => {
  const k = `${name}:${id}:${attempt}`;
  calls.set(k, (calls.get(k) ?? 0) + 1);
};

const noop = defineTask({
  name: 'batch.noop',
  queue: 'q',
  payload: z.object({
    id: z.string(),
    v: z.number().optional(),
    hold: z.boolean().optional(),
  }),
  idempotencyKey: (p) => p.id,
  deadlineSeconds: 30,
  async handler(ctx) {
    called('noop', ctx.payload.id, ctx.attempt);
    if (ctx.payload.hold && ctx.attempt === 1) await held.promise;
    return { seen: ctx.payload.id };
  },
});

const flaky = defineTask({
  name: 'batch.flaky',
  queue: 'q',
  payload: z.object({ id: z.string(), mode: z.enum(['error', 'retry-after', 'non-retryable']) }),
  idempotencyKey: (p) => p.id,
  async handler(ctx) {
    called('flaky', ctx.payload.id, ctx.attempt);
    if (ctx.payload.mode === 'retry-after') throw new RetryAfterError(30, 'rate limited');
    if (ctx.payload.mode === 'non-retryable') throw new NonRetryableError('refused for good');
    throw new Error('upstream 502');
  },
});

const transfer = defineTask({
  name: 'batch.transfer',
  queue: 'q',
  payload: z.object({ id: z.string(), fail: z.boolean().optional() }),
  idempotencyKey: (p) => p.id,
  transactional: true,
  async handler(ctx) {
    called('transfer', ctx.payload.id, ctx.attempt);
    await ctx.db.query('INSERT INTO batch_effects (key) VALUES ($1)', [ctx.payload.id]);
    if (ctx.payload.fail && ctx.attempt === 1) throw new Error('failed after writing');
    return { ok: true };
  },
});

const registry = createRegistry({
  tasks: [noop, flaky, transfer],
  queues: [{ name: 'q', retryConfig: { maxAttempts: 3 } }],
  schedules: [],
});

/** The statements the batched path sent, counted by what they are. */
interface Seen {
  claimBatches: number;
  finishBatches: number;
  failedBatches: number;
}

/**
 * The test database, counting the batch statements that go through it. Each task_runs statement
 * first yields to the event loop once, as a statement sent to a server does: PGlite runs in this
 * thread and would otherwise finish every statement before the next delivery reaches it, so no
 * delivery would ever find one in flight to share.
 */
function counting(db: TestDb): { db: TestDb; seen: Seen } {
  const seen: Seen = { claimBatches: 0, finishBatches: 0, failedBatches: 0 };
  const wrapped: TestDb = {
    kind: db.kind,
    url: db.url,
    async query<R>(text: string, values?: readonly unknown[]) {
      const batch = text.includes('unnest(');
      if (batch && text.includes('INSERT INTO task_runs')) seen.claimBatches++;
      if (batch && text.includes('UPDATE task_runs')) seen.finishBatches++;
      if (text.includes('task_runs')) await new Promise<void>((resolve) => setImmediate(resolve));
      try {
        return await db.query<R>(text, values);
      } catch (err) {
        if (batch) seen.failedBatches++;
        throw err;
      }
    },
    exec: (script) => db.exec(script),
    transaction: (fn) => db.transaction(fn),
    close: () => db.close(),
  };
  return { db: wrapped, seen };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const MODES = ['error', 'retry-after', 'non-retryable'] as const;

/**
 * The whole scenario on one app: the same deliveries in the same phases, either all at once within
 * a phase (together) or one after the other. Returns the outcomes that do not depend on timing.
 */
async function scenario(t: TestApp, together: boolean): Promise<Record<string, string | undefined>> {
  calls = new Map();
  held = gate();
  const outcomes: Record<string, string | undefined> = {};
  // Signed once, so that the deliveries of a phase reach the database together.
  const token = await t.issuer.token();
  const send = (name: string, task: string, payload: unknown, o: { retryCount?: number; taskName?: string } = {}) => {
    return async () => {
      const r = await push(t.app, t.issuer, task, payload, {
        token,
        taskName: o.taskName ?? name,
        retryCount: o.retryCount,
      });
      outcomes[name] = `${r.status} ${r.outcome}`;
      return r;
    };
  };
  const run = async (deliveries: Array<() => Promise<unknown>>) => {
    if (together) await Promise.all(deliveries.map((d) => d()));
    else for (const d of deliveries) await d();
  };

  // Set-up, one at a time in both: runs whose key will come back with another payload, and runs
  // whose instance died while running them (their lease expired an hour ago).
  for (const i of range(20)) await send(`setup-c${i}`, 'batch.noop', { id: `c${i}`, v: 1 })();
  for (const i of range(20)) {
    const payload = { id: `e${i}` };
    await t.db.query(
      `INSERT INTO task_runs (task, idempotency_key, status, attempts, lease_expires_at, payload, payload_hash,
                              delivery, created_at, started_at, updated_at)
       VALUES ('batch.noop', $1, 'running', 1, $2, $3, $4, '{}', $2, $2, $2)`,
      [`e${i}`, new Date(t.clock.now() - 3_600_000), JSON.stringify(payload), payloadHash(payload)],
    );
  }

  // Phase A: 200 deliveries. Ten hold their handler (their instance will "die").
  const heldClaims = range(10).map((i) => t.events.waitFor('run:claimed', (e) => e.key === `h${i}`));
  const heldDeliveries = range(10).map((i) => send(`A-h${i}`, 'batch.noop', { id: `h${i}`, hold: true }));
  const phaseA = [
    ...range(60).flatMap((i) => [
      send(`A-p${i}-1`, 'batch.noop', { id: `p${i}` }),
      send(`A-p${i}-2`, 'batch.noop', { id: `p${i}` }),
    ]),
    ...range(20).map((i) => send(`A-c${i}`, 'batch.noop', { id: `c${i}`, v: 2 })),
    ...range(20).map((i) => send(`A-e${i}`, 'batch.noop', { id: `e${i}` }, { retryCount: 1 })),
    ...range(20).map((i) => send(`A-f${i}`, 'batch.flaky', { id: `f${i}`, mode: MODES[i % 3] })),
    ...range(10).map((i) => send(`A-t${i}`, 'batch.transfer', { id: `t${i}`, fail: i < 5 })),
  ];
  let heldDone: Array<Promise<unknown>>;
  if (together) {
    // Interleaved, so held deliveries share statements with the others.
    const all = [...phaseA];
    for (const [i, d] of heldDeliveries.entries()) all.splice(i * 20, 0, d);
    const started = all.map((d) => ({ d, p: undefined as Promise<unknown> | undefined }));
    for (const s of started) s.p = s.d();
    heldDone = started.filter((s) => heldDeliveries.includes(s.d)).map((s) => s.p!);
    await Promise.all(started.filter((s) => !heldDeliveries.includes(s.d)).map((s) => s.p));
    await Promise.all(heldClaims);
  } else {
    heldDone = [];
    for (const [i, d] of heldDeliveries.entries()) {
      heldDone.push(d());
      await heldClaims[i];
    }
    await run(phaseA);
  }

  // Phase B, past the held deliveries' lease: take them over, retry the failures, repeat the
  // successes, and deliver payloads that fail validation.
  t.clock.advance(100_000);
  await run([
    ...range(10).map((i) => send(`B-h${i}`, 'batch.noop', { id: `h${i}`, hold: true }, { retryCount: 1 })),
    ...range(20).map((i) =>
      send(`B-f${i}`, 'batch.flaky', { id: `f${i}`, mode: MODES[i % 3] }, { retryCount: i % 3 === 0 ? 2 : 1 }),
    ),
    ...range(10).map((i) => send(`B-t${i}`, 'batch.transfer', { id: `t${i}`, fail: i < 5 }, { retryCount: 1 })),
    ...range(60).map((i) => send(`B-p${i}`, 'batch.noop', { id: `p${i}` }, { retryCount: 2 })),
    ...range(5).map((i) => send(`B-bad${i}`, 'batch.noop', { id: 42 }, { taskName: `bad-${i}` })),
  ]);
  // The dead instances come back: their completions are fenced off, all at once or one by one.
  held.open();
  await Promise.all(heldDone);

  // Outcomes that cannot depend on timing (a duplicate may meet its twin running or finished).
  return Object.fromEntries(Object.entries(outcomes).filter(([name]) => !/^A-p/.test(name)));
}

interface RunState {
  task: string;
  key: string;
  status: string;
  attempts: number;
  leased: boolean;
  result: unknown;
  lastError: string | null;
  payload: unknown;
  history: Array<Pick<AttemptEntry, 'attempt' | 'status' | 'error' | 'retryCount'>>;
}

async function finalState(db: Queryable): Promise<RunState[]> {
  const runs = await db.query<{
    task: string;
    key: string;
    status: string;
    attempts: number;
    leased: boolean;
    result: unknown;
    last_error: string | null;
    payload: unknown;
    history: AttemptEntry[];
  }>(
    `SELECT task, idempotency_key AS key, status, attempts, lease_expires_at IS NOT NULL AS leased, result,
            last_error, payload,
            (SELECT coalesce(json_agg(json_build_object('attempt', a.attempt, 'status', a.status, 'error', a.error,
                                                        'retryCount', a.retry_count) ORDER BY a.attempt), '[]')
               FROM task_attempts a WHERE a.run_id = task_runs.id) AS history
       FROM task_runs ORDER BY task, idempotency_key`,
  );
  return runs.rows.map((r) => ({
    task: r.task,
    key: r.key,
    status: r.status,
    attempts: r.attempts,
    leased: r.leased,
    result: r.result,
    lastError: r.last_error,
    payload: r.payload,
    history: r.history.map((h) => ({ attempt: h.attempt, status: h.status, error: h.error, retryCount: h.retryCount })),
  }));
}

const effects = async (db: Queryable) =>
  (
    await db.query<{ key: string; n: number }>(
      'SELECT key, count(*)::int AS n FROM batch_effects GROUP BY key ORDER BY key',
    )
  ).rows;

describe(`push path group commit (${testDbKind})`, () => {
  let reference: TestApp;
  let batched: TestApp;
  let seen: Seen;
  before(async () => {
    reference = await buildTestApp({ registry });
    const c = counting(await createTestDb());
    seen = c.seen;
    batched = await buildTestApp({ registry, db: c.db });
    for (const t of [reference, batched]) await t.db.query('CREATE TABLE batch_effects (key text NOT NULL)');
  });
  after(async () => {
    await reference?.close();
    await batched?.close();
  });

  test('200 concurrent deliveries leave every run as the same deliveries one at a time do', async () => {
    const referenceOutcomes = await scenario(reference, false);
    const referenceCalls = calls;
    const referenceState = await finalState(reference.db);

    const batchedOutcomes = await scenario(batched, true);
    const batchedState = await finalState(batched.db);

    // The deliveries did share statements (else this test would prove nothing about batches).
    assert.ok(seen.claimBatches > 0, `claims were batched (${seen.claimBatches} batch statements)`);
    assert.ok(seen.finishBatches > 0, `completions were batched (${seen.finishBatches} batch statements)`);
    assert.equal(seen.failedBatches, 0);

    assert.equal(batchedState.length, 20 + 20 + 60 + 10 + 20 + 10 + 5);
    assert.deepEqual(batchedState, referenceState);
    assert.deepEqual(batchedOutcomes, referenceOutcomes);
    assert.deepEqual(new Map([...calls].sort()), new Map([...referenceCalls].sort()));
    assert.deepEqual(await effects(batched.db), await effects(reference.db));

    // And the reference says what the rules say, so the two cannot agree on something wrong.
    const byKey = new Map(referenceState.map((r) => [r.key, r]));
    for (const i of range(60)) {
      const p = byKey.get(`p${i}`)!;
      assert.equal(p.status, 'succeeded');
      assert.equal(p.attempts, 1);
      assert.equal(calls.get(`noop:p${i}:1`), 1, `p${i} ran once`);
    }
    for (const i of range(20)) {
      assert.equal(referenceOutcomes[`A-c${i}`], '200 dead', 'another payload for a used key is dead');
      assert.deepEqual(byKey.get(`c${i}`)?.payload, { id: `c${i}`, v: 1 });
      assert.equal(byKey.get(`e${i}`)?.status, 'succeeded');
      assert.equal(byKey.get(`e${i}`)?.attempts, 2, 'the expired lease was taken over');
    }
    for (const i of range(10)) {
      const h = byKey.get(`h${i}`)!;
      assert.equal(h.status, 'succeeded');
      assert.equal(h.attempts, 2);
      assert.deepEqual(
        h.history.map((e) => e.attempt),
        [2],
        'the first attempt, taken over, wrote nothing',
      );
      assert.equal(batchedOutcomes[`A-h${i}`], '409 busy', 'the late completion is fenced');
    }
    assert.equal(byKey.get('f0')?.status, 'dead', 'a failure on the last attempt is dead');
    assert.equal(byKey.get('f1')?.status, 'failed');
    assert.equal(byKey.get('f2')?.status, 'dead');
    assert.equal(byKey.get('f2')?.attempts, 1, 'a dead run is not run again');
    assert.equal(byKey.get('t0')?.status, 'succeeded');
    assert.equal(byKey.get('t0')?.attempts, 2);
    assert.equal(byKey.get('bad-0')?.status, 'dead');
  });
});

describe(`a failing batch statement (${testDbKind})`, () => {
  let db: TestDb;
  before(async () => {
    db = await createTestDb();
  });
  after(() => db?.close());

  const claimInput = (key: string, payload: unknown): ClaimInput => ({
    task: 'batch.noop',
    key,
    payload,
    payloadHash: payloadHash(payload),
    cloudTaskName: key,
    queueName: 'q',
    delivery: {},
    now: new Date('2026-03-01T12:00:00.000Z'),
    leaseMs: 90_000,
  });
  const entry = (error: string | null): AttemptEntry => ({
    attempt: 1,
    status: 'succeeded',
    startedAt: '2026-03-01T12:00:00.000Z',
    finishedAt: '2026-03-01T12:00:01.000Z',
    durationMs: 1000,
    error,
    retryCount: null,
  });

  test('one row that breaks the statement fails alone; every other task of the batch completes', async () => {
    const c = counting(db);
    // One statement in flight: the first write goes alone, the 19 behind it share the next one.
    const batcher = new TaskRunBatcher(c.db, { maxInFlight: 1 });
    const keys = range(20).map((i) => `k${i}`);
    // text cannot hold a NUL character (payloads are cleaned of it, a task name is not): the
    // claim of k7 makes its whole statement fail.
    const claims = keys.map((k) =>
      batcher.claim({ ...claimInput(k, { id: k }), ...(k === 'k7' ? { cloudTaskName: 'a\u0000b' } : {}) }).then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      ),
    );
    const claimed = await Promise.all(claims);
    assert.equal(c.seen.claimBatches, 1);
    assert.equal(c.seen.failedBatches, 1, 'the shared claim statement failed');
    assert.equal(batcher.claims.stats.fallbacks, 1);
    for (const [i, r] of claimed.entries()) {
      if (keys[i] === 'k7') {
        assert.equal(r.ok, false, 'the bad row fails its own delivery');
        assert.match(String((r as { error: unknown }).error), /unsupported Unicode escape sequence|\\u0000|0x00/);
      } else {
        assert.equal(r.ok && r.value.kind, 'claimed', `${keys[i]} was claimed on its own`);
      }
    }

    // The completions: k0 goes alone, the 18 behind it share a statement that k3's result breaks.
    const finishes = claimed.flatMap((r, i) => {
      if (!r.ok || r.value.kind !== 'claimed') return [];
      const key = keys[i]!;
      return [
        batcher
          .finish({
            runId: r.value.runId,
            attempt: r.value.attempt,
            // A status the table's CHECK refuses: k3's row breaks the shared statement.
            status: key === 'k3' ? ('bogus' as 'succeeded') : 'succeeded',
            result: { key },
            entry: entry(null),
          })
          .then(
            (value) => ({ key, ok: true as const, value }),
            (error: unknown) => ({ key, ok: false as const, error }),
          ),
      ];
    });
    const finished = await Promise.all(finishes);
    assert.equal(c.seen.finishBatches, 1);
    assert.equal(c.seen.failedBatches, 2, 'the shared completion statement failed');
    assert.equal(batcher.finishes.stats.fallbacks, 1);
    for (const f of finished) {
      if (f.key === 'k3') assert.equal(f.ok, false);
      else assert.deepEqual([f.key, f.ok && f.value], [f.key, true]);
    }

    const runs = await db.query<{ key: string; status: string; result: unknown }>(
      'SELECT idempotency_key AS key, status, result FROM task_runs ORDER BY idempotency_key',
    );
    assert.equal(runs.rows.length, 19, 'every delivery but the bad one has its run');
    for (const r of runs.rows) {
      if (r.key === 'k3') assert.equal(r.status, 'running', 'the bad completion wrote nothing');
      else assert.deepEqual([r.key, r.status, r.result], [r.key, 'succeeded', { key: r.key }]);
    }
  });
});
