// A queue's RateLimits on the test clock: the token bucket spreads due tasks at
// maxDispatchesPerSecond, and maxConcurrentDispatches caps requests in flight.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { collect, PARENT, START, startTarget, startTestEmulator, tasksClient } from './helpers.ts';

describe('rate limits', () => {
  test('5 dispatches per second send 50 due tasks over about 10 s of clock time', async (t) => {
    const { emulator, clock } = await startTestEmulator();
    const target = await startTarget();
    const client = tasksClient(emulator, 'grpc');
    t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
    const queue = `${PARENT}/queues/five`;
    const [created] = await client.createQueue({
      parent: PARENT,
      queue: { name: queue, rateLimits: { maxDispatchesPerSecond: 5 } },
    });
    assert.equal(created.rateLimits?.maxBurstSize, 1, 'the burst Cloud Tasks would pick for 5/s');
    await Promise.all(
      Array.from({ length: 50 }, () =>
        client.createTask({ parent: queue, task: { httpRequest: { url: target.url } } }),
      ),
    );
    const dispatched = collect(emulator, 'task:dispatched');
    while (dispatched.length < 50 && clock.now() < START + 60_000) {
      await emulator.tick();
      clock.advance(50);
    }
    assert.equal(target.requests.length, 50);
    const times = dispatched.map((d) => d.dispatchTime - START);
    assert.equal(times[0], 0);
    assert.equal(times[49], 9_800, 'one every 200 ms after the first');
    for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= 200, `gap before dispatch ${i}`);
    // No one-second window holds more than the rate allows.
    for (const start of times) assert.ok(times.filter((x) => x >= start && x < start + 1000).length <= 5);
  });

  test('the default 500/s lets a burst of 100 go at once, then refills', async (t) => {
    const { emulator, clock } = await startTestEmulator();
    const target = await startTarget();
    const client = tasksClient(emulator, 'rest');
    t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
    const queue = `${PARENT}/queues/default-rate`;
    await client.createQueue({ parent: PARENT, queue: { name: queue } });
    for (let i = 0; i < 150; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, () =>
          client.createTask({ parent: queue, task: { httpRequest: { url: target.url } } }),
        ),
      );
    }
    await emulator.tick();
    assert.equal(target.requests.length, 100);
    clock.advance(100); // 50 more tokens at 500/s
    await emulator.tick();
    assert.equal(target.requests.length, 150);
  });

  test('maxConcurrentDispatches 2 never has more than 2 requests in flight', async (t) => {
    const { emulator } = await startTestEmulator();
    // The target takes a few milliseconds per request, so requests would pile up if the cap were not kept.
    const target = await startTarget(() => new Promise((resolve) => setTimeout(() => resolve(200), 3)));
    const client = tasksClient(emulator, 'grpc');
    t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
    const queue = `${PARENT}/queues/two`;
    await client.createQueue({ parent: PARENT, queue: { name: queue, rateLimits: { maxConcurrentDispatches: 2 } } });
    await Promise.all(
      Array.from({ length: 16 }, () =>
        client.createTask({ parent: queue, task: { httpRequest: { url: target.url } } }),
      ),
    );
    const succeeded = collect(emulator, 'task:succeeded');
    await emulator.tick(); // keeps the two slots full until the queue is empty
    assert.equal(succeeded.length, 16);
    assert.equal(target.requests.length, 16);
    assert.equal(target.maxInFlight, 2);
  });

  test('due tasks leave in schedule-time order, and RunTask is not held by the token bucket', async (t) => {
    const { emulator, clock } = await startTestEmulator();
    const target = await startTarget();
    const client = tasksClient(emulator, 'rest');
    t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
    const queue = `${PARENT}/queues/one-per-second`;
    await client.createQueue({ parent: PARENT, queue: { name: queue, rateLimits: { maxDispatchesPerSecond: 1 } } });
    const at = (s: number) => ({ seconds: START / 1000 + s });
    for (const [id, s] of [
      ['third', 3],
      ['first', 1],
      ['second', 2],
      ['fourth', 3],
    ] as const) {
      await client.createTask({
        parent: queue,
        task: { name: `${queue}/tasks/${id}`, httpRequest: { url: target.url }, scheduleTime: at(s) },
      });
    }
    await client.createTask({
      parent: queue,
      task: { name: `${queue}/tasks/urgent`, httpRequest: { url: target.url } },
    });
    await emulator.tick(); // "urgent" is due now and takes the only token
    clock.set(START + 3000);
    await emulator.tick(); // a second of tokens has refilled: one more leaves
    assert.deepEqual(
      target.requests.map((r) => r.headers['X-CloudTasks-TaskName']),
      ['urgent', 'first'],
    );
    await client.runTask({ name: `${queue}/tasks/fourth` }); // no token needed
    await emulator.tick();
    for (let i = 1; i <= 3; i++) {
      clock.set(START + 3000 + i * 1000);
      await emulator.tick();
    }
    assert.deepEqual(
      target.requests.map((r) => r.headers['X-CloudTasks-TaskName']),
      ['urgent', 'first', 'fourth', 'second', 'third'],
    );
  });
});
