// One log line per request, in Cloud Logging's httpRequest shape, under the request's trace id.
// Fastify's LogController is the seam: no "incoming request" line, one "completed" line.
// Query strings of the routes where callers put credentials (Meta's hub.verify_token, OAuth's code
// and state) are redacted: the line would otherwise keep the token and every wrong guess at it.
import { type FastifyReply, type FastifyRequest, LogController } from 'fastify';

export class CloudLoggingLogController extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const status = reply.statusCode;
    const line = {
      httpRequest: {
        requestMethod: request.method,
        requestUrl: loggableUrl(request.url),
        status,
        userAgent: request.headers['user-agent'],
        remoteIp: request.ip,
        latency: `${(reply.elapsedTime / 1000).toFixed(6)}s`,
        protocol: `HTTP/${request.raw.httpVersion}`,
      },
      ...(error ? { err: error } : {}),
    };
    const message = `${request.method} ${request.url.split('?')[0]} ${status}`;
    if (status >= 500 || error) reply.log.warn(line, message);
    else reply.log.info(line, message);
  }
}

// Matched on the decoded path, so a 404 near the route (a trailing slash, other case) is redacted too.
const CREDENTIAL_QUERY_ROUTES = /^\/+(webhooks|auth)(\/|$)/i;

/** The URL with its query string replaced by [redacted] on those routes. */
export function loggableUrl(url: string): string {
  const q = url.indexOf('?');
  if (q === -1) return url;
  const path = url.slice(0, q);
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    // Not valid percent-encoding: the raw path is what we have.
  }
  return CREDENTIAL_QUERY_ROUTES.test(decoded) || CREDENTIAL_QUERY_ROUTES.test(path) ? `${path}?[redacted]` : url;
}
