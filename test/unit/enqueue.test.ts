import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CloudTasksClient } from '@google-cloud/tasks';
import { z } from 'zod';
import { TestClock } from '../../src/clock.ts';
import { defineTask } from '../../src/tasks/define-task.ts';
import { MAX_TASK_BYTES, parseDelay, TaskEnqueuer, taskIdFor } from '../../src/tasks/enqueue.ts';
import { createRegistry } from '../../src/tasks/registry.ts';
import { captureLogger } from '../helpers/capture-logger.ts';

const send = defineTask({
  name: 'whatsapp.send_message',
  queue: 'whatsapp',
  payload: z.object({ to: z.string(), text: z.string() }),
  deadlineSeconds: 60,
  handler: async () => ({}),
});
const registry = createRegistry({ tasks: [send], queues: [{ name: 'whatsapp' }], schedules: [] });
// Path helpers only: the real client's, with no connection made.
const paths = new CloudTasksClient({ fallback: 'rest', projectId: 'p' });

/** A createTask that answers as scripted and records every call. */
function client(answers: Array<Error & { code?: number }> = []) {
  const calls: Array<{ parent: string; task: Record<string, unknown> }> = [];
  return {
    calls,
    queuePath: paths.queuePath.bind(paths),
    taskPath: paths.taskPath.bind(paths),
    createTask: (async (request: { parent: string; task: Record<string, unknown> }) => {
      calls.push(request);
      const answer = answers.shift();
      if (answer) throw answer;
      return [request.task];
    }) as unknown as CloudTasksClient['createTask'],
  };
}
const grpcError = (code: number, message: string) => Object.assign(new Error(message), { code });

function enqueuer(c = client(), auth: 'oidc' | 'secret' = 'oidc') {
  return new TaskEnqueuer({
    client: c,
    registry,
    target: {
      projectId: 'p',
      location: 'l',
      publicBaseUrl: 'https://svc.run.app',
      invokerServiceAccount: 'inv@p.iam.gserviceaccount.com',
      audience: 'https://svc.run.app',
      auth,
      secret: auth === 'secret' ? 'x'.repeat(32) : undefined,
    },
    clock: new TestClock('2026-03-01T00:00:00Z'),
    log: captureLogger('silent').logger,
  });
}

describe('enqueue', () => {
  test('builds the push Cloud Tasks expects: URL, JSON body, content type, OIDC token, deadline, key', async () => {
    const c = client();
    const result = await enqueuer(c).enqueueByName(
      'whatsapp.send_message',
      { to: '31600', text: 'hi' },
      { key: 'wamid.1', delay: '30s' },
    );
    assert.equal(result.created, true);
    const [call] = c.calls;
    assert.equal(call?.parent, 'projects/p/locations/l/queues/whatsapp');
    const task = call!.task as {
      name: string;
      httpRequest: {
        url: string;
        headers: Record<string, string>;
        body: Buffer;
        oidcToken: unknown;
        httpMethod: string;
      };
      scheduleTime: { seconds: number };
      dispatchDeadline: { seconds: number };
    };
    assert.equal(task.name, `projects/p/locations/l/queues/whatsapp/tasks/${taskIdFor(send, 'wamid.1')}`);
    assert.equal(task.httpRequest.url, 'https://svc.run.app/tasks/whatsapp.send_message');
    assert.equal(task.httpRequest.httpMethod, 'POST');
    assert.deepEqual(task.httpRequest.headers, { 'Content-Type': 'application/json', 'X-Task-Key': 'wamid.1' });
    assert.deepEqual(JSON.parse(task.httpRequest.body.toString()), { to: '31600', text: 'hi' });
    assert.deepEqual(task.httpRequest.oidcToken, {
      serviceAccountEmail: 'inv@p.iam.gserviceaccount.com',
      audience: 'https://svc.run.app',
    });
    assert.equal(task.scheduleTime.seconds, Date.parse('2026-03-01T00:00:30Z') / 1000);
    assert.equal(task.dispatchDeadline.seconds, 60);
  });

  test('secret mode sends X-Task-Secret and no OIDC token', async () => {
    const c = client();
    await enqueuer(c, 'secret').enqueueByName('whatsapp.send_message', { to: '1', text: 'x' }, { key: 'k' });
    const http = (c.calls[0]!.task as { httpRequest: { headers: Record<string, string>; oidcToken?: unknown } })
      .httpRequest;
    assert.equal(http.headers['X-Task-Secret'], 'x'.repeat(32));
    assert.equal(http.oidcToken, undefined);
  });

  test('task ids are hashed, stable for a key, new for a replay series, and valid Cloud Tasks ids', () => {
    const id = taskIdFor(send, 'wamid.1');
    assert.match(id, /^[0-9a-f]{32}-whatsapp-send-message$/);
    assert.equal(taskIdFor(send, 'wamid.1'), id);
    assert.notEqual(taskIdFor(send, 'wamid.2').slice(0, 8), id.slice(0, 8));
    assert.notEqual(taskIdFor(send, 'wamid.1', 1), id);
  });

  test('ALREADY_EXISTS is a success: a repeated enqueue created nothing new', async () => {
    const c = client([grpcError(6, 'Requested entity already exists')]);
    const result = await enqueuer(c).enqueueByName('whatsapp.send_message', { to: '1', text: 'x' }, { key: 'k' });
    assert.equal(result.created, false);
  });

  test('UNAVAILABLE and DEADLINE_EXCEEDED are retried with the same task id; other errors are not', async () => {
    const c = client([grpcError(14, 'unavailable'), grpcError(4, 'deadline')]);
    const result = await enqueuer(c).enqueueByName('whatsapp.send_message', { to: '1', text: 'x' }, { key: 'k' });
    assert.equal(result.created, true);
    assert.equal(c.calls.length, 3);
    assert.equal(new Set(c.calls.map((x) => x.task.name)).size, 1);
    const denied = client([grpcError(7, 'permission denied')]);
    await assert.rejects(
      enqueuer(denied).enqueueByName('whatsapp.send_message', { to: '1', text: 'x' }),
      /permission denied/,
    );
    assert.equal(denied.calls.length, 1);
  });

  test('gives up after a bounded number of retries', async () => {
    const c = client([14, 14, 14, 14].map((code) => grpcError(code, 'unavailable')));
    await assert.rejects(enqueuer(c).enqueueByName('whatsapp.send_message', { to: '1', text: 'x' }), /unavailable/);
    assert.equal(c.calls.length, 4);
  });

  const refused: Array<[string, () => Promise<unknown>, RegExp]> = [
    [
      'an unknown task',
      () => enqueuer().enqueueByName('whatsapp.nope', {}),
      /No task named "whatsapp.nope"\. Known tasks: whatsapp\.send_message/,
    ],
    [
      'an invalid payload',
      () => enqueuer().enqueueByName('whatsapp.send_message', { to: 1 }),
      /Payload does not match whatsapp\.send_message: to: .*; text: /,
    ],
    [
      'a payload over the size limit',
      () => enqueuer().enqueueByName('whatsapp.send_message', { to: '1', text: 'x'.repeat(MAX_TASK_BYTES) }),
      /Cloud Tasks accepts at most 1000000/,
    ],
    [
      'a delay over 30 days',
      () => enqueuer().enqueueByName('whatsapp.send_message', { to: '1', text: 'x' }, { delay: '31d' }),
      /30 days/,
    ],
    [
      'a malformed delay',
      () => enqueuer().enqueueByName('whatsapp.send_message', { to: '1', text: 'x' }, { delay: 'soon' }),
      /Delay "soon" is not valid/,
    ],
    [
      'a dispatch deadline out of range',
      () => enqueuer().enqueueByName('whatsapp.send_message', { to: '1', text: 'x' }, { deadlineSeconds: 3600 }),
      /outside Cloud Tasks' 15–1800 s/,
    ],
  ];
  for (const [label, call, message] of refused) {
    test(`${label} is refused before any call to Cloud Tasks`, async () => {
      await assert.rejects(call(), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'BAD_REQUEST');
        assert.match(err.message, message);
        return true;
      });
    });
  }

  test('delays: units, plain seconds', () => {
    assert.equal(parseDelay('250ms'), 250);
    assert.equal(parseDelay('30s'), 30_000);
    assert.equal(parseDelay('5m'), 300_000);
    assert.equal(parseDelay('2h'), 7_200_000);
    assert.equal(parseDelay('30d'), 30 * 86_400_000);
    assert.equal(parseDelay(45), 45_000);
    assert.equal(parseDelay('12'), 12_000);
  });
});

test('enqueue is typed from the registry: a wrong task name or payload does not compile', () => {
  const typed = enqueuer().enqueue;
  // Only type-checked (npm run typecheck); never called.
  const typeChecks = () => {
    typed('health.check', {});
    // @ts-expect-error: no such task in src/task-registry.ts
    typed('health.chek', {});
    // @ts-expect-error: health.check takes an empty object
    typed('health.check', { unexpected: 1 });
  };
  assert.equal(typeof typeChecks, 'function');
});
