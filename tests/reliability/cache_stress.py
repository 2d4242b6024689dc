"""Run by test_cache_threads.py in a subprocess: lock-free hits racing every locked iteration.

Two threads hit the cache without the lock (each hit reorders the dict) while a third calls
`stats()`, `len()`, `invalidate_prefix()` and `purge_expired()`, and rounds of three
`get_or_set` callers complete loads whose store purges (``cleanup_interval=0``). Prints one JSON
line: the errors seen and how many callers were still blocked after their join timeout.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from simpletuner_secrets import TTLCache

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20


def main() -> None:
    sys.setswitchinterval(1e-5)  # switch threads often, so the race shows in seconds
    cache: TTLCache[int] = TTLCache(default_ttl=1000, max_size=5000, cleanup_interval=0)
    for i in range(2000):
        cache.set(i, i)
    stop = threading.Event()
    errors: list[str] = []

    def hitter(offset: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                cache.get((n + offset) % 2000)
            except Exception as exc:
                errors.append(repr(exc))
            n += 1

    def inspector() -> None:
        while not stop.is_set():
            try:
                for i in range(50):
                    cache.set(("expired", i), i, ttl=0)  # so that purges have work
                cache.stats()
                len(cache)
                cache.invalidate_prefix("nothing-matches")
                cache.purge_expired()
            except Exception as exc:
                errors.append(repr(exc))

    background = [threading.Thread(target=hitter, args=(k * 7,)) for k in range(2)]
    background.append(threading.Thread(target=inspector))
    for thread in background:
        thread.start()
    blocked = 0
    answers: list[int] = []
    for r in range(ROUNDS):

        def caller(r: int = r) -> None:
            try:
                answers.append(cache.get_or_set(("load", r), lambda: (time.sleep(0.01), r)[1]))
            except Exception as exc:
                errors.append(repr(exc))

        callers = [threading.Thread(target=caller, daemon=True) for _ in range(3)]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(5)  # a hang guard: a correct round takes milliseconds
        blocked += sum(thread.is_alive() for thread in callers)
    stop.set()
    for thread in background:
        thread.join()
    print(
        json.dumps(
            {
                "errors": errors[:5],
                "error_count": len(errors),
                "blocked": blocked,
                "answers": len(answers),
            }
        )
    )


if __name__ == "__main__":
    main()
