// The Clock port: time is an input. The system clock for the process, a settable clock for tests.

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that moves only when told to, so tests make work due instead of sleeping. */
export class TestClock implements Clock {
  #now: number;
  constructor(start: number | string | Date = '2026-01-01T00:00:00.000Z') {
    this.#now = new Date(start).getTime();
  }
  now(): number {
    return this.#now;
  }
  set(to: number | string | Date): void {
    this.#now = new Date(to).getTime();
  }
  advance(ms: number): void {
    this.#now += ms;
  }
}
