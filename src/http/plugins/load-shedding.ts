// Load shedding: when this instance cannot keep up, the routes whose callers retry on their own
// (task pushes, the WhatsApp and Stripe webhooks) are answered 503 at once, before any work is
// done, instead of queueing until the caller times out. Cloud Tasks backs off on a 503 (it honours
// Retry-After) and Meta and Stripe redeliver any answer but 2xx, so nothing is lost: a shed
// request changed nothing and comes again. Health checks, the dashboard and post pages are never
// shed (a load balancer must still see the instance, and a person still reach it).
//
// Two signals, each with a limit from the configuration (0 turns it off):
// - event-loop lag: a timer ticks every LAG_PROBE_INTERVAL_MS and measures how late it ran; the
//   figure is the worst delay of the last one to two windows of LAG_WINDOW_MS (and the delay of a
//   tick overdue right now). Past the limit every request already waits that long to be looked at.
// - database pool: calls waiting for a pooled connection (PostgreSQL). Past the limit, a new
//   request would only wait for a connection and time out.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Db } from '../../db/db.ts';
import { errorBody } from '../../errors.ts';

/** How often the lag probe's timer ticks. */
export const LAG_PROBE_INTERVAL_MS = 50;
/** A lag spike is remembered for one to two windows of this length. */
export const LAG_WINDOW_MS = 500;
/** Seconds a shed request's caller is asked to wait (Retry-After). */
export const SHED_RETRY_AFTER_SECONDS = 5;

/** What the shedding decision reads; tests inject their own. */
export interface LoadSignals {
  /** The event loop's recent lag, in ms. */
  eventLoopLagMs(): number;
  /** Calls waiting for a database connection. */
  dbWaiting(): number;
}

export interface LoadSheddingOptions {
  db: Db;
  /** Shed past this event-loop lag, in ms (0: never on lag). */
  eventLoopLagMs: number;
  /** Shed past this many calls waiting for a connection (0: never on the pool). */
  dbWaiting: number;
  /** Replaces the measured signals (tests). */
  signals?: Partial<LoadSignals> | undefined;
}

/** The routes that are shed (POST only): their callers retry a 503 by themselves. */
const SHEDDABLE = /^\/+(tasks\/|webhooks\/(whatsapp|stripe)(\/|\?|$))/i;
const PUSH = /^\/+tasks\//i;

interface ShedReason {
  signal: 'event_loop_lag' | 'db_pool';
  value: number;
  limit: number;
}

/** Adds the check in front of every route; call it before the routes are registered. */
export function loadShedding(app: FastifyInstance, options: LoadSheddingOptions): void {
  const probe = options.signals?.eventLoopLagMs || options.eventLoopLagMs === 0 ? undefined : new LagProbe();
  const lag = options.signals?.eventLoopLagMs ?? (() => probe?.lagMs() ?? 0);
  const waiting = options.signals?.dbWaiting ?? (() => options.db.pressure?.().waiting ?? 0);
  if (probe) app.addHook('onClose', async () => probe.stop());

  const reason = (): ShedReason | null => {
    if (options.eventLoopLagMs > 0) {
      const value = lag();
      if (value > options.eventLoopLagMs) return { signal: 'event_loop_lag', value, limit: options.eventLoopLagMs };
    }
    if (options.dbWaiting > 0) {
      const value = waiting();
      if (value > options.dbWaiting) return { signal: 'db_pool', value, limit: options.dbWaiting };
    }
    return null;
  };

  // One warning when shedding starts and one when it stops, not one per request (the request
  // log already has a line for each 503).
  let shedding = false;
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.method !== 'POST' || !SHEDDABLE.test(request.url)) return;
    const why = reason();
    if (!why) {
      if (shedding) {
        shedding = false;
        request.log.warn('load shedding stopped');
      }
      return;
    }
    if (!shedding) {
      shedding = true;
      request.log.warn({ shed: why }, `load shedding started: ${why.signal} ${Math.round(why.value)} > ${why.limit}`);
    }
    const headers: Record<string, string> = { 'retry-after': String(SHED_RETRY_AFTER_SECONDS) };
    if (PUSH.test(request.url)) headers['x-task-outcome'] = 'retry';
    return reply
      .code(503)
      .headers(headers)
      .send(errorBody('OVERLOADED', 'The service is overloaded; nothing was done. Retry later.'));
  });
}

/** A timer that measures how late it runs. Unref'd: it never keeps the process alive. */
class LagProbe {
  #last = performance.now();
  #current = 0;
  #previous = 0;
  #windowStart = this.#last;
  readonly #timer: NodeJS.Timeout;

  constructor() {
    this.#timer = setInterval(() => this.#tick(), LAG_PROBE_INTERVAL_MS);
    this.#timer.unref();
  }

  #tick(): void {
    const now = performance.now();
    const late = Math.max(0, now - this.#last - LAG_PROBE_INTERVAL_MS);
    this.#last = now;
    this.#current = Math.max(this.#current, late);
    if (now - this.#windowStart >= LAG_WINDOW_MS) {
      this.#previous = this.#current;
      this.#current = 0;
      this.#windowStart = now;
    }
  }

  lagMs(): number {
    const overdue = performance.now() - this.#last - LAG_PROBE_INTERVAL_MS;
    return Math.max(this.#current, this.#previous, overdue);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
