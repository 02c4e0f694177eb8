"""Estimates from real timings: the median of recent (start, end) pairs, cached a minute.

The waits and start times a page shows come from here, so each is derived from what
happened, never made up: with no pairs, there is no estimate (None).
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, cast

from django.core.cache import cache

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from datetime import datetime


def median_seconds(
    key: str, pairs: Callable[[], Iterable[tuple[datetime, datetime]]]
) -> int | None:
    """Median seconds from start to end over ``pairs()`` (read at most once a minute per
    ``key``), rounded; None when there are none."""

    def compute() -> int | None:
        seconds = [(end - start).total_seconds() for start, end in pairs()]
        return round(statistics.median(seconds)) if seconds else None

    return cast("int | None", cache.get_or_set(key, compute, 60))
