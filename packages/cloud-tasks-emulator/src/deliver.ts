// One HTTP attempt to a task's or job's target, through undici's dispatcher rather than fetch or
// node:http. fetch adds headers of its own (Accept, Accept-Language, Sec-Fetch-*, a User-Agent)
// that Cloud Tasks does not send, and lowercases names; the dispatcher sends exactly the headers
// given, their case kept (plus the Host, Connection and Content-Length that HTTP/1.1 needs). Against
// node:http's client it takes about half the CPU per request (bench/results/emulator.md,
// 2026-12-02), and a dispatch is most of what an end-to-end task costs the emulator.
import { Agent, type Dispatcher } from 'undici';

export interface DeliveryRequest {
  url: string;
  method: string;
  /** Sent as they are; deliver() adds Content-Length to this object (each request builds its own). */
  headers: Record<string, string>;
  body: Buffer | undefined;
  /** The dispatch deadline / attempt deadline, in real milliseconds. */
  timeoutMs: number;
}

export interface DeliveryResult {
  /** The target's HTTP status, when it answered. */
  status?: number;
  retryAfter?: string;
  /** DEADLINE_EXCEEDED, or the network error code (ECONNREFUSED, …), when it did not. */
  error?: string;
}

export interface PendingDelivery {
  readonly result: Promise<DeliveryResult>;
  /** Cancels the request; the result becomes { error: reason }. */
  abort(reason: string): void;
}

// Parsed target URLs: tasks of a queue mostly go to a few URLs, and parsing one is a fair part of
// a dispatch. Bounded; emptied when full.
const MAX_PARSED_URLS = 1024;

interface Target {
  origin: string;
  /** Path and query, as sent on the request line. */
  path: string;
  /** `Basic …` from credentials in the URL, as node:http sends them unless Authorization is given. */
  basic?: string;
}

/** undici's own error codes, as the network error a node:http client would have reported. */
function networkErrorCode(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string } };
  const code = e.cause?.code ?? e.code;
  if (code === undefined) return 'ECONNRESET';
  if (code === 'UND_ERR_SOCKET' || code === 'UND_ERR_CLOSED' || code === 'UND_ERR_DESTROYED') return 'ECONNRESET';
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'ETIMEDOUT';
  if (code === 'UND_ERR_INVALID_ARG') return 'EINVAL';
  return code;
}

/** Sends requests over keep-alive connections owned by one emulator, closed with it. */
export class Deliverer {
  // No request or body timeout of undici's own: each attempt has its dispatch deadline (up to 30
  // minutes), enforced below. Connections per origin are unbounded, as the queues' caps bound them.
  readonly #agent = new Agent({ headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 4_000 });
  readonly #parsed = new Map<string, Target>();

  #target(url: string): Target {
    let target = this.#parsed.get(url);
    if (!target) {
      const parsed = new URL(url);
      target = { origin: parsed.origin, path: `${parsed.pathname}${parsed.search}` };
      if (parsed.username || parsed.password) {
        const userinfo = `${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`;
        target.basic = `Basic ${Buffer.from(userinfo).toString('base64')}`;
      }
      if (this.#parsed.size >= MAX_PARSED_URLS) this.#parsed.clear();
      this.#parsed.set(url, target);
    }
    return target;
  }

  deliver(request: DeliveryRequest): PendingDelivery {
    let settle!: (result: DeliveryResult) => void;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let controller: Dispatcher.DispatchController | undefined;
    let cancelled: string | undefined;
    const result = new Promise<DeliveryResult>((resolve) => {
      settle = (r) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
    });
    const abort = (reason: string) => {
      if (settled) return;
      settle({ error: reason });
      cancelled = reason;
      controller?.abort(new Error(reason));
    };
    const hasBody = request.body !== undefined && request.body.length > 0;
    const headers = request.headers;
    // node:http's rule, kept: an empty POST, PUT or PATCH says Content-Length: 0.
    if (!hasBody && (request.method === 'POST' || request.method === 'PUT' || request.method === 'PATCH'))
      headers['Content-Length'] = '0';
    let status = 0;
    let retryAfter: string | undefined;
    try {
      const target = this.#target(request.url);
      if (target.basic && !Object.keys(headers).some((k) => k.toLowerCase() === 'authorization'))
        headers.Authorization = target.basic;
      this.#agent.dispatch(
        {
          origin: target.origin,
          path: target.path,
          method: request.method,
          headers,
          body: hasBody ? request.body : null,
        },
        {
          onRequestStart(c) {
            controller = c;
            if (cancelled !== undefined) c.abort(new Error(cancelled));
          },
          onResponseStart(_c, statusCode, responseHeaders) {
            status = statusCode;
            const value = responseHeaders['retry-after'];
            retryAfter = Array.isArray(value) ? value[0] : value;
          },
          onResponseData() {},
          onResponseEnd() {
            settle(retryAfter === undefined ? { status } : { status, retryAfter });
          },
          onResponseError(_c, err) {
            // A response whose body broke off after its status still counts as answered.
            if (status !== 0) settle(retryAfter === undefined ? { status } : { status, retryAfter });
            else settle({ error: networkErrorCode(err) });
          },
        },
      );
    } catch (err) {
      return { result: Promise.resolve({ error: networkErrorCode(err) }), abort: () => {} };
    }
    timer = setTimeout(() => abort('DEADLINE_EXCEEDED'), request.timeoutMs);
    timer.unref();
    return { result, abort };
  }

  close(): void {
    void this.#agent.destroy().catch(() => {});
  }
}
