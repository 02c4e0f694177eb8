"""`manage.py agent --host NAME`: the host agent.

A Celery worker that consumes only ``host.<NAME>``, plus a reporter that sends inventory and
running workloads to the control plane every few seconds. It needs its own broker URL
(LATTICE_AGENT_BROKER_URL, the Redis user made for this host) and the local runtime, never
the database: run it on a GPU host with no other credential (config.settings.agent).

At its first start it makes its signing key (LATTICE_AGENT_KEY_FILE, or --key-file) and
joins with the join token made for this host; later starts load the key and skip the join.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from kombu import Queue

from apps.core.broker import INBOX_QUEUE
from apps.machines.agent import SNAPSHOT_TIME_LIMIT, agent_concurrency
from apps.machines.broker import AGENT_TRANSPORT_OPTIONS
from apps.machines.identity import identity_load
from apps.machines.inbox import send
from apps.machines.inventory import collect
from apps.machines.models import host_queue
from apps.machines.reporter import Reporter
from apps.runtimes.docker import DockerRuntime, isolate_workloads
from apps.runtimes.select import host_runtime
from config.celery import app as celery_app

# A volume helper older than this is left by an agent that died: no snapshot or restore
# runs that long (agent.snapshot's time limit, and an hour more).
HELPER_STALE_SECONDS = SNAPSHOT_TIME_LIMIT + 3600


class Command(BaseCommand):
    help = "Run the host agent: a worker for queue host.<NAME> that reports to the control plane."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", required=True, help="This host's name, e.g. gpu-1.")
        parser.add_argument(
            "--join-token",
            default="",
            help="The join token made for this host; used at the first start only.",
        )
        parser.add_argument(
            "--key-file",
            default="",
            help="Where this host's signing key is kept (default LATTICE_AGENT_KEY_FILE).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=0,
            help="Tasks run at once (default LATTICE_AGENT_CONCURRENCY, else chosen from "
            "this host's cores: see apps.machines.agent.agent_concurrency).",
        )

    def handle(
        self,
        *args: Any,
        host: str,
        join_token: str,
        key_file: str,
        concurrency: int,
        **options: Any,
    ) -> None:
        if not getattr(settings, "LATTICE_AGENT_BROKER_URL", ""):
            raise CommandError(
                "Run the agent with DJANGO_SETTINGS_MODULE=config.settings.agent and its "
                "LATTICE_AGENT_BROKER_URL set.",
            )
        path = Path(key_file or settings.LATTICE_AGENT_KEY_FILE)
        if not path.exists() and not join_token:
            raise CommandError(
                f"No signing key at {path} yet: start the agent once with --join-token "
                "(manage.py create_join_token --host NAME on the control plane makes one).",
            )
        self._configure_broker(host)
        key, new = identity_load(host, path)
        runtime = host_runtime()
        self.stdout.write(f"agent {host}: runtime {runtime.kind}, queue {host_queue(host)}")
        if runtime.kind == "process":
            self.stdout.write("  local processes do NOT isolate users: use Docker on shared hosts")
        if isinstance(runtime, DockerRuntime) and not isolate_workloads(runtime):
            self.stdout.write(
                "  warning: could not add the iptables rules that keep containers away from "
                "private networks, the cloud metadata address and this host's own services",
            )
        if isinstance(runtime, DockerRuntime):
            # Volume helpers a dead agent left (never the reconciler's: not workloads).
            stale = runtime.remove_stale_helpers(older_than=HELPER_STALE_SECONDS)
            if stale:
                self.stdout.write(f"  removed {stale} stale volume helper container(s)")
        if new:
            # Signed with the new key, which identity_load made this process's for ``host``.
            body = {"token": join_token, "key": key, "inventory": collect()}
            send(host, "join", body)
            self.stdout.write(f"  joining with a new key kept in {path}")
        concurrency = concurrency if concurrency > 0 else agent_concurrency()
        self.stdout.write(f"  {concurrency} tasks at once")
        reporter = Reporter(host, alive_file=settings.LATTICE_AGENT_ALIVE_FILE)
        reporter.start()
        try:
            celery_app.Worker(
                hostname=f"agent@{host}",
                queues=[host_queue(host)],
                concurrency=concurrency,
                pool="threads",
                loglevel="INFO",
                without_heartbeat=True,
                without_mingle=True,
                without_gossip=True,
            ).start()
        finally:
            reporter.stop()

    def _configure_broker(self, host: str) -> None:
        """No ack emulation, and its queue and the inbox used without declaring them: its
        broker user may run no script and write no binding (apps.machines.broker)."""
        conf = celery_app.conf
        conf.broker_transport_options = {
            **(conf.broker_transport_options or {}),
            **AGENT_TRANSPORT_OPTIONS,
        }
        conf.task_queues = [
            Queue(host_queue(host), no_declare=True),
            Queue(INBOX_QUEUE, no_declare=True),
        ]
