// A Cloud Tasks queue's settings from protobuf: rate limits and retry configuration with their
// defaults, limits and errors, UpdateQueue's field mask, and ListQueues' state filter.
import { invalidArgument } from './errors.ts';
import { applyMask, type MaskRules } from './field-mask.ts';
import type { ProtoObject } from './protos.ts';
import type { QueueJson, QueueState, RetryConfig } from './tasks-model.ts';
import { durationToMs } from './time.ts';

// Defaults and limits (queue.proto and Cloud Tasks' quotas page; README, "What is emulated").
const DEFAULT_RATE = 500;
const MAX_RATE = 500;
const DEFAULT_CONCURRENCY = 1000;
const MAX_CONCURRENCY = 5000;
const DEFAULT_MAX_ATTEMPTS = 100;
const DEFAULT_MIN_BACKOFF_MS = 100;
const DEFAULT_MAX_BACKOFF_MS = 3_600_000;
const DEFAULT_MAX_DOUBLINGS = 16;

/** A queue's settings from a protobuf Queue: zero means "the default" (proto3 cannot tell unset from 0). */
export function queueFromProto(name: string, given: ProtoObject, previous: QueueJson | undefined): QueueJson {
  const rate: ProtoObject = given.rateLimits ?? {};
  const retry: ProtoObject = given.retryConfig ?? {};
  const maxDispatchesPerSecond = Number(rate.maxDispatchesPerSecond ?? 0);
  if (maxDispatchesPerSecond < 0) throw invalidArgument('RateLimits.maxDispatchesPerSecond cannot be negative.');
  if (maxDispatchesPerSecond > MAX_RATE) {
    throw invalidArgument(`RateLimits.maxDispatchesPerSecond must be less than or equal to ${MAX_RATE}.`);
  }
  const maxConcurrentDispatches = Number(rate.maxConcurrentDispatches ?? 0);
  if (maxConcurrentDispatches < 0) throw invalidArgument('RateLimits.maxConcurrentDispatches cannot be negative.');
  if (maxConcurrentDispatches > MAX_CONCURRENCY) {
    throw invalidArgument(`RateLimits.maxConcurrentDispatches must be less than or equal to ${MAX_CONCURRENCY}.`);
  }
  const maxAttempts = Number(retry.maxAttempts ?? 0);
  if (maxAttempts < -1) throw invalidArgument('RetryConfig.maxAttempts must be greater or equal to -1.');
  const maxDoublings = Number(retry.maxDoublings ?? 0);
  if (maxDoublings < 0) throw invalidArgument('RetryConfig.maxDoublings cannot be negative.');
  const minBackoffMs = durationToMs(retry.minBackoff) ?? 0;
  if (minBackoffMs < 0) throw invalidArgument('RetryConfig.minBackoff cannot be negative.');
  const maxBackoffMs = durationToMs(retry.maxBackoff) ?? 0;
  if (maxBackoffMs < 0) throw invalidArgument('RetryConfig.maxBackoff cannot be negative.');
  const maxRetryDurationMs = durationToMs(retry.maxRetryDuration) ?? 0;
  if (maxRetryDurationMs < 0) throw invalidArgument('RetryConfig.maxRetryDuration cannot be negative.');
  const config: RetryConfig = {
    maxAttempts: maxAttempts || DEFAULT_MAX_ATTEMPTS,
    // Truncated to seconds (queue.proto).
    maxRetryDurationMs: Math.floor(maxRetryDurationMs / 1000) * 1000,
    minBackoffMs: minBackoffMs || DEFAULT_MIN_BACKOFF_MS,
    maxBackoffMs: maxBackoffMs || DEFAULT_MAX_BACKOFF_MS,
    maxDoublings: maxDoublings || DEFAULT_MAX_DOUBLINGS,
  };
  if (config.minBackoffMs > config.maxBackoffMs) {
    throw invalidArgument('RetryConfig.minBackoff must be less than or equal to RetryConfig.maxBackoff.');
  }
  const json: QueueJson = {
    name,
    state: previous?.state ?? 'RUNNING',
    maxDispatchesPerSecond: maxDispatchesPerSecond || DEFAULT_RATE,
    maxConcurrentDispatches: maxConcurrentDispatches || DEFAULT_CONCURRENCY,
    retry: config,
  };
  if (previous?.purgeTime !== undefined) json.purgeTime = previous.purgeTime;
  if (previous?.iamPolicy) json.iamPolicy = previous.iamPolicy;
  if (given.stackdriverLoggingConfig) json.stackdriverLoggingConfig = given.stackdriverLoggingConfig;
  if (given.appEngineRoutingOverride) json.appEngineRoutingOverride = given.appEngineRoutingOverride;
  return json;
}

const QUEUE_MASK: MaskRules = {
  allowed: new Set([
    'rateLimits',
    'rateLimits.maxDispatchesPerSecond',
    'rateLimits.maxBurstSize',
    'rateLimits.maxConcurrentDispatches',
    'retryConfig',
    'retryConfig.maxAttempts',
    'retryConfig.maxRetryDuration',
    'retryConfig.minBackoff',
    'retryConfig.maxBackoff',
    'retryConfig.maxDoublings',
    'stackdriverLoggingConfig',
    'stackdriverLoggingConfig.samplingRatio',
    'appEngineRoutingOverride',
  ]),
  ignored: new Set(['name', 'state', 'purgeTime']),
};

/**
 * Applies an update to a queue rendered as protobuf: the masked fields come from `given`; an empty
 * mask replaces every field (cloudtasks.proto UpdateQueueRequest.update_mask).
 */
export function updateQueueFields(current: ProtoObject, given: ProtoObject, paths: string[]): ProtoObject {
  if (paths.length === 0) {
    return {
      rateLimits: given.rateLimits,
      retryConfig: given.retryConfig,
      stackdriverLoggingConfig: given.stackdriverLoggingConfig,
      appEngineRoutingOverride: given.appEngineRoutingOverride,
    };
  }
  return applyMask(current, given, paths, QUEUE_MASK);
}

export function parseStateFilter(filter: unknown): QueueState | undefined {
  const text = String(filter ?? '').trim();
  if (text === '') return undefined;
  const m = /^state\s*[:=]\s*(RUNNING|PAUSED|DISABLED)$/i.exec(text);
  if (!m)
    throw invalidArgument(
      `Unsupported filter "${text}": the emulator understands only "state: RUNNING|PAUSED|DISABLED".`,
    );
  return m[1]!.toUpperCase() as QueueState;
}
