// One HTTP attempt to a task's or job's target, with node:http/https rather than fetch: fetch
// adds headers of its own (Accept, Accept-Language, Sec-Fetch-*, a User-Agent) that Cloud Tasks
// does not send, and lowercases names; here the target sees exactly the headers given, case kept.
import http from 'node:http';
import https from 'node:https';
import { urlToHttpOptions } from 'node:url';

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

// Parsed target URLs: tasks of a queue mostly go to a few URLs, and parsing one (new URL, then
// the request options) is a fair part of a dispatch. Bounded; emptied when full.
const MAX_PARSED_URLS = 1024;

/** Sends requests over keep-alive agents owned by one emulator, closed with it. */
export class Deliverer {
  readonly #httpAgent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  readonly #httpsAgent = new https.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  readonly #parsed = new Map<string, http.RequestOptions>();

  /** What http.request(url) would derive from the URL (host, port, path, credentials), once per URL. */
  #options(url: string): http.RequestOptions {
    let options = this.#parsed.get(url);
    if (!options) {
      options = urlToHttpOptions(new URL(url));
      if (this.#parsed.size >= MAX_PARSED_URLS) this.#parsed.clear();
      this.#parsed.set(url, options);
    }
    return options;
  }

  deliver(request: DeliveryRequest): PendingDelivery {
    let settle!: (result: DeliveryResult) => void;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const result = new Promise<DeliveryResult>((resolve) => {
      settle = (r) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
    });
    const headers = request.headers;
    if (request.body && request.body.length > 0) headers['Content-Length'] = String(request.body.length);
    else if (request.method === 'POST' || request.method === 'PUT' || request.method === 'PATCH')
      headers['Content-Length'] = '0';

    let req: http.ClientRequest;
    try {
      const target = this.#options(request.url);
      const secure = target.protocol === 'https:';
      req = (secure ? https : http).request({
        ...target,
        method: request.method,
        headers,
        agent: secure ? this.#httpsAgent : this.#httpAgent,
      });
    } catch (err) {
      return { result: Promise.resolve({ error: (err as NodeJS.ErrnoException).code ?? 'EINVAL' }), abort: () => {} };
    }
    timer = setTimeout(() => abort('DEADLINE_EXCEEDED'), request.timeoutMs);
    timer.unref();
    const abort = (reason: string) => {
      if (settled) return;
      settle({ error: reason });
      req.destroy();
    };
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const retryAfter = res.headers['retry-after'];
      const done = () => settle(retryAfter === undefined ? { status } : { status, retryAfter });
      res.on('end', done);
      res.on('close', done);
      res.on('error', done);
      res.resume();
    });
    req.on('error', (err: NodeJS.ErrnoException) => settle({ error: err.code ?? 'ECONNRESET' }));
    req.end(request.body && request.body.length > 0 ? request.body : undefined);
    return { result, abort };
  }

  close(): void {
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }
}
