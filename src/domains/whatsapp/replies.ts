// Replies go out through whatsapp.send_message, one task per WhatsApp message of at most 4096
// characters. A longer text is split at paragraph, line or sentence boundaries, and each part is
// keyed `{key}:{n}`, so a re-run of the producer enqueues the same parts and nothing twice.
import type { Queryable } from '../../db/db.ts';
import type { Enqueue } from '../../tasks/define-task.ts';

/** WhatsApp's limit on text.body. */
export const MAX_TEXT_LENGTH = 4096;

const PART_SPACING_SECONDS = 3;

/** Splits a text into parts of at most `max` characters, preferring the latest natural boundary. */
export function splitMessage(text: string, max = MAX_TEXT_LENGTH): string[] {
  const parts: string[] = [];
  let rest = text.trim();
  while (rest.length > max) {
    const window = rest.slice(0, max + 1);
    const cut =
      boundary(window, /\n\s*\n/g, max) ??
      boundary(window, /\n/g, max) ??
      boundary(window, /[.!?…](["')\]]*)\s/g, max) ??
      boundary(window, /\s/g, max) ??
      max;
    parts.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  if (rest.length > 0) parts.push(rest);
  return parts;
}

/** The end of the last match of `pattern` within the window, if it leaves a part at least half full. */
function boundary(window: string, pattern: RegExp, max: number): number | undefined {
  let best: number | undefined;
  for (const m of window.matchAll(pattern)) {
    const end = m.index + m[0].length;
    if (end <= max && end >= max / 2) best = end;
  }
  return best;
}

export interface Reply {
  to: string;
  text: string;
  /** The producer's idempotency key for this reply. */
  key: string;
  /** The inbound wamid the reply answers (quoted in WhatsApp). */
  replyTo?: string | undefined;
  accountId?: number | undefined;
}

/** Enqueues the reply's parts (in the caller's transaction when `tx` is given). */
export async function enqueueReply(enqueue: Enqueue, reply: Reply, options: { tx?: Queryable } = {}): Promise<void> {
  const parts = splitMessage(reply.text);
  for (const [i, text] of parts.entries()) {
    await enqueue(
      'whatsapp.send_message',
      {
        to: reply.to,
        text,
        ...(reply.replyTo && i === 0 ? { replyTo: reply.replyTo } : {}),
        ...(reply.accountId !== undefined ? { accountId: reply.accountId } : {}),
      },
      {
        key: parts.length === 1 ? reply.key : `${reply.key}:${i + 1}`,
        // Parts are separate tasks: a few seconds apart, they reach the user in order.
        ...(i > 0 ? { delay: i * PART_SPACING_SECONDS } : {}),
        ...options,
      },
    );
  }
}
