// What task handlers get as ctx.services, built from the configuration: the one place that
// chooses adapters (the Graph API or the offline outbox, …). main.ts and the test app both use it.
import type { Config } from './config.ts';
import { createGraphClient } from './domains/whatsapp/graph-api.ts';
import type { TaskServices } from './tasks/define-task.ts';

export function createTaskServices(config: Config): TaskServices {
  const { whatsapp } = config;
  return {
    healthProbes: [],
    taskRunRetentionDays: config.tasks.runRetentionDays,
    monthlyGrant: { batchSize: config.credits.monthlyGrantBatchSize },
    whatsapp: {
      api:
        whatsapp.accessToken && whatsapp.phoneNumberId
          ? createGraphClient({
              baseUrl: whatsapp.apiBaseUrl,
              accessToken: whatsapp.accessToken,
              phoneNumberId: whatsapp.phoneNumberId,
            })
          : undefined,
      phoneNumberId: whatsapp.phoneNumberId,
      signupCredits: config.credits.signupCredits,
      postCost: config.credits.postCost,
      paymentLinkUrl: config.stripe.paymentLinkUrl,
    },
  };
}
