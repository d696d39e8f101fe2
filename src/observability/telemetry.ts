// The service's telemetry, built from the config: a tracer and metrics that export nowhere (the
// default: no network, no SDK loaded, ids only), or OpenTelemetry's SDK exporting over OTLP/HTTP to
// a collector or to Cloud Trace, and metrics served to Prometheus or pushed over OTLP.
import { createRequire } from 'node:module';
import type { ObservabilityConfig } from '../config.ts';
import { type Metrics, metricsOff, metricsOn } from './metrics.ts';
import { idOnlyTracer, installContextManager, type SpanStarter } from './trace-context.ts';

// CommonJS builds, loaded only when exporting: they share the one API copy (see otel-api.ts).
const require = createRequire(import.meta.url);

/** Google's OTLP endpoint (Telemetry API): Cloud Trace takes spans there with an OAuth token. */
export const CLOUD_TRACE_OTLP_ENDPOINT = 'https://telemetry.googleapis.com';

export interface Telemetry {
  readonly tracer: SpanStarter;
  readonly metrics: Metrics;
  /** Sends what is buffered and stops the exporters (and the Prometheus port). */
  shutdown(): Promise<void>;
}

/** No exporting: what tests and a default start get. */
export const telemetryOff: Telemetry = { tracer: idOnlyTracer, metrics: metricsOff, shutdown: async () => {} };

/** What tests add: their own span processors (an in-memory exporter) and metric readers. */
export interface TelemetryExtras {
  spanProcessors?: import('@opentelemetry/sdk-trace').SpanProcessor[];
  metricReaders?: import('@opentelemetry/sdk-metrics').MetricReader[];
}

export async function createTelemetry(
  config: ObservabilityConfig,
  projectId: string,
  extras: TelemetryExtras = {},
): Promise<Telemetry> {
  installContextManager();
  const tracing = config.traceExporter !== 'none' || (extras.spanProcessors?.length ?? 0) > 0;
  const metering = config.metricsExporter !== 'none' || (extras.metricReaders?.length ?? 0) > 0;
  if (!tracing && !metering) return telemetryOff;
  const attributes = {
    'service.name': config.serviceName,
    'service.version': config.serviceVersion,
    ...(projectId !== 'local' ? { 'gcp.project_id': projectId } : {}),
  };
  const { resourceFromAttributes } = require('@opentelemetry/resources') as typeof import('@opentelemetry/resources');
  const resource = resourceFromAttributes(attributes);
  const [traces, metrics] = await Promise.all([
    tracing ? startTracing(config, projectId, resource, extras) : undefined,
    metering ? startMetrics(config, resource, extras) : undefined,
  ]);
  return {
    tracer: traces?.tracer ?? idOnlyTracer,
    metrics: metrics?.metrics ?? metricsOff,
    shutdown: async () => {
      await Promise.all([traces?.shutdown(), metrics?.shutdown()]);
    },
  };
}

type Resource = import('@opentelemetry/resources').Resource;

async function startTracing(
  config: ObservabilityConfig,
  projectId: string,
  resource: Resource,
  extras: TelemetryExtras,
): Promise<{ tracer: SpanStarter; shutdown: () => Promise<void> }> {
  const sdk = require('@opentelemetry/sdk-trace') as typeof import('@opentelemetry/sdk-trace');
  const spanProcessors = [...(extras.spanProcessors ?? [])];
  if (config.traceExporter !== 'none') {
    spanProcessors.push(new sdk.BatchSpanProcessor({ exporter: await traceExporter(config, projectId) }));
  }
  // The ratio sampler decides from the trace id alone, so every task of a conversation, in
  // whichever instance it runs, makes the same decision: a trace is recorded whole or not at all.
  const ratio = new sdk.TraceIdRatioBasedSampler(config.traceSampleRatio);
  const provider = new sdk.TracerProvider({
    resource,
    sampler: new sdk.ParentBasedSampler({ root: ratio, remoteParentNotSampled: ratio }),
    spanProcessors,
  });
  return { tracer: provider.getTracer('backend'), shutdown: () => provider.shutdown() };
}

async function traceExporter(config: ObservabilityConfig, projectId: string) {
  const { OTLPTraceExporter } =
    require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http');
  if (config.traceExporter === 'cloud-trace') {
    // Google's OTLP endpoint wants an OAuth token of the runtime's service account (roles/cloudtrace.agent)
    // and the project; the token is cached and refreshed by google-auth-library.
    const { GoogleAuth } = require('google-auth-library') as typeof import('google-auth-library');
    const auth = new GoogleAuth({ scopes: ['https://www.googleapis.com/auth/cloud-platform'] });
    return new OTLPTraceExporter({
      url: `${config.otlpEndpoint ?? CLOUD_TRACE_OTLP_ENDPOINT}/v1/traces`,
      headers: async () => ({
        authorization: `Bearer ${(await auth.getAccessToken()) ?? ''}`,
        'x-goog-user-project': projectId,
      }),
    });
  }
  return new OTLPTraceExporter({ url: `${config.otlpEndpoint}/v1/traces` });
}

async function startMetrics(
  config: ObservabilityConfig,
  resource: Resource,
  extras: TelemetryExtras,
): Promise<{ metrics: Metrics; shutdown: () => Promise<void> }> {
  const sdk = require('@opentelemetry/sdk-metrics') as typeof import('@opentelemetry/sdk-metrics');
  const readers = [...(extras.metricReaders ?? [])];
  if (config.metricsExporter === 'prometheus') {
    const { PrometheusExporter } =
      require('@opentelemetry/exporter-prometheus') as typeof import('@opentelemetry/exporter-prometheus');
    const exporter = new PrometheusExporter({
      host: config.metricsHost,
      port: config.metricsPort,
      preventServerStart: true,
      withoutScopeInfo: true,
    });
    await exporter.startServer();
    readers.push(exporter);
  } else if (config.metricsExporter === 'otlp') {
    const { OTLPMetricExporter } =
      require('@opentelemetry/exporter-metrics-otlp-http') as typeof import('@opentelemetry/exporter-metrics-otlp-http');
    readers.push(
      new sdk.PeriodicExportingMetricReader({
        exporter: new OTLPMetricExporter({ url: `${config.otlpEndpoint}/v1/metrics` }),
        exportIntervalMillis: config.metricExportIntervalMs,
        exportTimeoutMillis: Math.min(30_000, config.metricExportIntervalMs),
      }),
    );
  }
  const provider = new sdk.MeterProvider({ resource, readers });
  return { metrics: metricsOn(provider.getMeter('backend')), shutdown: () => provider.shutdown() };
}
