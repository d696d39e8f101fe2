// `npm start` as the end-to-end tests run it: `backend serve` in a child process (its embedded
// emulator pushing tasks over HTTP) on free ports, with a fresh data directory and, on the
// PostgreSQL leg, a fresh database; WhatsApp replies go to the local fake Graph API, or to the
// offline outbox. close() stops the service (SIGTERM, as Cloud Run does) and removes
// what it made. The handle comes back as soon as the process is spawned and `ready` says when it
// listens, so a test that gives up waiting (a slow machine) can still close() it: a service left
// running would keep the test file's process alive.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningBackend, servicePorts, startBackend } from './cli-process.ts';
import { type FakeGraphApi, startFakeGraphApi } from './fake-graph-api.ts';
import { createTestDb, testDbKind } from './test-db.ts';
import { signedWebhookHeaders } from './whatsapp-webhooks.ts';

export interface ServiceProcess {
  /** The fake Graph API the service sends replies to (offline, it hears nothing). */
  graph: FakeGraphApi;
  service: RunningBackend;
  /** The service's environment (ports, DATA_DIR, DATABASE_URL…): pass it to runBackend. */
  env: Record<string, string>;
  /** http://127.0.0.1:{port} of the service. */
  base: string;
  /** Resolves once the service listens; rejects if it exits first. */
  ready: Promise<void>;
  /** POSTs a webhook body signed with the app secret to /webhooks/whatsapp. */
  postWebhook(body: string): Promise<Response>;
  close(): Promise<void>;
}

export async function startServiceProcess(options: {
  /** WHATSAPP_APP_SECRET; without it, local mode makes one in DATA_DIR (the start-up banner signs with it). */
  appSecret?: string;
  /** true: no WhatsApp access token, so replies are kept in the offline outbox. */
  offline?: boolean;
  /** More variables (SIGNUP_CREDITS, the LLM's, Stripe's…). */
  env?: Record<string, string>;
}): Promise<ServiceProcess> {
  const graph = await startFakeGraphApi();
  const db = testDbKind === 'postgres' ? await createTestDb() : undefined;
  const ports = await servicePorts();
  const env: Record<string, string> = {
    ...ports,
    DATA_DIR: mkdtempSync(join(tmpdir(), 'backend-service-')),
    ...(db?.url ? { DATABASE_URL: db.url } : {}),
    ...(options.appSecret ? { WHATSAPP_APP_SECRET: options.appSecret } : {}),
    ...(options.offline
      ? {}
      : {
          WHATSAPP_ACCESS_TOKEN: graph.accessToken,
          WHATSAPP_PHONE_NUMBER_ID: graph.phoneNumberId,
          WHATSAPP_API_BASE_URL: graph.baseUrl,
        }),
    ...options.env,
  };
  const service = startBackend(['serve'], env);
  const close = async () => {
    service.child.kill('SIGTERM');
    await service.exit;
    await graph.close();
    await db?.close();
    rmSync(env.DATA_DIR!, { recursive: true, force: true });
  };
  const ready = service.waitForLine(/"listening on http/).then(() => {});
  const base = ports.PUBLIC_BASE_URL!;
  return {
    graph,
    service,
    env,
    base,
    ready,
    postWebhook: (body) => {
      if (!options.appSecret) throw new Error('postWebhook signs with options.appSecret: give one');
      return fetch(`${base}/webhooks/whatsapp`, {
        method: 'POST',
        headers: signedWebhookHeaders(body, options.appSecret),
        body,
      });
    },
    close,
  };
}
