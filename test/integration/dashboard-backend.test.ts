// The dashboard's queues and schedules pages against the embedded emulator, through the official
// clients the service builds (createCloudClients): what the pages show is what the backend has,
// pause / resume / purge / run now act on it and leave an audit event, a POST without the CSRF
// token changes nothing, and a backend that fails a call gives "unknown", not a broken page.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type Emulator, startEmulator } from '@backend/cloud-tasks-emulator';
import { CloudSchedulerClient } from '@google-cloud/scheduler';
import { CloudTasksClient, v2beta3 } from '@google-cloud/tasks';
import { PassThroughClient } from 'google-auth-library';
import type { TaskBackend } from '../../src/admin/deps.ts';
import { TestClock } from '../../src/clock.ts';
import { auditEvents } from '../../src/domains/audit/audit.repository.ts';
import { registry } from '../../src/task-registry.ts';
import { type CloudClients, createCloudClients } from '../../src/tasks/cloud-clients.ts';
import { type EnqueueTarget, TaskEnqueuer } from '../../src/tasks/enqueue.ts';
import { syncQueues } from '../../src/tasks/queue-sync.ts';
import { JOB_PREFIX, syncSchedules } from '../../src/tasks/schedule-sync.ts';
import { type Browser, get, openDashboard, post } from '../helpers/admin-browser.ts';
import { captureLogger } from '../helpers/capture-logger.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';

/** The <tr> of one queue or schedule. */
function row(page: string, attr: 'data-queue' | 'data-schedule', name: string): string {
  const m = new RegExp(`<tr ${attr}="${name}"[\\s\\S]*?</tr>`).exec(page);
  assert.ok(m, `a row for ${name}`);
  return m[0];
}

const START = Date.parse('2026-01-01T00:00:00.000Z');

/**
 * The emulator package on free ports, dispatching only on tick(), driven by the service's TestClock
 * (which satisfies the emulator's own Clock port structurally).
 */
async function startTestEmulator(): Promise<{ emulator: Emulator; clock: TestClock }> {
  const clock = new TestClock(START);
  const emulator = await startEmulator({ grpcPort: 0, httpPort: 0, autoDispatch: false, clock });
  return { emulator, clock };
}

interface Target {
  url: string;
  /** The paths pushed to it, in order. */
  requests: { path: string }[];
  close(): Promise<void>;
}

/** A local server standing for Cloud Run: answers 200 and records what was pushed. */
async function startTarget(): Promise<Target> {
  const requests: { path: string }[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ path: req.url ?? '' });
    req.resume().on('end', () => res.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const waiting = (r: string) => /data-tasks-waiting="([^"]+)"/.exec(r)?.[1];

describe('dashboard: queues and schedules on the emulator', () => {
  let emulator: Emulator;
  let clock: TestClock;
  let target: Target;
  let clients: CloudClients;
  let app: TestApp;
  let browser: Browser;
  let pushTarget: EnqueueTarget;
  const queueName = (q: string) => clients.tasks.queuePath('dev', 'here', q);

  before(async () => {
    ({ emulator, clock } = await startTestEmulator());
    target = await startTarget();
    clients = createCloudClients({ emulator: emulator.grpcAddress, projectId: 'dev' });
    pushTarget = {
      projectId: 'dev',
      location: 'here',
      publicBaseUrl: target.url,
      invokerServiceAccount: 'invoker@dev.iam.gserviceaccount.com',
      audience: target.url,
      auth: 'oidc',
      secret: undefined,
    };
    await syncQueues(clients.tasks, pushTarget, [...registry.queues.values()], { dryRun: false });
    await syncSchedules(clients.scheduler, pushTarget, registry.schedules, { dryRun: false });
    const enqueuer = new TaskEnqueuer({
      client: clients.tasks,
      registry,
      target: pushTarget,
      clock: { now: () => clock.now() },
      log: captureLogger().logger,
    });
    app = await buildTestApp({ backend: { enqueuer, clients, target: pushTarget } });
    browser = await openDashboard(app);
    assert.ok(browser.csrf, 'the page carries a CSRF token');
  });

  after(async () => {
    await app?.close();
    await clients?.close();
    await target?.close();
    await emulator?.close();
  });

  const audits = async () => (await auditEvents.list(app.db, { limit: 100 })).reverse();

  async function addTasks(queue: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      await clients.tasks.createTask({
        parent: queueName(queue),
        task: {
          httpRequest: { url: `${target.url}/tasks/x`, httpMethod: 'POST' },
          // Far enough ahead that nothing is dispatched while the test looks.
          scheduleTime: { seconds: Math.floor(START / 1000) + 3600 + i },
        },
      });
    }
  }

  test('the queues page shows every declared queue as the backend has it, with the tasks waiting', async () => {
    await addTasks('scraper', 3);
    const res = await get(app, browser, '/admin/queues');
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-security-policy'] as string, /default-src 'none'/);
    for (const name of registry.queues.keys()) {
      const r = row(res.body, 'data-queue', name);
      assert.match(r, /data-state="RUNNING"/);
    }
    assert.equal(waiting(row(res.body, 'data-queue', 'scraper')), '3');
    assert.equal(waiting(row(res.body, 'data-queue', 'blog')), '0');
    // The declared rate limits and retry settings, read back from the backend.
    const declared = registry.queues.get('whatsapp')!;
    const [backendQueue] = await clients.tasks.getQueue({ name: queueName('whatsapp') });
    const whatsapp = row(res.body, 'data-queue', 'whatsapp');
    assert.ok(whatsapp.includes(`data-rate="${backendQueue.rateLimits?.maxDispatchesPerSecond}"`));
    assert.ok(whatsapp.includes(`data-concurrent="${backendQueue.rateLimits?.maxConcurrentDispatches}"`));
    assert.ok(whatsapp.includes(`data-max-attempts="${declared.retryConfig?.maxAttempts ?? 100}"`));
  });

  test('pause and resume act on the backend and are audited; without the CSRF token nothing changes', async () => {
    const before = (await audits()).length;
    const refused = await post(app, browser, '/admin/queues/blog/pause', {}, false);
    assert.equal(refused.statusCode, 403);
    assert.equal((await clients.tasks.getQueue({ name: queueName('blog') }))[0].state, 'RUNNING');
    const wrong = await post(app, { ...browser, csrf: 'x'.repeat(browser.csrf.length) }, '/admin/queues/blog/pause');
    assert.equal(wrong.statusCode, 403);
    assert.equal((await clients.tasks.getQueue({ name: queueName('blog') }))[0].state, 'RUNNING');
    assert.equal((await audits()).length, before);

    const paused = await post(app, browser, '/admin/queues/blog/pause');
    assert.equal(paused.statusCode, 303);
    assert.equal(paused.headers.location, '/admin/queues');
    assert.equal((await clients.tasks.getQueue({ name: queueName('blog') }))[0].state, 'PAUSED');
    const page = await get(app, browser, '/admin/queues');
    assert.match(row(page.body, 'data-queue', 'blog'), /data-state="PAUSED"/);
    assert.match(row(page.body, 'data-queue', 'blog'), /<button type="submit">Resume<\/button>/);

    const resumed = await post(app, browser, '/admin/queues/blog/resume');
    assert.equal(resumed.statusCode, 303);
    assert.equal((await clients.tasks.getQueue({ name: queueName('blog') }))[0].state, 'RUNNING');
    const trail = (await audits()).slice(before);
    assert.deepEqual(
      trail.map((e) => [e.action, e.actor, e.target]),
      [
        ['queue.pause', 'loopback', 'blog'],
        ['queue.resume', 'loopback', 'blog'],
      ],
    );

    assert.equal((await post(app, browser, '/admin/queues/not-a-queue/pause')).statusCode, 404);
  });

  test('purge needs its confirmation page, deletes the tasks waiting, and is audited', async () => {
    await addTasks('credits', 2);
    const before = (await audits()).length;
    const confirm = await get(app, browser, '/admin/queues/credits/purge');
    assert.equal(confirm.statusCode, 200);
    assert.match(confirm.body, /data-tasks-waiting="2"/);
    assert.match(confirm.body, /name="confirm" value="credits"/);

    // A POST that skipped the confirmation, and one without the CSRF token: nothing purged.
    const skipped = await post(app, browser, '/admin/queues/credits/purge');
    assert.equal(skipped.statusCode, 303);
    assert.equal(skipped.headers.location, '/admin/queues/credits/purge');
    const noCsrf = await post(app, browser, '/admin/queues/credits/purge', { confirm: 'credits' }, false);
    assert.equal(noCsrf.statusCode, 403);
    const [stillThere] = await clients.tasks.listTasks({ parent: queueName('credits') });
    assert.equal(stillThere.length, 2);
    assert.equal((await audits()).length, before);

    const purged = await post(app, browser, '/admin/queues/credits/purge', { confirm: 'credits' });
    assert.equal(purged.statusCode, 303);
    const [left] = await clients.tasks.listTasks({ parent: queueName('credits') });
    assert.equal(left.length, 0);
    const [event] = (await audits()).slice(before);
    assert.equal(event?.action, 'queue.purge');
    assert.equal(event?.target, 'credits');
    assert.equal(event?.detail.tasksBefore, 2);
    const page = await get(app, browser, '/admin/queues');
    assert.equal(waiting(row(page.body, 'data-queue', 'credits')), '0');
    assert.match(page.body, /Queue credits purged \(2 tasks were waiting\)/);
  });

  test('the schedules page shows each job: cron, time zone, next run, state, and its last outcome', async () => {
    const res = await get(app, browser, '/admin/schedules');
    assert.equal(res.statusCode, 200);
    for (const s of registry.schedules) {
      const r = row(res.body, 'data-schedule', s.name);
      assert.match(r, /data-state="ENABLED"/);
      assert.ok(r.includes(`<code>${s.cron}</code>`), `${s.name}: cron`);
      assert.ok(r.includes(`<td>${s.timeZone ?? 'UTC'}</td>`), `${s.name}: time zone`);
      assert.match(r, /never ran/);
      const [job] = await clients.scheduler.getJob({
        name: clients.scheduler.jobPath('dev', 'here', `${JOB_PREFIX}${s.name}`),
      });
      const next = new Date(Number(job.scheduleTime?.seconds) * 1000).toISOString();
      assert.ok(r.includes(`datetime="${next}"`), `${s.name}: next run ${next}`);
    }
  });

  test('run now pushes the job; pause and resume change its state; each is audited, none without CSRF', async () => {
    const before = (await audits()).length;
    const jobName = clients.scheduler.jobPath('dev', 'here', `${JOB_PREFIX}health-check`);
    for (const action of ['run', 'pause', 'resume']) {
      const refused = await post(app, browser, `/admin/schedules/health-check/${action}`, {}, false);
      assert.equal(refused.statusCode, 403);
    }
    await emulator.tick();
    assert.equal(target.requests.filter((r) => r.path === '/tasks/health.check').length, 0, 'nothing was run');
    assert.equal((await clients.scheduler.getJob({ name: jobName }))[0].state, 'ENABLED');

    const ran = await post(app, browser, '/admin/schedules/health-check/run');
    assert.equal(ran.statusCode, 303);
    await emulator.tick();
    assert.equal(target.requests.filter((r) => r.path === '/tasks/health.check').length, 1);
    const page = await get(app, browser, '/admin/schedules');
    const r = row(page.body, 'data-schedule', 'health-check');
    assert.match(r, /data-outcome="succeeded"/);
    assert.ok(r.includes(`datetime="${new Date(clock.now()).toISOString()}"`), 'last run time');

    assert.equal((await post(app, browser, '/admin/schedules/health-check/pause')).statusCode, 303);
    assert.equal((await clients.scheduler.getJob({ name: jobName }))[0].state, 'PAUSED');
    assert.match(row((await get(app, browser, '/admin/schedules')).body, 'data-schedule', 'health-check'), /Resume/);
    assert.equal((await post(app, browser, '/admin/schedules/health-check/resume')).statusCode, 303);
    assert.equal((await clients.scheduler.getJob({ name: jobName }))[0].state, 'ENABLED');
    assert.deepEqual(
      (await audits()).slice(before).map((e) => [e.action, e.target]),
      [
        ['schedule.run_now', 'health-check'],
        ['schedule.pause', 'health-check'],
        ['schedule.resume', 'health-check'],
      ],
    );
    assert.equal((await post(app, browser, '/admin/schedules/nope/run')).statusCode, 404);
  });
});

/**
 * Google's REST surface where a call fails: 403 PERMISSION_DENIED for every Cloud Tasks call (with a
 * hostile message), and a job whose last attempt failed with a hostile message.
 */
async function startFailingGoogle() {
  const hostile = '<script>alert("x")</script>';
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    res.setHeader('content-type', 'application/json');
    if (url.startsWith('/v1/') && url.includes('/jobs/')) {
      res.end(
        JSON.stringify({
          name: url.split('?')[0]!.slice(4),
          schedule: '*/5 * * * *',
          timeZone: 'UTC',
          state: 'ENABLED',
          lastAttemptTime: '2026-03-01T11:55:00Z',
          scheduleTime: '2026-03-01T12:05:00Z',
          status: { code: 13, message: hostile },
        }),
      );
      return;
    }
    res.statusCode = 403;
    res.end(JSON.stringify({ error: { code: 403, message: hostile, status: 'PERMISSION_DENIED' } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    // The official clients over REST to this server, with no credentials to fetch.
    restOptions: {
      apiEndpoint: '127.0.0.1',
      port,
      fallback: 'rest' as const,
      protocol: 'http',
      authClient: new PassThroughClient(),
      projectId: 'dev',
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe('dashboard: a backend that fails its calls', () => {
  test('the stats call failing shows "unknown" tasks waiting; the state still comes from v2', async (t) => {
    const { emulator } = await startTestEmulator();
    const google = await startFailingGoogle();
    const clients = createCloudClients({ emulator: emulator.grpcAddress, projectId: 'dev' });
    const { restOptions } = google;
    const failingBeta = new v2beta3.CloudTasksClient(restOptions);
    const target = { projectId: 'dev', location: 'here' } as EnqueueTarget;
    await syncQueues(clients.tasks, target, [...registry.queues.values()], { dryRun: false });
    const backend = { clients: { ...clients, tasksBeta: failingBeta }, target } as unknown as TaskBackend;
    const app = await buildTestApp({ backend });
    t.after(async () => {
      await app.close();
      await failingBeta.close();
      await clients.close();
      await google.close();
      await emulator.close();
    });
    const browser = await openDashboard(app);
    const page = await get(app, browser, '/admin/queues');
    assert.equal(page.statusCode, 200);
    const r = row(page.body, 'data-queue', 'whatsapp');
    assert.match(r, /data-state="RUNNING"/);
    assert.equal(waiting(r), 'unknown');
  });

  test('what the backend says is escaped on both pages', async (t) => {
    const google = await startFailingGoogle();
    const { restOptions } = google;
    const clients = {
      tasks: new CloudTasksClient(restOptions),
      tasksBeta: new v2beta3.CloudTasksClient(restOptions),
      scheduler: new CloudSchedulerClient(restOptions),
    };
    const target = { projectId: 'dev', location: 'here' } as EnqueueTarget;
    const app = await buildTestApp({ backend: { clients, target } as unknown as TaskBackend });
    t.after(async () => {
      await app.close();
      await Promise.all([clients.tasks.close(), clients.tasksBeta.close(), clients.scheduler.close()]);
      await google.close();
    });
    const browser = await openDashboard(app);
    for (const url of ['/admin/queues', '/admin/schedules']) {
      const page = await get(app, browser, url);
      assert.equal(page.statusCode, 200);
      assert.ok(!page.body.includes('<script>'), `${url}: no markup from the backend`);
      assert.ok(page.body.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'), `${url}: shown as text`);
    }
  });
});
