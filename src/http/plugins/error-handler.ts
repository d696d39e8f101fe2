// Turns every error into the JSON envelope {"error":{"code","message"}} with a stable code.
// Nothing internal (stack, SQL, driver message) leaves the process: unknown errors are logged and
// answered with a generic INTERNAL. A database that is down or going away is never a 500: the
// adapter turns the driver's errors (connection refused, 57P01 admin shutdown, 57P03 cannot connect
// now, a connection terminated, a pool timeout) into DatabaseUnavailableError, and whether that
// arrives as is, wrapped as the cause of another error, or a driver error arrives unwrapped, the
// answer is 503 with Retry-After, which Cloud Tasks, Meta and Stripe all retry.
import type { FastifyError, FastifyInstance } from 'fastify';
import { isServerUnavailable } from '../../db/unavailable.ts';
import { AppError, DatabaseUnavailableError, type ErrorCode, errorBody } from '../../errors.ts';
import { DATABASE_RETRY_AFTER_SECONDS } from '../../tasks/outcome.ts';

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'MALFORMED_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
};

/** The DatabaseUnavailableError behind err (itself or a cause), or one for an unwrapped driver error. */
function databaseUnavailable(err: unknown): DatabaseUnavailableError | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof DatabaseUnavailableError) return e;
  }
  return !(err instanceof AppError) && isServerUnavailable(err) ? new DatabaseUnavailableError(err) : undefined;
}

export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((raw: FastifyError | AppError, request, reply) => {
    const err = databaseUnavailable(raw) ?? raw;
    if (err instanceof DatabaseUnavailableError) {
      request.log.warn({ err, code: err.code }, err.message);
      return reply
        .code(err.status)
        .headers({ 'retry-after': String(DATABASE_RETRY_AFTER_SECONDS) })
        .send(errorBody(err.code, err.message));
    }
    if (err instanceof AppError) {
      if (err.status >= 500) request.log.warn({ err, code: err.code }, err.message);
      return reply.code(err.status).headers(err.headers).send(errorBody(err.code, err.message));
    }
    const mapped = err.code ? FASTIFY_CODES[err.code] : undefined;
    if (mapped) {
      const status = mapped === 'PAYLOAD_TOO_LARGE' ? 413 : mapped === 'UNSUPPORTED_MEDIA_TYPE' ? 415 : 400;
      return reply.code(status).send(errorBody(mapped, err.message));
    }
    if (err.validation) return reply.code(400).send(errorBody('BAD_REQUEST', err.message));
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      return reply.code(status).send(errorBody(status === 404 ? 'NOT_FOUND' : 'BAD_REQUEST', err.message));
    }
    request.log.error({ err }, 'unhandled error');
    return reply.code(500).send(errorBody('INTERNAL', 'Internal error; it has been logged.'));
  });

  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send(errorBody('NOT_FOUND', `Route ${request.method} ${request.url.split('?')[0]} not found`)),
  );
}
