// `backend serve` (what `npm start` runs): the whole service in one process.
import type { Command } from 'commander';
import type { Service } from '../main.ts';
import type { CommandContext } from './command-context.ts';
import { configAndLogger } from './command-context.ts';

/** Runs a command line inside this process, with the service's context (given by cli/main.ts). */
export type RunInService = (argv: string[], context: CommandContext, err: (text: string) => void) => Promise<number>;

export function serveCommand(program: Command, runInService: RunInService): void {
  program
    .command('serve')
    .description('start the HTTP service (migrates the database first)')
    .action(async () => {
      const { config, logger } = await configAndLogger();
      // Loaded on use, so `backend --help` and the other commands do not load the whole service.
      const { closeOnSignals, startService } = await import('../main.ts');
      const service = await startService(config, { logger });
      // Other terminals' commands (runs list, enqueue …) run in here in local mode: this process holds
      // the embedded database and knows its emulator's ports. In Google Cloud nothing is written.
      const { controlChannelWanted, startControlChannel } = await import('./control-channel.ts');
      if (controlChannelWanted(config)) {
        const control = await startControlChannel(service, runInService);
        service.onClose(() => control.close());
      }
      closeOnSignals(service, logger, config.shutdownTimeoutMs);
      const [{ signWebhook, textWebhook }, { loginConfigured, loopbackAccessAllowed }] = await Promise.all([
        import('../domains/whatsapp/index.ts'),
        import('../http/plugins/operator-access.ts'),
      ]);
      process.stdout.write(
        startupBanner(service, { signWebhook, textWebhook, loginConfigured, loopbackAccessAllowed }),
      );
    });
}

/** What the banner borrows from the service's modules (loaded once the service has started). */
interface BannerHelpers {
  signWebhook: typeof import('../domains/whatsapp/index.ts').signWebhook;
  textWebhook: typeof import('../domains/whatsapp/index.ts').textWebhook;
  loginConfigured: typeof import('../http/plugins/operator-access.ts').loginConfigured;
  loopbackAccessAllowed: typeof import('../http/plugins/operator-access.ts').loopbackAccessAllowed;
}

/** What a person needs after `npm start`: where to look and what to type next. */
function startupBanner(service: Service, helpers: BannerHelpers): string {
  const { config, url } = service;
  const data = config.database.kind === 'pglite' ? (config.database.dataDir ?? 'memory') : 'PostgreSQL (DATABASE_URL)';
  const tasks = service.emulator
    ? `embedded emulator, gRPC ${service.emulator.grpcAddress}, REST ${service.emulator.httpUrl}`
    : config.tasks.backend === 'cloud'
      ? `Google Cloud Tasks, projects/${config.tasks.projectId}/locations/${config.tasks.location}`
      : `emulator at ${config.tasks.emulatorHost}`;
  return [
    '',
    `  backend is running on ${url}`,
    `    dashboard  ${dashboardLine(service, helpers)}`,
    `    health     ${url}/healthz   ${url}/readyz`,
    `    tasks      ${tasks}`,
    `    data       ${data}${config.database.kind === 'pglite' ? ` (emulator state in ${config.dataDir}/emulator)` : ''}`,
    '',
    '  In another terminal:',
    `    npx backend enqueue health.check '{}'     run a task now`,
    '    npx backend runs list                    what ran, newest first',
    '    npx backend runs list --status dead      what needs a look (replay: npx backend runs replay <id>)',
    '',
    ...whatsappExample(service, helpers),
  ].join('\n');
}

/** Where operators look, and who may: the loopback-only mode says so, a login names its issuer. */
function dashboardLine(service: Service, { loginConfigured, loopbackAccessAllowed }: BannerHelpers): string {
  const { config, url } = service;
  if (loginConfigured(config)) return `${config.publicBaseUrl}/admin   (log in through ${config.oauth.issuerUrl})`;
  if (loopbackAccessAllowed(config)) return `${url}/admin   (no login configured: open to this machine only)`;
  return `${config.publicBaseUrl}/admin   (closed: set OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET and ADMIN_EMAILS)`;
}

/**
 * A signed webhook carrying "help", as Meta would send it, ready to paste (fresh wamid per start).
 * Local mode only: anywhere else the banner lands in shared logs, and a validly signed request
 * there is one anybody reading them can replay.
 */
function whatsappExample(service: Service, { signWebhook, textWebhook }: BannerHelpers): string[] {
  const { config, url } = service;
  if (config.tasks.backend !== 'emulator' || !config.whatsapp.appSecret) return [];
  const body = textWebhook([{ from: '15550001234', text: 'help', wamid: `wamid.local-${Date.now()}`, name: 'You' }]);
  const where = config.whatsapp.accessToken ? 'go to the Graph API' : 'land in: npx backend whatsapp outbox';
  return [
    `  Write to the service as WhatsApp would (replies ${where}):`,
    `    curl -s ${url}/webhooks/whatsapp -H 'content-type: application/json' \\`,
    `      -H 'x-hub-signature-256: ${signWebhook(body, config.whatsapp.appSecret)}' \\`,
    `      -d '${body}'`,
    '    npx backend whatsapp simulate "blog the tides"   the same for any text (a topic, a page URL, balance)',
    '    npx backend whatsapp conversations       messages in and out',
    '',
  ];
}
