// The WhatsApp Cloud API client: send one text, mark a message
// read. Errors are classified by Graph's `error.code`, never by the HTTP status alone.
import { z } from 'zod';
import { recipientFields } from './identity.ts';

export interface SendText {
  /** The user's phone number (wa_id, no +), sent in `to`, or business-scoped user id, sent in `recipient`. */
  to: string;
  body: string;
  /** Quote the user's message (context.message_id). */
  replyTo?: string | undefined;
}

export interface WhatsAppApi {
  /** Resolves with the wamid the Graph API gave the message; rejects with GraphApiError. */
  sendText(message: SendText, signal?: AbortSignal): Promise<{ wamid: string; request: unknown }>;
  /** Marks an inbound message read (blue ticks) and shows the typing indicator. */
  markRead(wamid: string, signal?: AbortSignal): Promise<void>;
  /** Reads the sending number's id: fails when the Graph API is unreachable or the token refused. */
  probe(signal?: AbortSignal): Promise<void>;
}

export type GraphErrorDisposition =
  | { kind: 'retry-after'; seconds: number }
  | { kind: 'retry' }
  | { kind: 'dead'; reason: string };

export class GraphApiError extends Error {
  readonly httpStatus: number | undefined;
  readonly code: number | undefined;
  readonly details: string | undefined;
  readonly fbtraceId: string | undefined;
  constructor(
    message: string,
    fields: { httpStatus?: number; code?: number; details?: string; fbtraceId?: string; cause?: unknown },
  ) {
    super(message, { cause: fields.cause });
    this.name = 'GraphApiError';
    this.httpStatus = fields.httpStatus;
    this.code = fields.code;
    this.details = fields.details;
    this.fbtraceId = fields.fbtraceId;
  }

  /** What the error is worth: JSON for the message row and the run's last error. */
  toJSON(): Record<string, unknown> {
    return { message: this.message, httpStatus: this.httpStatus, code: this.code, details: this.details };
  }
}

// Meta's codes. Rate limits wait and retry; a request Meta will never
// accept (outside the 24-hour window, not a WhatsApp user, bad parameters, bad token) is dead.
const RATE_LIMITS = new Set([130429, 131048, 131057, 4, 80007]);
const TRANSIENT = new Set([1, 2, 131000, 131049]);
const PERMANENT: Record<number, string> = {
  131047: 'more than 24 hours since the user last wrote (a template message is required)',
  131026: 'the recipient cannot receive this message (not on WhatsApp, or an old client)',
  131051: 'unsupported message type',
  131009: 'a parameter value is not valid',
  100: 'invalid parameter',
  190: 'the access token is invalid or expired',
  0: 'authentication failed',
  10: 'permission denied',
  368: 'the number is blocked for policy violations',
  131031: 'the business account is locked',
  131030: 'the recipient is not in the allowed list (test number)',
  131062: 'business-scoped user id recipients are not supported for this message',
};

/**
 * How to treat a failed send. `attempt` is 1 on the first try: the pair rate limit (131056, about
 * one message per 6 s to one user) backs off 4^attempt seconds, as Meta advises.
 */
export function classifyGraphError(err: GraphApiError, attempt: number): GraphErrorDisposition {
  const code = err.code;
  if (code === 131056) return { kind: 'retry-after', seconds: Math.min(4 ** Math.max(1, attempt), 900) };
  if (code !== undefined && RATE_LIMITS.has(code)) {
    return { kind: 'retry-after', seconds: Math.min(2 ** Math.max(1, attempt) * 5, 900) };
  }
  if (code !== undefined && TRANSIENT.has(code)) return { kind: 'retry' };
  if (code !== undefined && (PERMANENT[code] !== undefined || (code >= 200 && code <= 299))) {
    const what = PERMANENT[code] ?? 'permission denied';
    return { kind: 'dead', reason: `Graph API error ${code}: ${what}${err.details ? ` (${err.details})` : ''}` };
  }
  if (err.httpStatus === undefined || err.httpStatus >= 500 || err.httpStatus === 429 || err.httpStatus === 408) {
    return { kind: 'retry' };
  }
  // Another 4xx with a code we do not know: the request itself is wrong; retrying will not help.
  return { kind: 'dead', reason: `Graph API error ${code ?? err.httpStatus}: ${err.message}` };
}

const errorEnvelope = z.object({
  error: z.looseObject({
    message: z.string().optional(),
    code: z.number().int().optional(),
    error_data: z.looseObject({ details: z.string().optional() }).optional(),
    fbtrace_id: z.string().optional(),
  }),
});

const sendAnswer = z.object({
  messages: z.array(z.looseObject({ id: z.string().min(1) })).min(1),
});

export interface GraphClientOptions {
  /** e.g. https://graph.facebook.com/v23.0 */
  baseUrl: string;
  accessToken: string;
  phoneNumberId: string;
  /** Per request. (Default: 10 s) */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export function createGraphClient(options: GraphClientOptions): WhatsAppApi {
  const numberUrl = `${options.baseUrl.replace(/\/+$/, '')}/${encodeURIComponent(options.phoneNumberId)}`;
  const url = `${numberUrl}/messages`;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const doFetch = options.fetch ?? fetch;

  async function call(target: string, body: unknown, signal: AbortSignal | undefined): Promise<unknown> {
    const timeout = AbortSignal.timeout(timeoutMs);
    let response: Response;
    try {
      response = await doFetch(target, {
        method: body === undefined ? 'GET' : 'POST',
        headers: {
          authorization: `Bearer ${options.accessToken}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      const why = timeout.aborted ? `no answer within ${timeoutMs} ms` : (err as Error).message;
      throw new GraphApiError(`Graph API unreachable: ${why}`, { cause: err });
    }
    const text = await response.text().catch(() => '');
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!response.ok) {
      const parsed = errorEnvelope.safeParse(json);
      const e = parsed.success ? parsed.data.error : undefined;
      throw new GraphApiError(e?.message ?? `Graph API answered HTTP ${response.status}`, {
        httpStatus: response.status,
        ...(e?.code !== undefined ? { code: e.code } : {}),
        ...(e?.error_data?.details ? { details: e.error_data.details } : {}),
        ...(e?.fbtrace_id ? { fbtraceId: e.fbtrace_id } : {}),
      });
    }
    return json;
  }

  return {
    async sendText(message, signal) {
      const request = {
        messaging_product: 'whatsapp',
        recipient_type: 'individual',
        ...recipientFields(message.to),
        type: 'text',
        ...(message.replyTo ? { context: { message_id: message.replyTo } } : {}),
        text: { preview_url: /https?:\/\//.test(message.body), body: message.body },
      };
      const answer = sendAnswer.safeParse(await call(url, request, signal));
      if (!answer.success) {
        // Accepted (2xx) but not the documented shape: sending again could deliver twice.
        throw new GraphApiError('Graph API accepted the message but returned no message id', { httpStatus: 200 });
      }
      return { wamid: answer.data.messages[0]!.id, request };
    },
    async markRead(wamid, signal) {
      await call(
        url,
        { messaging_product: 'whatsapp', status: 'read', message_id: wamid, typing_indicator: { type: 'text' } },
        signal,
      );
    },
    async probe(signal) {
      await call(`${numberUrl}?fields=id`, undefined, signal);
    },
  };
}
