from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache
from django.core.management.base import BaseCommand, CommandError

from apps.core.tasks import BEAT_HEARTBEAT_KEY


class Command(BaseCommand):
    help = "Exit 0 when beat's heartbeat task ran recently (beat ticks, a worker runs tasks)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--max-age", type=float, default=120.0, help="seconds")

    def handle(self, *args: Any, max_age: float, **options: Any) -> None:
        last = cache.get(BEAT_HEARTBEAT_KEY)
        if last is None:
            raise CommandError("no beat heartbeat has arrived yet")
        age = time.time() - float(last)
        if age > max_age:
            raise CommandError(f"the last beat heartbeat is {age:.0f}s old (limit {max_age:.0f}s)")
        self.stdout.write(f"beat heartbeat {age:.0f}s ago")
