// Telemetry's parts: error lines shaped for Cloud Error Reporting, trace context in and out,
// the id-only tracer, Prometheus and OTLP exporting against local servers, and its config.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { createLogger, REPORTED_ERROR_EVENT } from '../../src/logger.ts';
import { createTelemetry, telemetryOff } from '../../src/observability/telemetry.ts';
import {
  contextFromHeaders,
  idOnlyTracer,
  installContextManager,
  traceparentOf,
} from '../../src/observability/trace-context.ts';
import { freePort } from '../helpers/cli-process.ts';

function capture(serviceContext?: { service: string; version: string }) {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, logger: createLogger({ level: 'debug', format: 'json', destination, serviceContext }) };
}

describe('error reporting fields', () => {
  test('an ERROR line with an err carries the event type, the service context and the stack', () => {
    const { lines, logger } = capture({ service: 'backend-api', version: 'backend-api-00042-abc' });
    const err = new TypeError('cannot read the page');
    logger.error({ err, task: 'scraper.scrape_page' }, 'outbox relay failed');
    logger.error(new RangeError('out of range'));
    logger.fatal({ err: 'a thrown string' }, 'gave up');
    const [first, second, third] = lines;
    assert.equal(first!['@type'], REPORTED_ERROR_EVENT);
    assert.deepEqual(first!.serviceContext, { service: 'backend-api', version: 'backend-api-00042-abc' });
    assert.equal(first!.stack_trace, err.stack);
    assert.match(String(first!.stack_trace), /^TypeError: cannot read the page\n\s+at /);
    assert.equal(first!.message, 'outbox relay failed');
    assert.equal(first!.task, 'scraper.scrape_page');
    assert.equal((first!.err as { message: string }).message, 'cannot read the page');
    // An Error logged alone keeps its message as the line's message.
    assert.equal(second!['@type'], REPORTED_ERROR_EVENT);
    assert.equal(second!.message, 'out of range');
    assert.match(String(second!.stack_trace), /^RangeError: out of range\n/);
    // Something thrown that is not an Error still gets a stack-shaped text Error Reporting accepts.
    assert.equal(third!['@type'], REPORTED_ERROR_EVENT);
    assert.match(String(third!.stack_trace), /^Error: a thrown string\n\s+at /);
  });

  test('warnings, and errors without an err, are not error events', () => {
    const { lines, logger } = capture();
    logger.warn({ err: new Error('retrying') }, 'createTask failed; retrying');
    logger.error({ timeoutMs: 9000 }, 'shutdown did not finish in time');
    logger.info('fine');
    for (const line of lines) {
      assert.ok(!('@type' in line) && !('stack_trace' in line) && !('serviceContext' in line), JSON.stringify(line));
    }
  });

  test("the service context defaults to Cloud Run's K_SERVICE and K_REVISION", () => {
    const saved = { s: process.env.K_SERVICE, r: process.env.K_REVISION };
    process.env.K_SERVICE = 'svc';
    process.env.K_REVISION = 'svc-00007';
    try {
      const { lines, logger } = capture();
      logger.error({ err: new Error('x') }, 'x');
      assert.deepEqual(lines[0]!.serviceContext, { service: 'svc', version: 'svc-00007' });
    } finally {
      for (const [k, v] of [
        ['K_SERVICE', saved.s],
        ['K_REVISION', saved.r],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});

describe('trace context', () => {
  installContextManager();
  const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

  test('a child of a traceparent keeps its trace id, gets a span id of its own, and is what an enqueue sends on', () => {
    const span = idOnlyTracer.startSpan('child', {}, contextFromHeaders({ traceparent: parent }));
    const sc = span.spanContext();
    assert.equal(sc.traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.match(sc.spanId, /^[0-9a-f]{16}$/);
    assert.notEqual(sc.spanId, 'b7ad6b7169203331');
    assert.equal(span.isRecording(), false);
    const sent = context.with(trace.setSpan(ROOT_CONTEXT, span), () => traceparentOf());
    assert.equal(sent, `00-0af7651916cd43dd8448eb211c80319c-${sc.spanId}-00`);
    // Outside any span there is nothing to send.
    assert.equal(traceparentOf(ROOT_CONTEXT), undefined);
  });

  test("Google's X-Cloud-Trace-Context is continued too (its decimal span id in hex)", () => {
    const ctx = contextFromHeaders({ 'x-cloud-trace-context': '105445aa7843bc8bf206b12000100000/1;o=1' });
    const sc = trace.getSpanContext(ctx);
    assert.deepEqual(
      { traceId: sc?.traceId, spanId: sc?.spanId, flags: sc?.traceFlags, remote: sc?.isRemote },
      { traceId: '105445aa7843bc8bf206b12000100000', spanId: '0000000000000001', flags: 1, remote: true },
    );
  });

  test('no trace header, or an invalid one, starts a new trace with fresh ids', () => {
    for (const headers of [{}, { traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' }]) {
      const a = idOnlyTracer.startSpan('a', {}, contextFromHeaders(headers)).spanContext();
      const b = idOnlyTracer.startSpan('b', {}, contextFromHeaders(headers)).spanContext();
      assert.match(a.traceId, /^[0-9a-f]{32}$/);
      assert.notEqual(a.traceId, b.traceId);
      assert.ok(!/^0+$/.test(a.traceId) && !/^0+$/.test(a.spanId));
    }
  });
});

describe('telemetry', () => {
  const env = (extra: Record<string, string>) => loadConfig({ ...extra });

  test('by default nothing is exported and no SDK is started', async () => {
    const telemetry = await createTelemetry(env({}).observability, 'local');
    assert.equal(telemetry, telemetryOff);
  });

  test('OTLP exporting needs an endpoint: refused at boot with one line naming the variables', () => {
    for (const name of ['TRACE_EXPORTER', 'METRICS_EXPORTER']) {
      assert.throws(
        () => env({ [name]: 'otlp' }),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.issues.some((i) => i.startsWith(`OTEL_EXPORTER_OTLP_ENDPOINT is required when ${name}=otlp`)),
      );
    }
    assert.throws(() => env({ TRACE_SAMPLE_RATIO: '1.5' }), /TRACE_SAMPLE_RATIO="1.5" is not valid/);
    assert.throws(() => env({ TRACE_EXPORTER: 'jaeger' }), /TRACE_EXPORTER="jaeger" is not valid/);
  });

  test('metrics served to Prometheus on their own port: runs by task and outcome, durations, outbox depth, webhooks', async () => {
    const port = await freePort();
    const config = env({ METRICS_EXPORTER: 'prometheus', METRICS_PORT: String(port), K_SERVICE: 'backend-api' });
    const telemetry = await createTelemetry(config.observability, 'proj-1');
    try {
      telemetry.metrics.recordRun('blog.generate_post', 'succeeded', 0.3);
      telemetry.metrics.recordRun('blog.generate_post', 'succeeded', 2);
      telemetry.metrics.recordRun('blog.generate_post', 'retry', 0.01);
      telemetry.metrics.recordWebhook('whatsapp', 'accepted');
      telemetry.metrics.observeOutboxDepth(async () => 7);
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      assert.equal(response.status, 200);
      const text = await response.text();
      const has = (re: RegExp) => assert.match(text, re, text);
      has(/^tasks_runs_total\{[^}]*task="blog.generate_post"[^}]*outcome="succeeded"[^}]*\} 2$/m);
      has(/^tasks_runs_total\{[^}]*outcome="retry"[^}]*\} 1$/m);
      has(/^tasks_run_duration_count\{[^}]*outcome="succeeded"[^}]*\} 2$/m);
      has(/^tasks_run_duration_bucket\{[^}]*outcome="succeeded"[^}]*le="0.5"\} 1$/m);
      has(/^tasks_outbox_depth 7$/m);
      has(/^webhooks_received_total\{[^}]*source="whatsapp"[^}]*result="accepted"[^}]*\} 1$/m);
      has(/service_name="backend-api"/);
    } finally {
      await telemetry.shutdown();
    }
    // Shut down, the port is closed.
    await assert.rejects(fetch(`http://127.0.0.1:${port}/metrics`));
  });

  test('spans exported over OTLP/HTTP to a collector: the trace id, the span names, the service', async () => {
    const received: { path: string | undefined; body: string }[] = [];
    const collector = createServer(async (req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      received.push({ path: req.url, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    collector.listen(0, '127.0.0.1');
    await once(collector, 'listening');
    const { port } = collector.address() as { port: number };
    try {
      const config = env({ TRACE_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}/` });
      const telemetry = await createTelemetry(config.observability, 'local');
      const span = telemetry.tracer.startSpan(
        'task blog.generate_post',
        {},
        contextFromHeaders({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }),
      );
      assert.equal(span.isRecording(), true);
      span.end();
      await telemetry.shutdown(); // flushes the batch
      assert.equal(received.length, 1);
      assert.equal(received[0]!.path, '/v1/traces');
      const body = received[0]!.body;
      assert.ok(body.includes('task blog.generate_post'), body);
      assert.ok(body.includes('backend'), body);
      assert.ok(
        body.includes('0af7651916cd43dd8448eb211c80319c') || body.includes('CvdlGRbNQ92ESOshHIAxnA=='),
        `trace id in ${body}`,
      );
    } finally {
      collector.close();
    }
  });
});
