// What a target receives: the headers of the real-service recording (conformance/cases/dispatch.json), the task's
// own headers and body, OIDC tokens that verify against the emulator's JWKS, the dispatch deadline,
// Retry-After, RunTask on a paused queue, and dispatch without tick() in auto mode.
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { OAuth2Client } from 'google-auth-library';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import {
  collect,
  PARENT,
  rejection,
  START,
  serviceHeaders,
  startTarget,
  startTestEmulator,
  TRANSPORTS,
  tasksClient,
} from './helpers.ts';

const SA = 'invoker@dev.iam.gserviceaccount.com';

for (const transport of TRANSPORTS) {
  describe(`dispatch, over ${transport}`, () => {
    test('a task answered 503, 404, 200 arrives with exactly the recorded headers on each attempt', async (t) => {
      const { emulator, clock } = await startTestEmulator();
      const target = await startTarget((_req, i) => [503, 404, 200][i] ?? 500);
      const client = tasksClient(emulator, transport);
      t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
      const queue = `${PARENT}/queues/recorded`;
      await client.createQueue({ parent: PARENT, queue: { name: queue } });
      await client.createTask({
        parent: queue,
        task: {
          name: `${queue}/tasks/golden`,
          httpRequest: {
            url: `${target.url}/tasks/echo`,
            headers: { 'X-Mixed-Case': 'preserve-me' },
            body: Buffer.from('{"n":1}'),
          },
        },
      });
      const dispatched = collect(emulator, 'task:dispatched');
      const retries = collect(emulator, 'task:retry-scheduled');
      const succeeded = collect(emulator, 'task:succeeded');

      await emulator.tick();
      clock.set(retries[0]!.retryAt);
      await emulator.tick();
      clock.set(retries[1]!.retryAt);
      await emulator.tick();

      assert.equal(target.requests.length, 3);
      assert.equal(succeeded.length, 1);
      const eta = (i: number) => (dispatched[i]!.scheduleTime / 1000).toFixed(6);
      const common = {
        'User-Agent': 'Google-Cloud-Tasks',
        'X-CloudTasks-QueueName': 'recorded',
        'X-CloudTasks-TaskName': 'golden',
      };
      assert.deepEqual(serviceHeaders(target.requests[0]!.headers), {
        ...common,
        'X-CloudTasks-TaskRetryCount': '0',
        'X-CloudTasks-TaskExecutionCount': '0',
        'X-CloudTasks-TaskETA': eta(0),
      });
      assert.deepEqual(serviceHeaders(target.requests[1]!.headers), {
        ...common,
        'X-CloudTasks-TaskRetryCount': '1',
        'X-CloudTasks-TaskExecutionCount': '0',
        'X-CloudTasks-TaskETA': eta(1),
        'X-CloudTasks-TaskPreviousResponse': '503',
        'X-CloudTasks-TaskRetryReason': '',
      });
      assert.deepEqual(serviceHeaders(target.requests[2]!.headers), {
        ...common,
        'X-CloudTasks-TaskRetryCount': '2',
        'X-CloudTasks-TaskExecutionCount': '1',
        'X-CloudTasks-TaskETA': eta(2),
        'X-CloudTasks-TaskPreviousResponse': '404',
        'X-CloudTasks-TaskRetryReason': '',
      });
      for (const request of target.requests) {
        assert.equal(request.method, 'POST');
        assert.equal(request.path, '/tasks/echo');
        assert.equal(request.headers['X-Mixed-Case'], 'preserve-me', 'the task header arrives with its case');
        assert.equal(request.body.toString(), '{"n":1}');
        assert.ok(
          !Object.keys(request.headers).some((h) => h.toLowerCase() === 'content-type'),
          'Cloud Tasks adds no Content-Type',
        );
        assert.equal(request.headers.Authorization, undefined);
      }
      // The ETA is the schedule time in epoch seconds: the creation time, then each retry's time.
      assert.equal(eta(0), (START / 1000).toFixed(6));
      assert.equal(eta(2), (retries[1]!.retryAt / 1000).toFixed(6));
      // Succeeded, so deleted and its name tombstoned.
      const gone = await rejection(client.getTask({ name: `${queue}/tasks/golden` }));
      assert.equal(gone.code, 5);
    });

    test('an OIDC token verifies with jose against the JWKS: issuer, audience (the task URL by default), e-mail', async (t) => {
      // Tokens carry iat/exp from the emulator's clock; start it at the real time so verifiers accept them.
      const { emulator } = await startTestEmulator({}, Date.now());
      const target = await startTarget();
      const client = tasksClient(emulator, transport);
      t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
      const queue = `${PARENT}/queues/oidc`;
      await client.createQueue({ parent: PARENT, queue: { name: queue } });
      const url = `${target.url}/tasks/send?lang=en`;
      await client.createTask({
        parent: queue,
        task: {
          httpRequest: {
            url,
            httpMethod: 'PUT',
            headers: { 'Content-Type': 'application/json', Authorization: 'Bearer overridden' },
            body: Buffer.from('{}'),
            oidcToken: { serviceAccountEmail: SA },
          },
        },
      });
      await client.createTask({
        parent: queue,
        task: {
          httpRequest: {
            url: `${target.url}/other`,
            httpMethod: 'GET',
            oidcToken: { serviceAccountEmail: SA, audience: 'https://service.example.run.app' },
          },
        },
      });
      await emulator.tick();
      assert.equal(target.requests.length, 2);
      const put = target.requests.find((r) => r.method === 'PUT')!;
      const get = target.requests.find((r) => r.method === 'GET')!;
      assert.equal(put.headers['Content-Type'], 'application/json');
      assert.match(put.headers.Authorization!, /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/, 'the token replaces the task header');

      const discovery = (await (await fetch(`${emulator.httpUrl}/.well-known/openid-configuration`)).json()) as Record<
        string,
        unknown
      >;
      assert.equal(discovery.issuer, emulator.issuer);
      assert.equal(discovery.jwks_uri, `${emulator.httpUrl}/jwks`);
      assert.equal(emulator.issuer, emulator.httpUrl);

      const jwks = createRemoteJWKSet(new URL(`${emulator.issuer}/jwks`));
      const token = put.headers.Authorization!.slice('Bearer '.length);
      const { payload, protectedHeader } = await jwtVerify(token, jwks, {
        issuer: emulator.issuer,
        audience: url,
        algorithms: ['RS256'],
      });
      assert.equal(payload.email, SA);
      assert.equal(payload.email_verified, true);
      assert.match(String(payload.sub), /^\d{21}$/);
      assert.equal(payload.azp, payload.sub);
      assert.equal(payload.exp! - payload.iat!, 3600);
      assert.equal(protectedHeader.alg, 'RS256');
      assert.ok(protectedHeader.kid);

      const custom = get.headers.Authorization!.slice('Bearer '.length);
      const verified = await jwtVerify(custom, jwks, {
        issuer: emulator.issuer,
        audience: 'https://service.example.run.app',
      });
      assert.equal(verified.payload.email, SA);
      await assert.rejects(jwtVerify(custom, jwks, { issuer: emulator.issuer, audience: url }), /aud/);

      // The X.509 certs serve google-auth-library's verifyIdToken as Google's serve it.
      const certs = (await (await fetch(`${emulator.httpUrl}/certs`)).json()) as Record<string, string>;
      assert.match(certs[decodeProtectedHeader(token).kid!]!, /BEGIN CERTIFICATE/);
      const google = new OAuth2Client({
        endpoints: { oauth2FederatedSignonPemCertsUrl: `${emulator.httpUrl}/certs` },
        issuers: [emulator.issuer],
      });
      const ticket = await google.verifyIdToken({ idToken: token, audience: url });
      assert.equal(ticket.getPayload()?.email, SA);
    });

    test('the dispatch deadline cancels a hung attempt and it is retried as DEADLINE_EXCEEDED', async (t) => {
      const { emulator, clock } = await startTestEmulator();
      let release!: () => void;
      const hung = new Promise<void>((resolve) => {
        release = resolve;
      });
      const target = await startTarget(async (_req, i) => {
        if (i === 0) await hung;
        return 200;
      });
      const client = tasksClient(emulator, transport);
      t.after(async () => {
        release();
        await Promise.all([client.close(), emulator.close(), target.close()]);
      });
      const queue = `${PARENT}/queues/deadline`;
      await client.createQueue({ parent: PARENT, queue: { name: queue } });
      const [task] = await client.createTask({
        parent: queue,
        task: { httpRequest: { url: `${target.url}/slow` }, dispatchDeadline: { seconds: 15 } },
      });
      assert.equal(Number(task.dispatchDeadline?.seconds), 15);
      const retried = emulator.events.waitFor('task:retry-scheduled');
      const first = emulator.tick(); // dispatches, then waits for the outcome
      await target.received(1);
      clock.advance(15_000);
      await emulator.tick(); // the deadline has passed on the emulator's clock: cancelled
      await first;
      const retry = await retried;
      assert.equal(retry.error, 'DEADLINE_EXCEEDED');
      assert.equal(retry.status, undefined);
      const [after1] = await client.getTask({ name: task.name });
      assert.equal(after1.lastAttempt?.responseStatus?.code, 4);
      assert.equal(after1.dispatchCount, 1);
      assert.equal(after1.responseCount, 0);
    });

    test('429 and 503 back off further, honouring Retry-After in seconds or as an HTTP date', async (t) => {
      const { emulator, clock } = await startTestEmulator();
      const replies = [
        { status: 429, headers: { 'Retry-After': '120' } },
        { status: 503, headers: { 'Retry-After': new Date(START + 300_000).toUTCString() } },
        { status: 503 },
        { status: 500 },
      ];
      const target = await startTarget((_req, i) => replies[i] ?? 200);
      const client = tasksClient(emulator, transport);
      t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
      const queue = `${PARENT}/queues/throttled`;
      await client.createQueue({
        parent: PARENT,
        queue: {
          name: queue,
          retryConfig: { minBackoff: { seconds: 1 }, maxBackoff: { seconds: 3600 }, maxDoublings: 16 },
        },
      });
      await client.createTask({ parent: queue, task: { httpRequest: { url: target.url } } });
      const retries = collect(emulator, 'task:retry-scheduled');
      for (let i = 0; i < 4; i++) {
        await emulator.tick();
        clock.set(retries[i]!.retryAt);
      }
      assert.deepEqual(
        retries.map((r) => [r.status, r.delayMs]),
        [
          [429, 120_000], // Retry-After: 120 beats the 1 s backoff
          [503, 300_000 - 120_000], // an HTTP date: until then
          [503, 2 * 4_000], // no Retry-After: twice the 4 s backoff
          [500, 8_000], // a plain failure: the plain backoff
        ],
      );
    });

    test('RunTask dispatches at once on a paused queue; nothing else leaves it', async (t) => {
      const { emulator } = await startTestEmulator();
      const target = await startTarget();
      const client = tasksClient(emulator, transport);
      t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
      const queue = `${PARENT}/queues/paused`;
      await client.createQueue({ parent: PARENT, queue: { name: queue } });
      const [paused] = await client.pauseQueue({ name: queue });
      assert.equal(paused.state, 'PAUSED');
      const [a] = await client.createTask({
        parent: queue,
        task: { name: `${queue}/tasks/a`, httpRequest: { url: target.url } },
      });
      await client.createTask({ parent: queue, task: { name: `${queue}/tasks/b`, httpRequest: { url: target.url } } });
      await emulator.tick();
      assert.equal(target.requests.length, 0, 'a paused queue dispatches nothing');
      const done = emulator.events.waitFor('task:succeeded');
      const [run] = await client.runTask({ name: a.name });
      assert.equal(run.dispatchCount, 1);
      assert.equal((await done).task, a.name);
      assert.equal(target.requests.length, 1);
      assert.equal(target.requests[0]!.headers['X-CloudTasks-TaskName'], 'a');
      await client.resumeQueue({ name: queue });
      await emulator.tick();
      assert.equal(target.requests.length, 2);
      assert.equal(target.requests[1]!.headers['X-CloudTasks-TaskName'], 'b');
    });
  });
}

describe('auto-dispatch', () => {
  test('without tick(), due tasks are delivered on the system clock', async (t) => {
    const { startEmulator } = await import('../src/index.ts');
    const emulator = await startEmulator({ grpcPort: 0, httpPort: 0 });
    const target = await startTarget();
    const client = tasksClient(emulator, 'grpc');
    t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
    const queue = `${PARENT}/queues/auto`;
    await client.createQueue({ parent: PARENT, queue: { name: queue } });
    let count = 0;
    const all = new Promise<void>((resolve) =>
      emulator.events.on('task:succeeded', () => {
        if (++count === 20) resolve();
      }),
    );
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        client.createTask({ parent: queue, task: { httpRequest: { url: `${target.url}/n/${i}` } } }),
      ),
    );
    await all;
    assert.deepEqual(target.requests.map((r) => r.path).sort(), Array.from({ length: 20 }, (_, i) => `/n/${i}`).sort());
  });
});

describe('delivery on the wire', () => {
  test('a refused connection and a connection cut before the answer are UNAVAILABLE attempts, named as node:http names them', async (t) => {
    const { emulator, clock } = await startTestEmulator();
    // A port that was just free: nothing listens on it.
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    // A server that reads the request and drops the connection without a word.
    const cutter = net.createServer((socket) => socket.once('data', () => socket.destroy()));
    await new Promise<void>((resolve) => cutter.listen(0, '127.0.0.1', resolve));
    const cutterPort = (cutter.address() as AddressInfo).port;
    const client = tasksClient(emulator, 'grpc');
    t.after(() => Promise.all([client.close(), emulator.close(), new Promise((r) => cutter.close(r))]));
    const queue = `${PARENT}/queues/wire`;
    await client.createQueue({ parent: PARENT, queue: { name: queue } });
    const [refused] = await client.createTask({
      parent: queue,
      task: { httpRequest: { url: `http://127.0.0.1:${closedPort}/x` } },
    });
    const [cut] = await client.createTask({
      parent: queue,
      task: { httpRequest: { url: `http://127.0.0.1:${cutterPort}/x`, body: Buffer.from('{}') } },
    });
    const retries = collect(emulator, 'task:retry-scheduled');
    await emulator.tick();
    assert.deepEqual(
      retries.map((r) => [r.task, r.error, r.status]).sort(),
      [
        [refused.name, 'ECONNREFUSED', undefined],
        [cut.name, 'ECONNRESET', undefined],
      ].sort(),
    );
    for (const [name, message] of [
      [refused.name, 'ECONNREFUSED'],
      [cut.name, 'ECONNRESET'],
    ] as const) {
      const [after] = await client.getTask({ name });
      assert.equal(after.lastAttempt?.responseStatus?.code, 14, `${name}: UNAVAILABLE`);
      assert.equal(after.lastAttempt?.responseStatus?.message, message);
      assert.equal(after.responseCount, 0);
    }
    clock.advance(60_000);
    await emulator.tick();
    assert.equal(retries.length, 4, 'both are tried again after their backoff');
  });

  test('HTTP framing: Content-Length 0 on an empty POST, none on a GET, the body exact; credentials in the URL become Basic auth unless a token is asked for', async (t) => {
    const { emulator } = await startTestEmulator();
    const target = await startTarget();
    const client = tasksClient(emulator, 'rest');
    t.after(() => Promise.all([client.close(), emulator.close(), target.close()]));
    const queue = `${PARENT}/queues/framing`;
    await client.createQueue({ parent: PARENT, queue: { name: queue } });
    const withUser = target.url.replace('http://', 'http://ops:s%3Dcret@');
    const send = async (path: string, httpRequest: Record<string, unknown>) => {
      await client.createTask({
        parent: queue,
        task: { name: `${queue}/tasks/${path}`, httpRequest: { url: `${target.url}/${path}`, ...httpRequest } },
      });
    };
    await send('empty-post', {});
    await send('get', { httpMethod: 'GET' });
    await send('body', { body: Buffer.from('{"n":12345}'), headers: { 'Content-Type': 'application/json' } });
    await client.createTask({
      parent: queue,
      task: { name: `${queue}/tasks/basic`, httpRequest: { url: `${withUser}/basic` } },
    });
    await client.createTask({
      parent: queue,
      task: {
        name: `${queue}/tasks/oidc`,
        httpRequest: { url: `${withUser}/oidc`, oidcToken: { serviceAccountEmail: SA } },
      },
    });
    await emulator.tick();
    await target.received(5);
    const by = (path: string) => {
      const r = target.requests.find((q) => q.path === `/${path}`);
      assert.ok(r, path);
      return r;
    };
    const header = (path: string, name: string) =>
      Object.entries(by(path).headers).find(([k]) => k.toLowerCase() === name)?.[1];
    assert.equal(header('empty-post', 'content-length'), '0');
    assert.equal(by('empty-post').method, 'POST');
    assert.equal(header('get', 'content-length'), undefined);
    assert.equal(header('get', 'transfer-encoding'), undefined);
    assert.equal(by('get').method, 'GET');
    assert.equal(header('body', 'content-length'), '11');
    assert.equal(by('body').body.toString(), '{"n":12345}');
    assert.equal(by('body').headers['Content-Type'], 'application/json', 'the name as given, case kept');
    assert.equal(header('basic', 'authorization'), `Basic ${Buffer.from('ops:s=cret').toString('base64')}`);
    assert.match(header('oidc', 'authorization') ?? '', /^Bearer ey/);
  });
});
