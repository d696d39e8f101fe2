// What a WhatsApp message asks for, and the texts of the replies that need no other
// domain. Pure functions.

export type Command =
  | { kind: 'post_from_url'; url: string }
  | { kind: 'post_on_topic'; topic: string }
  | { kind: 'balance' }
  | { kind: 'topup' }
  | { kind: 'help'; unknown: boolean }
  | { kind: 'unsupported'; type: string };

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

/** Text commands are case-insensitive; anything that is not text is unsupported. */
export function parseCommand(type: string, body: string | null): Command {
  if (type !== 'text' || body === null) return { kind: 'unsupported', type };
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
