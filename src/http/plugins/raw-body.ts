// Signed webhooks (Meta's, Stripe's) are verified over the exact bytes received, which re-serialised
// JSON would not reproduce: inside a route's own plugin scope, every body is kept as a Buffer.
import type { FastifyInstance, FastifyRequest } from 'fastify';

/** Makes every body in this plugin scope a Buffer, whatever its Content-Type. */
export function keepRawBodies(scope: FastifyInstance, options: { bodyLimit?: number } = {}): void {
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('*', { parseAs: 'buffer', ...options }, (_request, body, done) => done(null, body));
}

/** The body's bytes (empty when there was none). */
export function rawBody(request: FastifyRequest): Buffer {
  return Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
}
