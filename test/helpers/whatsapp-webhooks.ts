// WhatsApp webhook bodies in the shapes Meta sends them (Cloud API, 2026: business-scoped user ids),
// for the tests that build one by hand. Plain text messages from phone numbers have their builder
// in the service itself (textWebhook in src/domains/whatsapp/webhook.ts: the start-up banner and
// `backend whatsapp send` print it), as has Meta's envelope (messagesEnvelope); this file has the rest: any change value, messages from users
// known by BSUID, and status updates.
import { messagesEnvelope, signWebhook } from '../../src/domains/whatsapp/webhook.ts';

/** The phone number id textWebhook and the fake Graph API use unless told another. */
export const PHONE_NUMBER_ID = '109876543210987';

let seq = 0;
/** A wamid no other message of this test process has. */
export const newWamid = (tag = 'TEST') => `wamid.HBg${tag}${++seq}x${Date.now().toString(36)}`;

/** Meta's envelope around one `messages` change value (as an object: JSON.stringify it to post it). */
export function messagesWebhook(value: Record<string, unknown>, phoneNumberId = PHONE_NUMBER_ID) {
  return messagesEnvelope(value, phoneNumberId);
}

export interface WhatsAppUser {
  /** Withheld by Meta for a user with a username who has not talked to us lately: then only the BSUID identifies them. */
  phone?: string;
  bsuid: string;
  name?: string;
  username?: string;
}

/**
 * An inbound message as Meta sends it since BSUIDs: `from_user_id` always, `from` only when the
 * phone number may be shared; the contacts entry with `user_id`, `wa_id` likewise, and the profile
 * with the username when the user has one. `message` is the type and its field (see `text`).
 */
export function inboundWebhook(
  user: WhatsAppUser,
  message: Record<string, unknown>,
  options: { id?: string; phoneNumberId?: string } = {},
): { id: string; body: string } {
  const id = options.id ?? newWamid();
  const profile = { name: user.name ?? 'WhatsApp user', ...(user.username ? { username: user.username } : {}) };
  return {
    id,
    body: JSON.stringify(
      messagesWebhook(
        {
          contacts: [{ profile, ...(user.phone ? { wa_id: user.phone } : {}), user_id: user.bsuid }],
          messages: [
            {
              ...(user.phone ? { from: user.phone } : {}),
              from_user_id: user.bsuid,
              id,
              timestamp: '1793836800',
              ...message,
            },
          ],
        },
        options.phoneNumberId,
      ),
    ),
  };
}

/**
 * Meta's system message for a user whose BSUID changed: no contacts array; the old BSUID on the
 * message, the new one in `system`.
 */
export function userIdChangedWebhook(
  change: { from: string; to: string; name: string },
  options: { id?: string; phoneNumberId?: string } = {},
): { id: string; body: string } {
  const id = options.id ?? newWamid();
  return {
    id,
    body: JSON.stringify(
      messagesWebhook(
        {
          messages: [
            {
              from_user_id: change.from,
              id,
              timestamp: '1793836900',
              type: 'system',
              system: {
                body: `User ${change.name} changed from ${change.from} to ${change.to}`,
                user_id: change.to,
                type: 'user_changed_user_id',
              },
            },
          ],
        },
        options.phoneNumberId,
      ),
    ),
  };
}

/** A text message's type and field, for inboundWebhook. */
export const text = (body: string) => ({ type: 'text', text: { body } });

/**
 * Status updates of messages we sent (sent, delivered, read, failed): each entry is merged over a
 * `delivered` status of `wamid.OURS` at a fixed time; pass id, status, recipient_id or
 * recipient_user_id, errors, pricing as the test needs.
 */
export function statusesWebhook(statuses: Record<string, unknown>[], phoneNumberId = PHONE_NUMBER_ID) {
  return messagesWebhook(
    { statuses: statuses.map((s) => ({ id: 'wamid.OURS', status: 'delivered', timestamp: '1793836800', ...s })) },
    phoneNumberId,
  );
}

/** The headers of a webhook POST signed with the app secret, as Meta sends it. */
export const signedWebhookHeaders = (body: string, appSecret: string) => ({
  'content-type': 'application/json',
  'x-hub-signature-256': signWebhook(body, appSecret),
});
