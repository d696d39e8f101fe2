// Retry arithmetic on the test clock: the doubling-then-linear backoff of queue.proto's worked
// example, and the stop rule (max attempts AND max retry duration both met).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backoffDelayMs } from '../src/index.ts';
import { collect, PARENT, rejection, startTarget, startTestEmulator, tasksClient } from './helpers.ts';

describe('backoff formula', () => {
  test('min 10 s, max 300 s, 3 doublings: 10, 20, 40, 80, 160, 240, 300, 300', () => {
    const config = { minBackoffMs: 10_000, maxBackoffMs: 300_000, maxDoublings: 3 };
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelayMs(n, config) / 1000),
      [10, 20, 40, 80, 160, 240, 300, 300],
    );
  });

  test('the defaults (0.1 s, 3600 s, 16) double up to 3276.8 s, then cap at 3600 s', () => {
    const config = { minBackoffMs: 100, maxBackoffMs: 3_600_000, maxDoublings: 16 };
    assert.equal(backoffDelayMs(1, config), 100);
    assert.equal(backoffDelayMs(16, config), 3_276_800);
    assert.equal(backoffDelayMs(17, config), 3_600_000);
  });
});

describe('retries on the test clock', () => {
  test('retries are scheduled 10, 20, 40, 80, 160, 240, 300 s after each failure', async (t) => {
    const { emulator, clock } = await startTestEmulator();
    const target = await startTarget(() => 500);
    const client = tasksClient(emulator, 'grpc');
    t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
    const queue = `${PARENT}/queues/backoff`;
    await client.createQueue({
      parent: PARENT,
      queue: {
        name: queue,
        retryConfig: { maxAttempts: 8, minBackoff: { seconds: 10 }, maxBackoff: { seconds: 300 }, maxDoublings: 3 },
      },
    });
    const [task] = await client.createTask({ parent: queue, task: { httpRequest: { url: target.url } } });
    const retries = collect(emulator, 'task:retry-scheduled');
    const failed = collect(emulator, 'task:failed');
    const failedAt: number[] = [];
    for (let attempt = 1; attempt <= 8; attempt++) {
      failedAt.push(clock.now());
      await emulator.tick();
      assert.equal(target.requests.length, attempt);
      if (attempt < 8) {
        const [listed] = await client.getTask({ name: task.name });
        assert.equal(
          Number(listed.scheduleTime?.seconds) * 1000,
          retries[attempt - 1]!.retryAt,
          'scheduleTime is the retry time',
        );
        // One millisecond early nothing leaves; on time it does.
        clock.set(retries[attempt - 1]!.retryAt - 1);
        await emulator.tick();
        assert.equal(target.requests.length, attempt);
        clock.advance(1);
      }
    }
    assert.deepEqual(
      retries.map((r, i) => (r.retryAt - failedAt[i]!) / 1000),
      [10, 20, 40, 80, 160, 240, 300],
    );
    assert.deepEqual(
      retries.map((r) => r.attempt),
      [1, 2, 3, 4, 5, 6, 7],
    );
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.attempt, 8);
  });

  for (const transport of ['grpc', 'rest'] as const) {
    test(`maxAttempts 3 ends the task after the third attempt (${transport})`, async (t) => {
      const { emulator, clock } = await startTestEmulator();
      const target = await startTarget(() => 404);
      const client = tasksClient(emulator, transport);
      t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
      const queue = `${PARENT}/queues/three`;
      await client.createQueue({ parent: PARENT, queue: { name: queue, retryConfig: { maxAttempts: 3 } } });
      const name = `${queue}/tasks/thrice`;
      await client.createTask({ parent: queue, task: { name, httpRequest: { url: target.url } } });
      const failed = emulator.events.waitFor('task:failed');
      const retries = collect(emulator, 'task:retry-scheduled');
      for (let i = 0; i < 3; i++) {
        await emulator.tick();
        if (retries[i]) clock.set(retries[i]!.retryAt);
      }
      assert.deepEqual(await failed, { task: name, queue, attempt: 3, status: 404 });
      assert.equal(target.requests.length, 3);
      assert.deepEqual(
        target.requests.map((r) => r.headers['X-CloudTasks-TaskRetryCount']),
        ['0', '1', '2'],
      );
      const gone = await rejection(client.getTask({ name }));
      assert.equal(gone.code, 5);
      assert.match(gone.details, /The task no longer exists, though a task with this name existed recently/);
      // A permanently failed task cannot be run again.
      assert.equal((await rejection(client.runTask({ name }))).code, 5);
    });
  }

  test('retrying stops only when max attempts and max retry duration are both met', async (t) => {
    const { emulator, clock } = await startTestEmulator();
    const target = await startTarget(() => 500);
    const client = tasksClient(emulator, 'grpc');
    t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
    const queue = `${PARENT}/queues/both`;
    await client.createQueue({
      parent: PARENT,
      queue: {
        name: queue,
        retryConfig: {
          maxAttempts: 2,
          maxRetryDuration: { seconds: 60 },
          minBackoff: { seconds: 10 },
          maxBackoff: { seconds: 10 },
        },
      },
    });
    await client.createTask({ parent: queue, task: { httpRequest: { url: target.url } } });
    const failed = emulator.events.waitFor('task:failed');
    for (let i = 0; i < 10; i++) {
      await emulator.tick();
      clock.advance(10_000);
    }
    // Attempts at 0, 10, …, 60 s: two attempts were reached at 10 s, but 60 s of retrying only at 60 s.
    assert.equal((await failed).attempt, 7);
    assert.equal(target.requests.length, 7);
  });
});
