// A local OpenAI-compatible server for tests: POST /v1/chat/completions (and /chat/completions)
// answering with the real response shapes, scriptable request by request, recording what it got.
// It runs the real HTTP path of the `openai` client: baseURL, headers, retries, timeouts.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FakeBehaviour =
  | 'success'
  | 'malformed-json'
  | 'schema-invalid'
  | 'truncated'
  | 'refusal'
  | 'no-usage'
  /** A usable post with U+0000 in it: escaped (\u0000) in the title's JSON string, raw in the body's. */
  | 'nul-characters'
  /** An HTTP error; retryAfter in seconds (or an HTTP date), retryAfterMs as `retry-after-ms`. */
  | { status: number; retryAfter?: number | string; retryAfterMs?: number; code?: string }
  /** Answers successfully, but only after this long (the client's timeout should fire first). */
  | { slowMs: number }
  /** Answers with this message content verbatim (a string) or JSON-encoded (an object). */
  | { content: string | Record<string, unknown>; finishReason?: string };

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary fields of the request body
  body: any;
}

export interface FakeOpenAI {
  /** Base URL ending in /v1, as a client expects it. */
  baseURL: string;
  requests: RecordedRequest[];
  /** Queue behaviours for the next requests, in order; once used up, requests succeed. */
  script(...behaviours: FakeBehaviour[]): void;
  /** Resolves once this many requests have arrived in all (events, not sleeps). */
  received(count: number): Promise<void>;
  /** Forgets the recorded requests and any behaviours not used yet. */
  reset(): void;
  close(): Promise<void>;
}

export const FAKE_USAGE = { prompt_tokens: 1200, completion_tokens: 650, total_tokens: 1850 };

export async function startFakeOpenAI(): Promise<FakeOpenAI> {
  const queue: FakeBehaviour[] = [];
  const requests: RecordedRequest[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const waiters: { count: number; resolve: () => void }[] = [];
  let seq = 0;

  const server = createServer(async (req, res) => {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    let body: unknown = null;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      body = raw;
    }
    const path = (req.url ?? '/').split('?')[0]!;
    requests.push({ method: req.method ?? '', path, headers: req.headers, body });
    for (const w of waiters.filter((w) => requests.length >= w.count)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }

    if (req.method === 'GET' && (path === '/v1/models' || path === '/models')) {
      sendJson(res, 200, {
        object: 'list',
        data: [{ id: 'fake-model', object: 'model', created: 1_700_000_000, owned_by: 'fake' }],
      });
      return;
    }
    if (req.method !== 'POST' || (path !== '/v1/chat/completions' && path !== '/chat/completions')) {
      sendJson(res, 404, { error: { message: `no route ${req.method} ${path}`, type: 'invalid_request_error' } });
      return;
    }
    const behaviour = queue.shift() ?? 'success';
    seq += 1;
    const model = (body as { model?: string } | null)?.model ?? 'fake-model';

    if (typeof behaviour === 'object' && 'status' in behaviour) {
      const headers: Record<string, string> = { 'x-request-id': `req_fake_${seq}` };
      if (behaviour.retryAfter !== undefined) headers['retry-after'] = String(behaviour.retryAfter);
      if (behaviour.retryAfterMs !== undefined) headers['retry-after-ms'] = String(behaviour.retryAfterMs);
      const type =
        behaviour.status === 429
          ? 'rate_limit_error'
          : behaviour.status >= 500
            ? 'server_error'
            : 'invalid_request_error';
      sendJson(
        res,
        behaviour.status,
        { error: { message: `fake ${behaviour.status}`, type, code: behaviour.code ?? null, param: null } },
        headers,
      );
      return;
    }
    if (typeof behaviour === 'object' && 'slowMs' in behaviour) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!res.destroyed) sendJson(res, 200, completion(seq, model, postFor(body), 'stop'));
      }, behaviour.slowMs);
      timers.add(timer);
      return;
    }
    if (typeof behaviour === 'object' && 'content' in behaviour) {
      const content = typeof behaviour.content === 'string' ? behaviour.content : JSON.stringify(behaviour.content);
      sendJson(res, 200, completion(seq, model, content, behaviour.finishReason ?? 'stop'));
      return;
    }
    switch (behaviour) {
      case 'malformed-json':
        sendJson(res, 200, completion(seq, model, '{"title": "Half a post", "summary": "It stops', 'stop'));
        return;
      case 'schema-invalid':
        sendJson(
          res,
          200,
          completion(seq, model, JSON.stringify({ title: '', summary: 'x', body: 'wrong key' }), 'stop'),
        );
        return;
      case 'truncated': {
        const full = postFor(body);
        sendJson(res, 200, completion(seq, model, full.slice(0, Math.floor(full.length / 2)), 'length'));
        return;
      }
      case 'refusal': {
        const answer = completion(seq, model, null, 'stop');
        answer.choices[0]!.message.refusal = "I'm sorry, I can't help with that.";
        sendJson(res, 200, answer);
        return;
      }
      case 'no-usage': {
        const answer: Partial<ReturnType<typeof completion>> = completion(seq, model, postFor(body), 'stop');
        delete answer.usage;
        sendJson(res, 200, answer);
        return;
      }
      case 'nul-characters': {
        const post = JSON.parse(postFor(body)) as { title: string; summary: string; markdown: string };
        post.title = `Nul\u0000 ${post.title}`;
        // JSON.stringify escapes U+0000; the marker then becomes a raw U+0000 in the content itself.
        const text = JSON.stringify(post).replace('At its core', 'At its\u0000 core');
        sendJson(res, 200, completion(seq, model, text, 'stop'));
        return;
      }
      default:
        sendJson(res, 200, completion(seq, model, postFor(body), 'stop'));
    }
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    script(...behaviours) {
      queue.push(...behaviours);
    },
    received(count) {
      if (requests.length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    reset() {
      requests.length = 0;
      queue.length = 0;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function completion(seq: number, model: string, content: string | null, finishReason: string) {
  return {
    id: `chatcmpl-fake${seq}`,
    object: 'chat.completion',
    created: 1_780_000_000 + seq,
    model,
    system_fingerprint: 'fp_fake',
    choices: [
      {
        index: 0,
        finish_reason: finishReason,
        logprobs: null,
        message: { role: 'assistant', content, refusal: null as string | null },
      },
    ],
    usage: FAKE_USAGE,
  };
}

/** A plausible post (as the JSON string a model returns) about what the request names. */
function postFor(body: unknown): string {
  const messages = (body as { messages?: { role: string; content: string }[] } | null)?.messages ?? [];
  const user = messages.findLast((m) => m.role === 'user')?.content ?? '';
  const subject = /^(?:Title|Topic): (.+)$/m.exec(user)?.[1]?.trim() || 'an interesting page';
  const url = /^URL: (.+)$/m.exec(user)?.[1]?.trim();
  return JSON.stringify({
    title: `What to know about ${subject}`,
    summary: `A short guide to ${subject}: what it is, why it matters and where to read more.`,
    markdown: [
      `${subject} comes up more and more often. This post walks through the essentials in plain words.`,
      '',
      '## What it is',
      '',
      `At its core, ${subject} is simpler than it looks. The source explains the main ideas step by step.`,
      '',
      '## Why it matters',
      '',
      '- It saves time.',
      '- It avoids common mistakes.',
      '',
      url ? `Read the original: <${url}>` : 'That is the gist of it.',
    ].join('\n'),
  });
}

function sendJson(
  res: import('node:http').ServerResponse,
  status: number,
  payload: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(payload);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
