// Time for the emulator: the injectable clock, and conversions between milliseconds and the
// protobuf Timestamp/Duration shapes the two transports carry.

/**
 * The emulator's clock port, its only source of "now", so tests can make retries and schedules due.
 * The emulator is a product of its own, so it declares the port itself rather than importing the
 * clock of a program that embeds it: any object with this method fits, structurally (a service's
 * own test clock included).
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** google.protobuf.Timestamp / Duration as protobufjs objects carry them (longs as numbers or strings). */
export interface ProtoTime {
  seconds?: number | string | null;
  nanos?: number | null;
}

/**
 * Timestamp → epoch milliseconds, keeping microseconds as a fraction (Cloud Tasks truncates
 * schedule times to microseconds, and a float of epoch ms holds that exactly enough).
 */
export function timestampToMs(ts: ProtoTime | null | undefined): number | undefined {
  if (!ts) return undefined;
  const seconds = Number(ts.seconds ?? 0);
  const micros = Math.trunc((ts.nanos ?? 0) / 1000);
  return seconds * 1000 + micros / 1000;
}

export function msToTimestamp(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  const micros = Math.round((ms - seconds * 1000) * 1000);
  return { seconds, nanos: micros * 1000 };
}

/** Duration → milliseconds, truncated to whole milliseconds. */
export function durationToMs(d: ProtoTime | null | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds ?? 0) * 1000 + Math.trunc((d.nanos ?? 0) / 1e6);
}

export function msToDuration(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.trunc(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/** RFC 3339 in UTC to the second, the shape of `X-CloudScheduler-ScheduleTime` (e.g. 2026-10-16T12:00:00Z). */
export function rfc3339Seconds(ms: number): string {
  return `${new Date(Math.floor(ms / 1000) * 1000).toISOString().slice(0, 19)}Z`;
}

/** RFC 3339 with the offset of a time zone, as Cloud Tasks renders times in some error messages. */
export function rfc3339InZone(ms: number, timeZone: string): string {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(new Date(ms));
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '00';
  const local = Date.UTC(
    Number(get('year')),
    Number(get('month')) - 1,
    Number(get('day')),
    Number(get('hour')),
    Number(get('minute')),
    Number(get('second')),
  );
  const offsetMin = Math.round((local - Math.floor(ms / 1000) * 1000) / 60000);
  const sign = offsetMin < 0 ? '-' : '+';
  const abs = Math.abs(offsetMin);
  const offset = `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  return `${get('year')}-${get('month')}-${get('day')}T${get('hour')}:${get('minute')}:${get('second')}${offset}`;
}
