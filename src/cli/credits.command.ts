// `backend credits grant|history`: an operator's adjustments (recorded with the reason) and an
// account's ledger.
import type { Command } from 'commander';
import type { LedgerEntry } from '../domains/credits/reads.ts';
import { CliError } from './cli-errors.ts';
import type { ContextFactory } from './command-context.ts';

export function creditsCommand(program: Command, context: ContextFactory): void {
  const credits = program.command('credits').description("operators' credit adjustments and account history");

  credits
    .command('grant')
    .description('add (or, with a negative amount after --, remove) credits, recorded as an adjustment')
    .argument('<account>', 'account id')
    .argument('<amount>', 'credits, a non-zero integer')
    .requiredOption('--reason <text>', 'why (kept in the ledger)')
    .option('--key <key>', 'idempotency key: running the same command again with it applies once')
    .action(async (account: string, amount: string, options: { reason: string; key?: string }) => {
      const accountId = parseAccount(account);
      if (!/^-?\d{1,9}$/.test(amount) || Number(amount) === 0) {
        throw new CliError(`amount must be a non-zero integer, got "${amount}"`, 2);
      }
      if (!options.reason.trim()) throw new CliError('--reason must not be empty', 2);
      const ctx = context();
      const { adjust, InsufficientCreditsError, UnknownAccountError } = await import('../domains/credits/index.ts');
      try {
        const m = await adjust(await ctx.db(), {
          accountId,
          amount: Number(amount),
          reason: options.reason,
          ...(options.key ? { key: options.key } : {}),
          at: new Date(ctx.clock.now()),
        });
        ctx.out(
          m.applied
            ? `account ${accountId}: ${Number(amount) > 0 ? '+' : ''}${amount} credits, balance ${m.balance} (entry ${m.entryId})`
            : `account ${accountId}: already applied (entry ${m.entryId}), balance ${m.balance}`,
        );
      } catch (err) {
        if (err instanceof UnknownAccountError || err instanceof InsufficientCreditsError)
          throw new CliError(err.message);
        throw err;
      }
    });

  credits
    .command('history')
    .description("an account's ledger, newest first")
    .argument('<account>', 'account id')
    .option('--limit <n>', 'at most this many entries (default 50)', '50')
    .option('--json', 'one JSON object per ledger entry, one a line (fields: docs/cli.md)')
    .action(async (account: string, options: { limit: string; json?: boolean }) => {
      const accountId = parseAccount(account);
      const limit = Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new CliError('--limit must be a positive integer', 2);
      const ctx = context();
      const { balanceOf, history } = await import('../domains/credits/reads.ts');
      const db = await ctx.db();
      const balance = await balanceOf(db, accountId);
      if (balance === undefined) throw new CliError(`no account ${accountId}`);
      const entries = await history(db, accountId, limit);
      if (options.json) {
        if (entries.length > 0) ctx.out(entries.map((e) => JSON.stringify(entryJson(e))).join('\n'));
        return;
      }
      const lines = entries.map((e) =>
        [
          String(e.id).padStart(6),
          e.createdAt.toISOString().replace('T', ' ').slice(0, 19),
          e.kind.padEnd(16),
          `${e.amount > 0 ? '+' : ''}${e.amount}`.padStart(8),
          String(e.balanceAfter).padStart(8),
          ` ${e.idempotencyKey}${e.sourceRef ? `  (${e.sourceRef})` : ''}`,
        ].join(' '),
      );
      ctx.out(
        [
          `account ${accountId}: balance ${balance}`,
          `    ID CREATED (UTC)        KIND               AMOUNT  BALANCE  KEY (SOURCE)`,
          ...lines,
        ].join('\n'),
      );
    });
}

/** A ledger entry as `credits history --json` prints it. */
function entryJson(e: LedgerEntry) {
  return {
    id: e.id,
    accountId: e.accountId,
    kind: e.kind,
    amount: e.amount,
    balanceAfter: e.balanceAfter,
    key: e.idempotencyKey,
    sourceRef: e.sourceRef,
    createdAt: e.createdAt.toISOString(),
  };
}

function parseAccount(account: string): number {
  if (!/^[1-9]\d{0,15}$/.test(account)) throw new CliError(`account must be a numeric account id, got "${account}"`, 2);
  return Number(account);
}
