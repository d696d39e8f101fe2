// What the two services share: the clock, events, journal, token signer, the HTTP sender, the
// set of attempts in flight, and a way to ask the dispatch loop to look again.
import type { Deliverer, DeliveryResult, PendingDelivery } from './deliver.ts';
import type { EmulatorEmitter } from './events.ts';
import type { Journal } from './journal.ts';
import type { Signer } from './oidc.ts';
import type { Clock } from './time.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFn = (level: LogLevel, message: string, data?: object) => void;

export interface EmulatorContext {
  readonly clock: Clock;
  readonly events: EmulatorEmitter;
  journal: Journal;
  /** True when a data directory backs the journal (records are worth building). */
  persistent: boolean;
  readonly signer: Signer;
  readonly deliverer: Deliverer;
  readonly attempts: Attempts;
  /** The `iss` of the tokens the emulator signs. */
  issuer: string;
  readonly log: LogFn;
  /** Something became due or changed: in auto-dispatch mode, look for work on the next turn. */
  wake(): void;
}

interface InFlight {
  pending: PendingDelivery;
  deadlineAt: number;
}

/** Every attempt in flight, task or job: what tick() waits for and close() cancels. */
export class Attempts {
  readonly #inFlight = new Set<InFlight>();
  #waiters: (() => void)[] = [];
  #discarding = false;
  readonly #onSettled: () => void;
  readonly #log: LogFn;

  constructor(onSettled: () => void, log: LogFn) {
    this.#onSettled = onSettled;
    this.#log = log;
  }

  get size(): number {
    return this.#inFlight.size;
  }

  /**
   * Tracks a request; `onDone` applies its outcome. `deadlineAt` is on the emulator's clock, so a
   * test clock can expire an attempt as well as the real timer inside the delivery can.
   */
  track(pending: PendingDelivery, deadlineAt: number, onDone: (result: DeliveryResult) => void): void {
    const entry: InFlight = { pending, deadlineAt };
    this.#inFlight.add(entry);
    void pending.result.then((result) => {
      this.#inFlight.delete(entry);
      if (!this.#discarding) {
        try {
          onDone(result);
        } catch (err) {
          this.#log('error', 'applying an attempt outcome failed', { err: String(err) });
        }
      }
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) w();
      this.#onSettled();
    });
  }

  /** Cancels attempts whose deadline has passed on the emulator's clock. */
  expire(now: number): void {
    for (const entry of this.#inFlight) if (entry.deadlineAt <= now) entry.pending.abort('DEADLINE_EXCEEDED');
  }

  /** Resolves when the next attempt settles. */
  settled(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** On close: cancel everything and apply no outcome, so the stored state stays as before the attempt. */
  async discardAll(): Promise<void> {
    this.#discarding = true;
    const all = [...this.#inFlight];
    for (const entry of all) entry.pending.abort('CANCELLED');
    await Promise.all(all.map((e) => e.pending.result));
  }
}
