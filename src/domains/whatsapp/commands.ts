// What a WhatsApp message asks for, and the texts of the replies that need no other
// domain. Pure functions.

export type Command =
  | { kind: 'post_from_url'; url: string }
  | { kind: 'post_on_topic'; topic: string }
  | { kind: 'balance' }
  | { kind: 'topup' }
  | { kind: 'help'; unknown: boolean }
  | { kind: 'welcome' }
  | { kind: 'unsupported'; type: string }
  /** Nothing to answer (a reaction, or its removal). */
  | { kind: 'none'; type: string };

/** The longest topic `blog <topic>` accepts. */
export const MAX_TOPIC_LENGTH = 300;

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+/i;

/** The first http(s) URL in a text, without trailing punctuation a sentence would add. */
export function findUrl(text: string): string | undefined {
  const match = URL_PATTERN.exec(text);
  if (!match) return undefined;
  let url = match[0].replace(/[.,;:!?]+$/, '');
  // A closing bracket is part of the URL only when it has its opening one (Wikipedia links).
  while (/[)\]]$/.test(url)) {
    const close = url.at(-1)!;
    const open = close === ')' ? '(' : '[';
    if (url.split(open).length >= url.split(close).length) break;
    url = url.slice(0, -1);
  }
  return url;
}

/** Message types whose words (webhook.ts readableText) are read as a typed text. */
const TEXT_TYPES = new Set(['text', 'interactive', 'button']);
/** Message types whose caption is read for a link (anything else in it is not a command). */
const CAPTIONED_TYPES = new Set(['image', 'video', 'document']);

/**
 * What a message asks for, from its type and its words. Text commands are case-insensitive; a
 * tapped button or list row counts as its title typed; a picture, video or document whose caption
 * holds a link asks for a post from it; a reaction (added or removed) asks for nothing;
 * `request_welcome` (a user opening the chat for the first time) for the welcome; anything else
 * is unsupported.
 */
export function parseCommand(type: string, body: string | null): Command {
  if (type === 'reaction') return { kind: 'none', type };
  if (type === 'request_welcome') return { kind: 'welcome' };
  if (CAPTIONED_TYPES.has(type)) {
    const url = body === null ? undefined : findUrl(body);
    return url ? { kind: 'post_from_url', url } : { kind: 'unsupported', type };
  }
  if (!TEXT_TYPES.has(type) || body === null) return { kind: 'unsupported', type };
  const text = body.trim();
  const url = findUrl(text);
  if (url) return { kind: 'post_from_url', url };
  const blog = /^\/?blog\b[\s:]*(.*)$/is.exec(text);
  if (blog) {
    const topic = blog[1]!.replace(/\s+/g, ' ').trim();
    return topic ? { kind: 'post_on_topic', topic: topic.slice(0, MAX_TOPIC_LENGTH) } : { kind: 'help', unknown: true };
  }
  const word = text
    .toLowerCase()
    .replace(/^\//, '')
    .replace(/[.!?]+$/, '');
  if (word === 'balance' || word === 'credits') return { kind: 'balance' };
  if (word === 'topup' || word === 'top up' || word === 'top-up' || word === 'buy') return { kind: 'topup' };
  if (word === 'help' || word === 'hi' || word === 'hello' || word === 'start' || word === 'menu') {
    return { kind: 'help', unknown: false };
  }
  return { kind: 'help', unknown: true };
}

export function helpReply(options: { postCost: number; unknown: boolean }): string {
  const cost = `${options.postCost} ${options.postCost === 1 ? 'credit' : 'credits'}`;
  return [
    options.unknown ? "Sorry, I didn't understand that. Here is what I can do:" : 'Here is what I can do:',
    '',
    `• Send a link to a web page: I write a blog post from it (${cost}).`,
    `• blog <topic>: I write a blog post on that topic (${cost}).`,
    '• balance: how many credits you have.',
    '• topup: how to buy more credits.',
    '• help: this list.',
  ].join('\n');
}

/**
 * Whether a message gets a read receipt (blue ticks and "typing…"): only a message the user wrote
 * and that we answer. Not a system message (Meta speaking), not a reaction (nothing is answered,
 * and "typing…" would promise a reply), not `request_welcome` (an event, not a message).
 */
export function marksRead(type: string): boolean {
  return type !== 'system' && type !== 'reaction' && type !== 'request_welcome';
}

export function welcomeReply(credits: number): string {
  return credits > 0
    ? `Welcome! Your account is ready, with ${credits} free ${credits === 1 ? 'credit' : 'credits'} to start.`
    : 'Welcome! Your account is ready.';
}

const KIND_NAMES: Record<string, string> = {
  image: 'pictures',
  audio: 'voice or audio messages',
  video: 'videos',
  document: 'documents',
  sticker: 'stickers',
  location: 'locations',
  contacts: 'contact cards',
  reaction: 'reactions',
};

export function unsupportedReply(type: string): string {
  const what = KIND_NAMES[type] ?? 'this kind of message';
  return `Thanks! I can't read ${what} yet. Send me a link to a web page, or "blog" followed by a topic. Send "help" for the list of commands.`;
}
