// One log line per request, in Cloud Logging's httpRequest shape, under the request's trace id.
// Fastify's LogController is the seam: no "incoming request" line, one "completed" line.
import { type FastifyReply, type FastifyRequest, LogController } from 'fastify';

export class CloudLoggingLogController extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const status = reply.statusCode;
    const line = {
      httpRequest: {
        requestMethod: request.method,
        requestUrl: request.url,
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
