import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import { AppError } from '../../src/errors.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

describe(`HTTP basics (${testDbKind})`, () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp();
    // Routes that exist only in this test, to drive the error paths of the real error handler.
    t.app.post('/echo', async (request) => ({ got: request.body }));
    t.app.get('/boom', async () => {
      throw new Error('SELECT secret FROM internals failed at /srv/app.ts:12');
    });
    t.app.get('/conflict', async () => {
      throw new AppError('CONFLICT', 'already done');
    });
    t.app.post('/validated', async (request) => {
      const parsed = z.object({ n: z.number() }).safeParse(request.body);
      if (!parsed.success) throw new AppError('BAD_REQUEST', 'n must be a number');
      return parsed.data;
    });
  });
  after(() => t.close());

  test('GET /healthz is 200 while the process serves', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/healthz' });
    assert.equal(r.statusCode, 200);
    assert.deepEqual(r.json(), { status: 'ok' });
  });

  test('GET /readyz is 200 when the database answers and migrations are applied', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal(r.json().status, 'ready');
    assert.equal(r.json().database.kind, testDbKind);
  });

  test('an unknown route is a 404 in the error envelope', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/nowhere?x=1' });
    assert.equal(r.statusCode, 404);
    assert.deepEqual(r.json(), { error: { code: 'NOT_FOUND', message: 'Route GET /nowhere not found' } });
    assert.match(String(r.headers['content-type']), /^application\/json/);
  });

  test('a body over the limit is a 413', async () => {
    const r = await t.app.inject({
      method: 'POST',
      url: '/echo',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ big: 'x'.repeat(1_100_000) }),
    });
    assert.equal(r.statusCode, 413);
    assert.equal(r.json().error.code, 'PAYLOAD_TOO_LARGE');
  });

  test('malformed JSON is a 400 MALFORMED_JSON', async () => {
    const r = await t.app.inject({
      method: 'POST',
      url: '/echo',
      headers: { 'content-type': 'application/json' },
      payload: '{"a":',
    });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json().error.code, 'MALFORMED_JSON');
  });

  test('an unsupported content type is a 415', async () => {
    const r = await t.app.inject({
      method: 'POST',
      url: '/echo',
      headers: { 'content-type': 'application/x-thing' },
      payload: 'x',
    });
    assert.equal(r.statusCode, 415);
    assert.equal(r.json().error.code, 'UNSUPPORTED_MEDIA_TYPE');
  });

  test('an AppError keeps its code and status; validation errors are 400', async () => {
    const c = await t.app.inject({ method: 'GET', url: '/conflict' });
    assert.equal(c.statusCode, 409);
    assert.deepEqual(c.json(), { error: { code: 'CONFLICT', message: 'already done' } });
    const v = await t.app.inject({ method: 'POST', url: '/validated', payload: { n: 'x' } });
    assert.equal(v.statusCode, 400);
    assert.equal(v.json().error.code, 'BAD_REQUEST');
  });

  test('an unexpected error is a generic 500: nothing internal leaves the process, all of it is logged', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/boom' });
    assert.equal(r.statusCode, 500);
    assert.deepEqual(r.json(), { error: { code: 'INTERNAL', message: 'Internal error; it has been logged.' } });
    assert.ok(!r.body.includes('SELECT') && !r.body.includes('/srv/app.ts'));
    const logged = t.logs.find('unhandled error');
    assert.equal(logged.length, 1);
    assert.match(JSON.stringify(logged[0]), /SELECT secret FROM internals/);
    assert.equal(logged[0]!.severity, 'ERROR');
  });

  test('one log line per request, with the trace of its traceparent', async () => {
    const before = t.logs.lines.length;
    await t.app.inject({
      method: 'GET',
      url: '/healthz',
      headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'user-agent': 'probe' },
    });
    const lines = t.logs.lines.slice(before);
    assert.equal(lines.length, 1);
    const line = lines[0]!;
    assert.equal(line.message, 'GET /healthz 200');
    assert.equal(line['logging.googleapis.com/trace'], 'projects/local/traces/4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal((line.httpRequest as { status: number }).status, 200);
    assert.equal((line.httpRequest as { userAgent: string }).userAgent, 'probe');
  });

  test('the query string of a webhook route never reaches the log (hub.verify_token, wrong guesses)', async () => {
    const guess = 'guess-of-the-verify-token-7f3a';
    const urls = [
      `/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=${guess}&hub.challenge=42`,
      `/webhooks/whatsapp/?hub.verify_token=${guess}`,
      `/%77ebhooks/whatsapp?hub.verify_token=${guess}`,
      `/Webhooks/stripe?${guess}`,
      `/auth/callback?code=${guess}&state=s`,
    ];
    const before = t.logs.lines.length;
    for (const url of urls) await t.app.inject({ method: 'GET', url });
    const lines = t.logs.lines.slice(before);
    assert.ok(!JSON.stringify(lines).includes(guess), JSON.stringify(lines));
    const logged = lines.map((l) => (l.httpRequest as { requestUrl: string } | undefined)?.requestUrl);
    assert.ok(logged.includes('/webhooks/whatsapp?[redacted]'), JSON.stringify(logged));
    // Elsewhere the query stays, for debugging.
    await t.app.inject({ method: 'GET', url: '/healthz?probe=1' });
    const last = t.logs.lines.at(-1)!.httpRequest as { requestUrl: string };
    assert.equal(last.requestUrl, '/healthz?probe=1');
  });
});

describe(`readiness when something is wrong (${testDbKind})`, () => {
  test('/readyz is 503 NOT_READY with pending migrations, named in the log and not to the caller', async () => {
    const t = await buildTestApp();
    try {
      await t.db.query("DELETE FROM schema_migrations WHERE name = '0001_init.sql'");
      const r = await t.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(r.statusCode, 503);
      assert.deepEqual(r.json(), {
        error: { code: 'NOT_READY', message: 'Migrations pending; run `backend migrate`.' },
      });
      assert.ok(!r.body.includes('0001'), r.body);
      const [logged] = t.logs.find('not ready: migrations pending');
      assert.deepEqual(logged?.pendingMigrations, ['0001_init.sql']);
    } finally {
      await t.close();
    }
  });

  test('/readyz is 503 when the database is gone, and /healthz stays 200', async () => {
    const t = await buildTestApp();
    await t.db.close();
    try {
      const r = await t.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(r.statusCode, 503);
      assert.deepEqual(r.json(), { error: { code: 'NOT_READY', message: 'Database not ready: the query failed.' } });
      assert.equal((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    } finally {
      await t.app.close();
      await t.issuer.close();
    }
  });
});

describe(`graceful close (${testDbKind})`, () => {
  test('close() lets an in-flight request finish, then refuses new connections', async () => {
    const t = await buildTestApp();
    let started!: () => void;
    const handlerStarted = new Promise<void>((r) => {
      started = r;
    });
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    t.app.get('/slow', async () => {
      started();
      await released;
      return { done: true };
    });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = t.app.server.address() as { port: number };
    const inFlight = fetch(`http://127.0.0.1:${port}/slow`);
    await handlerStarted;
    const closing = t.close();
    release();
    const response = await inFlight;
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { done: true });
    await closing;
    // Not listening any more. (A new request to the port is no proof either way: with test files
    // running in parallel, another file's server can be given the freed port at once, which is how
    // this test once failed in CI.)
    assert.equal(t.app.server.listening, false);
    assert.equal(t.app.server.address(), null);
  });
});
