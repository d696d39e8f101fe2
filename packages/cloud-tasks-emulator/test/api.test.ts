// The Cloud Tasks API through the official client, over both transports: queue CRUD (UpdateQueue
// as an upsert), task CRUD, named-task de-duplication with its tombstone window, and the error
// codes and messages recorded from the real service (conformance/cases/ holds them with their sources).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CloudTasksClient } from '@google-cloud/tasks';
import type { Emulator } from '../src/index.ts';
import {
  PARENT,
  rejection,
  startTarget,
  startTestEmulator,
  type TestClock,
  TRANSPORTS,
  tasksClient,
} from './helpers.ts';

const QUEUE_MISSING =
  'Queue does not exist. If you just created the queue, wait at least a minute for the queue to initialize.';
const NOT_FOUND = 'Requested entity was not found.';

const INVALID_ARGUMENT = 3;
const CODE_NOT_FOUND = 5;
const ALREADY_EXISTS = 6;
const PERMISSION_DENIED = 7;
const FAILED_PRECONDITION = 9;
const UNIMPLEMENTED = 12;

async function setup(
  t: { after: (fn: () => Promise<unknown>) => void },
  transport: 'grpc' | 'rest',
  options = {},
): Promise<{ emulator: Emulator; clock: TestClock; client: CloudTasksClient }> {
  const { emulator, clock } = await startTestEmulator(options);
  const client = tasksClient(emulator, transport);
  t.after(() => Promise.all([client.close(), emulator.close()]));
  return { emulator, clock, client };
}

async function expectError(promise: Promise<unknown>, code: number, message: string | RegExp): Promise<void> {
  const { code: actual, details } = await rejection(promise);
  assert.equal(actual, code, `code for "${details}"`);
  if (typeof message === 'string') assert.equal(details, message);
  else assert.match(details, message);
}

for (const transport of TRANSPORTS) {
  describe(`queues, over ${transport}`, () => {
    test('create fills the defaults; get, list (sorted, paged), pause, resume, delete', async (t) => {
      const { client } = await setup(t, transport);
      const [q] = await client.createQueue({ parent: PARENT, queue: { name: `${PARENT}/queues/b-queue` } });
      assert.equal(q.state, 'RUNNING');
      assert.deepEqual(
        {
          rate: q.rateLimits?.maxDispatchesPerSecond,
          burst: q.rateLimits?.maxBurstSize,
          concurrent: q.rateLimits?.maxConcurrentDispatches,
          attempts: q.retryConfig?.maxAttempts,
          minBackoffNanos: q.retryConfig?.minBackoff?.nanos,
          maxBackoff: Number(q.retryConfig?.maxBackoff?.seconds),
          doublings: q.retryConfig?.maxDoublings,
        },
        {
          rate: 500,
          burst: 100,
          concurrent: 1000,
          attempts: 100,
          minBackoffNanos: 100_000_000,
          maxBackoff: 3600,
          doublings: 16,
        },
      );
      await client.createQueue({ parent: PARENT, queue: { name: `${PARENT}/queues/a-queue` } });
      await client.createQueue({ parent: PARENT, queue: { name: `${PARENT}/queues/c-queue` } });
      await client.createQueue({
        parent: 'projects/dev/locations/elsewhere',
        queue: { name: 'projects/dev/locations/elsewhere/queues/x' },
      });
      const [all] = await client.listQueues({ parent: PARENT });
      assert.deepEqual(
        all.map((x) => x.name),
        ['a-queue', 'b-queue', 'c-queue'].map((id) => `${PARENT}/queues/${id}`),
      );
      const [page1, next] = await client.listQueues({ parent: PARENT, pageSize: 2 }, { autoPaginate: false });
      assert.equal(page1.length, 2);
      assert.ok(next?.pageToken);
      const [page2, none] = await client.listQueues(
        { parent: PARENT, pageSize: 2, pageToken: next.pageToken },
        { autoPaginate: false },
      );
      assert.deepEqual(
        page2.map((x) => x.name),
        [`${PARENT}/queues/c-queue`],
      );
      assert.equal(none, null);

      const [paused] = await client.pauseQueue({ name: q.name });
      assert.equal(paused.state, 'PAUSED');
      const [onlyPaused] = await client.listQueues({ parent: PARENT, filter: 'state: PAUSED' });
      assert.deepEqual(
        onlyPaused.map((x) => x.name),
        [q.name],
      );
      const [resumed] = await client.resumeQueue({ name: q.name });
      assert.equal(resumed.state, 'RUNNING');
      await client.deleteQueue({ name: q.name });
      await expectError(client.getQueue({ name: q.name }), CODE_NOT_FOUND, QUEUE_MISSING);
    });

    test('UpdateQueue creates a missing queue, applies only the masked fields, and never changes the state', async (t) => {
      const { client } = await setup(t, transport);
      const name = `${PARENT}/queues/upsert`;
      const [created] = await client.updateQueue({
        queue: { name, rateLimits: { maxDispatchesPerSecond: 20 }, retryConfig: { maxAttempts: 5 } },
      });
      assert.equal(created.rateLimits?.maxDispatchesPerSecond, 20);
      assert.equal(created.retryConfig?.maxAttempts, 5);
      await client.pauseQueue({ name });
      const [masked] = await client.updateQueue({
        queue: { name, rateLimits: { maxDispatchesPerSecond: 7 }, retryConfig: { maxAttempts: 99 } },
        updateMask: { paths: ['rate_limits.max_dispatches_per_second'] },
      });
      assert.equal(masked.rateLimits?.maxDispatchesPerSecond, 7);
      assert.equal(masked.retryConfig?.maxAttempts, 5, 'outside the mask: unchanged');
      assert.equal(masked.state, 'PAUSED');
      const [got] = await client.getQueue({ name });
      assert.equal(got.rateLimits?.maxDispatchesPerSecond, 7);
      await expectError(
        client.updateQueue({ queue: { name }, updateMask: { paths: ['no_such_field'] } }),
        INVALID_ARGUMENT,
        /update_mask/,
      );
    });

    test('the recorded queue errors', async (t) => {
      const { client } = await setup(t, transport, { queueTombstoneMs: 7 * 24 * 3_600_000 });
      const name = `${PARENT}/queues/q`;
      await client.createQueue({ parent: PARENT, queue: { name } });
      await expectError(
        client.createQueue({ parent: PARENT, queue: { name } }),
        ALREADY_EXISTS,
        'Queue already exists',
      );
      await expectError(
        client.createQueue({ parent: PARENT, queue: { name: `${PARENT}/queues/not valid!` } }),
        INVALID_ARGUMENT,
        'Queue name must be formatted: "projects/<PROJECT_ID>/locations/<LOCATION_ID>/queues/<QUEUE_ID>".',
      );
      if (transport === 'grpc') {
        // Over REST the client cannot even build the URL for such a parent.
        await expectError(
          client.createQueue({ parent: 'not-a-valid-parent', queue: { name } }),
          PERMISSION_DENIED,
          'Permission denied on resource project not-a-valid-parent.',
        );
      }
      await expectError(client.deleteQueue({ name: `${PARENT}/queues/missing` }), CODE_NOT_FOUND, NOT_FOUND);
      const missing = { name: `${PARENT}/queues/missing` };
      await expectError(client.getQueue(missing), CODE_NOT_FOUND, QUEUE_MISSING);
      await expectError(client.pauseQueue(missing), CODE_NOT_FOUND, QUEUE_MISSING);
      await expectError(client.resumeQueue(missing), CODE_NOT_FOUND, QUEUE_MISSING);
      await expectError(client.purgeQueue(missing), CODE_NOT_FOUND, QUEUE_MISSING);
      await expectError(
        client.createQueue({
          parent: PARENT,
          queue: { name: `${PARENT}/queues/fast`, rateLimits: { maxDispatchesPerSecond: 501 } },
        }),
        INVALID_ARGUMENT,
        'RateLimits.maxDispatchesPerSecond must be less than or equal to 500.',
      );
      await expectError(
        client.createQueue({
          parent: PARENT,
          queue: { name: `${PARENT}/queues/neg`, retryConfig: { maxAttempts: -2 } },
        }),
        INVALID_ARGUMENT,
        'RetryConfig.maxAttempts must be greater or equal to -1.',
      );
      await client.deleteQueue({ name });
      await expectError(
        client.createQueue({ parent: PARENT, queue: { name } }),
        FAILED_PRECONDITION,
        'The queue cannot be created because a queue with this name existed too recently.',
      );
      await expectError(client.getQueue({ name }), CODE_NOT_FOUND, QUEUE_MISSING);
      await expectError(
        client.createTask({ parent: name, task: { httpRequest: { url: 'http://127.0.0.1:1/' } } }),
        CODE_NOT_FOUND,
        QUEUE_MISSING,
      );
    });

    test('PurgeQueue deletes the tasks created before it and sets purgeTime', async (t) => {
      const { emulator, client, clock } = await setup(t, transport);
      const target = await startTarget();
      t.after(() => target.close());
      const name = `${PARENT}/queues/purged`;
      await client.createQueue({ parent: PARENT, queue: { name } });
      for (let i = 0; i < 3; i++) await client.createTask({ parent: name, task: { httpRequest: { url: target.url } } });
      const deleted: string[] = [];
      emulator.events.on('task:deleted', (e) => deleted.push(e.reason));
      clock.advance(1000);
      const [purged] = await client.purgeQueue({ name });
      assert.equal(Number(purged.purgeTime?.seconds) * 1000, clock.now());
      assert.deepEqual(deleted, ['purged', 'purged', 'purged']);
      const [left] = await client.listTasks({ parent: name });
      assert.equal(left.length, 0);
      await emulator.tick();
      assert.equal(target.requests.length, 0);
    });
  });

  describe(`tasks, over ${transport}`, () => {
    test('create, get (BASIC and FULL views), list, delete', async (t) => {
      const { client } = await setup(t, transport);
      const queue = `${PARENT}/queues/crud`;
      await client.createQueue({ parent: PARENT, queue: { name: queue } });
      const [created] = await client.createTask({
        parent: queue,
        task: {
          httpRequest: {
            url: 'https://example.test/work',
            headers: { 'X-Mixed-Case': 'preserve-me', 'content-type': 'application/json', Host: 'dropped' },
            body: Buffer.from('{"a":1}'),
          },
        },
      });
      assert.match(created.name!, new RegExp(`^${queue}/tasks/\\d+$`), 'a generated ID');
      assert.equal(created.view, 'BASIC');
      assert.equal(created.httpRequest?.httpMethod, 'POST', 'the default method');
      assert.deepEqual(created.httpRequest?.headers, {
        'X-Mixed-Case': 'preserve-me',
        'content-type': 'application/json',
        'User-Agent': 'Google-Cloud-Tasks',
      });
      assert.equal(created.httpRequest?.body?.length ?? 0, 0, 'BASIC omits the body');
      assert.equal(Number(created.dispatchDeadline?.seconds), 600, 'the 10 min default deadline');
      const [full] = await client.getTask({ name: created.name, responseView: 'FULL' });
      assert.equal(Buffer.from(full.httpRequest!.body as Uint8Array).toString(), '{"a":1}');
      assert.equal(full.view, 'FULL');
      await client.createTask({
        parent: queue,
        task: { name: `${queue}/tasks/named`, httpRequest: { url: 'http://x.test/' } },
      });
      const [listed] = await client.listTasks({ parent: queue });
      assert.equal(listed.length, 2);
      await client.deleteTask({ name: created.name });
      // A generated name is tombstoned too, as Cloud Tasks does.
      await expectError(client.getTask({ name: created.name }), CODE_NOT_FOUND, /^The task no longer exists/);
      await expectError(client.deleteTask({ name: `${queue}/tasks/missing` }), CODE_NOT_FOUND, NOT_FOUND);
      await expectError(client.runTask({ name: `${queue}/tasks/missing` }), CODE_NOT_FOUND, NOT_FOUND);
      await client.deleteTask({ name: `${queue}/tasks/named` });
      await expectError(
        client.getTask({ name: `${queue}/tasks/named` }),
        CODE_NOT_FOUND,
        'The task no longer exists, though a task with this name existed recently. The task either successfully completed or was deleted.',
      );
    });

    test('a named task twice is ALREADY_EXISTS; again within the tombstone window after it ran; free after it', async (t) => {
      const { emulator, client, clock } = await setup(t, transport);
      const target = await startTarget();
      t.after(() => target.close());
      const queue = `${PARENT}/queues/dedup`;
      await client.createQueue({ parent: PARENT, queue: { name: queue } });
      const task = { name: `${queue}/tasks/order-42`, httpRequest: { url: target.url } };
      await client.createTask({ parent: queue, task });
      await expectError(client.createTask({ parent: queue, task }), ALREADY_EXISTS, 'Requested entity already exists');
      await emulator.tick();
      assert.equal(target.requests.length, 1);
      clock.advance(59 * 60_000);
      await expectError(
        client.createTask({ parent: queue, task }),
        ALREADY_EXISTS,
        /^The task cannot be created because a task with this name existed too recently\. For more information about task de-duplication see /,
      );
      clock.advance(60_000); // the 1 h window has passed
      const [again] = await client.createTask({ parent: queue, task });
      assert.equal(again.name, task.name);
    });

    test('the recorded task errors, and validation of what a task may carry', async (t) => {
      const { client, clock } = await setup(t, transport);
      const queue = `${PARENT}/queues/checks`;
      await client.createQueue({ parent: PARENT, queue: { name: queue } });
      const http = { url: 'http://127.0.0.1:1/' };
      await expectError(
        client.createTask({ parent: queue, task: { name: `${queue}/tasks/not a valid id`, httpRequest: http } }),
        INVALID_ARGUMENT,
        'Task ID "not a valid id" can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), or underscores (_). Task ID must between 1 and 500 characters.',
      );
      await expectError(
        client.createTask({ parent: queue, task: { name: `${queue}-other/tasks/x`, httpRequest: http } }),
        INVALID_ARGUMENT,
        `The queue name from request ('${queue}') must be the same as the queue name in the named task ('${queue}-other').`,
      );
      await expectError(
        client.createTask({ parent: queue, task: { httpRequest: { url: 'ftp://example.test/' } } }),
        INVALID_ARGUMENT,
        "HttpTarget.url must start with 'http://' or 'https://'.",
      );
      await expectError(
        client.createTask({
          parent: queue,
          task: { httpRequest: { url: 'http://x.test/', httpMethod: 'GET', body: Buffer.from('x') } },
        }),
        INVALID_ARGUMENT,
        /body can be set only for POST, PUT or PATCH/,
      );
      await expectError(
        client.createTask({ parent: queue, task: { httpRequest: http, dispatchDeadline: { seconds: 10 } } }),
        INVALID_ARGUMENT,
        'Task.dispatchDeadline must be between [15s, 30m].',
      );
      await expectError(
        client.createTask({ parent: queue, task: { httpRequest: http, dispatchDeadline: { seconds: 1801 } } }),
        INVALID_ARGUMENT,
        'Task.dispatchDeadline must be between [15s, 30m].',
      );
      await expectError(
        client.createTask({
          parent: queue,
          task: { httpRequest: http, scheduleTime: { seconds: Math.floor(clock.now() / 1000) + 31 * 86_400 } },
        }),
        INVALID_ARGUMENT,
        /^The Task\.scheduleTime, 2026-01-31T16:00:00-08:00, is too far in the future\. Schedule time must be no more than 720h in the future\.$/,
      );
      await expectError(
        client.createTask({ parent: queue, task: { httpRequest: { ...http, body: Buffer.alloc(1024 * 1024 + 1) } } }),
        INVALID_ARGUMENT,
        'Task size too large',
      );
      await expectError(
        client.createTask({ parent: queue, task: { appEngineHttpRequest: { relativeUri: '/x' } } }),
        UNIMPLEMENTED,
        /App Engine/,
      );
      // Within limits: a schedule time 30 days ahead, and one in the past (which means now).
      const [later] = await client.createTask({
        parent: queue,
        task: { httpRequest: http, scheduleTime: { seconds: Math.floor(clock.now() / 1000) + 30 * 86_400 } },
      });
      assert.equal(Number(later.scheduleTime?.seconds), clock.now() / 1000 + 30 * 86_400);
      const [past] = await client.createTask({
        parent: queue,
        task: { httpRequest: http, scheduleTime: { seconds: 1 } },
      });
      assert.equal(Number(past.scheduleTime?.seconds), clock.now() / 1000);
    });

    test('IAM policies are stored per queue and every permission tested is granted', async (t) => {
      const { client } = await setup(t, transport);
      const queue = `${PARENT}/queues/iam`;
      await client.createQueue({ parent: PARENT, queue: { name: queue } });
      const binding = {
        role: 'roles/cloudtasks.enqueuer',
        members: ['serviceAccount:app@dev.iam.gserviceaccount.com'],
      };
      await client.setIamPolicy({ resource: queue, policy: { bindings: [binding] } });
      const [policy] = await client.getIamPolicy({ resource: queue });
      assert.deepEqual(
        policy.bindings?.map((b) => [b.role, b.members]),
        [[binding.role, binding.members]],
      );
      const [granted] = await client.testIamPermissions({ resource: queue, permissions: ['cloudtasks.tasks.create'] });
      assert.deepEqual(granted.permissions, ['cloudtasks.tasks.create']);
      await expectError(client.getIamPolicy({ resource: `${PARENT}/queues/none` }), CODE_NOT_FOUND, QUEUE_MISSING);
    });
  });
}

describe('REST errors', () => {
  test('the JSON error body carries the HTTP status and the canonical status name', async (t) => {
    const { emulator } = await startTestEmulator();
    t.after(() => emulator.close());
    const response = await fetch(`${emulator.httpUrl}/v2/${PARENT}/queues/nope`);
    assert.equal(response.status, 404);
    assert.deepEqual(await response.json(), { error: { code: 404, message: QUEUE_MISSING, status: 'NOT_FOUND' } });
    const created = await fetch(`${emulator.httpUrl}/v2/${PARENT}/queues`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: `${PARENT}/queues/curl` }),
    });
    assert.equal(created.status, 200);
    const dup = await fetch(`${emulator.httpUrl}/v2/${PARENT}/queues`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: `${PARENT}/queues/curl` }),
    });
    assert.equal(dup.status, 409);
    assert.equal(((await dup.json()) as { error: { status: string } }).error.status, 'ALREADY_EXISTS');
  });
});
