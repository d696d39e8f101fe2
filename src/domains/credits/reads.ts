// The read-only slice of the credits surface (index.ts re-exports it): the ledger queries the
// command line runs. It loads only SQL, so `backend credits …` does not load the Stripe webhook,
// its schemas or the tasks that index.ts brings in.
export { balanceOf, history, type LedgerEntry } from './credits.service.ts';
