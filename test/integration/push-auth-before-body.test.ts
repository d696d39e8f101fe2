// The push route knows its caller before it reads a byte of the body: authentication runs in
// onRequest, ahead of body parsing. Were it moved later (preHandler, after parsing), an anonymous
// caller could make the service buffer up to the body limit per request, or hold a request open by
// never finishing its body; these tests fail in that case.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import { BODY_LIMIT_BYTES } from '../../src/app.ts';
import { defineTask } from '../../src/tasks/define-task.ts';
import { createRegistry } from '../../src/tasks/registry.ts';
import { push } from '../helpers/push.ts';
import { buildTestApp, type TestApp } from '../helpers/test-app.ts';
import { testDbKind } from '../helpers/test-db.ts';

let handled = 0;
const echo = defineTask({
  name: 'test.echo',
  queue: 'q',
  payload: z.object({ n: z.number() }),
  async handler() {
    handled++;
    return {};
  },
});
const registry = createRegistry({ tasks: [echo], queues: [{ name: 'q' }], schedules: [] });

describe(`push authentication comes before the body (${testDbKind})`, () => {
  let t: TestApp;
  before(async () => {
    t = await buildTestApp({ registry });
  });
  after(() => t.close());

  const oversized = JSON.stringify({ n: 1, pad: 'x'.repeat(BODY_LIMIT_BYTES) });

  test('a body over the size limit without credentials is 401, not 413: the body was never read', async () => {
    for (const token of [null, 'not.a.jwt']) {
      const r = await push(t.app, t.issuer, 'test.echo', null, { token, rawBody: oversized, taskName: 'big-anon' });
      assert.equal(r.status, 401, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'UNAUTHENTICATED');
    }
    // With valid credentials the same body reaches the parser, which refuses it for its size.
    const authed = await push(t.app, t.issuer, 'test.echo', null, { rawBody: oversized, taskName: 'big-authed' });
    assert.equal(authed.status, 413);
    assert.equal(handled, 0);
  });

  test('a body that never finishes, without credentials, is answered 401 at once', { timeout: 15_000 }, async (ctx) => {
    const server = await t.app.listen({ port: 0, host: '127.0.0.1' });
    assert.ok(server);
    const { port } = t.app.server.address() as AddressInfo;
    const request = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/tasks/test.echo',
      headers: { 'content-type': 'application/json', 'content-length': String(BODY_LIMIT_BYTES - 1) },
      agent: false,
    });
    request.on('error', () => {}); // the socket is destroyed below, mid-body
    ctx.signal.addEventListener('abort', () => request.destroy()); // timed out: let the app close
    request.write('{"n": 1, "pad": "');
    // Only the first bytes of a ~1 MB body are sent, and the rest never: a route that read the
    // body before authenticating would wait here until the test's timeout.
    const [response] = (await once(request, 'response')) as [http.IncomingMessage];
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    request.destroy();
    assert.equal(response.statusCode, 401);
    assert.equal(JSON.parse(Buffer.concat(chunks).toString()).error.code, 'UNAUTHENTICATED');
    assert.equal(handled, 0);
  });
});
