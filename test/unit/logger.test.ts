import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { createLogger, parseTraceContext, traceBindings } from '../../src/logger.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, logger: createLogger({ level: 'debug', format: 'json', destination }) };
}

describe('logger', () => {
  test('JSON lines carry severity, message and an ISO time, and no pid or hostname', () => {
    const { lines, logger } = capture();
    logger.info({ a: 1 }, 'hello');
    logger.warn('careful');
    logger.error('broken');
    logger.fatal('gone');
    logger.debug('details');
    assert.deepEqual(
      lines.map((l) => [l.severity, l.message]),
      [
        ['INFO', 'hello'],
        ['WARNING', 'careful'],
        ['ERROR', 'broken'],
        ['CRITICAL', 'gone'],
        ['DEBUG', 'details'],
      ],
    );
    assert.match(String(lines[0]!.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(lines[0]!.a, 1);
    assert.ok(!('pid' in lines[0]!) && !('hostname' in lines[0]!) && !('level' in lines[0]!));
  });

  test('credentials are redacted', () => {
    const { lines, logger } = capture();
    logger.info(
      {
        headers: { authorization: 'Bearer abc.def.ghi', 'x-task-secret': 's3cr3t', cookie: 'sid=1' },
        whatsapp: { accessToken: 'EAAG-token' },
        llm: { apiKey: 'sk-123' },
      },
      'request',
    );
    const text = JSON.stringify(lines[0]);
    for (const secret of ['abc.def.ghi', 's3cr3t', 'sid=1', 'EAAG-token', 'sk-123']) {
      assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
    }
    assert.ok(text.includes('[redacted]'));
  });

  test('trace context from traceparent, then X-Cloud-Trace-Context', () => {
    assert.deepEqual(parseTraceContext({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }), {
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      sampled: true,
    });
    assert.deepEqual(parseTraceContext({ 'x-cloud-trace-context': '105445aa7843bc8bf206b12000100000/1;o=1' }), {
      traceId: '105445aa7843bc8bf206b12000100000',
      spanId: '1',
      sampled: true,
    });
    assert.equal(
      parseTraceContext({ traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' }),
      undefined,
    );
    assert.equal(parseTraceContext({ traceparent: 'garbage' }), undefined);
    assert.equal(parseTraceContext({}), undefined);
    assert.deepEqual(
      traceBindings(parseTraceContext({ 'x-cloud-trace-context': 'abcdef0123456789abcdef0123456789' }), 'p'),
      {
        'logging.googleapis.com/trace': 'projects/p/traces/abcdef0123456789abcdef0123456789',
        'logging.googleapis.com/trace_sampled': false,
      },
    );
  });
});
