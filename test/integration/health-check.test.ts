import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { healthChecks } from '../../src/domains/health/health.repository.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

/** What Cloud Scheduler sends for one run of the health-check job. */
const scheduled = (scheduleTime: string) => ({
  'x-cloudscheduler': 'true',
  'x-cloudscheduler-jobname': 'backend-health-check',
  'x-cloudscheduler-scheduletime': scheduleTime,
  'x-cloudtasks-taskname': '',
  'x-cloudtasks-queuename': '',
  'x-cloudtasks-taskretrycount': '',
  'x-cloudtasks-taskexecutioncount': '',
  'user-agent': 'Google-Cloud-Scheduler',
});

describe(`health.check (${testDbKind})`, () => {
  let t: TestApp;
  let llmUp = true;
  before(async () => {
    t = await buildTestApp({
      services: {
        healthProbes: [
          {
            name: 'llm',
            critical: false,
            async check() {
              if (!llmUp) throw new Error('connect ECONNREFUSED 127.0.0.1:11434');
            },
          },
        ],
      },
    });
  });
  after(() => t.close());

  test('a scheduled run probes the dependencies and records the result with latencies, once per schedule time', async () => {
    const first = await push(t.app, t.issuer, 'health.check', {}, { headers: scheduled('2026-03-01T12:00:00Z') });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.outcome, 'succeeded');
    // Cloud Scheduler may deliver the same run twice; the schedule time is the key.
    const again = await push(t.app, t.issuer, 'health.check', {}, { headers: scheduled('2026-03-01T12:00:00Z') });
    assert.equal(again.outcome, 'duplicate');
    const rows = await healthChecks.recentChecks(t.db);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.runKey, '2026-03-01T12:00:00.000Z');
    assert.equal(rows[0]!.status, 'ok');
    assert.deepEqual(
      rows[0]!.checks.map((c) => [c.name, c.ok]),
      [
        ['database', true],
        ['llm', true],
      ],
    );
    assert.ok(rows[0]!.checks.every((c) => typeof c.latencyMs === 'number' && c.latencyMs >= 0));
  });

  test('a failing non-critical dependency is degraded, and the change of state is logged once as a warning', async () => {
    llmUp = false;
    t.clock.advance(5 * 60_000);
    await push(t.app, t.issuer, 'health.check', {}, { headers: scheduled('2026-03-01T12:05:00Z') });
    t.clock.advance(5 * 60_000);
    await push(t.app, t.issuer, 'health.check', {}, { headers: scheduled('2026-03-01T12:10:00Z') });
    const rows = await healthChecks.recentChecks(t.db);
    assert.deepEqual(
      rows.map((r) => r.status),
      ['degraded', 'degraded', 'ok'],
    );
    assert.equal(rows[0]!.checks.find((c) => c.name === 'llm')?.error, 'connect ECONNREFUSED 127.0.0.1:11434');
    const changes = t.logs.find(/^health changed/);
    assert.equal(changes.length, 1);
    assert.equal(changes[0]!.message, 'health changed from ok to degraded');
    assert.equal(changes[0]!.severity, 'WARNING');
    llmUp = true;
  });
});
