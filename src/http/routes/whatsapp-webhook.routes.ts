// GET /webhooks/whatsapp (Meta's verification handshake) and POST /webhooks/whatsapp (signed
// event notifications). The POST has its own raw-body parser inside its plugin: the signature
// covers the exact bytes, which re-serialised JSON would not reproduce.
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../../clock.ts';
import type { Db } from '../../db/db.ts';
import {
  parseWebhook,
  verifyHandshake,
  verifyWebhookSignature,
  WEBHOOK_BODY_LIMIT_BYTES,
  WebhookIngestor,
  WebhookPayloadError,
} from '../../domains/whatsapp/index.ts';
import { errorBody } from '../../errors.ts';
import { type Metrics, metricsOff } from '../../observability/metrics.ts';
import type { Enqueue } from '../../tasks/define-task.ts';
import { keepRawBodies, rawBody } from '../plugins/raw-body.ts';

export interface WhatsAppWebhookDeps {
  db: Db;
  clock: Clock;
  enqueue: Enqueue;
  verifyToken: string | undefined;
  /** Without it the POST route does not exist (cloud mode with no WHATSAPP_APP_SECRET). */
  appSecret: string | undefined;
  /** Webhooks counted by result. (Default: not counted) */
  metrics?: Metrics;
}

export function whatsappWebhookRoutes(app: FastifyInstance, deps: WhatsAppWebhookDeps): void {
  app.get('/webhooks/whatsapp', async (request, reply) => {
    const check = verifyHandshake(request.query as Record<string, unknown>, deps.verifyToken);
    if (!check.ok) {
      request.log.warn({ reason: check.reason }, `whatsapp verification refused: ${check.reason}`);
      return reply.code(403).send(errorBody('FORBIDDEN', `Verification refused: ${check.reason}.`));
    }
    return reply.code(200).type('text/plain; charset=utf-8').send(check.challenge);
  });

  const { appSecret } = deps;
  if (!appSecret) return;
  const metrics = deps.metrics ?? metricsOff;
  const count = (result: string) => metrics.recordWebhook('whatsapp', result);
  const ingestor = new WebhookIngestor(deps.db, deps.enqueue);
  app.register(async (scope) => {
    keepRawBodies(scope, { bodyLimit: WEBHOOK_BODY_LIMIT_BYTES });

    scope.post('/webhooks/whatsapp', { bodyLimit: WEBHOOK_BODY_LIMIT_BYTES }, async (request, reply) => {
      const raw = rawBody(request);
      const header = request.headers['x-hub-signature-256'];
      const check = verifyWebhookSignature(raw, typeof header === 'string' ? header : undefined, appSecret);
      if (!check.ok) {
        request.log.warn({ reason: check.reason }, `whatsapp webhook refused: ${check.reason}`);
        count('bad_signature');
        return reply.code(403).send(errorBody('FORBIDDEN', `Signature refused: ${check.reason}.`));
      }
      let json: unknown;
      try {
        json = JSON.parse(raw.toString('utf8'));
      } catch {
        count('invalid');
        return reply.code(400).send(errorBody('MALFORMED_JSON', 'The body is not valid JSON.'));
      }
      let parsed: ReturnType<typeof parseWebhook>;
      try {
        parsed = parseWebhook(json);
      } catch (err) {
        if (!(err instanceof WebhookPayloadError)) throw err;
        request.log.warn({ reason: err.message }, 'whatsapp webhook payload refused');
        count('invalid');
        return reply.code(400).send(errorBody('BAD_REQUEST', `Not a WhatsApp webhook payload: ${err.message}.`));
      }
      if (parsed.messages.length === 0 && parsed.statuses.length === 0) {
        request.log.debug({ ignored: parsed.ignored }, 'whatsapp webhook: nothing to handle');
        count('ignored');
        return { received: true };
      }
      const outcome = await ingestor.ingest(parsed, new Date(deps.clock.now()));
      count('accepted');
      request.log.info(
        {
          accepted: outcome.accepted,
          duplicates: outcome.duplicates,
          statuses: outcome.statuses,
          ...(parsed.ignored.length ? { ignored: parsed.ignored } : {}),
        },
        `whatsapp webhook: ${outcome.accepted.length} new, ${outcome.duplicates.length} duplicate, ${outcome.statuses} statuses`,
      );
      return { received: true };
    });
  });
}
