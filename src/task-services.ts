// What task handlers get as ctx.services, built from the configuration: the one place that
// chooses adapters (the Graph API or the offline outbox, …). main.ts and the test app both use it.
import type { Config } from './config.ts';
import { createLlmWriter, createOfflineWriter } from './domains/blog/index.ts';
import type { HealthProbe } from './domains/health/index.ts';
import { createSafeFetcher } from './domains/scraper/index.ts';
import { createGraphClient } from './domains/whatsapp/index.ts';
import type { TaskServices } from './tasks/define-task.ts';

/** A page fetched less than this long ago is reused for another post. */
const PAGE_REUSE_MS = 60 * 60_000;

export function createTaskServices(config: Config, extra: { healthProbes?: HealthProbe[] } = {}): TaskServices {
  const { whatsapp, llm } = config;
  const api =
    whatsapp.accessToken && whatsapp.phoneNumberId
      ? createGraphClient({
          baseUrl: whatsapp.apiBaseUrl,
          accessToken: whatsapp.accessToken,
          phoneNumberId: whatsapp.phoneNumberId,
        })
      : undefined;
  const writer =
    llm.baseUrl && llm.model
      ? createLlmWriter({ baseURL: llm.baseUrl, apiKey: llm.apiKey ?? 'not-needed', model: llm.model })
      : createOfflineWriter();
  // Dependencies beyond the database, each when configured; none is critical: without them the
  // service still takes messages in, and tasks wait and retry.
  const healthProbes: HealthProbe[] = [...(extra.healthProbes ?? [])];
  if (api) healthProbes.push({ name: 'whatsapp', critical: false, check: (signal) => api.probe(signal) });
  const probeWriter = writer.probe?.bind(writer);
  if (probeWriter) healthProbes.push({ name: 'llm', critical: false, check: probeWriter });
  return {
    healthProbes,
    taskRunRetentionDays: config.tasks.runRetentionDays,
    monthlyGrant: { batchSize: config.credits.monthlyGrantBatchSize },
    whatsapp: {
      api,
      phoneNumberId: whatsapp.phoneNumberId,
      signupCredits: config.credits.signupCredits,
      postCost: config.credits.postCost,
      paymentLinkUrl: config.stripe.paymentLinkUrl,
    },
    scraper: {
      fetcher: createSafeFetcher({ allowPrivateNetworks: config.scraperAllowPrivateNetworks }),
      reuseWithinMs: PAGE_REUSE_MS,
    },
    blog: {
      writer,
      postCost: config.credits.postCost,
      publicBaseUrl: config.publicBaseUrl,
    },
  };
}

/** Releases what the services hold open (the scraper's connection pool). */
export async function closeTaskServices(services: TaskServices): Promise<void> {
  await services.scraper.fetcher.close();
}
