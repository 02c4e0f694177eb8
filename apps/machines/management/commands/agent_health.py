"""`manage.py agent_health`: the agent container's health check.

Exit 0 when the agent's last report reached the broker recently (its reporter touches
LATTICE_AGENT_ALIVE_FILE after each). Celery's ``inspect ping`` cannot serve here: it needs
the broker's pub/sub, which a host's broker user has no channel of.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Exit 0 when this host's agent reported to the broker within --max-age seconds."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--max-age", type=float, default=60.0, help="seconds")

    def handle(self, *args: Any, max_age: float, **options: Any) -> None:
        path = Path(settings.LATTICE_AGENT_ALIVE_FILE)
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            raise CommandError(f"the agent has not reported yet ({path} is missing)") from None
        if age > max_age:
            raise CommandError(f"the agent's last report is {age:.0f}s old (limit {max_age:.0f}s)")
        self.stdout.write(f"agent reported {age:.0f}s ago")
