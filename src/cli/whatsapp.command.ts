// `backend whatsapp conversations|outbox|simulate`: the message history in and out, the replies
// kept in the offline outbox when no WHATSAPP_ACCESS_TOKEN is set, and a signed test webhook.
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import type { ConversationLine } from '../domains/whatsapp/reads.ts';
import { CliError } from './cli-errors.ts';
import type { ContextFactory } from './command-context.ts';

export function whatsappCommand(program: Command, context: ContextFactory): void {
  const whatsapp = program.command('whatsapp').description('WhatsApp conversations and the offline outbox');

  whatsapp
    .command('conversations')
    .description('recent messages in and out, newest first')
    .option('--user <who>', "one user's messages: phone number, business-scoped user id or account id")
    .option('--limit <n>', 'at most this many messages (default 30)', '30')
    .option('--json', 'one JSON object per line (fields: docs/cli.md)')
    .action(async (options: { user?: string; limit: string; json?: boolean }) => {
      const limit = parseLimit(options.limit);
      const ctx = context();
      const { whatsappMessages } = await import('../domains/whatsapp/reads.ts');
      const lines = await whatsappMessages.recent(await ctx.db(), {
        limit,
        ...(options.user ? { user: options.user } : {}),
      });
      if (options.json) {
        if (lines.length > 0) ctx.out(lines.map((l) => JSON.stringify(l)).join('\n'));
        return;
      }
      ctx.out(formatLines(lines, 'no messages yet'));
    });

  whatsapp
    .command('outbox')
    .description('replies kept offline (no WHATSAPP_ACCESS_TOKEN), newest first')
    .option('--limit <n>', 'at most this many replies (default 30)', '30')
    .option('--json', 'one JSON object per line (fields: docs/cli.md)')
    .action(async (options: { limit: string; json?: boolean }) => {
      const limit = parseLimit(options.limit);
      const ctx = context();
      const { whatsappMessages } = await import('../domains/whatsapp/reads.ts');
      const lines = await whatsappMessages.offlineOutbox(await ctx.db(), limit);
      if (options.json) {
        if (lines.length > 0) ctx.out(lines.map((l) => JSON.stringify(l)).join('\n'));
        return;
      }
      ctx.out(
        formatLines(lines, 'the offline outbox is empty (replies are kept here when WHATSAPP_ACCESS_TOKEN is unset)'),
      );
    });

  whatsapp
    .command('simulate')
    .description('post a signed webhook carrying one text message to the running service, as Meta would')
    .argument('<text>', 'the message, e.g. help, balance, "blog the tides" or a page URL')
    .option('--from <phone>', "the sender's phone number (digits)", '15550001234')
    .option('--name <name>', "the sender's profile name", 'You')
    .option('--url <url>', 'the service (default: http://localhost:$PORT)')
    .action(async (text: string, options: { from: string; name: string; url?: string }) => {
      if (!/^\d{6,15}$/.test(options.from)) throw new CliError('--from must be a phone number of 6 to 15 digits', 2);
      const ctx = context();
      const [{ signWebhook, textWebhook }, { withLocalSecrets }] = await Promise.all([
        import('../domains/whatsapp/index.ts'),
        import('../local-secrets.ts'),
      ]);
      // Local mode keeps the app secret in $DATA_DIR, where `serve` generated it.
      const { config } = ctx;
      const secret = withLocalSecrets(config).whatsapp.appSecret;
      if (!secret) throw new CliError('WHATSAPP_APP_SECRET is not set: the service would refuse any webhook');
      const base = (options.url ?? `http://localhost:${config.port}`).replace(/\/+$/, '');
      const wamid = `wamid.simulated-${Date.now()}-${randomBytes(4).toString('hex')}`;
      const body = textWebhook([
        { from: options.from, text, wamid, name: options.name, timestamp: Math.floor(Date.now() / 1000) },
      ]);
      let response: Response;
      try {
        response = await fetch(`${base}/webhooks/whatsapp`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-hub-signature-256': signWebhook(body, secret) },
          body,
        });
      } catch (err) {
        throw new CliError(`no service answers at ${base} (${(err as Error).message}); start it with npm start`);
      }
      if (!response.ok) throw new CliError(`${base} answered ${response.status}: ${await response.text()}`);
      ctx.out(
        `sent ${wamid} from ${options.from}; the reply: npx backend whatsapp conversations --user ${options.from}`,
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
