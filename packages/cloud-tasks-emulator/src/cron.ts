// Cloud Scheduler's unix-cron schedules (five fields) in a time zone, through cron-parser.
import { CronExpressionParser } from 'cron-parser';

/** True for a five-field unix-cron expression cron-parser accepts, in a time zone the runtime knows. */
export function isValidSchedule(schedule: string, timeZone: string): boolean {
  if (schedule.trim().split(/\s+/).length !== 5) return false;
  if (!isTimeZone(timeZone)) return false;
  try {
    CronExpressionParser.parse(schedule, { tz: timeZone, currentDate: new Date(0) }).next();
    return true;
  } catch {
    return false;
  }
}

export function isTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}

/** The first scheduled time strictly after `afterMs`. */
export function nextRunAfter(schedule: string, timeZone: string, afterMs: number): number {
  return CronExpressionParser.parse(schedule, { tz: timeZone, currentDate: new Date(afterMs) })
    .next()
    .getTime();
}

/** The last scheduled time at or before `atMs`. */
export function lastRunAtOrBefore(schedule: string, timeZone: string, atMs: number): number {
  return CronExpressionParser.parse(schedule, { tz: timeZone, currentDate: new Date(atMs + 1) })
    .prev()
    .getTime();
}
