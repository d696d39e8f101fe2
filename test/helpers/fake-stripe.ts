// A local stand-in for Stripe's API, for what the webhook reads through the official `stripe`
// package: GET /v1/checkout/sessions/{id}/line_items (a list object, `expand[]` of
// data.price.product honoured, `limit` and `starting_after` paging), with Stripe's answers to a
// wrong key (401) and an unknown session (404) in its error envelope, and scripted server errors.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

export interface StripeRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
  stripeVersion: string | undefined;
}

export interface FakeLineItem {
  quantity: number;
  /** Per unit, smallest currency unit. */
  unitAmount: number;
  /** metadata.credits on the price. */
  priceCredits?: string;
  /** metadata.credits on the product. */
  productCredits?: string;
}

export interface FakeStripe {
  /** http://127.0.0.1:PORT, for STRIPE_API_BASE_URL. */
  baseUrl: string;
  secretKey: string;
  requests: StripeRequest[];
  /** The line items a session answers with. */
  setLineItems(sessionId: string, items: FakeLineItem[]): void;
  /** The next `times` requests answer this status with Stripe's api_error envelope. */
  failNext(status: number, times?: number): void;
  close(): Promise<void>;
}

const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../fixtures/stripe/${name}`, import.meta.url), 'utf8')) as Record<string, unknown>;

function stripeError(status: number, error: Record<string, unknown>) {
  return { status, body: { error: { type: 'invalid_request_error', ...error } } };
}

export async function startFakeStripe(options: { secretKey?: string } = {}): Promise<FakeStripe> {
  const secretKey = options.secretKey ?? 'sk_test_fake0000000000000000000000';
  const sessions = new Map<string, FakeLineItem[]>();
  const requests: StripeRequest[] = [];
  const failures: number[] = [];
  const listTemplate = fixture('line_items.list.json');
  const itemTemplate = (listTemplate.data as Record<string, unknown>[])[0]!;
  const productTemplate = fixture('product.json');

  const lineItem = (sessionId: string, item: FakeLineItem, i: number, expandProduct: boolean) => {
    const price = itemTemplate.price as Record<string, unknown>;
    const productId = `prod_${sessionId.slice(-8)}${i}`;
    const total = item.quantity * item.unitAmount;
    return {
      ...itemTemplate,
      id: `li_${sessionId.slice(-10)}${i}`,
      amount_subtotal: total,
      amount_total: total,
      price: {
        ...price,
        id: `price_${sessionId.slice(-8)}${i}`,
        unit_amount: item.unitAmount,
        unit_amount_decimal: String(item.unitAmount),
        metadata: item.priceCredits ? { credits: item.priceCredits } : {},
        product: expandProduct
          ? {
              ...productTemplate,
              id: productId,
              metadata: item.productCredits ? { credits: item.productCredits } : {},
            }
          : productId,
      },
      quantity: item.quantity,
    };
  };

  const answer = (method: string, url: URL, authorization: string | undefined) => {
    const failure = failures.shift();
    if (failure !== undefined) {
      return { status: failure, body: { error: { type: 'api_error', message: 'An unknown error occurred' } } };
    }
    if (authorization !== `Bearer ${secretKey}`) {
      const shown = authorization?.replace(/^Bearer /, '').slice(0, 8) ?? '';
      return stripeError(401, { message: `Invalid API Key provided: ${shown}***` });
    }
    const m = /^\/v1\/checkout\/sessions\/([^/]+)\/line_items$/.exec(url.pathname);
    if (method !== 'GET' || !m) {
      return stripeError(404, { message: `Unrecognized request URL (${method}: ${url.pathname}).` });
    }
    const sessionId = decodeURIComponent(m[1]!);
    const items = sessions.get(sessionId);
    if (!items) {
      return stripeError(404, {
        code: 'resource_missing',
        doc_url: 'https://stripe.com/docs/error-codes/resource-missing',
        message: `No such checkout.session: '${sessionId}'`,
        param: 'id',
      });
    }
    const expand = [...url.searchParams.entries()].filter(([k]) => /^expand\[\d*\]$/.test(k)).map(([, v]) => v);
    const all = items.map((item, i) => lineItem(sessionId, item, i, expand.includes('data.price.product')));
    const limit = Math.min(100, Number(url.searchParams.get('limit') ?? 10));
    const after = url.searchParams.get('starting_after');
    const start = after ? all.findIndex((li) => li.id === after) + 1 : 0;
    const page = all.slice(start, start + limit);
    return {
      status: 200,
      body: {
        object: 'list',
        data: page,
        has_more: start + limit < all.length,
        url: `/v1/checkout/sessions/${sessionId}/line_items`,
      },
    };
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake-stripe');
    const authorization = req.headers.authorization;
    requests.push({
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      authorization,
      stripeVersion: typeof req.headers['stripe-version'] === 'string' ? req.headers['stripe-version'] : undefined,
    });
    req.resume();
    req.on('end', () => {
      const { status, body } = answer(req.method ?? 'GET', url, authorization);
      res.writeHead(status, {
        'content-type': 'application/json',
        'request-id': `req_fake${requests.length}`,
        'stripe-version': '2025-03-31.basil',
      });
      res.end(JSON.stringify(body));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('fake Stripe: no port');
  return {
    baseUrl: `http://127.0.0.1:${address.port}`,
    secretKey,
    requests,
    setLineItems: (sessionId, items) => sessions.set(sessionId, items),
    failNext: (status, times = 1) => failures.push(...Array<number>(times).fill(status)),
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
