// Trace context without an SDK: W3C traceparent in and out, the active context (AsyncLocalStorage),
// and the tracer used while exporting is off, which only makes ids. Loading an OpenTelemetry SDK
// costs start-up time, so a service that exports nothing never loads one.
import { randomFillSync } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Context, Span, SpanContext, SpanOptions } from '@opentelemetry/api';
import { parseTraceContext } from '../logger.ts';
import { otel } from './otel-api.ts';

const { context, INVALID_SPANID, INVALID_TRACEID, ROOT_CONTEXT, TraceFlags, trace } = otel;
const require = createRequire(import.meta.url);

/** What this code needs of a tracer: starting spans (the SDK's Tracer is one). */
export interface SpanStarter {
  startSpan(name: string, options?: SpanOptions, context?: Context): Span;
}

type Headers = Record<string, string | string[] | undefined>;

let installed = false;
/**
 * Makes `context.active()` follow async calls (AsyncLocalStorage), once per process: what lets an
 * enqueue deep inside a handler find the trace of the run that called it.
 */
export function installContextManager(): void {
  if (installed) return;
  installed = true;
  // CommonJS too, so that it binds to the API copy the rest of the process uses.
  const { AsyncLocalStorageContextManager } =
    require('@opentelemetry/context-async-hooks') as typeof import('@opentelemetry/context-async-hooks');
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
}

/** The W3C `traceparent` of a context's span, for the task that this context enqueues. */
export function traceparentOf(ctx: Context = context.active()): string | undefined {
  const sc = trace.getSpanContext(ctx);
  if (!isValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${sc.traceFlags & TraceFlags.SAMPLED ? '01' : '00'}`;
}

/**
 * The parent a request continues: its `traceparent`, or Google's `X-Cloud-Trace-Context` (whose span
 * id is decimal). ROOT_CONTEXT when it carries neither: a new trace starts there.
 */
export function contextFromHeaders(headers: Headers): Context {
  const parsed = parseTraceContext(headers);
  if (!parsed?.spanId) return ROOT_CONTEXT;
  let spanId = parsed.spanId;
  if (!/^[\da-f]{16}$/.test(spanId)) {
    const n = /^\d{1,20}$/.test(spanId) ? BigInt(spanId) : 0n;
    if (n === 0n || n >= 1n << 64n) return ROOT_CONTEXT;
    spanId = n.toString(16).padStart(16, '0');
  }
  const parent: SpanContext = {
    traceId: parsed.traceId,
    spanId,
    traceFlags: parsed.sampled ? TraceFlags.SAMPLED : TraceFlags.NONE,
    isRemote: true,
  };
  return spanId !== INVALID_SPANID ? trace.setSpanContext(ROOT_CONTEXT, parent) : ROOT_CONTEXT;
}

/**
 * The API's isSpanContextValid runs two regular expressions; the span contexts here are all made by
 * this module (from ids checked when parsed) or are the API's INVALID one, so comparing is enough.
 */
function isValid(sc: SpanContext | undefined): sc is SpanContext {
  return sc !== undefined && sc.traceId !== INVALID_TRACEID && sc.spanId !== INVALID_SPANID;
}

/** The ids a log line carries for a span (see logger.ts traceBindings). */
export function logTraceOf(span: Span): { traceId: string; spanId: string; sampled: boolean } {
  const sc = span.spanContext();
  return { traceId: sc.traceId, spanId: sc.spanId, sampled: (sc.traceFlags & TraceFlags.SAMPLED) !== 0 };
}

/**
 * The tracer while exporting is off: spans that record nothing but have real ids, a child keeping
 * its parent's trace id, so logs and the traceparent of enqueued tasks still tie a conversation
 * together. Costs two random ids per span.
 */
export const idOnlyTracer: SpanStarter = {
  startSpan(_name, options, ctx = context.active()) {
    const parent = options?.root ? undefined : trace.getSpanContext(ctx);
    const valid = isValid(parent);
    return trace.wrapSpanContext({
      traceId: valid ? parent.traceId : randomHex(16),
      spanId: randomHex(8),
      traceFlags: TraceFlags.NONE,
      ...(valid && parent.traceState ? { traceState: parent.traceState } : {}),
    });
  },
};

// Random bytes drawn 4 KB at a time: one system call per ~300 spans instead of one per id.
const pool = Buffer.allocUnsafe(4096);
let offset = pool.length;
function randomHex(bytes: number): string {
  if (offset + bytes > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const hex = pool.toString('hex', offset, offset + bytes);
  offset += bytes;
  // All zeros is the invalid id (a chance of 2^-64); never hand it out.
  return /^0+$/.test(hex) ? randomHex(bytes) : hex;
}
