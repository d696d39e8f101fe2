// POST /webhooks/stripe: the signature is checked over the raw bytes (so this route has its own
// content-type parser, kept inside its plugin), then the event is recorded by id and acted on
// (domains/credits/stripe-webhook.ts). Registered only when STRIPE_WEBHOOK_SECRET is set.
import type { FastifyInstance } from 'fastify';
import type { Clock } from '../../clock.ts';
import type { Db } from '../../db/db.ts';
import { pgSafeJson } from '../../db/pg-text.ts';
import {
  createStripeApi,
  handleStripeEvent,
  keyMode,
  stripeEventSchema,
  TopupPendingError,
  verifyStripeSignature,
} from '../../domains/credits/index.ts';
import { errorBody } from '../../errors.ts';
import type { Enqueue } from '../../tasks/define-task.ts';
import { keepRawBodies, rawBody } from '../plugins/raw-body.ts';

export interface StripeWebhookDeps {
  db: Db;
  clock: Clock;
  enqueue: Enqueue;
  /** The endpoint's signing secret (whsec_…). */
  secret: string;
  /** STRIPE_SECRET_KEY: its mode is the one events must have, and it reads sessions' line items. */
  secretKey?: string | undefined;
  /** STRIPE_API_BASE_URL: another Stripe API server (a local fake in tests). */
  apiBaseUrl?: string | undefined;
}

export function stripeWebhookRoutes(app: FastifyInstance, deps: StripeWebhookDeps): void {
  const options = {
    keyMode: keyMode(deps.secretKey),
    api: deps.secretKey ? createStripeApi({ secretKey: deps.secretKey, apiBaseUrl: deps.apiBaseUrl }) : undefined,
  };
  app.register(async (scope) => {
    keepRawBodies(scope);

    scope.post('/webhooks/stripe', async (request, reply) => {
      const raw = rawBody(request);
      const header = request.headers['stripe-signature'];
      const check = verifyStripeSignature(
        raw,
        typeof header === 'string' ? header : undefined,
        deps.secret,
        deps.clock.now(),
      );
      if (!check.ok) {
        request.log.warn({ reason: check.reason }, `stripe webhook refused: ${check.reason}`);
        return reply.code(400).send(errorBody('INVALID_SIGNATURE', `Stripe-Signature refused: ${check.reason}.`));
      }
      let json: unknown;
      try {
        json = JSON.parse(raw.toString('utf8'));
      } catch {
        return reply.code(400).send(errorBody('MALFORMED_JSON', 'The body is not valid JSON.'));
      }
      // Strings reach text and jsonb columns: U+0000 and lone surrogates (never in a real event) become U+FFFD.
      const parsed = stripeEventSchema.safeParse(pgSafeJson(json));
      if (!parsed.success) {
        return reply
          .code(400)
          .send(errorBody('BAD_REQUEST', 'The body is not a Stripe event (id, type, data.object).'));
      }
      const event = parsed.data;
      let result: Awaited<ReturnType<typeof handleStripeEvent>>;
      try {
        result = await handleStripeEvent(deps.db, deps.enqueue, event, deps.clock.now(), options);
      } catch (err) {
        // A refund or dispute that overtook its payment's top-up: nothing was recorded, and Stripe
        // delivers the event again later (it retries any answer but 2xx).
        if (!(err instanceof TopupPendingError)) throw err;
        request.log.warn(
          { stripeEvent: event.id, type: event.type },
          `stripe ${event.type}: ${err.message}, retry later`,
        );
        return reply.code(409).send(errorBody('CONFLICT', `${err.message}; deliver the event again later.`));
      }
      request.log.info(
        { stripeEvent: event.id, type: event.type, outcome: result.outcome, detail: result.detail },
        `stripe ${event.type}: ${result.outcome}`,
      );
      return { received: true, outcome: result.outcome };
    });
  });
}
