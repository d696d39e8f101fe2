import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

describe(`maintenance.prune_runs (${testDbKind})`, () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp({ env: { TASK_RUN_RETENTION_DAYS: '30' } });
  });
  after(() => t.close());

  test('deletes finished runs past the retention, keeps recent ones and every unfinished one', async () => {
    const now = t.clock.now();
    const day = 86_400_000;
    const seed: Array<[string, string, number]> = [
      ['old-succeeded', 'succeeded', 40],
      ['old-dead', 'dead', 31],
      ['old-failed', 'failed', 60],
      ['old-running', 'running', 45],
      ['recent-succeeded', 'succeeded', 29],
    ];
    for (const [key, status, ageDays] of seed) {
      await t.db.query(
        `INSERT INTO task_runs (task, idempotency_key, status, payload_hash, created_at, updated_at)
         VALUES ('health.check', $1, $2, 'h', $3, $3)`,
        [key, status, new Date(now - ageDays * day)],
      );
    }
    const r = await push(
      t.app,
      t.issuer,
      'maintenance.prune_runs',
      {},
      {
        headers: {
          'x-cloudscheduler': 'true',
          'x-cloudscheduler-jobname': 'backend-prune-runs',
          'x-cloudscheduler-scheduletime': new Date(now).toISOString(),
        },
      },
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const { rows } = await t.db.query<{ idempotency_key: string }>(
      "SELECT idempotency_key FROM task_runs WHERE task = 'health.check' ORDER BY idempotency_key",
    );
    assert.deepEqual(
      rows.map((x) => x.idempotency_key),
      ['old-failed', 'old-running', 'recent-succeeded'],
    );
  });
});
