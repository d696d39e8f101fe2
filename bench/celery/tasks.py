"""The Celery side of bench/celery.bench.ts: one no-op task on a Redis broker.

The broker is a private redis-server the benchmark starts (CELERY_BENCH_REDIS_URL). The task
does nothing but count itself (one INCR on that Redis, CELERY_BENCH_COUNTER) so the benchmark
can tell when N tasks are done without a result backend: no results are stored.
Run with Debian's python3-celery and python3-redis (/usr/bin/python3).
"""

import os

import redis
from celery import Celery

REDIS_URL = os.environ.get("CELERY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
COUNTER = os.environ.get("CELERY_BENCH_COUNTER", "celery-bench:done")

app = Celery("celery_bench", broker=REDIS_URL)
app.conf.update(
    task_ignore_result=True,  # no result backend: a no-op's result is not worth a round trip
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

_counter_client = None


def _counter():
    # One connection per worker process, made after the prefork pool forked it.
    global _counter_client
    if _counter_client is None:
        _counter_client = redis.Redis.from_url(REDIS_URL)
    return _counter_client


@app.task(name="bench.noop")
def noop():
    _counter().incr(COUNTER)
