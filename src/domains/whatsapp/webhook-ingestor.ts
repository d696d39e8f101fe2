// Ingestion of verified webhooks, with group commit. Each webhook's messages are recorded by wamid
// and their whatsapp.process_message written to the outbox, and its statuses recorded, in a
// transaction that must commit before the webhook is answered 200. Webhooks that arrive while a
// transaction is in flight wait for the next one and share it: a burst of fifty concurrent
// webhooks costs two or three transactions of a few statements each, not fifty of four
// (bench/results/whatsapp-webhook.md). If a shared transaction fails, each of its webhooks is
// written again on its own, so one bad webhook cannot fail the others.
import type { Context } from '@opentelemetry/api';
import type { Db, Tx } from '../../db/db.ts';
import { otel } from '../../observability/otel-api.ts';
import type { Enqueue } from '../../tasks/define-task.ts';
import type { ParsedWebhook } from './webhook.ts';
import { statusKey, whatsappMessages, whatsappStatuses } from './whatsapp.repository.ts';

export interface IngestOutcome {
  /** New inbound messages, each with its whatsapp.process_message enqueued. */
  accepted: string[];
  /** Inbound messages seen before (or twice in this batch): nothing done for them. */
  duplicates: string[];
  /** Status updates recorded for the first time. */
  statuses: number;
}

interface Waiting {
  parsed: ParsedWebhook;
  at: Date;
  /** The webhook's trace: its process_message continues it, whichever webhook's turn wrote it. */
  trace: Context;
  resolve: (outcome: IngestOutcome) => void;
  reject: (err: unknown) => void;
}

/** Webhooks per shared transaction at most. */
const MAX_BATCH = 200;

export class WebhookIngestor {
  readonly #db: Db;
  readonly #enqueue: Enqueue;
  readonly #waiting: Waiting[] = [];
  #writing = false;

  constructor(db: Db, enqueue: Enqueue) {
    this.#db = db;
    this.#enqueue = enqueue;
  }

  /** Resolves once the webhook's messages and statuses are committed (then it may be answered 200). */
  ingest(parsed: ParsedWebhook, at: Date): Promise<IngestOutcome> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ parsed, at, trace: otel.context.active(), resolve, reject });
      if (!this.#writing) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#waiting.length > 0) {
        const batch = this.#waiting.splice(0, MAX_BATCH);
        try {
          const outcomes = await this.#db.transaction((tx) => this.#write(tx, batch));
          for (const [i, w] of batch.entries()) w.resolve(outcomes[i]!);
        } catch (err) {
          if (batch.length === 1) {
            batch[0]!.reject(err);
            continue;
          }
          for (const w of batch) {
            await this.#db
              .transaction((tx) => this.#write(tx, [w]))
              .then(
                ([outcome]) => w.resolve(outcome!),
                (e: unknown) => w.reject(e),
              );
          }
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  async #write(tx: Tx, batch: readonly Waiting[]): Promise<IngestOutcome[]> {
    const messages = batch.flatMap((w) => w.parsed.messages.map((m) => ({ m, at: w.at })));
    const fresh = await whatsappMessages.insertInbound(
      tx,
      messages.map(({ m, at }) => ({
        wamid: m.wamid,
        waUser: m.phone ?? m.bsuid!,
        phoneNumberId: m.phoneNumberId,
        type: m.type,
        body: m.body,
        payload: {
          message: m.raw,
          contact: {
            name: m.name ?? undefined,
            username: m.username ?? undefined,
            waId: m.phone ?? undefined,
            userId: m.bsuid ?? undefined,
          },
        },
        messageAt: m.messageAt,
        at,
      })),
    );
    const newStatuses = await whatsappStatuses.record(
      tx,
      batch.flatMap((w) => w.parsed.statuses.map((s) => ({ ...s, at: w.at }))),
    );
    const outcomes: IngestOutcome[] = [];
    for (const w of batch) {
      const outcome: IngestOutcome = { accepted: [], duplicates: [], statuses: 0 };
      for (const m of w.parsed.messages) {
        // Inserted by this statement, and not already claimed by an earlier copy in this batch.
        if (fresh.delete(m.wamid)) {
          await otel.context.with(w.trace, () => this.#enqueue('whatsapp.process_message', { wamid: m.wamid }, { tx }));
          outcome.accepted.push(m.wamid);
        } else {
          outcome.duplicates.push(m.wamid);
        }
      }
      for (const s of w.parsed.statuses) if (newStatuses.delete(statusKey(s.wamid, s.status))) outcome.statuses += 1;
      outcomes.push(outcome);
    }
    return outcomes;
  }
}
