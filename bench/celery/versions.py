"""Prints the versions the Celery benchmark ran with, as one JSON line."""

import json
import platform

import billiard
import celery
import kombu
import redis

print(
    json.dumps(
        {
            "python": platform.python_version(),
            "celery": celery.__version__,
            "kombu": kombu.__version__,
            "billiard": billiard.__version__,
            "redis-py": redis.__version__,
        }
    )
)
