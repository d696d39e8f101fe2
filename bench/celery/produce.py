"""Enqueues N bench.noop tasks with apply_async, one after another, from one Python process.

Usage: produce.py N MAX_SECONDS
Prints one JSON line: {"count", "seconds", "perSecond", "p50Ms", "p99Ms", "firstAt", "lastAt"}
(the times are epoch seconds, for the end-to-end measurement). Stops early, with the count it
reached, when MAX_SECONDS have passed.
"""

import json
import sys
import time

from tasks import noop


def main() -> None:
    n = int(sys.argv[1])
    max_seconds = float(sys.argv[2])
    noop.app.connection_for_write().ensure_connection(max_retries=3)
    latencies = []
    started = time.perf_counter()
    first_at = time.time()
    deadline = started + max_seconds
    count = 0
    while count < n:
        t0 = time.perf_counter()
        noop.apply_async()
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        count += 1
        if t1 > deadline:
            break
    seconds = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3)

    print(
        json.dumps(
            {
                "count": count,
                "seconds": round(seconds, 3),
                "perSecond": round(count / seconds, 1),
                "p50Ms": pct(0.5),
                "p99Ms": pct(0.99),
                "firstAt": first_at,
                "lastAt": time.time(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
