// Retry arithmetic shared by Cloud Tasks and Cloud Scheduler: the doubling-then-linear backoff of
// queue.proto's max_doublings (10, 20, 40, 80, 160, 240, 300 s for 10 s / 300 s / 3 doublings),
// and the Retry-After header a throttled target may send.

export interface BackoffConfig {
  minBackoffMs: number;
  maxBackoffMs: number;
  maxDoublings: number;
}

/**
 * Delay before the n-th retry (n = 1 after the first failed attempt): minBackoff doubled up to
 * maxDoublings times, then growing linearly by 2^maxDoublings × minBackoff, capped at maxBackoff.
 */
export function backoffDelayMs(n: number, config: BackoffConfig): number {
  const { minBackoffMs, maxBackoffMs, maxDoublings } = config;
  const retry = Math.max(1, n);
  const delay =
    retry - 1 <= maxDoublings
      ? minBackoffMs * 2 ** (retry - 1)
      : minBackoffMs * 2 ** maxDoublings * (retry - maxDoublings);
  return Math.min(maxBackoffMs, delay);
}

/** Retry-After as a delay in ms from `nowMs`: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfterMs(value: string | string[] | undefined, nowMs: number): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return undefined;
  const text = raw.trim();
  if (text === '') return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}
