// What Cloud Tasks' HttpRequest and Cloud Scheduler's HttpTarget have in common (target.proto):
// the method enum, the body rule, the headers the services replace, URL limits, and the bearer
// token an oidcToken or oauthToken asks for.
import type { EmulatorContext } from './context.ts';
import { invalidArgument } from './errors.ts';
import type { ProtoObject } from './protos.ts';

export const HTTP_METHODS = ['POST', 'GET', 'HEAD', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

const BODY_METHODS = new Set<string>(['POST', 'PUT', 'PATCH']);
export const MAX_URL_LENGTH = 2083;
export const MAX_HEADER_BYTES = 80 * 1024;
const DEFAULT_OAUTH_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

export interface OidcToken {
  serviceAccountEmail: string;
  audience?: string;
}

export interface OAuthToken {
  serviceAccountEmail: string;
  scope?: string;
}

/** A validated target, as stored. */
export interface HttpTarget {
  url: string;
  method: HttpMethod;
  headers: Record<string, string>;
  body: Buffer | undefined;
  oidc?: OidcToken;
  oauth?: OAuthToken;
  /** Bytes the URL, headers and body take, for the size limits. */
  size: number;
}

/**
 * Headers the services drop from what the user gave: Host and Content-Length are computed,
 * User-Agent is replaced, X-Google-* and X-AppEngine-* are Google's, and the services' own
 * X-CloudTasks-* / X-CloudScheduler-* headers cannot be forged through a task.
 */
function isReservedHeader(lower: string): boolean {
  return (
    lower === 'host' ||
    lower === 'content-length' ||
    lower === 'user-agent' ||
    lower.startsWith('x-google-') ||
    lower.startsWith('x-appengine-') ||
    lower.startsWith('x-cloudtasks-') ||
    lower.startsWith('x-cloudscheduler')
  );
}

/**
 * Validates a protobuf HttpRequest/HttpTarget. `label` names it in messages ("HttpRequest" or
 * "HttpTarget"), `urlField` its URL field ("url" or "uri").
 */
export function parseHttpTarget(given: ProtoObject, label: string, urlField: 'url' | 'uri'): HttpTarget {
  const url = String(given[urlField] ?? '');
  if (url === '') throw invalidArgument(`${label}.${urlField} is required.`);
  if (!/^https?:\/\//i.test(url))
    throw invalidArgument(`HttpTarget.${urlField} must start with 'http://' or 'https://'.`);
  if (url.length > MAX_URL_LENGTH) {
    throw invalidArgument(`${label}.${urlField} must be at most ${MAX_URL_LENGTH} characters.`);
  }
  if (!URL.canParse(url)) throw invalidArgument(`${label}.${urlField} "${url}" is not a valid URL.`);
  const method = httpMethod(given.httpMethod, label);
  const body = toBuffer(given.body, label);
  if (body && !BODY_METHODS.has(method)) {
    throw invalidArgument(`${label}.body can be set only for POST, PUT or PATCH requests.`);
  }
  const headers: Record<string, string> = {};
  let headerBytes = 0;
  const givenHeaders = (given.headers ?? {}) as Record<string, string>;
  for (const key in givenHeaders) {
    const value = String(givenHeaders[key]);
    headerBytes += key.length + value.length;
    if (!isReservedHeader(key.toLowerCase())) headers[key] = value;
  }
  if (headerBytes >= MAX_HEADER_BYTES) throw invalidArgument(`${label}.headers must total less than 80 KB.`);
  const target: HttpTarget = { url, method, headers, body, size: url.length + headerBytes + (body?.length ?? 0) };
  if (given.oidcToken) {
    const email = String(given.oidcToken.serviceAccountEmail ?? '');
    if (email === '') throw invalidArgument('OidcToken.serviceAccountEmail is required.');
    target.oidc = given.oidcToken.audience
      ? { serviceAccountEmail: email, audience: given.oidcToken.audience }
      : { serviceAccountEmail: email };
  } else if (given.oauthToken) {
    const email = String(given.oauthToken.serviceAccountEmail ?? '');
    if (email === '') throw invalidArgument('OAuthToken.serviceAccountEmail is required.');
    target.oauth = given.oauthToken.scope
      ? { serviceAccountEmail: email, scope: given.oauthToken.scope }
      : { serviceAccountEmail: email };
  }
  return target;
}

/** The protobuf shape of a stored target; the body is left to the caller (task views omit it). */
export function renderTarget(target: Omit<HttpTarget, 'size' | 'body'>, urlField: 'url' | 'uri'): ProtoObject {
  const out: ProtoObject = { [urlField]: target.url, httpMethod: target.method, headers: target.headers };
  if (target.oidc) out.oidcToken = target.oidc;
  if (target.oauth) out.oauthToken = target.oauth;
  return out;
}

/** `Authorization: Bearer …` for a target with an oidcToken (audience defaults to the URL) or an oauthToken. */
export function authorization(
  ctx: EmulatorContext,
  target: { url: string; oidc?: OidcToken; oauth?: OAuthToken },
  nowMs: number,
): string | undefined {
  if (target.oidc) {
    const { serviceAccountEmail, audience } = target.oidc;
    return `Bearer ${ctx.signer.idToken({ serviceAccountEmail, audience: audience || target.url, issuer: ctx.issuer, nowMs })}`;
  }
  if (target.oauth) {
    const { serviceAccountEmail, scope } = target.oauth;
    return `Bearer ${ctx.signer.accessToken({ serviceAccountEmail, scope: scope || DEFAULT_OAUTH_SCOPE, issuer: ctx.issuer, nowMs })}`;
  }
  return undefined;
}

/** The user's headers for a dispatch; an oidcToken/oauthToken overrides any Authorization among them. */
export function userHeaders(headers: Record<string, string>, withAuth: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key in headers) {
    if (withAuth && key.toLowerCase() === 'authorization') continue;
    out[key] = headers[key]!;
  }
  return out;
}

function httpMethod(value: unknown, label: string): HttpMethod {
  if (value === undefined || value === null || value === 'HTTP_METHOD_UNSPECIFIED' || value === 0) return 'POST';
  if (typeof value === 'string' && (HTTP_METHODS as readonly string[]).includes(value)) return value as HttpMethod;
  if (typeof value === 'number' && value >= 1 && value <= HTTP_METHODS.length) return HTTP_METHODS[value - 1]!;
  throw invalidArgument(`${label}.httpMethod ${String(value)} is not a valid HTTP method.`);
}

function toBuffer(value: unknown, label: string): Buffer | undefined {
  let buffer: Buffer;
  if (value === undefined || value === null) return undefined;
  // Bytes decoded from a request are a view into that request's buffer: copied, so that a stored
  // task keeps its own body and not the whole message (or the network chunk) it came in.
  if (value instanceof Uint8Array) buffer = Buffer.from(value);
  else if (typeof value === 'string') buffer = Buffer.from(value, 'base64');
  else throw invalidArgument(`${label}.body must be bytes.`);
  return buffer.length > 0 ? buffer : undefined;
}
