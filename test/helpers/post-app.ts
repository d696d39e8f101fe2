// The app as the post tests drive it (test/integration/posts.test.ts, holds-and-nul.test.ts): the
// real app over a fresh test database, with a local page server for the scraper and the fake
// OpenAI-compatible server as the writer's model; text webhooks signed as Meta signs them, and the
// tasks they cause delivered as Cloud Tasks would, a task name at a time. 3 credits at sign-up, 2 a post.
import { textWebhook } from '../../src/domains/whatsapp/webhook.ts';
import { startFakeOpenAI } from './fake-openai.ts';
import { type PageAnswer, startPageServer } from './page-server.ts';
import { push } from './push.ts';
import { buildTestApp } from './test-app.ts';
import { signedWebhookHeaders } from './whatsapp-webhooks.ts';

export type PostApp = Awaited<ReturnType<typeof startPostApp>>;

export async function startPostApp(options: {
  appSecret: string;
  /** What the page server answers for a path. */
  page: (path: string) => PageAnswer;
}) {
  const llm = await startFakeOpenAI();
  const pages = await startPageServer(options.page);
  const t = await buildTestApp({
    env: {
      WHATSAPP_APP_SECRET: options.appSecret,
      SCRAPER_ALLOW_PRIVATE_NETWORKS: 'true',
      LLM_BASE_URL: llm.baseURL,
      LLM_MODEL: 'test-model',
      LLM_API_KEY: 'sk-test',
      SIGNUP_CREDITS: '3',
      POST_COST_CREDITS: '2',
    },
  });
  return {
    t,
    llm,
    pages,
    /** Forgets what was enqueued and what the model was told to answer (between tests). */
    reset() {
      t.enqueued.length = 0;
      llm.reset();
    },
    /** Posts a signed webhook with one text message from this phone number. */
    webhook(from: string, text: string, wamid: string) {
      const body = textWebhook([{ from, text, wamid }]);
      return t.app.inject({
        method: 'POST',
        url: '/webhooks/whatsapp',
        headers: signedWebhookHeaders(body, options.appSecret),
        payload: body,
      });
    },
    /** Delivers every enqueued task of these names (the others stay queued), as Cloud Tasks would. */
    async deliver(tasks: string[], o: { retryCount?: number } = {}) {
      const due = t.enqueued.filter((c) => tasks.includes(c.task));
      t.enqueued.splice(0, t.enqueued.length, ...t.enqueued.filter((c) => !tasks.includes(c.task)));
      const results = [];
      for (const call of due) {
        const key = call.options?.key;
        results.push({
          task: call.task,
          payload: call.payload as Record<string, unknown>,
          ...(await push(t.app, t.issuer, call.task, call.payload, {
            headers: key ? { 'x-task-key': key } : {},
            retryCount: o.retryCount ?? 0,
          })),
        });
      }
      return results;
    },
    /** The account of the contact with this phone number. */
    async accountOf(phone: string) {
      const r = await t.db.query<{ account_id: number }>('SELECT account_id FROM whatsapp_contacts WHERE phone = $1', [
        phone,
      ]);
      return Number(r.rows[0]!.account_id);
    },
    async close() {
      await t.close();
      await llm.close();
      await pages.close();
    },
  };
}
