// Stripe events in the shape Stripe sends them (API version 2025-03-31.basil), for the tests that
// need a valid one and do not care about its details.

/** A paid `checkout.session.completed` for 50 credits to `accountId`; `extra` overrides session fields. */
export function sessionEvent(id: string, accountId: number | string, extra: Record<string, unknown> = {}) {
  return {
    id,
    object: 'event',
    type: 'checkout.session.completed',
    livemode: false,
    data: {
      object: {
        id: `cs_${id}`,
        object: 'checkout.session',
        payment_status: 'paid',
        client_reference_id: String(accountId),
        payment_intent: `pi_${id}`,
        metadata: { credits: '50' },
        ...extra,
      },
    },
  };
}
