"""`manage.py agent --host NAME`: the host agent.

A Celery worker that consumes only ``host.<NAME>``, plus a reporter that sends
inventory and running workloads to the control queue every few seconds. It
needs the broker (REDIS_URL) and the local runtime, never the database: run it
on a GPU host without database credentials.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.machines.inventory import collect
from apps.machines.models import host_queue
from apps.machines.reporter import Reporter
from apps.runtimes.docker import DockerRuntime, isolate_workloads
from apps.runtimes.select import host_runtime
from config.celery import app as celery_app


class Command(BaseCommand):
    help = "Run the host agent: a worker for queue host.<NAME> that reports to the control plane."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", required=True, help="This host's name, e.g. gpu-1.")
        parser.add_argument("--join-token", default="", help="Register with this token first.")
        parser.add_argument("--concurrency", type=int, default=4)

    def handle(
        self, *args: Any, host: str, join_token: str, concurrency: int, **options: Any
    ) -> None:
        if not settings.REDIS_URL:
            raise CommandError("The agent talks to the control plane through REDIS_URL: set it.")
        runtime = host_runtime()
        self.stdout.write(f"agent {host}: runtime {runtime.kind}, queue {host_queue(host)}")
        if runtime.kind == "process":
            self.stdout.write("  local processes do NOT isolate users: use Docker on shared hosts")
        if isinstance(runtime, DockerRuntime) and not isolate_workloads(runtime):
            self.stdout.write(
                "  warning: could not add the iptables rules that keep containers away from "
                "private networks, the cloud metadata address and this host's own services",
            )
        if join_token:
            from apps.machines.tasks import host_join

            host_join.delay(host, join_token, collect())
        reporter = Reporter(host)
        reporter.start()
        try:
            celery_app.Worker(
                hostname=f"agent@{host}",
                queues=[host_queue(host)],
                concurrency=concurrency,
                pool="threads",
                loglevel="INFO",
            ).start()
        finally:
            reporter.stop()
