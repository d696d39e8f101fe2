// WhatsApp webhooks: Meta's signature over the raw bytes and the
// payload schema (what Meta sends, unknown fields ignored). Ingestion is webhook-ingestor.ts.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { senderOf } from './identity.ts';

/** Meta's webhook payloads can be larger than our 1 MiB default (BSP guides mention up to 3 MB). */
export const WEBHOOK_BODY_LIMIT_BYTES = 3 * 1024 * 1024;

/** `sha256=<hex>` of HMAC-SHA256(app secret, raw body), as Meta sends in X-Hub-Signature-256. */
export function signWebhook(rawBody: string | Buffer, appSecret: string): string {
  return `sha256=${createHmac('sha256', appSecret).update(rawBody).digest('hex')}`;
}

/** Constant-time check of X-Hub-Signature-256 over the exact bytes received. */
export function verifyWebhookSignature(
  rawBody: Buffer,
  header: string | undefined,
  appSecret: string,
): { ok: true } | { ok: false; reason: string } {
  if (!header) return { ok: false, reason: 'no X-Hub-Signature-256 header' };
  const match = /^sha256=([0-9a-f]{64})$/i.exec(header.trim());
  if (!match) return { ok: false, reason: 'X-Hub-Signature-256 is not sha256=<64 hex digits>' };
  const expected = createHmac('sha256', appSecret).update(rawBody).digest();
  if (!timingSafeEqual(Buffer.from(match[1]!, 'hex'), expected)) {
    return { ok: false, reason: 'X-Hub-Signature-256 does not match the body' };
  }
  return { ok: true };
}

/** The GET handshake: the challenge to echo, or why not. The token compare is constant-time. */
export function verifyHandshake(
  query: Record<string, unknown>,
  verifyToken: string | undefined,
): { ok: true; challenge: string } | { ok: false; reason: string } {
  const mode = query['hub.mode'];
  const token = query['hub.verify_token'];
  const challenge = query['hub.challenge'];
  if (!verifyToken) return { ok: false, reason: 'WHATSAPP_VERIFY_TOKEN is not set' };
  if (mode !== 'subscribe') return { ok: false, reason: 'hub.mode is not subscribe' };
  if (typeof challenge !== 'string' || challenge.length === 0 || challenge.length > 512) {
    return { ok: false, reason: 'hub.challenge is missing' };
  }
  const given = Buffer.from(typeof token === 'string' ? token : '');
  const wanted = Buffer.from(verifyToken);
  if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) {
    return { ok: false, reason: 'hub.verify_token does not match' };
  }
  return { ok: true, challenge };
}

const unixSeconds = z
  .string()
  .regex(/^\d{1,12}$/)
  .optional();

/** A string field stored in a text column: U+0000, which PostgreSQL refuses, becomes U+FFFD. */
const text = (schema: z.ZodString) => schema.transform((v) => v.replaceAll('\u0000', '\uFFFD'));

const inboundMessageSchema = z.looseObject({
  id: text(z.string().min(1).max(256)),
  // The user's phone number; withheld for some users with usernames (BSUID rollout, 2026).
  from: text(z.string().min(1).max(64)).optional(),
  // The business-scoped user id, when Meta sends it on the message.
  from_user_id: text(z.string().min(1).max(160)).optional(),
  timestamp: unixSeconds,
  type: text(z.string().min(1).max(64)),
  text: z.looseObject({ body: z.string().max(65_536) }).optional(),
});

const contactSchema = z.looseObject({
  wa_id: text(z.string().max(64)).optional(),
  user_id: text(z.string().max(160)).optional(),
  profile: z
    .looseObject({ name: text(z.string().max(512)).optional(), username: text(z.string().max(512)).optional() })
    .optional(),
});

const statusSchema = z.looseObject({
  id: text(z.string().min(1).max(256)),
  status: text(z.string().min(1).max(32)),
  timestamp: unixSeconds,
  recipient_id: text(z.string().max(160)).optional(),
  // A recipient we wrote to by BSUID: Meta names them here, with recipient_id only if their phone may be shared.
  recipient_user_id: z.string().max(160).optional(),
  errors: z.array(z.unknown()).optional(),
});

const messagesValueSchema = z.looseObject({
  metadata: z.looseObject({ phone_number_id: text(z.string().max(64)).optional() }).optional(),
  contacts: z.array(contactSchema).max(1000).optional(),
  messages: z.array(inboundMessageSchema).max(1000).optional(),
  statuses: z.array(statusSchema).max(1000).optional(),
});

export const webhookSchema = z.looseObject({
  object: z.string(),
  entry: z
    .array(
      z.looseObject({
        id: z.string().optional(),
        changes: z.array(z.looseObject({ field: z.string(), value: z.unknown() })).default([]),
      }),
    )
    .default([]),
});

export type InboundMessagePayload = z.infer<typeof inboundMessageSchema>;

export interface ParsedInbound {
  wamid: string;
  phone: string | null;
  bsuid: string | null;
  name: string | null;
  username: string | null;
  phoneNumberId: string | null;
  type: string;
  body: string | null;
  messageAt: Date | null;
  raw: InboundMessagePayload;
}

export interface ParsedStatus {
  wamid: string;
  status: string;
  recipient: string | null;
  statusAt: Date | null;
  errors: unknown[] | undefined;
}

export interface ParsedWebhook {
  messages: ParsedInbound[];
  statuses: ParsedStatus[];
  /** Changes we do not act on (other fields, other objects), for the debug log. */
  ignored: string[];
}

/** 9999-12-31T23:59:59Z: a later time has no ISO form the database reads (years past 9999 need a sign). */
const MAX_UNIX_SECONDS = 253_402_300_799;
/** A Unix time in seconds as a Date; null when absent or past year 9999 (no real message is). */
const seconds = (s: string | undefined) =>
  s === undefined || Number(s) > MAX_UNIX_SECONDS ? null : new Date(Number(s) * 1000);

/** A readable line for what failed validation. */
export class WebhookPayloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookPayloadError';
  }
}

const where = (issue: z.core.$ZodIssue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`;

/** Meta's envelope to the messages and statuses we handle. Throws WebhookPayloadError when malformed. */
export function parseWebhook(json: unknown): ParsedWebhook {
  const envelope = webhookSchema.safeParse(json);
  if (!envelope.success) throw new WebhookPayloadError(envelope.error.issues.map(where).join('; '));
  const result: ParsedWebhook = { messages: [], statuses: [], ignored: [] };
  if (envelope.data.object !== 'whatsapp_business_account') {
    result.ignored.push(`object ${envelope.data.object}`);
    return result;
  }
  for (const [e, entry] of envelope.data.entry.entries()) {
    for (const [c, change] of entry.changes.entries()) {
      if (change.field !== 'messages') {
        result.ignored.push(`field ${change.field}`);
        continue;
      }
      const value = messagesValueSchema.safeParse(change.value);
      if (!value.success) {
        const issue = value.error.issues[0]!;
        throw new WebhookPayloadError(`entry.${e}.changes.${c}.value.${where(issue)}`);
      }
      const { metadata, contacts = [], messages = [], statuses = [] } = value.data;
      for (const m of messages) {
        const sender = senderOf(m, contacts);
        if (!sender) {
          result.ignored.push(`message ${m.id} names no sender`);
          continue;
        }
        result.messages.push({
          wamid: m.id,
          ...sender,
          phoneNumberId: metadata?.phone_number_id ?? null,
          type: m.type,
          body: readableText(m),
          messageAt: seconds(m.timestamp),
          raw: m,
        });
      }
      for (const s of statuses) {
        result.statuses.push({
          wamid: s.id,
          status: s.status,
          recipient: s.recipient_id ?? s.recipient_user_id ?? null,
          statusAt: seconds(s.timestamp),
          errors: s.errors,
        });
      }
      if (messages.length === 0 && statuses.length === 0) result.ignored.push('a messages change with nothing in it');
    }
  }
  return result;
}

/** A field of the message's type-specific object, if it is a string. */
function field(m: InboundMessagePayload, object: string, key: string): string | undefined {
  const value = (m[object] as Record<string, unknown> | undefined)?.[key];
  return typeof value === 'string' ? value : undefined;
}

/**
 * The words a message carries, whatever its type: a text's body, the title of the button or list
 * row the user tapped (`interactive` button_reply / list_reply), a template quick-reply button's
 * text (`button`), a picture's, video's or document's caption. Null when there are none.
 */
export function readableText(m: InboundMessagePayload): string | null {
  switch (m.type) {
    case 'text':
      return m.text?.body ?? null;
    case 'interactive': {
      const kind = field(m, 'interactive', 'type');
      const reply = kind
        ? ((m.interactive as Record<string, unknown>)[kind] as Record<string, unknown> | undefined)
        : undefined;
      return typeof reply?.title === 'string' ? reply.title : null;
    }
    case 'button':
      return field(m, 'button', 'text') ?? null;
    case 'image':
    case 'video':
    case 'document':
      return field(m, m.type, 'caption') ?? null;
    default:
      return null;
  }
}

export interface ExampleMessage {
  from: string;
  text: string;
  wamid: string;
  name?: string;
  /** Unix seconds. */
  timestamp?: number;
}

/**
 * A webhook body as Meta sends it for inbound text messages: for the
 * curl example printed at start, the benchmark and the tests.
 */
export function textWebhook(messages: ExampleMessage[], phoneNumberId = '109876543210987'): string {
  const contacts = [...new Map(messages.map((m) => [m.from, m])).values()].map((m) => ({
    profile: { name: m.name ?? 'WhatsApp user' },
    wa_id: m.from,
  }));
  return JSON.stringify(
    messagesEnvelope(
      {
        contacts,
        messages: messages.map((m) => ({
          from: m.from,
          id: m.wamid,
          timestamp: String(m.timestamp ?? 1_793_836_800),
          type: 'text',
          text: { body: m.text },
        })),
      },
      phoneNumberId,
    ),
  );
}

/** Meta's envelope around one `messages` change value (an object: JSON.stringify it to post it). */
export function messagesEnvelope(value: Record<string, unknown>, phoneNumberId: string) {
  return {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '210987654321098',
        changes: [
          {
            field: 'messages',
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: '15550101234', phone_number_id: phoneNumberId },
              ...value,
            },
          },
        ],
      },
    ],
  };
}
