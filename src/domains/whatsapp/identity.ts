// Who a WhatsApp user is, in one place. Meta names a user by a phone number (`from`, `wa_id`), a
// business-scoped user id (BSUID: `from_user_id`, `user_id`, e.g. `US.13491208655302741918`), or
// both, and may add a username (shown, never matched on: the user changes it at will). A user who
// adopts a username may reach us with no phone number at all. The rules:
//
// 1. One user is one contact and one account, whatever mix of ids their messages carry over time.
//    A message is matched by its BSUID first, then its phone number, then a BSUID the contact used
//    before (a late webhook); an id the contact did not have yet is added to it (first seen by
//    BSUID, then by phone and BSUID together: the same contact gains the phone, and the reverse).
// 2. Ids change only forward. A `user_changed_user_id` system message moves the contact to the new
//    BSUID, a `user_changed_number` one to the new number (and the new BSUID that comes with it);
//    the old ids are kept as former ids, so the next message from the new id reaches the same
//    account (same balance, no second sign-up grant) and a reply queued to an old id still
//    reaches the user. An id is never taken from another contact: if a message names two
//    existing contacts (one by BSUID, one by phone), the BSUID's contact answers and the clash is
//    logged for an operator; accounts are never merged automatically.
// 3. Replies go to the phone number when we know one (Meta's advice: phone numbers keep
//    appearing in webhooks), else to the BSUID. The Graph API takes a phone number in `to` and a
//    BSUID in the separate `recipient` field (`to` wins when both are given), so the address's
//    shape decides the field.
import type { Queryable } from '../../db/db.ts';
import type { Logger } from '../../logger.ts';
import { RetryAfterError } from '../../tasks/task-errors.ts';
import { createAccount, grantSignup } from '../credits/index.ts';
import { type Contact, whatsappContacts } from './whatsapp.repository.ts';

/** A BSUID: an ISO 3166 alpha-2 country code, a period, up to 128 letters and digits (`US.ENT.…` for a parent BSUID). */
const BSUID = /^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$/;
/** A WhatsApp phone number as Meta writes it: digits only, country code first. */
const PHONE = /^\d{6,20}$/;

export const isBsuid = (id: string): boolean => BSUID.test(id);
export const isPhoneNumber = (id: string): boolean => PHONE.test(id);

/** The sender of a message, as far as the webhook tells. */
export interface Sender {
  phone: string | null;
  bsuid: string | null;
  name: string | null;
  username: string | null;
}

interface WebhookContact {
  wa_id?: string | undefined;
  user_id?: string | undefined;
  profile?: { name?: string | undefined; username?: string | undefined } | undefined;
}

interface WebhookMessage {
  type: string;
  from?: string | undefined;
  from_user_id?: string | undefined;
  system?: unknown;
}

type Field = [value: string | undefined | null, kind: 'phone' | 'bsuid'];

/**
 * The first phone number and the first BSUID among fields, each read where Meta puts it; an id in
 * the other kind's field (a BSUID in `from`, say) is moved by its shape. Ids of neither shape stay
 * where they were found: an odd-looking number is still the user's.
 */
function sortIds(fields: Field[]): { phone: string | null; bsuid: string | null } {
  let phone: string | null = null;
  let bsuid: string | null = null;
  for (const [raw, field] of fields) {
    const id = raw?.trim();
    if (!id) continue;
    const kind = isBsuid(id) ? 'bsuid' : isPhoneNumber(id.replace(/^\+/, '')) ? 'phone' : field;
    if (kind === 'bsuid') bsuid ??= id;
    else phone ??= id.replace(/^\+/, '');
  }
  return { phone, bsuid };
}

const CHANGED_FROM = /changed from (\S+) to (\S+)/i;

/**
 * Who sent a message: `from` / `from_user_id` on the message, `wa_id` / `user_id` / profile on its
 * contacts entry. System messages carry no contacts entry; one that names no sender on the message
 * is read from its own fields (the id it changed from). Undefined when nothing names the sender.
 */
export function senderOf(message: WebhookMessage, contacts: readonly WebhookContact[]): Sender | undefined {
  const contact =
    contacts.find(
      (k) => (message.from && k.wa_id === message.from) || (message.from_user_id && k.user_id === message.from_user_id),
    ) ?? (contacts.length === 1 ? contacts[0] : undefined);
  const ids: Field[] = [
    [message.from_user_id, 'bsuid'],
    [contact?.user_id, 'bsuid'],
    [message.from, 'phone'],
    [contact?.wa_id, 'phone'],
  ];
  if (message.type === 'system' && !message.from && !message.from_user_id) {
    const system = asRecord(message.system);
    const before = CHANGED_FROM.exec(str(system?.body) ?? '')?.[1];
    ids.push(
      [str(system?.previous_user_id), 'bsuid'],
      [before && (isBsuid(before) || isPhoneNumber(before)) ? before : undefined, 'bsuid'],
    );
  }
  const { phone, bsuid } = sortIds(ids);
  if (!phone && !bsuid) return undefined;
  return { phone, bsuid, name: contact?.profile?.name ?? null, username: contact?.profile?.username ?? null };
}

export interface Resolved {
  contact: Contact;
  created: boolean;
  /** Sign-up credits granted now (0 unless created). */
  granted: number;
}

interface ResolveOptions {
  at: Date;
  log: Logger;
  /** Create the contact, its account and its sign-up grant when nobody matches (else undefined). */
  create?: { signupCredits: number };
}

/** The contact of a message's sender (rule 1), created on first contact when asked to, ids linked. */
export async function resolveContact(
  tx: Queryable,
  sender: Sender,
  options: ResolveOptions,
): Promise<Resolved | undefined> {
  const { byBsuid, byPhone } = await whatsappContacts.holding(tx, sender);
  // A BSUID nobody holds now may be one a contact left behind (a webhook delivered late).
  const formerOwner =
    sender.bsuid && !byBsuid ? await whatsappContacts.formerlyHolding(tx, sender.bsuid, 'bsuid') : undefined;
  const contact = byBsuid ?? byPhone ?? formerOwner;
  if (!contact) {
    if (!options.create) return undefined;
    const accountId = await createAccount(tx, { at: options.at });
    const inserted = await whatsappContacts.insert(tx, { accountId, ...sender, at: options.at });
    if (!inserted) {
      // The same user's other first message committed its contact meanwhile: roll this back
      // (account included) and run again, which finds it.
      throw new RetryAfterError(1, 'another message created this contact concurrently');
    }
    const grant = await grantSignup(tx, accountId, options.create.signupCredits, options.at);
    return { contact: inserted, created: true, granted: grant?.applied ? options.create.signupCredits : 0 };
  }
  if (contact !== formerOwner) {
    // A current message: what it names that the contact lacks becomes the contact's.
    if (sender.bsuid && contact.bsuid !== sender.bsuid && !formerOwner) {
      await whatsappContacts.setId(tx, contact, 'bsuid', sender.bsuid, options.at);
    }
    if (sender.phone && contact.phone !== sender.phone) {
      if (byPhone && byPhone.id !== contact.id) {
        options.log.warn(
          { contactId: contact.id, accountId: contact.accountId, otherAccountId: byPhone.accountId },
          'whatsapp identity clash: this BSUID and this phone number belong to two contacts; the BSUID one answers',
        );
      } else {
        await whatsappContacts.setId(tx, contact, 'phone', sender.phone, options.at);
      }
    }
  }
  return { contact, created: false, granted: 0 };
}

export interface IdentityChange {
  type: 'user_changed_number' | 'user_changed_user_id';
  /** The ids the user has from now on (a new number may come with a new BSUID). */
  phone: string | null;
  bsuid: string | null;
}

/** The new ids a `system` message announces; undefined for other system messages. */
export function identityChangeOf(system: unknown): IdentityChange | undefined {
  const s = asRecord(system);
  const type = str(s?.type);
  if (type === 'user_changed_number') {
    const { phone, bsuid } = sortIds([
      [str(s?.wa_id), 'phone'],
      [str(s?.user_id), 'bsuid'],
    ]);
    return phone || bsuid ? { type, phone, bsuid } : undefined;
  }
  if (type === 'user_changed_user_id') {
    const after = CHANGED_FROM.exec(str(s?.body) ?? '')?.[2];
    const { bsuid } = sortIds([
      [str(s?.user_id), 'bsuid'],
      [after && isBsuid(after) ? after : undefined, 'bsuid'],
    ]);
    return bsuid ? { type, phone: null, bsuid } : undefined;
  }
  return undefined;
}

/**
 * Applies an identity change (rule 2) to the sender's contact. Nothing happens for a user we never
 * met (their first message from the new id makes their account), nor for an id another contact
 * holds already (logged).
 */
export async function applyIdentityChange(
  tx: Queryable,
  sender: Sender,
  change: IdentityChange,
  options: { at: Date; log: Logger },
): Promise<Contact | undefined> {
  const found = await resolveContact(tx, { ...sender, name: null, username: null }, options);
  if (!found) return undefined;
  const { contact } = found;
  for (const kind of ['bsuid', 'phone'] as const) {
    const id = change[kind];
    if (id && !(await whatsappContacts.setId(tx, contact, kind, id, options.at))) {
      options.log.warn(
        { contactId: contact.id, accountId: contact.accountId, change: change.type, kind },
        'whatsapp identity clash: the new id already belongs to another contact; left as it was',
      );
    }
  }
  return contact;
}

/** Where replies to a contact go (rule 3): its phone number, else its BSUID. */
export function replyAddress(contact: { phone: string | null; bsuid: string | null }): string {
  return contact.phone ?? contact.bsuid!;
}

/**
 * The address to send to now for an address given earlier: the contact's current one if the
 * address is (or was) one of a contact's ids, else the address as given.
 */
export async function currentAddress(q: Queryable, to: string): Promise<string> {
  const contact = await whatsappContacts.byAnyId(q, to);
  return contact ? replyAddress(contact) : to;
}

/** The address of an account's WhatsApp user, if it has one (for messages that answer no message). */
export async function addressOfAccount(q: Queryable, accountId: number): Promise<string | undefined> {
  const contact = await whatsappContacts.ofAccount(q, accountId);
  return contact ? replyAddress(contact) : undefined;
}

/** The Graph API field for an address (rule 3): a BSUID in `recipient`, a phone number in `to`. */
export function recipientFields(address: string): { to: string } | { recipient: string } {
  return isBsuid(address) ? { recipient: address } : { to: address };
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return value && typeof value === 'object' ? (value as Record<string, unknown>) : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
