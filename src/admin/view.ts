// Small parts shared by every dashboard page: the operator of a request, the one-shot message after
// an action (POST, redirect, GET), times, durations, numbers and badges, and reading one field of a
// query string or form.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type AuditAction, auditEvents } from '../domains/audit/index.ts';
import type { DashboardDeps } from './deps.ts';
import { html, type SafeHtml } from './html.ts';
import { sendPage } from './layout.ts';
import type { Operator } from './operator.ts';

const FLASH_COOKIE = 'admin_flash';

export function operatorOf(request: FastifyRequest): Operator {
  if (!request.operator) throw new Error('dashboard route reached without an operator');
  return request.operator;
}

/** Keeps a message for the page the browser is redirected to, and redirects (303: GET it). */
export function redirectWithFlash(reply: FastifyReply, to: string, text: string, error = false): FastifyReply {
  const value = Buffer.from(JSON.stringify({ text, error })).toString('base64url');
  reply.setCookie(FLASH_COOKIE, value, { path: '/admin', httpOnly: true, sameSite: 'strict', maxAge: 120 });
  return reply.redirect(to, 303);
}

/** The message the last action left, shown once. */
export function takeFlash(request: FastifyRequest, reply: FastifyReply): { text: string; error?: boolean } | undefined {
  const value = request.cookies[FLASH_COOKIE];
  if (!value) return undefined;
  reply.clearCookie(FLASH_COOKIE, { path: '/admin' });
  try {
    const parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as { text?: unknown; error?: unknown };
    return typeof parsed.text === 'string' ? { text: parsed.text, error: parsed.error === true } : undefined;
  } catch {
    return undefined;
  }
}

/** A time in UTC to the second, in a <time> element; a dash when there is none. */
export function utcTime(at: Date | number | string | null | undefined): SafeHtml | string {
  if (at === null || at === undefined) return '–';
  const date = new Date(at);
  if (Number.isNaN(date.getTime())) return '–';
  const iso = date.toISOString();
  return html`<time datetime="${iso}">${iso.slice(0, 19).replace('T', ' ')} UTC</time>`;
}

/** A protobuf Timestamp ({seconds, nanos}, seconds as number, string or Long) in milliseconds. */
export function timestampMs(ts: { seconds?: unknown; nanos?: unknown } | null | undefined): number | undefined {
  if (!ts || ts.seconds === undefined || ts.seconds === null) return undefined;
  return Number(String(ts.seconds)) * 1000 + Math.round(Number(ts.nanos ?? 0) / 1e6);
}

/** A protobuf Duration as text: "0.1 s", "1 h", "unlimited" for zero when zero means that. */
export function durationText(d: { seconds?: unknown; nanos?: unknown } | null | undefined, zero = '0 s'): string {
  const ms = timestampMs(d) ?? 0;
  if (ms === 0) return zero;
  if (ms < 1000) return `${ms / 1000} s`;
  const s = ms / 1000;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}

const number = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

/** A count or figure with thousands separators and at most one decimal. */
export function formatNumber(n: number): string {
  return number.format(n);
}

/** A duration in milliseconds as people read it: "230 ms", "4.2 s", "3 min 5 s", "2 h 10 min". */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 120) return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** A status as a coloured badge (the class is the status; layout.ts colours the known ones). */
export function badge(status: string): SafeHtml {
  return html`<span class="badge ${status}">${status}</span>`;
}

/** One text field of a query string or form, trimmed; undefined when absent or blank. */
export function field(source: unknown, name: string): string | undefined {
  const value = (source as Record<string, unknown> | undefined)?.[name];
  const text = Array.isArray(value) ? value[0] : value;
  return typeof text === 'string' && text.trim() !== '' ? text.trim() : undefined;
}

/** The message of a failed client call (gRPC puts the server's text in `details`). */
export function callError(err: unknown): string {
  const e = err as { details?: unknown; message?: unknown };
  return typeof e?.details === 'string' && e.details ? e.details : String(e?.message ?? err);
}

/** The page shown when this process runs without a task backend (app.inject tests, for one). */
export function noBackend(
  reply: FastifyReply,
  request: FastifyRequest,
  page: { title: string; active: '/admin/queues' | '/admin/schedules' },
): FastifyReply {
  return sendPage(reply, {
    ...page,
    operator: operatorOf(request),
    body: html`<div class="panel"><p>This process has no task backend, so there is nothing to show or act on here.</p></div>`,
  });
}

/** Records an operator's action; after the action succeeded, so the trail says what happened. */
export async function audit(
  deps: Pick<DashboardDeps, 'db' | 'clock'>,
  actor: string,
  action: AuditAction,
  target: string,
  detail: Record<string, unknown>,
): Promise<void> {
  await auditEvents.append(deps.db, { at: new Date(deps.clock.now()), actor, action, target, detail });
}
