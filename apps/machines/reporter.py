"""The agent's heartbeat: report inventory and workloads every LATTICE_AGENT_REPORT_EVERY."""

from __future__ import annotations

import logging
import threading

from django.conf import settings

logger = logging.getLogger(__name__)


class Reporter(threading.Thread):
    """Runs ``agent_report`` for ``host_name`` now and then on a timer, until stopped."""

    def __init__(self, host_name: str, every: float | None = None) -> None:
        super().__init__(name=f"lattice-reporter-{host_name}", daemon=True)
        self.host_name = host_name
        self.every = every or settings.LATTICE_AGENT_REPORT_EVERY
        self.stopped = threading.Event()

    def run(self) -> None:
        from apps.machines.agent import agent_report

        while not self.stopped.is_set():
            try:
                agent_report.run(self.host_name)
            except Exception:
                logger.exception("agent report for %s failed; trying again", self.host_name)
            self.stopped.wait(self.every)

    def stop(self) -> None:
        self.stopped.set()
