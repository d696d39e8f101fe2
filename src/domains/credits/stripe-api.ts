// Stripe's API through the official `stripe` package, for what a webhook event does not carry: a
// Checkout Session's line items (how many units were bought). Used only when STRIPE_SECRET_KEY is
// set; STRIPE_API_BASE_URL points it at another server (a local fake in tests). The package is
// loaded at the first read, not at start-up (it takes ~0.1 s to load, which every start would pay).
import type Stripe from 'stripe';
import { LineItemsRefusedError, type SessionLineItem, type StripeApi } from './stripe-webhook.ts';

/**
 * The API version this service reads objects in: the webhook endpoint's version, so a line item
 * read here has the shape the events have.
 */
export const STRIPE_API_VERSION = '2025-03-31.basil';

export interface StripeApiOptions {
  secretKey: string;
  /** Another API server (http://127.0.0.1:port in tests); Stripe's own by default. */
  apiBaseUrl?: string | undefined;
  /** Milliseconds per request. (Default: 10 s: Stripe waits about as long for the webhook's answer.) */
  timeoutMs?: number;
}

export function createStripeApi(options: StripeApiOptions): StripeApi {
  const base = options.apiBaseUrl ? new URL(options.apiBaseUrl) : undefined;
  const config: Stripe.StripeConfig = {
    // The SDK's types name only its newest version; the events this service reads are basil's.
    apiVersion: STRIPE_API_VERSION as Stripe.LatestApiVersion,
    maxNetworkRetries: 1,
    timeout: options.timeoutMs ?? 10_000,
    telemetry: false,
    ...(base
      ? {
          host: base.hostname,
          port: base.port || (base.protocol === 'https:' ? 443 : 80),
          protocol: base.protocol === 'https:' ? 'https' : 'http',
        }
      : {}),
  };
  let loaded: Promise<{ stripe: Stripe; StripeError: typeof Stripe.errors.StripeError }> | undefined;
  const client = () =>
    (loaded ??= import('stripe').then(({ default: StripeClient }) => ({
      stripe: new StripeClient(options.secretKey, config),
      StripeError: StripeClient.errors.StripeError,
    })));
  return {
    async listLineItems(checkoutSessionId: string): Promise<SessionLineItem[]> {
      const { stripe, StripeError } = await client();
      const items: SessionLineItem[] = [];
      const list = stripe.checkout.sessions.listLineItems(checkoutSessionId, {
        limit: 100,
        expand: ['data.price.product'],
      });
      try {
        for await (const item of list) {
          const product = item.price?.product;
          const productCredits =
            product && typeof product === 'object' && !('deleted' in product && product.deleted)
              ? (product as Stripe.Product).metadata?.credits
              : undefined;
          items.push({ quantity: item.quantity ?? 1, unitCredits: item.price?.metadata?.credits ?? productCredits });
        }
      } catch (err) {
        // A 4xx other than 429 (an unknown session, a key that may not read it) will not change on
        // a retry: the session is kept for an operator. Anything else is thrown, and Stripe redelivers.
        const status = err instanceof StripeError ? err.statusCode : undefined;
        if (status !== undefined && status >= 400 && status < 500 && status !== 429) {
          throw new LineItemsRefusedError(`Stripe answered ${status}: ${(err as Error).message}`, { cause: err });
        }
        throw err;
      }
      return items;
    },
  };
}
