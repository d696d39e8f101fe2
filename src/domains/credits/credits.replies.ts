// What the WhatsApp `balance` and `topup` commands answer (the WhatsApp domain sends these texts).
// Pure functions: no database, no configuration lookup.

export function balanceReply(balance: number): string {
  return `You have ${balance} ${balance === 1 ? 'credit' : 'credits'}.`;
}

/**
 * With a Payment Link configured: the link, carrying the account in client_reference_id so the
 * paid Checkout Session names it. Without one: how to get credits otherwise.
 */
export function topupReply(accountId: number, paymentLinkUrl: string | undefined): string {
  if (!paymentLinkUrl) {
    return 'Buying credits online is not available yet. Your credits are renewed each month on a plan; ask the operator to add credits to your account.';
  }
  const url = new URL(paymentLinkUrl);
  url.searchParams.set('client_reference_id', String(accountId));
  return `Buy credits here: ${url.toString()}\nThey are added to your balance as soon as the payment goes through.`;
}

/** A post was asked for without the credits to pay for it: nothing is charged. */
export function insufficientCreditsReply(balance: number, cost: number): string {
  const have = `${balance} ${balance === 1 ? 'credit' : 'credits'}`;
  const need = `${cost} ${cost === 1 ? 'credit' : 'credits'}`;
  return `A post costs ${need} and you have ${have}, so I haven't started it and nothing was charged. Send "topup" to buy more credits.`;
}

/** A top-up landed: sent once per payment, with the balance it left. */
export function topupConfirmedReply(credits: number, balance: number): string {
  const added = `${credits} ${credits === 1 ? 'credit' : 'credits'}`;
  return `Payment received: ${added} added. ${balanceReply(balance)}`;
}
