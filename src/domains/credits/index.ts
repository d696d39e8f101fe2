// The credits domain's public surface: everything outside src/domains/credits imports from here,
// except the task definitions (*.task.ts), which only src/task-registry.ts reads.
export { balanceReply, insufficientCreditsReply, topupReply } from './credits.replies.ts';
export {
  adjust,
  balanceOf,
  createAccount,
  grantSignup,
  holdState,
  InsufficientCreditsError,
  inTransaction,
  release,
  reserve,
  settle,
  UnknownAccountError,
} from './credits.service.ts';
export { type HoldOwner, longestTaskDeadlineSeconds } from './holds-sweep.ts';
export { createStripeApi } from './stripe-api.ts';
export { TopupPendingError } from './stripe-money.ts';
export { handleStripeEvent, keyMode, stripeEventSchema, verifyStripeSignature } from './stripe-webhook.ts';
