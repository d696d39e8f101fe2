// Request handling both APIs share: the parent check, page tokens, and how an attempt's outcome
// becomes a google.rpc.Status (Task.lastAttempt.responseStatus, Job.status).
import type { DeliveryResult } from './deliver.ts';
import {
  Code,
  codeForHttpStatus,
  errorInfo,
  help,
  invalidArgument,
  localizedMessage,
  permissionDenied,
} from './errors.ts';
import { isLocationName, projectOfParent } from './names.ts';

/**
 * projects/P/locations/L, or PERMISSION_DENIED naming it, with the details the real service sends
 * (recorded with parent "not-a-valid-parent"): ErrorInfo CONSUMER_INVALID, the message again
 * localized, and a Help link. `service` is the API's host name, as ErrorInfo's metadata names it.
 */
export function checkParent(value: unknown, service = 'cloudtasks.googleapis.com'): string {
  const parent = String(value ?? '');
  if (!isLocationName(parent)) {
    const project = projectOfParent(parent);
    const message = `Permission denied on resource project ${project}.`;
    throw permissionDenied(message, [
      errorInfo('CONSUMER_INVALID', 'googleapis.com', {
        consumer: `projects/${project}`,
        containerInfo: project,
        service,
      }),
      localizedMessage(message),
      help('Google developers console', 'https://console.developers.google.com'),
    ]);
  }
  return parent;
}

/** Page tokens are the last name returned (base64url), so pages stay consistent while items change. */
export function paginate(
  sorted: string[],
  pageSizeValue: unknown,
  tokenValue: unknown,
  max: number,
): { page: string[]; next: string } {
  const pageSize = Number(pageSizeValue ?? 0);
  if (pageSize < 0) throw invalidArgument('page_size must not be negative.');
  const size = pageSize === 0 ? max : Math.min(pageSize, max);
  let start = 0;
  const token = String(tokenValue ?? '');
  if (token !== '') {
    const after = Buffer.from(token, 'base64url').toString('utf8');
    if (after === '') throw invalidArgument('Invalid page_token.');
    start = sorted.findIndex((n) => n > after);
    if (start < 0) start = sorted.length;
  }
  const page = sorted.slice(start, start + size);
  const next = start + size < sorted.length ? Buffer.from(page[page.length - 1]!).toString('base64url') : '';
  return { page, next };
}

/** The rpc status an attempt ended with: the HTTP answer mapped to a code, or why there was none. */
export function attemptStatus(result: DeliveryResult): { code: number; message: string } {
  if (result.status !== undefined) {
    return { code: codeForHttpStatus(result.status), message: `HTTP status code ${result.status}` };
  }
  return {
    code: result.error === 'DEADLINE_EXCEEDED' ? Code.DEADLINE_EXCEEDED : Code.UNAVAILABLE,
    message: result.error ?? 'UNAVAILABLE',
  };
}

/** The event fields describing a failed attempt: its status, or the error when no answer came. */
export function failure(result: DeliveryResult): { status?: number; error?: string } {
  return result.status !== undefined ? { status: result.status } : { error: result.error ?? 'UNAVAILABLE' };
}
