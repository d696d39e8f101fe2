// Typed events: what the emulator did, as it did it, so tests await work instead of sleeping.
// Times are epoch milliseconds on the emulator's clock; names are full resource names.

export interface TaskEvent {
  /** projects/P/locations/L/queues/Q/tasks/T */
  task: string;
  /** projects/P/locations/L/queues/Q */
  queue: string;
}

export interface TaskAttemptEvent extends TaskEvent {
  /** 1 for the first attempt (X-CloudTasks-TaskRetryCount + 1). */
  attempt: number;
}

export interface JobAttemptEvent {
  /** projects/P/locations/L/jobs/J */
  job: string;
  /** The run's scheduled time (X-CloudScheduler-ScheduleTime), constant across its retries. */
  scheduleTime: number;
  /** 1 for a run's first attempt. */
  attempt: number;
}

export interface EmulatorEvents {
  'queue:created': { queue: string };
  'queue:updated': { queue: string };
  'queue:deleted': { queue: string };
  'queue:paused': { queue: string };
  'queue:resumed': { queue: string };
  'queue:purged': { queue: string; purgeTime: number };
  'task:created': TaskEvent & { scheduleTime: number };
  /** An attempt left: the request is on its way to the target. */
  'task:dispatched': TaskAttemptEvent & {
    scheduleTime: number;
    dispatchTime: number;
    url: string;
    /** true when RunTask forced it. */
    forced: boolean;
  };
  /** A 2xx: the task is deleted (and its name tombstoned). */
  'task:succeeded': TaskAttemptEvent & { status: number };
  'task:retry-scheduled': TaskAttemptEvent & {
    status?: number;
    /** DEADLINE_EXCEEDED, or the network error code, when no HTTP answer came. */
    error?: string;
    retryAt: number;
    delayMs: number;
  };
  /** Attempts and retry duration both exhausted: the task is deleted. */
  'task:failed': TaskAttemptEvent & { status?: number; error?: string };
  'task:deleted': TaskEvent & { reason: 'deleted' | 'purged' | 'queue-deleted' };
  'job:created': { job: string };
  'job:updated': { job: string };
  'job:deleted': { job: string };
  'job:paused': { job: string };
  'job:resumed': { job: string };
  'job:dispatched': JobAttemptEvent & { url: string; dispatchTime: number; forced: boolean };
  'job:succeeded': JobAttemptEvent & { status: number };
  'job:retry-scheduled': JobAttemptEvent & { status?: number; error?: string; retryAt: number; delayMs: number };
  /** The run failed and will not be retried; the job waits for its next scheduled time. */
  'job:failed': JobAttemptEvent & { status?: number; error?: string };
}

export type EmulatorEventName = keyof EmulatorEvents;
type Listener<T> = (payload: T) => void;

export interface WaitForOptions {
  /** Reject after this many real milliseconds (a guard for tests; the emulator's clock is not used). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A small typed emitter; listeners run synchronously, and one that throws does not stop the others. */
export class EmulatorEmitter<E extends object = EmulatorEvents> {
  readonly #listeners = new Map<keyof E, Set<Listener<never>>>();

  on<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  off<K extends keyof E>(event: K, listener: Listener<E[K]>): void {
    this.#listeners.get(event)?.delete(listener as Listener<never>);
  }

  once<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  /** True when someone listens, so hot paths can skip building payloads nobody reads. */
  has(event: keyof E): boolean {
    return (this.#listeners.get(event)?.size ?? 0) > 0;
  }

  emit<K extends keyof E>(event: K, payload: E[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<E[K]>)(payload);
      } catch {
        // A test's listener failing must not break the emulator's bookkeeping.
      }
    }
  }

  /** Resolves with the next payload of `event` that satisfies `predicate`. */
  waitFor<K extends keyof E>(
    event: K,
    predicate: (payload: E[K]) => boolean = () => true,
    options: WaitForOptions = {},
  ): Promise<E[K]> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        off();
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      const off = this.on(event, (payload) => {
        if (!predicate(payload)) return;
        cleanup();
        resolve(payload);
      });
      const onAbort = () => {
        cleanup();
        reject(options.signal?.reason ?? new Error(`waitFor(${String(event)}) aborted`));
      };
      if (options.signal?.aborted) return onAbort();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          cleanup();
          reject(new Error(`waitFor(${String(event)}) timed out after ${options.timeoutMs} ms`));
        }, options.timeoutMs);
      }
    });
  }
}
