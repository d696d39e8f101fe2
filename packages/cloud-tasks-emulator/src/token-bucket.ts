// The token bucket of a queue's RateLimits: each dispatch takes a token; the bucket refills at
// maxDispatchesPerSecond up to maxBurstSize. Time comes from the caller (the emulator's clock).

// Refills accumulate in floating point; a token 1e-9 short is a whole one.
const EPSILON = 1e-9;

export class TokenBucket {
  #rate: number;
  #burst: number;
  #tokens: number;
  #last: number;

  constructor(ratePerSecond: number, burst: number, now: number) {
    this.#rate = ratePerSecond;
    this.#burst = burst;
    this.#tokens = burst;
    this.#last = now;
  }

  /** New limits keep the tokens already earned, capped at the new burst. */
  configure(ratePerSecond: number, burst: number, now: number): void {
    this.#refill(now);
    this.#rate = ratePerSecond;
    this.#burst = burst;
    this.#tokens = Math.min(this.#tokens, burst);
  }

  tryTake(now: number): boolean {
    this.#refill(now);
    if (this.#tokens < 1 - EPSILON) return false;
    this.#tokens = Math.max(0, this.#tokens - 1);
    return true;
  }

  /** When the next whole token will be there (now if one already is). */
  nextTokenAt(now: number): number {
    this.#refill(now);
    if (this.#tokens >= 1 - EPSILON) return now;
    return now + Math.ceil(((1 - this.#tokens) / this.#rate) * 1000);
  }

  #refill(now: number): void {
    // A clock moved backwards (a test resetting it) earns nothing rather than negative tokens.
    if (now > this.#last) {
      this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#rate);
    }
    this.#last = now;
  }
}
