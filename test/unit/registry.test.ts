import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { z } from 'zod';
import { registry } from '../../src/task-registry.ts';
import { defineTask } from '../../src/tasks/define-task.ts';
import { createRegistry } from '../../src/tasks/registry.ts';

const task = (name: string, queue = 'q') =>
  defineTask({ name, queue, payload: z.object({}), handler: async () => ({}) });

describe('task registry', () => {
  test('the service registry is consistent and schedules health.check every 5 minutes', () => {
    assert.ok(registry.tasks.has('health.check'));
    const health = registry.schedules.find((s) => s.task === 'health.check');
    assert.equal(health?.cron, '*/5 * * * *');
    for (const q of ['whatsapp', 'scraper', 'blog', 'credits', 'maintenance']) assert.ok(registry.queues.has(q), q);
  });

  test('refuses a task on an undeclared queue, a name used twice, a schedule of an unknown task', () => {
    assert.throws(
      () => createRegistry({ tasks: [task('a.b', 'nope')], queues: [{ name: 'q' }], schedules: [] }),
      /queue "nope"/,
    );
    assert.throws(
      () => createRegistry({ tasks: [task('a.b'), task('a.b')], queues: [{ name: 'q' }], schedules: [] }),
      /registered twice/,
    );
    assert.throws(
      () =>
        createRegistry({
          tasks: [task('a.b')],
          queues: [{ name: 'q' }],
          schedules: [{ name: 's', description: '', cron: '* * * * *', task: 'c.d', payload: {} }],
        }),
      /names task "c\.d"/,
    );
    assert.throws(
      () =>
        createRegistry({
          tasks: [task('a.b')],
          queues: [{ name: 'q' }],
          schedules: [{ name: 's', description: '', cron: '* * * * *', task: 'a.b', payload: 'not an object' }],
        }),
      /payload does not match a\.b/,
    );
  });

  test('task names and deadlines are checked when defined', () => {
    assert.throws(() => task('NoDot'), /expected domain\.verb_noun/);
    assert.throws(
      () =>
        defineTask({ name: 'a.b', queue: 'q', payload: z.object({}), deadlineSeconds: 5, handler: async () => ({}) }),
      /15–1800/,
    );
  });

  test('max attempts: the queue retry config for tasks, the job retry count + 1 for schedules', () => {
    const r = createRegistry({
      tasks: [task('a.b')],
      queues: [{ name: 'q', retryConfig: { maxAttempts: 7 } }],
      schedules: [{ name: 's', description: '', cron: '* * * * *', task: 'a.b', payload: {}, retryCount: 2 }],
    });
    const t = r.tasks.get('a.b')!;
    assert.equal(r.maxAttempts(t, false), 7);
    assert.equal(r.maxAttempts(t, true), 3);
    const defaults = createRegistry({ tasks: [task('a.b')], queues: [{ name: 'q' }], schedules: [] });
    assert.equal(defaults.maxAttempts(defaults.tasks.get('a.b')!, false), 100);
  });
});
