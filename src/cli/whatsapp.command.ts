// `backend whatsapp conversations|outbox`: the message history in and out, and the replies kept
// in the offline outbox when no WHATSAPP_ACCESS_TOKEN is set.
import type { Command } from 'commander';
import { type ConversationLine, offlineOutbox, recentMessages } from '../domains/whatsapp/whatsapp.repository.ts';
import { CliError } from './cli-context.ts';
import type { ContextFactory } from './command-context.ts';

export function whatsappCommand(program: Command, context: ContextFactory): void {
  const whatsapp = program.command('whatsapp').description('WhatsApp conversations and the offline outbox');

  whatsapp
    .command('conversations')
    .description('recent messages in and out, newest first')
    .option('--user <who>', "one user's messages: phone number, business-scoped user id or account id")
    .option('--limit <n>', 'at most this many messages (default 30)', '30')
    .option('--json', 'one JSON object per line')
    .action(async (options: { user?: string; limit: string; json?: boolean }) => {
      const limit = parseLimit(options.limit);
      const ctx = context();
      const lines = await recentMessages(await ctx.db(), { limit, ...(options.user ? { user: options.user } : {}) });
      ctx.out(options.json ? lines.map((l) => JSON.stringify(l)).join('\n') : formatLines(lines, 'no messages yet'));
    });

  whatsapp
    .command('outbox')
    .description('replies kept offline (no WHATSAPP_ACCESS_TOKEN), newest first')
    .option('--limit <n>', 'at most this many replies (default 30)', '30')
    .option('--json', 'one JSON object per line')
    .action(async (options: { limit: string; json?: boolean }) => {
      const limit = parseLimit(options.limit);
      const ctx = context();
      const lines = await offlineOutbox(await ctx.db(), limit);
      ctx.out(
        options.json
          ? lines.map((l) => JSON.stringify(l)).join('\n')
          : formatLines(
              lines,
              'the offline outbox is empty (replies are kept here when WHATSAPP_ACCESS_TOKEN is unset)',
            ),
      );
    });
}

function parseLimit(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new CliError('--limit must be an integer from 1 to 10000', 2);
  return n;
}

function formatLines(lines: ConversationLine[], empty: string): string {
  if (lines.length === 0) return empty;
  return lines
    .map((l) => {
      const head = [
        String(l.id).padStart(6),
        l.createdAt.toISOString().replace('T', ' ').slice(0, 19),
        l.direction === 'in' ? '←' : '→',
        l.waUser.padEnd(16),
        `account ${l.accountId ?? '-'}`.padEnd(12),
        l.status.padEnd(9),
      ].join(' ');
      const body = (l.body ?? `[${l.type}]`).replace(/\n/g, '\n        ');
      const error = l.error ? `\n        error: ${JSON.stringify(l.error)}` : '';
      return `${head}\n        ${body}${error}`;
    })
    .join('\n');
}
