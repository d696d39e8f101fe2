import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { healthChecks } from '../../src/domains/health/health.repository.ts';
import { startFakeGraphApi } from '../helpers/fake-graph-api.ts';
import { startFakeOpenAI } from '../helpers/fake-openai.ts';
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

describe(`health.check probes the configured WhatsApp API and LLM (${testDbKind})`, () => {
  test('ok while both answer; degraded, with the reason, when one stops', async () => {
    const graph = await startFakeGraphApi();
    const llm = await startFakeOpenAI();
    const t = await buildTestApp({
      env: {
        WHATSAPP_ACCESS_TOKEN: graph.accessToken,
        WHATSAPP_PHONE_NUMBER_ID: graph.phoneNumberId,
        WHATSAPP_API_BASE_URL: graph.baseUrl,
        LLM_BASE_URL: llm.baseURL,
        LLM_MODEL: 'fake-model',
      },
    });
    try {
      const ok = await push(t.app, t.issuer, 'health.check', {}, { headers: scheduled('2026-03-01T13:00:00Z') });
      assert.equal(ok.outcome, 'succeeded', JSON.stringify(ok.body));
      let [row] = await healthChecks.recentChecks(t.db);
      assert.equal(row!.status, 'ok');
      assert.deepEqual(
        row!.checks.map((c) => [c.name, c.ok]),
        [
          ['database', true],
          ['whatsapp', true],
          ['llm', true],
        ],
      );
      assert.deepEqual(
        graph.requests.map((r) => r.path),
        [`/v23.0/${graph.phoneNumberId}?fields=id`],
      );
      assert.equal(graph.sent().length, 0, 'a probe is not a message');
      assert.ok(llm.requests.some((r) => r.method === 'GET' && r.path === '/v1/models'));

      await llm.close();
      await push(t.app, t.issuer, 'health.check', {}, { headers: scheduled('2026-03-01T13:05:00Z') });
      [row] = await healthChecks.recentChecks(t.db);
      assert.equal(row!.status, 'degraded');
      const failed = row!.checks.find((c) => c.name === 'llm')!;
      assert.equal(failed.ok, false);
      assert.match(failed.error!, /connection|ECONNREFUSED/i);
    } finally {
      await t.close();
      await graph.close();
    }
  });
});
