// The service's metrics, named once: task runs by task and outcome, their durations, the outbox's
// depth, webhooks by source and result. On a meter that exports (Prometheus or OTLP) or on the
// API's no-op meter, which makes each record a call that does nothing.
import type { Meter } from '@opentelemetry/api';
import { otel } from './otel-api.ts';

export interface Metrics {
  /** One delivery of a task answered: succeeded, retry, dead, duplicate, busy or unauthenticated. */
  recordRun(task: string, outcome: string, seconds: number): void;
  /** One webhook answered: its source (whatsapp, stripe) and result (accepted, refused, invalid…). */
  recordWebhook(source: string, result: string): void;
  /** Reports the outbox's depth whenever metrics are collected (never otherwise). */
  observeOutboxDepth(read: () => Promise<number>): void;
}

/** Histogram buckets in seconds, from a quick reply to the longest dispatch deadline (30 min). */
export const RUN_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 1800];

export const METRIC_NAMES = {
  runs: 'tasks.runs',
  runDuration: 'tasks.run.duration',
  outboxDepth: 'tasks.outbox.depth',
  webhooks: 'webhooks.received',
} as const;

export function metricsOn(meter: Meter): Metrics {
  const runs = meter.createCounter(METRIC_NAMES.runs, {
    description: 'Task deliveries answered, by task and outcome',
    unit: '{delivery}',
  });
  const durations = meter.createHistogram(METRIC_NAMES.runDuration, {
    description: 'Time from a delivery reaching the push route to its answer',
    unit: 's',
    advice: { explicitBucketBoundaries: RUN_DURATION_BUCKETS },
  });
  const webhooks = meter.createCounter(METRIC_NAMES.webhooks, {
    description: 'Webhooks answered, by source and result',
    unit: '{webhook}',
  });
  return {
    recordRun(task, outcome, seconds) {
      const attributes = { task, outcome };
      runs.add(1, attributes);
      durations.record(seconds, attributes);
    },
    recordWebhook(source, result) {
      webhooks.add(1, { source, result });
    },
    observeOutboxDepth(read) {
      const gauge = meter.createObservableGauge(METRIC_NAMES.outboxDepth, {
        description: 'Rows in the transactional outbox not yet sent to Cloud Tasks',
        unit: '{task}',
      });
      gauge.addCallback(async (result) => {
        // A database that does not answer leaves the gauge out of this collection, not the others.
        const depth = await read().catch(() => undefined);
        if (depth !== undefined) result.observe(depth);
      });
    },
  };
}

/** Metrics that go nowhere: what a service that exports none uses. */
export const metricsOff: Metrics = metricsOn(otel.createNoopMeter());
