// The fidelity gaps a comparison with the real service found, each closed: a deleted queue's name
// blocked for the window asked for (warned about when it is not), snake_case proto field names
// over REST and unknown names refused in Google's words, /certs as X.509 certificates, the
// google.rpc details the real service attaches to its errors (over both transports), names the
// emulator generated tombstoned like given ones, and the command line's issuer, tombstone and
// --queue options.
import assert from 'node:assert/strict';
import { verify, X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Command } from 'commander';
import { decodeProtectedHeader } from 'jose';
import { addEmulatorOptions, type EmulatorCliOptions, emulatorOptions, parseDuration } from '../src/cli.ts';
import { CLOUD_QUEUE_TOMBSTONE_MS, type Emulator, type LogLevel, startEmulator } from '../src/index.ts';
import { PARENT, rejection, startTarget, startTestEmulator, TestClock, TRANSPORTS, tasksClient } from './helpers.ts';

const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const ALREADY_EXISTS = 6;
const PERMISSION_DENIED = 7;
const FAILED_PRECONDITION = 9;
const QUEUE_TOO_RECENT = 'The queue cannot be created because a queue with this name existed too recently.';
const HOUR = 3_600_000;

interface ErrorBody {
  error: { code: number; message: string; status: string; details?: Record<string, unknown>[] };
}

/** A JSON request to the REST port, as curl or a discovery-based client sends it. */
async function rest(emulator: Emulator, method: string, pathAndQuery: string, body?: unknown) {
  const response = await fetch(`${emulator.httpUrl}${pathAndQuery}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> & ErrorBody };
}

/** The rejection of an official-client call, with the details it decoded (gRPC trailer or REST body). */
async function clientError(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (err) {
    return err as {
      code: number;
      details?: unknown;
      message: string;
      statusDetails?: Record<string, unknown>[];
      reason?: string;
      domain?: string;
      errorInfoMetadata?: Record<string, string>;
    };
  }
  throw new Error('expected the call to fail');
}

function logs(): { lines: { level: LogLevel; message: string }[]; log: (level: LogLevel, message: string) => void } {
  const lines: { level: LogLevel; message: string }[] = [];
  return { lines, log: (level, message) => lines.push({ level, message }) };
}

describe("a deleted queue's name", () => {
  for (const transport of TRANSPORTS) {
    test(`with Google's 7-day window, over ${transport}: refused by CreateQueue and UpdateQueue until it has passed`, async (t) => {
      const { emulator, clock } = await startTestEmulator({ queueTombstoneMs: CLOUD_QUEUE_TOMBSTONE_MS });
      const client = tasksClient(emulator, transport);
      t.after(() => Promise.all([client.close(), emulator.close()]));
      const name = `${PARENT}/queues/reused`;
      await client.createQueue({ parent: PARENT, queue: { name } });
      await client.deleteQueue({ name });
      clock.advance(CLOUD_QUEUE_TOMBSTONE_MS - 1000);
      for (const attempt of [
        client.createQueue({ parent: PARENT, queue: { name } }),
        client.updateQueue({ queue: { name } }),
      ]) {
        const { code, details } = await rejection(attempt);
        assert.equal(code, FAILED_PRECONDITION);
        assert.equal(details, QUEUE_TOO_RECENT);
      }
      clock.advance(1000);
      const [again] = await client.createQueue({ parent: PARENT, queue: { name } });
      assert.equal(again.name, name);
    });
  }

  test('by default free at once, with a warning that Cloud Tasks would refuse it for 7 days; no warning after them', async (t) => {
    const { lines, log } = logs();
    const { emulator, clock } = await startTestEmulator({ log });
    const client = tasksClient(emulator, 'grpc');
    t.after(() => Promise.all([client.close(), emulator.close()]));
    const name = `${PARENT}/queues/fixture`;
    await client.createQueue({ parent: PARENT, queue: { name } });
    await client.deleteQueue({ name });
    clock.advance(5000);
    await client.createQueue({ parent: PARENT, queue: { name } });
    const warnings = lines.filter((l) => l.level === 'warn').map((l) => l.message);
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0]!,
      /fixture is created again 5 s after it was deleted: Cloud Tasks would refuse this with FAILED_PRECONDITION for 7 days/,
    );
    assert.match(warnings[0]!, /--queue-tombstone 7d/);

    await client.deleteQueue({ name });
    clock.advance(CLOUD_QUEUE_TOMBSTONE_MS);
    await client.updateQueue({ queue: { name } });
    assert.equal(lines.filter((l) => l.level === 'warn').length, 1, 'past the window: nothing to warn about');
  });
});

describe('REST bodies with proto field names, and unknown names', () => {
  test('snake_case fields (queue settings, http_request, oidc_token, schedule_time, response_view) are read as their camelCase names', async (t) => {
    const { emulator, clock } = await startTestEmulator();
    const target = await startTarget();
    t.after(() => Promise.all([emulator.close(), target.close()]));
    const queue = `${PARENT}/queues/snake`;
    const created = await rest(emulator, 'POST', `/v2/${PARENT}/queues`, {
      name: queue,
      rate_limits: { max_dispatches_per_second: 7, max_concurrent_dispatches: 3 },
      retry_config: { max_attempts: 4, min_backoff: '2s' },
    });
    assert.equal(created.status, 200);
    assert.deepEqual(created.body.rateLimits, {
      maxDispatchesPerSecond: 7,
      maxBurstSize: 2,
      maxConcurrentDispatches: 3,
    });
    assert.equal((created.body.retryConfig as { maxAttempts: number }).maxAttempts, 4);
    assert.equal((created.body.retryConfig as { minBackoff: string }).minBackoff, '2s');

    const later = new Date(clock.now() + 60_000).toISOString();
    const task = await rest(emulator, 'POST', `/v2/${queue}/tasks`, {
      response_view: 'FULL',
      task: {
        name: `${queue}/tasks/from-python`,
        schedule_time: later,
        dispatch_deadline: '20s',
        http_request: {
          url: `${target.url}/work`,
          http_method: 'PUT',
          // Header names are the task's own data: kept as given, underscores and all.
          headers: { x_snake_header: 'kept', 'Content-Type': 'application/json' },
          body: Buffer.from('{"n":1}').toString('base64'),
          oidc_token: { service_account_email: 'invoker@dev.iam.gserviceaccount.com', audience: 'https://aud.example' },
        },
      },
    });
    assert.equal(task.status, 200, JSON.stringify(task.body));
    assert.equal(Date.parse(String(task.body.scheduleTime)), Date.parse(later));
    assert.equal(task.body.dispatchDeadline, '20s');
    assert.equal(task.body.view, 'FULL');
    const http = task.body.httpRequest as Record<string, unknown>;
    assert.equal(http.httpMethod, 'PUT');
    assert.equal(http.body, Buffer.from('{"n":1}').toString('base64'));

    clock.advance(60_000);
    await emulator.tick();
    assert.equal(target.requests.length, 1);
    const received = target.requests[0]!;
    assert.equal(received.method, 'PUT');
    assert.equal(received.headers.x_snake_header, 'kept');
    assert.equal(received.body.toString(), '{"n":1}');
    assert.match(received.headers.Authorization ?? '', /^Bearer ey/);
  });

  test("an unknown name is 400 INVALID_ARGUMENT in Google's words, with where it was and a BadRequest detail", async (t) => {
    const { emulator } = await startTestEmulator();
    t.after(() => emulator.close());
    const queue = `${PARENT}/queues/strict`;
    assert.equal((await rest(emulator, 'POST', `/v2/${PARENT}/queues`, { name: queue })).status, 200);

    const nested = await rest(emulator, 'POST', `/v2/${queue}/tasks`, {
      task: { httpRequest: { url: 'http://127.0.0.1:1/', bogus: 1 } },
    });
    const nestedMessage = `Invalid JSON payload received. Unknown name "bogus" at 'task.http_request': Cannot find field.`;
    assert.equal(nested.status, 400);
    assert.deepEqual(nested.body, {
      error: {
        code: 400,
        message: nestedMessage,
        status: 'INVALID_ARGUMENT',
        details: [
          {
            '@type': 'type.googleapis.com/google.rpc.BadRequest',
            fieldViolations: [{ field: 'task.http_request', description: nestedMessage }],
          },
        ],
      },
    });

    // At the top level of a body that is the whole request, several at once (one line each), and
    // a name that is neither form of a field; where the body is one field of the request (a
    // queue), names are placed under it, as Google does.
    const top = await rest(emulator, 'POST', `/v2/${queue}/tasks`, {
      task: { name: `${queue}/tasks/never`, httpRequest: { url: 'http://127.0.0.1:1/' } },
      extra: true,
      response_View: 'FULL',
    });
    assert.equal(top.status, 400);
    assert.equal(
      top.body.error.message,
      'Invalid JSON payload received. Unknown name "extra": Cannot find field.\nInvalid JSON payload received. Unknown name "response_View": Cannot find field.',
    );
    assert.deepEqual(top.body.error.details?.[0]?.fieldViolations, [
      { description: 'Invalid JSON payload received. Unknown name "extra": Cannot find field.' },
      { description: 'Invalid JSON payload received. Unknown name "response_View": Cannot find field.' },
    ]);
    assert.equal((await rest(emulator, 'GET', `/v2/${queue}/tasks/never`)).status, 404, 'nothing was created');
    const inQueue = await rest(emulator, 'POST', `/v2/${PARENT}/queues`, { name: `${PARENT}/queues/other`, extra: 1 });
    assert.equal(
      inQueue.body.error.message,
      `Invalid JSON payload received. Unknown name "extra" at 'queue': Cannot find field.`,
    );

    // A typo'd field in a task, which used to be dropped and answered "httpRequest is required".
    const typo = await rest(emulator, 'POST', `/v2/${queue}/tasks`, { task: { http_requests: { url: 'http://x/' } } });
    assert.equal(
      typo.body.error.message,
      `Invalid JSON payload received. Unknown name "http_requests" at 'task': Cannot find field.`,
    );

    const query = await rest(emulator, 'GET', `/v2/${PARENT}/queues?page_size=1&bogus_param=2`);
    assert.equal(query.status, 400);
    assert.equal(
      query.body.error.message,
      `Invalid JSON payload received. Unknown name "bogus_param": Cannot bind query parameter. Field 'bogus_param' could not be found in request message.`,
    );
  });
});

describe('/certs', () => {
  test("serves X.509 certificates by kid, as Google's oauth2/v1/certs; a pushed token verifies with the certificate's key", async (t) => {
    const { emulator } = await startTestEmulator();
    const target = await startTarget();
    const client = tasksClient(emulator, 'grpc');
    t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
    const queue = `${PARENT}/queues/certs`;
    await client.createQueue({ parent: PARENT, queue: { name: queue } });
    await client.createTask({
      parent: queue,
      task: {
        httpRequest: { url: `${target.url}/t`, oidcToken: { serviceAccountEmail: 'a@dev.iam.gserviceaccount.com' } },
      },
    });
    await emulator.tick();
    const token = target.requests[0]!.headers.Authorization!.slice('Bearer '.length);

    const certs = (await (await fetch(`${emulator.httpUrl}/certs`)).json()) as Record<string, string>;
    const kid = decodeProtectedHeader(token).kid!;
    assert.deepEqual(Object.keys(certs), [kid]);
    const certificate = new X509Certificate(certs[kid]!);
    assert.ok(certificate.verify(certificate.publicKey), 'self-signed');
    assert.equal(certificate.ca, false);
    assert.ok(Date.parse(certificate.validFrom) <= Date.now() && Date.now() < Date.parse(certificate.validTo));

    const [header, payload, signature] = token.split('.') as [string, string, string];
    const signed = Buffer.from(`${header}.${payload}`);
    assert.ok(verify('sha256', signed, certificate.publicKey, Buffer.from(signature, 'base64url')));
    const forged = Buffer.from(`${header}.${Buffer.from('{"email":"x"}').toString('base64url')}`);
    assert.ok(!verify('sha256', forged, certificate.publicKey, Buffer.from(signature, 'base64url')));

    // The same key, the same certificate: a verifier's cache stays valid across a restart.
    assert.equal(
      ((await (await fetch(`${emulator.httpUrl}/certs`)).json()) as Record<string, string>)[kid],
      certs[kid],
    );
  });
});

describe('error details', () => {
  for (const transport of TRANSPORTS) {
    test(`the recorded google.rpc details reach the official client over ${transport}; errors recorded without any have none`, async (t) => {
      const { emulator } = await startTestEmulator();
      const client = tasksClient(emulator, transport);
      t.after(() => Promise.all([client.close(), emulator.close()]));
      const badQueue = await clientError(
        client.createQueue({ parent: PARENT, queue: { name: `${PARENT}/queues/not valid!` } }),
      );
      assert.equal(badQueue.code, INVALID_ARGUMENT);
      assert.deepEqual(
        badQueue.statusDetails?.map((d) => JSON.parse(JSON.stringify(d))),
        [
          {
            links: [
              {
                description: 'Definition of queue name',
                url: 'https://cloud.google.com/tasks/docs/reference/rest/v2/projects.locations.queues#Queue.FIELDS.name',
              },
            ],
          },
        ],
      );

      const queue = `${PARENT}/queues/details`;
      await client.createQueue({ parent: PARENT, queue: { name: queue } });
      const badTask = await clientError(
        client.createTask({
          parent: queue,
          task: { name: `${queue}/tasks/not ok`, httpRequest: { url: 'http://x/' } },
        }),
      );
      assert.equal(badTask.code, INVALID_ARGUMENT);
      assert.match(JSON.stringify(badTask.statusDetails), /Definition of task ID/);

      const missing = await clientError(client.getQueue({ name: `${PARENT}/queues/missing` }));
      assert.equal(missing.code, NOT_FOUND);
      assert.equal(missing.statusDetails, undefined, 'the real service sends no details with NOT_FOUND');
      const exists = await clientError(client.createQueue({ parent: PARENT, queue: { name: queue } }));
      assert.equal(exists.code, ALREADY_EXISTS);
      assert.equal(exists.statusDetails, undefined);

      if (transport === 'grpc') {
        // Over REST the client cannot build a URL for such a parent; see the raw REST test below.
        const badParent = await clientError(client.listQueues({ parent: 'projects/no_such/locations/x' }));
        assert.equal(badParent.code, PERMISSION_DENIED);
        assert.equal(badParent.reason, 'CONSUMER_INVALID');
        assert.equal(badParent.domain, 'googleapis.com');
        assert.deepEqual(badParent.errorInfoMetadata, {
          consumer: 'projects/no_such',
          containerInfo: 'no_such',
          service: 'cloudtasks.googleapis.com',
        });
        assert.equal(badParent.statusDetails?.length, 3, 'ErrorInfo, LocalizedMessage, Help');
      }
    });
  }

  test('over REST the details are error.details[] with their @type, as Google sends them', async (t) => {
    const { emulator } = await startTestEmulator();
    t.after(() => emulator.close());
    const denied = await rest(emulator, 'GET', '/v2/projects/no_such/locations/x/queues');
    assert.equal(denied.status, 403);
    assert.deepEqual(denied.body.error, {
      code: 403,
      message: 'Permission denied on resource project no_such.',
      status: 'PERMISSION_DENIED',
      details: [
        {
          '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
          reason: 'CONSUMER_INVALID',
          domain: 'googleapis.com',
          metadata: { consumer: 'projects/no_such', containerInfo: 'no_such', service: 'cloudtasks.googleapis.com' },
        },
        {
          '@type': 'type.googleapis.com/google.rpc.LocalizedMessage',
          locale: 'en-US',
          message: 'Permission denied on resource project no_such.',
        },
        {
          '@type': 'type.googleapis.com/google.rpc.Help',
          links: [{ description: 'Google developers console', url: 'https://console.developers.google.com' }],
        },
      ],
    });
    const missing = await rest(emulator, 'GET', `/v2/${PARENT}/queues/missing`);
    assert.equal(missing.body.error.details, undefined);
  });
});

describe('names the emulator generated', () => {
  for (const transport of TRANSPORTS) {
    test(`are tombstoned once the task has run, as given names are, over ${transport}`, async (t) => {
      const { emulator, clock } = await startTestEmulator();
      const target = await startTarget();
      const client = tasksClient(emulator, transport);
      t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
      const queue = `${PARENT}/queues/generated`;
      await client.createQueue({ parent: PARENT, queue: { name: queue } });
      const [task] = await client.createTask({ parent: queue, task: { httpRequest: { url: target.url } } });
      await emulator.tick();
      assert.equal(target.requests.length, 1);

      const again = { parent: queue, task: { name: task.name, httpRequest: { url: target.url } } };
      const refused = await rejection(client.createTask(again));
      assert.equal(refused.code, ALREADY_EXISTS);
      assert.match(refused.details, /^The task cannot be created because a task with this name existed too recently/);
      const gone = await rejection(client.getTask({ name: task.name }));
      assert.equal(gone.code, NOT_FOUND);
      assert.match(gone.details, /^The task no longer exists, though a task with this name existed recently/);

      clock.advance(HOUR);
      const [recreated] = await client.createTask(again);
      assert.equal(recreated.name, task.name);
    });
  }
});

describe('the command line', () => {
  /** The options `cloud-tasks-emulator …args` parses to, without starting anything. */
  async function parse(args: string[]): Promise<EmulatorCliOptions> {
    let parsed: EmulatorCliOptions | undefined;
    const program = addEmulatorOptions(new Command('cloud-tasks-emulator').exitOverride()).action(
      (options: EmulatorCliOptions) => {
        parsed = options;
      },
    );
    await program.parseAsync(args, { from: 'user' });
    return parsed!;
  }

  test('durations', () => {
    assert.equal(parseDuration('7d'), CLOUD_QUEUE_TOMBSTONE_MS);
    assert.equal(parseDuration('1h'), HOUR);
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('1.5m'), 90_000);
    assert.equal(parseDuration('0'), 0);
    assert.throws(() => parseDuration('7'), /expected a duration/);
    assert.throws(() => parseDuration('soon'), /expected a duration/);
  });

  test('--queue (repeatable) creates queues at start, --issuer sets iss, the tombstone flags set the windows; they survive a restart with --data-dir', async (t) => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'emulator-cli-'));
    t.after(() => rm(dataDir, { recursive: true, force: true }));
    const defaults = await parse([]);
    assert.deepEqual(
      { task: defaults.taskTombstone, queue: defaults.queueTombstone, queues: defaults.queue },
      { task: HOUR, queue: 0, queues: [] },
    );
    const a = `${PARENT}/queues/a`;
    const b = 'projects/other/locations/there/queues/b';
    const options = await parse([
      '--grpc-port',
      '0',
      '--http-port',
      '0',
      '--data-dir',
      dataDir,
      '--queue',
      a,
      '--queue',
      b,
      '--issuer',
      'https://issuer.example',
      '--queue-tombstone',
      '7d',
      '--task-tombstone',
      '10m',
    ]);
    const clock = new TestClock();
    const start = () => startEmulator({ ...emulatorOptions(options), clock, autoDispatch: false });
    const emulator = await start();
    const client = tasksClient(emulator, 'grpc');
    t.after(() => client.close());
    const [listed] = await client.listQueues({ parent: PARENT });
    assert.deepEqual(
      listed.map((q) => q.name),
      [a],
    );
    assert.equal((await client.getQueue({ name: b }))[0].state, 'RUNNING');
    const discovery = (await (await fetch(`${emulator.httpUrl}/.well-known/openid-configuration`)).json()) as {
      issuer: string;
    };
    assert.equal(discovery.issuer, 'https://issuer.example');

    // --task-tombstone 10m: a deleted task's name is free after 10 minutes, not an hour.
    const named = { parent: a, task: { name: `${a}/tasks/x`, httpRequest: { url: 'http://127.0.0.1:1/' } } };
    await client.createTask(named);
    await client.deleteTask({ name: named.task.name });
    clock.advance(10 * 60_000 - 1);
    assert.equal((await rejection(client.createTask(named))).code, ALREADY_EXISTS);
    clock.advance(1);
    await client.createTask(named);

    // --queue-tombstone 7d: the deleted queue is not recreated at the next start, and cannot be.
    await client.deleteQueue({ name: b });
    await client.close();
    await emulator.close();
    const { lines, log } = logs();
    const restarted = await startEmulator({ ...emulatorOptions(options), clock, autoDispatch: false, log });
    const again = tasksClient(restarted, 'rest');
    t.after(() => Promise.all([again.close(), restarted.close()]));
    assert.equal((await rejection(again.getQueue({ name: b }))).code, NOT_FOUND);
    assert.match(
      lines.map((l) => l.message).join('\n'),
      /queue projects\/other\/locations\/there\/queues\/b not created at start: The queue cannot be created because/,
    );
    const refused = await rejection(
      again.createQueue({ parent: 'projects/other/locations/there', queue: { name: b } }),
    );
    assert.deepEqual(refused, { code: FAILED_PRECONDITION, details: QUEUE_TOO_RECENT });
    assert.equal((await again.getQueue({ name: a }))[0].name, a, 'kept, not created twice');
  });

  test('a malformed --queue name stops the start with the recorded message', async () => {
    await assert.rejects(
      startEmulator({ grpcPort: 0, httpPort: 0, autoDispatch: false, queues: ['projects/p/queues/q'] }),
      /--queue projects\/p\/queues\/q: Queue name must be formatted/,
    );
  });
});
