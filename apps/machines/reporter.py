"""The agent's heartbeat: report inventory and workloads every LATTICE_AGENT_REPORT_EVERY.

After each report that reached the broker it touches ``alive_file`` when given: the agent's
container health check (``manage.py agent_health``) reads its age, since the agent's broker
user cannot answer Celery's remote-control ping.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from django.conf import settings

from apps.machines.agent import agent_report

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)


class Reporter(threading.Thread):
    """Runs ``agent_report`` for ``host_name`` now and then on a timer, until stopped."""

    def __init__(
        self, host_name: str, every: float | None = None, *, alive_file: Path | None = None
    ) -> None:
        super().__init__(name=f"lattice-reporter-{host_name}", daemon=True)
        self.host_name = host_name
        self.every = every or settings.LATTICE_AGENT_REPORT_EVERY
        self.alive_file = alive_file
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                agent_report.run(self.host_name)
                if self.alive_file is not None:
                    self.alive_file.parent.mkdir(parents=True, exist_ok=True)
                    self.alive_file.touch()
            except Exception:
                logger.exception("agent report for %s failed; trying again", self.host_name)
            self.stopped.wait(self.every)

    def stop(self) -> None:
        self.stopped.set()
