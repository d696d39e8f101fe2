// One server span per HTTP request, continuing the caller's trace (traceparent), and the request's
// log lines under that span's ids. The span is started where Fastify makes the request's logger
// (the first thing it does with a request) and the route handler runs inside it, so whatever the
// handler enqueues carries the trace on.
import type { IncomingMessage } from 'node:http';
import type { Span } from '@opentelemetry/api';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { traceBindings } from '../logger.ts';
import { otel } from './otel-api.ts';
import { contextFromHeaders, logTraceOf, type SpanStarter } from './trace-context.ts';

const { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } = otel;

const spans = new WeakMap<IncomingMessage, Span>();

/** Fastify's childLoggerFactory: starts the request's span and binds its ids to the request's logger. */
export function tracedChildLoggers(tracer: SpanStarter, projectId: string) {
  return (logger: FastifyBaseLogger, bindings: object, opts: object, raw: IncomingMessage): FastifyBaseLogger => {
    const path = (raw.url ?? '/').split('?', 1)[0]!;
    // Only the path: query strings can hold secrets (the webhook handshake's verify token).
    const span = tracer.startSpan(
      `${raw.method} ${path}`,
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': raw.method ?? '', 'url.path': path } },
      contextFromHeaders(raw.headers),
    );
    spans.set(raw, span);
    return logger.child({ ...bindings, ...traceBindings(logTraceOf(span), projectId) }, opts);
  };
}

/** Runs each handler inside its request's span, and ends the span with the response. */
export function traceRequests(app: FastifyInstance): void {
  // preHandler, not onRequest: Fastify reads the body between the two, outside any async context.
  app.addHook('preHandler', (request, _reply, done) => {
    const span = spans.get(request.raw);
    if (span) context.with(trace.setSpan(ROOT_CONTEXT, span), done);
    else done();
  });
  const end = (raw: IncomingMessage, status: number | undefined, route: string | undefined) => {
    const span = spans.get(raw);
    if (!span) return;
    spans.delete(raw);
    if (span.isRecording()) {
      if (route) {
        span.updateName(`${raw.method} ${route}`);
        span.setAttribute('http.route', route);
      }
      if (status !== undefined) {
        span.setAttribute('http.response.status_code', status);
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      }
    }
    span.end();
  };
  app.addHook('onResponse', (request, reply, done) => {
    end(request.raw, reply.statusCode, request.routeOptions.url);
    done();
  });
  app.addHook('onRequestAbort', (request, done) => {
    end(request.raw, undefined, request.routeOptions.url);
    done();
  });
}
