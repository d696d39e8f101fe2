// A local stand-in for Meta's Graph API (WhatsApp Cloud API): POST /{version}/{phone-number-id}/messages
// with the real request checks and answer shapes, scriptable to answer any error code. A send names
// its user by phone number in `to` or by business-scoped user id (BSUID) in `recipient` (`to` wins
// when both are given); a BSUID in `to` is refused as an invalid parameter.
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';

export interface GraphRequest {
  path: string;
  authorization: string | undefined;
  body: Record<string, unknown>;
  /** ms since the fake started. */
  at: number;
}

/** One scripted answer: success, or Meta's error envelope with this code. */
export type GraphAnswer = 'ok' | { code: number; httpStatus?: number; details?: string } | { drop: true };

export interface FakeGraphApi {
  /** e.g. http://127.0.0.1:PORT/v23.0, for WHATSAPP_API_BASE_URL. */
  baseUrl: string;
  phoneNumberId: string;
  accessToken: string;
  /** Every request, in arrival order. */
  requests: GraphRequest[];
  /** Text messages sent (not mark-read calls). */
  sent(): GraphRequest[];
  /** Answers for the next text sends, in order; then success. */
  script(...answers: GraphAnswer[]): void;
  /** Resolves when at least n text messages have been received. */
  waitForSent(n: number): Promise<GraphRequest[]>;
  close(): Promise<void>;
}

const HTTP_STATUS: Record<number, number> = {
  130429: 429,
  131056: 400,
  131047: 400,
  131026: 400,
  131062: 400,
  100: 400,
  190: 401,
};

/** A business-scoped user id: country code, a period, up to 128 letters and digits (parent: `US.ENT.…`). */
const BSUID = /^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$/;

/** Who a send goes to, as the Graph API reads it: `to` (a phone number) wins over `recipient` (a BSUID). */
export function addressee(body: Record<string, unknown>): string | undefined {
  if (typeof body.to === 'string') return body.to;
  return typeof body.recipient === 'string' ? body.recipient : undefined;
}

let counter = 0;

export async function startFakeGraphApi(
  options: { phoneNumberId?: string; accessToken?: string } = {},
): Promise<FakeGraphApi> {
  const phoneNumberId = options.phoneNumberId ?? '109876543210987';
  const accessToken = options.accessToken ?? 'EAAG-test-token';
  const requests: GraphRequest[] = [];
  const answers: GraphAnswer[] = [];
  const waiters: Array<{ n: number; resolve: (r: GraphRequest[]) => void }> = [];
  const started = performance.now();
  const isSend = (r: GraphRequest) => r.body.type !== undefined;
  const sent = () => requests.filter(isSend);

  const server = createServer(async (req, res) => {
    const body = await readJson(req);
    const request: GraphRequest = {
      path: req.url ?? '',
      authorization: req.headers.authorization,
      body: body ?? {},
      at: performance.now() - started,
    };
    const reply = (status: number, json: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(json));
    };
    const error = (status: number, code: number, message: string, details?: string) =>
      reply(status, {
        error: {
          message,
          type: 'OAuthException',
          code,
          ...(details ? { error_data: { messaging_product: 'whatsapp', details } } : {}),
          fbtrace_id: `Fake${++counter}`,
        },
      });
    if (req.method === 'GET' && request.path.split('?')[0] === `/v23.0/${phoneNumberId}`) {
      requests.push(request);
      if (request.authorization !== `Bearer ${accessToken}`) {
        return error(401, 190, 'Invalid OAuth access token - Cannot parse access token');
      }
      return reply(200, { id: phoneNumberId });
    }
    if (req.method !== 'POST' || request.path !== `/v23.0/${phoneNumberId}/messages`) {
      return error(400, 100, `Unsupported ${req.method} request to ${request.path}`);
    }
    if (request.authorization !== `Bearer ${accessToken}`) {
      return error(401, 190, 'Invalid OAuth access token - Cannot parse access token');
    }
    if (body?.messaging_product !== 'whatsapp') {
      return error(400, 100, '(#100) The parameter messaging_product is required.');
    }
    requests.push(request);
    if (body.status === 'read') return reply(200, { success: true });
    const text = body.text as { body?: unknown } | undefined;
    if (body.type !== 'text' || addressee(body) === undefined || typeof text?.body !== 'string') {
      return error(400, 100, '(#100) Invalid parameter');
    }
    // A phone number goes in `to`, a business-scoped user id in `recipient`; `to` wins when both are given.
    if (typeof body.to === 'string' && !/^\+?\d{6,20}$/.test(body.to)) {
      return error(
        400,
        100,
        '(#100) Invalid parameter',
        BSUID.test(body.to)
          ? 'Param to must be a phone number; send a business-scoped user ID in recipient'
          : undefined,
      );
    }
    if (typeof body.to !== 'string' && !BSUID.test(String(body.recipient))) {
      return error(400, 100, '(#100) Invalid parameter', 'Param recipient must be a business-scoped user ID');
    }
    if (text.body.length > 4096)
      return error(400, 100, '(#100) Param text[body] must be at most 4096 characters long.');
    const answer = answers.shift() ?? 'ok';
    for (const w of [...waiters]) {
      if (sent().length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(sent());
      }
    }
    if (answer === 'ok') {
      const input = addressee(body);
      return reply(200, {
        messaging_product: 'whatsapp',
        // The phone path answers wa_id, the BSUID path user_id.
        contacts: [typeof body.to === 'string' ? { input, wa_id: body.to } : { input, user_id: input }],
        messages: [{ id: `wamid.FAKE${Date.now().toString(36)}${++counter}` }],
      });
    }
    if ('drop' in answer) return void res.destroy();
    const message =
      answer.code === 131056
        ? '(#131056) (Business Account, Consumer Account) pair rate limit hit'
        : answer.code === 131047
          ? 'Re-engagement message'
          : answer.code === 131062
            ? '(#131062) Business-scoped User ID recipients are not supported for this message.'
            : `(#${answer.code}) Error`;
    return error(answer.httpStatus ?? HTTP_STATUS[answer.code] ?? 400, answer.code, message, answer.details);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    baseUrl: `http://127.0.0.1:${port}/v23.0`,
    phoneNumberId,
    accessToken,
    requests,
    sent,
    script: (...a) => {
      answers.push(...a);
    },
    waitForSent: (n) =>
      new Promise((resolve) => {
        if (sent().length >= n) resolve(sent());
        else waiters.push({ n, resolve });
      }),
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    return v && typeof v === 'object' ? v : undefined;
  } catch {
    return undefined;
  }
}
