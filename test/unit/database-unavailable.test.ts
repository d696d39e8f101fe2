// Which errors mean "the database is not there right now" (503 + Retry-After, retried by every
// caller) and which are bugs (500): the classifier, and the HTTP error handler built on it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import Fastify from 'fastify';
import { isDatabaseUnavailable, isServerUnavailable } from '../../src/db/unavailable.ts';
import { DatabaseUnavailableError } from '../../src/errors.ts';
import { registerErrorHandler } from '../../src/http/plugins/error-handler.ts';

const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

const unavailable: Array<[string, Error]> = [
  ['connection refused', withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED')],
  ['admin shutdown (57P01)', withCode('terminating connection due to administrator command', '57P01')],
  ['cannot connect now (57P03)', withCode('the database system is starting up', '57P03')],
  ['too many connections (53300)', withCode('sorry, too many clients already', '53300')],
  ['connection exception class 08', withCode('connection failure', '08006')],
  ['connection terminated', new Error('Connection terminated unexpectedly')],
  ['pool wait timed out', new Error('timeout exceeded when trying to connect')],
  ['client already failed', new Error('Client has encountered a connection error and is not queryable')],
];
const bugs: Array<[string, Error]> = [
  ['unique violation', withCode('duplicate key value violates unique constraint', '23505')],
  ['syntax error', withCode('syntax error at or near "SELEC"', '42601')],
  ['query canceled', withCode('canceling statement due to statement timeout', '57014')],
  ['plain error', new Error('boom')],
];

describe('database unavailability', () => {
  test('connection failures, shutdowns and pool timeouts are unavailable; SQL errors are not', () => {
    for (const [name, err] of unavailable) assert.equal(isDatabaseUnavailable(err), true, name);
    for (const [name, err] of bugs) assert.equal(isDatabaseUnavailable(err), false, name);
  });

  test('without the adapter, a bare socket error is not taken for the database (an HTTP client raises it too)', () => {
    assert.equal(isServerUnavailable(withCode('connect ECONNREFUSED 127.0.0.1:443', 'ECONNREFUSED')), false);
    assert.equal(isServerUnavailable(withCode('terminating connection', '57P01')), true);
  });

  test('the error handler answers 503 + Retry-After for the database, wrapped or not, and 500 for the rest', async () => {
    const app = Fastify();
    registerErrorHandler(app);
    const errors: Record<string, unknown> = {
      wrapped: new DatabaseUnavailableError(withCode('refused', 'ECONNREFUSED')),
      cause: new Error('handler failed', { cause: new DatabaseUnavailableError(new Error('Connection terminated')) }),
      raw: withCode('terminating connection due to administrator command', '57P01'),
      fetch: new TypeError('fetch failed', { cause: withCode('connect ECONNREFUSED', 'ECONNREFUSED') }),
      sql: withCode('duplicate key value', '23505'),
    };
    app.get('/:kind', async (request) => {
      throw errors[(request.params as { kind: string }).kind];
    });
    for (const kind of ['wrapped', 'cause', 'raw']) {
      const r = await app.inject({ method: 'GET', url: `/${kind}` });
      assert.equal(r.statusCode, 503, kind);
      assert.equal(r.headers['retry-after'], '10', kind);
      assert.equal(r.json().error.code, 'DATABASE_UNAVAILABLE', kind);
      assert.doesNotMatch(r.body, /administrator|refused|terminated/, 'no driver message leaves the process');
    }
    for (const kind of ['fetch', 'sql']) {
      const r = await app.inject({ method: 'GET', url: `/${kind}` });
      assert.equal(r.statusCode, 500, kind);
      assert.equal(r.json().error.code, 'INTERNAL', kind);
    }
    await app.close();
  });
});
