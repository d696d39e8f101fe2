// Logs as JSON lines in the shape Cloud Logging reads (severity, message, time, trace), or pretty
// lines for a person at a terminal. Secrets are redacted wherever they could appear. Error lines
// that carry an error are shaped for Cloud Error Reporting.
import { createRequire } from 'node:module';
import { pino } from 'pino';

const require = createRequire(import.meta.url);

export type Logger = pino.Logger;

const SEVERITY: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

/** Paths redacted in every log line: credentials in headers, and any field named like a secret. */
export const REDACT_PATHS = [
  'headers.authorization',
  'headers.cookie',
  'headers["x-task-secret"]',
  'headers["x-hub-signature-256"]',
  'headers["stripe-signature"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-task-secret"]',
  '*.password',
  '*.secret',
  '*.token',
  '*.accessToken',
  '*.apiKey',
  '*.sessionSecret',
  'config.tasks.secret',
  'config.database.url',
  'config.whatsapp',
  'config.llm.apiKey',
  'config.stripe.webhookSecret',
  'config.oauth.clientSecret',
  'config.sessionSecret',
];

export interface LoggerOptions {
  level: string;
  /** json: Cloud Logging lines; pretty: for a terminal. (Default: pretty when stdout is a TTY) */
  format?: 'json' | 'pretty' | undefined;
  /** Where JSON lines go. (Default: stdout) */
  destination?: pino.DestinationStream;
  /** What Error Reporting groups errors under. (Default: Cloud Run's K_SERVICE and K_REVISION) */
  serviceContext?: ServiceContext;
}

export interface ServiceContext {
  service: string;
  version: string;
}

/** The type that makes Cloud Error Reporting take a log line as an error event. */
export const REPORTED_ERROR_EVENT =
  'type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent';
const ERROR_LEVEL = 50;

/**
 * The fields Error Reporting reads from a JSON line: its type, the service and version it groups
 * by, and the stack (grouping is by the stack's frames, so the message can vary).
 */
export function errorReportingFields(err: unknown, serviceContext: ServiceContext): Record<string, unknown> {
  const stack =
    err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : `Error: ${String(err)}\n    at (unknown)`;
  return { '@type': REPORTED_ERROR_EVENT, serviceContext, stack_trace: stack };
}

export function createLogger(options: LoggerOptions): Logger {
  const format = options.format ?? (process.stdout.isTTY ? 'pretty' : 'json');
  const redact = { paths: REDACT_PATHS, censor: '[redacted]' };
  if (format === 'pretty') {
    // Loaded only for a terminal: containers never pay for it.
    const pretty = require('pino-pretty') as typeof import('pino-pretty');
    const stream = pretty({ sync: true, messageKey: 'message', ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' });
    return pino({ level: options.level, messageKey: 'message', redact, base: undefined }, stream);
  }
  const serviceContext = options.serviceContext ?? {
    service: process.env.K_SERVICE ?? 'backend',
    version: process.env.K_REVISION ?? 'local',
  };
  return pino(
    {
      level: options.level,
      // Only ERROR lines and above that carry an error (as `err`, or the error itself) pay for this.
      hooks: {
        logMethod(args, method, level) {
          const first: unknown = args[0];
          if (level >= ERROR_LEVEL && first !== null && typeof first === 'object') {
            if (first instanceof Error) {
              const rest = args.length > 1 ? args.slice(1) : [first.message];
              return method.apply(this, [
                { err: first, ...errorReportingFields(first, serviceContext) },
                ...rest,
              ] as unknown as Parameters<typeof method>);
            }
            const err = (first as { err?: unknown }).err;
            if (err !== undefined) {
              args[0] = { ...first, ...errorReportingFields(err, serviceContext) };
            }
          }
          return method.apply(this, args);
        },
      },
      messageKey: 'message',
      base: undefined,
      redact,
      timestamp: () => `,"time":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ severity: SEVERITY[label] ?? 'DEFAULT' }) },
    },
    options.destination ?? pino.destination({ sync: true }),
  );
}

export interface TraceContext {
  traceId: string;
  spanId: string | undefined;
  sampled: boolean;
}

/** Reads W3C `traceparent`, or Google's `X-Cloud-Trace-Context: TRACE/SPAN;o=1`. */
export function parseTraceContext(headers: Record<string, string | string[] | undefined>): TraceContext | undefined {
  const traceparent = first(headers.traceparent);
  const w3c = traceparent && /^[\da-f]{2}-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})$/.exec(traceparent.trim());
  if (w3c?.[1] && !/^0+$/.test(w3c[1])) {
    return { traceId: w3c[1], spanId: w3c[2], sampled: (Number.parseInt(w3c[3] ?? '0', 16) & 1) === 1 };
  }
  const cloud = first(headers['x-cloud-trace-context']);
  const g = cloud && /^([\da-f]{32})(?:\/(\d+))?(?:;o=([01]))?$/.exec(cloud.trim());
  if (g?.[1]) return { traceId: g[1], spanId: g[2], sampled: g[3] === '1' };
  return undefined;
}

/** The fields that make Cloud Logging group a line under its request's trace. */
export function traceBindings(trace: TraceContext | undefined, projectId: string): Record<string, unknown> {
  if (!trace) return {};
  return {
    'logging.googleapis.com/trace': `projects/${projectId}/traces/${trace.traceId}`,
    ...(trace.spanId ? { 'logging.googleapis.com/spanId': trace.spanId } : {}),
    'logging.googleapis.com/trace_sampled': trace.sampled,
  };
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
