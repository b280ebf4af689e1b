"""The API server's garbage-collector settings (Python's defaults suit small programs).

An API server holds many long-lived objects (the read cache, and ~100 KiB of strawberry and
WebSocket state per subscriber); with the default thresholds a full collection walks all of
them every few thousand allocations, and one landing during a fan-out to 1,000 subscribers
shows as a step in delivery (``bench/api_subscribers.py``, 1,000 subscribers, median p99 of
several runs: 185 ms with the defaults, 168 ms tuned; the spread stays wide on 2 cores).

Once the server has started, :func:`tune` moves what exists then out of the collector's sight
(``gc.freeze``: start-up objects live for the whole process anyway) and collects the young
generation less often.  Reference counting still frees everything without cycles at once.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Allocations between young collections (Python's default: 700)."""
_tuned = False


def tune() -> None:
    """Freeze the objects of start-up and raise the thresholds, once per process."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    gc.collect()  # start-up's cyclic garbage is freed, not frozen for good
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 100)
