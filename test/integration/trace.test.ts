// One trace per conversation: a WhatsApp message carrying a URL, through the whole service in one
// process (the embedded emulator pushing over HTTP, the fake Graph API, a local page server), is
// one trace id on every span (kept by an in-memory exporter) and on every log line of its five
// tasks, each task's span a child of the span that enqueued it.
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import { loadConfig } from '../../src/config.ts';
import { parseWebhook, textWebhook } from '../../src/domains/whatsapp/webhook.ts';
import { WebhookIngestor } from '../../src/domains/whatsapp/webhook-ingestor.ts';
import { type Service, startService } from '../../src/main.ts';
import { contextFromHeaders, idOnlyTracer, traceparentOf } from '../../src/observability/trace-context.ts';
import type { Enqueue } from '../../src/tasks/define-task.ts';
import { captureLogger } from '../helpers/capture-logger.ts';
import { servicePorts } from '../helpers/cli-process.ts';
import { type FakeGraphApi, startFakeGraphApi } from '../helpers/fake-graph-api.ts';
import { type PageServer, startPageServer } from '../helpers/page-server.ts';
import { createTestDb, type TestDb, testDbKind } from '../helpers/test-db.ts';
import { signedWebhookHeaders } from '../helpers/whatsapp-webhooks.ts';

const APP_SECRET = 'trace-test-secret';
const ARTICLE = readFileSync(new URL('../fixtures/pages/news-article.html', import.meta.url));
const CHAIN = [
  'whatsapp.process_message',
  'scraper.scrape_page',
  'blog.generate_post',
  'whatsapp.send_message',
] as const;

/** Spans as they end, and a way to await the ones a test expects (no polling). */
class RecordedSpans {
  readonly exporter = new InMemorySpanExporter();
  readonly #ended = new EventEmitter();
  readonly processor: SpanProcessor;
  constructor() {
    const inner = new SimpleSpanProcessor({ exporter: this.exporter });
    this.processor = {
      onStart: (span, ctx) => inner.onStart(span, ctx),
      onEnd: (span) => {
        inner.onEnd(span);
        this.#ended.emit('ended');
      },
      forceFlush: () => inner.forceFlush(),
      shutdown: () => inner.shutdown(),
    };
  }
  get spans(): ReadableSpan[] {
    return this.exporter.getFinishedSpans();
  }
  async until(done: (spans: ReadableSpan[]) => boolean): Promise<ReadableSpan[]> {
    while (!done(this.spans)) await once(this.#ended, 'ended');
    return this.spans;
  }
}

describe(`one trace per conversation (${testDbKind})`, () => {
  const recorded = new RecordedSpans();
  const logs = captureLogger('info');
  let graph: FakeGraphApi | undefined;
  let pages: PageServer | undefined;
  let pageUrl: string;
  let service: Service | undefined;
  let db: TestDb | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'backend-trace-'));

  before(async () => {
    graph = await startFakeGraphApi();
    pages = await startPageServer(() => ({ body: ARTICLE }));
    pageUrl = `${pages.url}/news/harbour`;
    db = testDbKind === 'postgres' ? await createTestDb() : undefined;
    const env = {
      ...(await servicePorts()),
      DATA_DIR: dataDir,
      ...(db?.url ? { DATABASE_URL: db.url } : {}),
      WHATSAPP_APP_SECRET: APP_SECRET,
      WHATSAPP_ACCESS_TOKEN: graph.accessToken,
      WHATSAPP_PHONE_NUMBER_ID: graph.phoneNumberId,
      WHATSAPP_API_BASE_URL: graph.baseUrl,
      SCRAPER_ALLOW_PRIVATE_NETWORKS: 'true',
    };
    service = await startService(loadConfig(env), {
      logger: logs.logger,
      telemetry: { spanProcessors: [recorded.processor] },
    });
  });
  after(async () => {
    // Each part may be missing when before() did not finish (a slow machine): close what exists,
    // or its open sockets keep the test process alive.
    await service?.close();
    await graph?.close();
    await pages?.close();
    await db?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('webhook → process_message → scrape_page → generate_post → send_message: one trace id on every span and log line, each hop a child of the last', async () => {
    assert.ok(service && graph, 'the service started');
    const body = textWebhook([{ from: '15550401234', text: `A post from ${pageUrl} please`, wamid: 'wamid.TRACE1' }]);
    const postReady = service.events.waitFor(
      'run:succeeded',
      (e) => e.task === 'whatsapp.send_message' && e.key.startsWith('post-ready:'),
    );
    const response = await fetch(`${service.url}/webhooks/whatsapp`, {
      method: 'POST',
      headers: signedWebhookHeaders(body, APP_SECRET),
      body,
    });
    assert.equal(response.status, 200);
    const sent = await graph.waitForSent(2);
    assert.match((sent[1]!.body.text as { body: string }).body, /Your post is ready/);
    await postReady;

    const taskSpans = (spans: ReadableSpan[]) => spans.filter((s) => s.name.startsWith('task '));
    // Both replies (the welcome and the post's link) and every other task have answered.
    const spans = await recorded.until((all) => {
      const names = taskSpans(all).map((s) => s.name);
      const served = all.filter((s) => s.name === 'POST /tasks/:task').length;
      return names.filter((n) => n === 'task whatsapp.send_message').length >= 2 && served >= names.length;
    });

    const webhook = spans.find((s) => s.name === 'POST /webhooks/whatsapp');
    assert.ok(webhook, `no webhook span among ${spans.map((s) => s.name).join(', ')}`);
    const traceId = webhook.spanContext().traceId;
    const runs = taskSpans(spans).filter((s) => s.spanContext().traceId === traceId);
    for (const task of CHAIN) {
      assert.ok(
        runs.some((s) => s.name === `task ${task}` && s.attributes['task.outcome'] === 'succeeded'),
        `${task} ran in the trace`,
      );
    }
    // Every span of the conversation's tasks and requests is in this one trace.
    const conversation = spans.filter(
      (s) => s.name === 'POST /webhooks/whatsapp' || CHAIN.some((t) => s.name === `task ${t}`),
    );
    assert.deepEqual(new Set(conversation.map((s) => s.spanContext().traceId)), new Set([traceId]));
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const parentOf = (s: ReadableSpan) => byId.get(s.parentSpanContext?.spanId ?? '');
    // Each task's run is inside its push request, whose parent is the span that enqueued the task.
    const enqueuerOf = (task: string) => {
      const run = runs.find((s) => s.name === `task ${task}`)!;
      const push = parentOf(run);
      assert.equal(push?.name, 'POST /tasks/:task', `${task}: run inside its push request`);
      assert.equal(push.attributes['url.path'], `/tasks/${task}`);
      return parentOf(push)?.name;
    };
    assert.equal(enqueuerOf('whatsapp.process_message'), 'POST /webhooks/whatsapp');
    assert.equal(enqueuerOf('scraper.scrape_page'), 'task whatsapp.process_message');
    assert.equal(enqueuerOf('blog.generate_post'), 'task scraper.scrape_page');
    const replies = runs
      .filter((s) => s.name === 'task whatsapp.send_message')
      .map((s) => parentOf(parentOf(s)!)?.name);
    assert.deepEqual(replies.sort(), ['task blog.generate_post', 'task whatsapp.process_message']);
    for (const run of runs) {
      assert.equal(typeof run.attributes['task.attempt'], 'number', `${run.name} names its attempt`);
      assert.equal(typeof run.attributes['task.run_id'], 'number');
    }

    // The log lines: each task's request line (and anything its handler logged) carries the
    // trace, and the span id of that request's span.
    const trace = `projects/local/traces/${traceId}`;
    const pushes = spans.filter((s) => s.name === 'POST /tasks/:task' && s.spanContext().traceId === traceId);
    const spanIds = new Set([...pushes, webhook].map((s) => s.spanContext().spanId));
    const lines = logs.lines.filter((l) => {
      const url = (l.httpRequest as { requestUrl?: string } | undefined)?.requestUrl ?? '';
      return (
        url === '/webhooks/whatsapp' || CHAIN.some((t) => url === `/tasks/${t}`) || CHAIN.includes(l.task as never)
      );
    });
    for (const task of CHAIN) {
      assert.ok(
        lines.some((l) => (l.httpRequest as { requestUrl: string } | undefined)?.requestUrl === `/tasks/${task}`),
        `a log line of ${task}`,
      );
    }
    for (const line of lines) {
      assert.equal(line['logging.googleapis.com/trace'], trace, JSON.stringify(line));
      assert.ok(spanIds.has(String(line['logging.googleapis.com/spanId'])), JSON.stringify(line));
    }
  });
});

describe(`group commit keeps each webhook's trace (${testDbKind})`, () => {
  test("a webhook written in a transaction another webhook's request started still enqueues under its own trace", async () => {
    const db = await createTestDb();
    try {
      const sent = new Map<string, string | undefined>();
      const enqueue = (async (_task: string, payload: { wamid: string }) => {
        sent.set(payload.wamid, traceparentOf());
        return { taskName: payload.wamid, created: true };
      }) as unknown as Enqueue;
      const ingestor = new WebhookIngestor(db, enqueue);
      const inTrace = (traceId: string) =>
        trace.setSpan(
          ROOT_CONTEXT,
          idOnlyTracer.startSpan(
            'webhook',
            {},
            contextFromHeaders({ traceparent: `00-${traceId}-00f067aa0ba902b7-01` }),
          ),
        );
      const a = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
      const b = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';
      const webhook = (wamid: string) =>
        parseWebhook(JSON.parse(textWebhook([{ from: '15550409999', text: 'help', wamid }])));
      // The first webhook's transaction starts at once, in its request's context; the second
      // waits for the next one, which that same (first) request's drain runs.
      const first = context.with(inTrace(a), () => ingestor.ingest(webhook('wamid.GC-A'), new Date()));
      const second = context.with(inTrace(b), () => ingestor.ingest(webhook('wamid.GC-B'), new Date()));
      await Promise.all([first, second]);
      assert.match(sent.get('wamid.GC-A') ?? '', new RegExp(`^00-${a}-`));
      assert.match(sent.get('wamid.GC-B') ?? '', new RegExp(`^00-${b}-`));
    } finally {
      await db.close();
    }
  });
});
