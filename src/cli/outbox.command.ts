// `backend outbox list|resend|drop`: the transactional outbox rows still waiting to reach Cloud
// Tasks, and what an operator does with one the relay parked after too many failed sends
// (ARCHITECTURE.md, "The outbox"; docs/operators.md, "Parked outbox rows").
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import type { OutboxEntry } from '../tasks/outbox.repository.ts';
import { CliError } from './cli-errors.ts';
import type { ContextFactory } from './command-context.ts';
import { table, truncate } from './format.ts';

export function outboxCommand(program: Command, context: ContextFactory): void {
  const outbox = program
    .command('outbox')
    .description('tasks written in a transaction and not yet sent to Cloud Tasks; parked rows');

  outbox
    .command('list')
    .description('rows waiting, oldest first: being retried or parked, with their last error')
    .option('--parked', 'only the parked rows (the relay no longer sends them)')
    .option('--limit <n>', 'at most this many rows (default 50)', '50')
    .option('--json', 'one JSON object per line (fields: docs/cli.md)')
    .action(async (options: { parked?: boolean; limit: string; json?: boolean }) => {
      const limit = Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) {
        throw new CliError('--limit must be an integer from 1 to 10000', 2);
      }
      const ctx = context();
      const { outboxRows } = await import('../tasks/outbox.repository.ts');
      const db = await ctx.db();
      const now = ctx.clock.now();
      const rows = await outboxRows.list(db, { parked: options.parked === true, limit });
      if (options.json) {
        if (rows.length > 0) ctx.out(rows.map((r) => JSON.stringify(toJson(r, now))).join('\n'));
        return;
      }
      const counts = await outboxRows.counts(db);
      if (rows.length === 0) {
        ctx.out(
          options.parked
            ? `no parked rows (${counts.waiting} waiting to be sent)`
            : 'the outbox is empty: every task written in a transaction has been sent',
        );
        return;
      }
      const listing = table(
        ['ID', 'TASK', 'QUEUE', 'STATE', 'ATTEMPTS', 'AGE', 'LAST ERROR'],
        rows.map((r) => [
          String(r.id),
          r.task,
          r.queue,
          stateOf(r, now),
          String(r.sendAttempts),
          age(now - r.createdAt.getTime()),
          truncate(oneLine(r.lastError ?? ''), 80),
        ]),
      );
      const shown =
        rows.length < (options.parked ? counts.parked : counts.waiting) ? `, the oldest ${rows.length} shown` : '';
      ctx.out(`${plural(counts.waiting, 'row')} waiting, ${counts.parked} parked${shown}\n${listing}`);
      if (counts.parked > 0) {
        ctx.out('parked rows: `backend outbox resend <id…>` once the cause is fixed, or `backend outbox drop <id…>`');
      }
    });

  outbox
    .command('resend')
    .description('send rows again: un-park them with a fresh count of attempts, due now')
    .argument('[ids...]', 'outbox row ids (from outbox list)')
    .option('--all', 'every parked row (after an outage of the task backend, say)')
    .action(async (ids: string[], options: { all?: boolean }) => {
      if (options.all && ids.length > 0) throw new CliError('give row ids or --all, not both', 2);
      if (!options.all && ids.length === 0) throw new CliError('give at least one outbox row id, or --all', 2);
      const wanted = options.all ? [] : parseIds(ids);
      const ctx = context();
      const [{ outboxRows }, { auditEvents }] = await Promise.all([
        import('../tasks/outbox.repository.ts'),
        import('../domains/audit/index.ts'),
      ]);
      const db = await ctx.db();
      const at = new Date(ctx.clock.now());
      const actor = cliActor();
      const resent = await db.transaction(async (tx) => {
        const rows = await outboxRows.lock(tx, options.all ? await outboxRows.parkedIds(tx) : wanted);
        if (!options.all) refuseUnknown(wanted, rows, 'nothing was re-sent');
        if (rows.length === 0) return rows;
        await outboxRows.resend(
          tx,
          rows.map((r) => r.id),
        );
        for (const r of rows) {
          await auditEvents.append(tx, {
            at,
            actor,
            action: 'outbox.resend',
            target: String(r.id),
            detail: describe(r),
          });
        }
        return rows;
      });
      if (resent.length === 0) {
        ctx.out('no parked rows to re-send');
        return;
      }
      ctx.out(
        [
          ...resent.map(
            (r) =>
              `outbox row ${r.id} (${r.task}): ${r.parkedAt ? 'un-parked' : 'was not parked'}, due now (attempts were ${r.sendAttempts})`,
          ),
          'the relay sends them on its next pass (every 5 s while the service runs, and at its start)',
        ].join('\n'),
      );
    });

  outbox
    .command('drop')
    .description('give up parked rows: delete them, recorded in the audit trail (the tasks are never sent)')
    .argument('<ids...>', 'outbox row ids (from outbox list --parked)')
    .action(async (ids: string[]) => {
      const wanted = parseIds(ids);
      const ctx = context();
      const [{ outboxRows }, { auditEvents }] = await Promise.all([
        import('../tasks/outbox.repository.ts'),
        import('../domains/audit/index.ts'),
      ]);
      const db = await ctx.db();
      const at = new Date(ctx.clock.now());
      const actor = cliActor();
      const dropped = await db.transaction(async (tx) => {
        const rows = await outboxRows.lock(tx, wanted);
        refuseUnknown(wanted, rows, 'nothing was dropped');
        const notParked = rows.filter((r) => !r.parkedAt);
        if (notParked.length > 0) {
          throw new CliError(
            `${listIds(
              'outbox row',
              notParked.map((r) => r.id),
            )} ${notParked.length === 1 ? 'is' : 'are'} not parked (the relay still sends ${notParked.length === 1 ? 'it' : 'them'}); only parked rows can be dropped: nothing was dropped`,
          );
        }
        await outboxRows.dropParked(
          tx,
          rows.map((r) => r.id),
        );
        for (const r of rows) {
          await auditEvents.append(tx, { at, actor, action: 'outbox.drop', target: String(r.id), detail: describe(r) });
        }
        return rows;
      });
      ctx.out(
        dropped
          .map((r) => `outbox row ${r.id} (${r.task}, key ${r.idempotencyKey}) dropped: the task will not be sent`)
          .join('\n'),
      );
    });
}

/** Who ran the command, for the audit trail: the account at the terminal (or of the service). */
function cliActor(): string {
  let name: string | undefined;
  try {
    name = userInfo().username;
  } catch {
    name = process.env.USER;
  }
  return `cli:${name || 'unknown'}`;
}

/** What the audit trail keeps of a row (never the payload: it may hold personal data). */
function describe(r: OutboxEntry): Record<string, unknown> {
  return {
    task: r.task,
    queue: r.queue,
    taskId: r.taskId,
    key: r.idempotencyKey,
    attempts: r.sendAttempts,
    lastError: r.lastError,
    parkedAt: r.parkedAt?.toISOString() ?? null,
    createdAt: r.createdAt.toISOString(),
  };
}

function refuseUnknown(wanted: number[], found: OutboxEntry[], what: string): void {
  const have = new Set(found.map((r) => r.id));
  const missing = wanted.filter((id) => !have.has(id));
  if (missing.length > 0) {
    throw new CliError(`no ${listIds('outbox row', missing)} (sent already, or never written): ${what}`);
  }
}

function parseIds(ids: string[]): number[] {
  const bad = ids.find((id) => !/^[1-9]\d{0,15}$/.test(id));
  if (bad !== undefined) throw new CliError(`outbox row ids are numbers (from outbox list), got "${bad}"`, 2);
  return [...new Set(ids.map(Number))];
}

function stateOf(r: OutboxEntry, now: number): string {
  if (r.parkedAt) return 'parked';
  if (r.nextAttemptAt && r.nextAttemptAt.getTime() > now) return `retry in ${age(r.nextAttemptAt.getTime() - now)}`;
  return r.sendAttempts > 0 ? 'retry due' : 'due';
}

function toJson(r: OutboxEntry, now: number) {
  return {
    id: r.id,
    task: r.task,
    queue: r.queue,
    taskId: r.taskId,
    key: r.idempotencyKey,
    state: r.parkedAt ? 'parked' : 'waiting',
    attempts: r.sendAttempts,
    lastError: r.lastError,
    createdAt: r.createdAt.toISOString(),
    ageMs: Math.max(0, now - r.createdAt.getTime()),
    nextAttemptAt: r.nextAttemptAt?.toISOString() ?? null,
    parkedAt: r.parkedAt?.toISOString() ?? null,
    scheduleTime: r.scheduleTime?.toISOString() ?? null,
  };
}

/** "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const listIds = (word: string, ids: number[]) => `${word}${ids.length === 1 ? '' : 's'} ${ids.join(', ')}`;
const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();
