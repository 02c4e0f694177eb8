"""`manage.py dev`: everything the embedded default needs, in one process.

Migrates, makes the demo data, registers this machine as host "local", starts
the background worker and beat (the reconciler's clock) as threads (see
apps.core.worker), then serves HTTP and websockets with Daphne. Ctrl-C stops
all of it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.core.broker import INBOX_QUEUE
from apps.core.engine import EngineInfo, docker_engine
from apps.core.worker import embedded_beat, embedded_worker
from apps.devtools.demo import demo_data_ensure
from apps.devtools.offline_billing import settings_for, start_double
from apps.devtools.workload_reach import WorkloadReach, workload_reach
from apps.machines.agent import agent_concurrency
from apps.machines.inventory import collect
from apps.machines.models import host_queue
from apps.machines.reporter import Reporter
from apps.machines.services import host_ensure_local
from apps.notebooks.templates import DEFAULT_TEMPLATE
from apps.runtimes.images import (
    ImageBuildError,
    build_local_notebook_image,
    build_template_image,
    can_build_locally,
    docker_image_exists,
    local_template_image,
    notebook_image,
    template_builds_here,
)
from apps.runtimes.select import host_runtime


def local_runtime() -> tuple[str, EngineInfo | None]:
    """The runtime this machine's agent will use (LATTICE_RUNTIME; auto: Docker when a daemon
    answers), and the Docker engine when that is Docker. The host row must say the same:
    a replica's command is built for the host's runtime (apps.deployments.spec)."""
    kind = host_runtime().kind
    return kind, docker_engine() if kind == "docker" else None


class Command(BaseCommand):
    help = "Run Lattice on the embedded default: web server and background worker together."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument(
            "--no-worker",
            action="store_true",
            help="Do not start the in-process worker (run `celery -A config worker` instead).",
        )

    def handle(self, *args: Any, addrport: str, no_worker: bool, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        login = demo_data_ensure()
        runtime_kind, engine = local_runtime()
        inventory = collect()
        local = host_ensure_local(
            name=settings.LATTICE_LOCAL_HOST_NAME, inventory=inventory, runtime=runtime_kind
        )
        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        broker = "redis" if settings.REDIS_URL else "in-process memory"
        if engine:
            runtime = f"Docker {engine.version}"
        else:
            chosen = settings.LATTICE_RUNTIME
            runtime = "local processes" if runtime_kind == "process" else runtime_kind
            runtime += (
                " (no Docker daemon answered)"
                if chosen == "auto"
                else f" (LATTICE_RUNTIME={chosen})"
            )
        host, _, port = addrport.rpartition(":")
        url = f"http://{'localhost' if host in ('127.0.0.1', '', '0.0.0.0') else host}:{port}/"  # noqa: S104
        if not os.environ.get("LATTICE_INTERNAL_URL"):
            # This machine's agent reads dataset blobs through this server (docs/hosts.md).
            address = "127.0.0.1" if host in ("", "0.0.0.0", "[::]") else host  # noqa: S104
            settings.LATTICE_INTERNAL_URL = f"http://{address}:{port}"
        billing = self._billing(f"http://127.0.0.1:{port}")
        reach = self._workload_reach(host or "127.0.0.1", int(port)) if engine else None

        banner = [
            "",
            "  Lattice is starting (embedded default)",
            f"  URL:       {url}",
            f"  Log in as: {login.email}",
            f"  Password:  {login.password}",
            f"  Database:  {database}   Broker: {broker}   Runtime: {runtime}",
            (
                f"  Host:      {local.name}: {inventory['cpu_count']} CPUs, "
                f"{inventory['memory_bytes'] // 1024**3} GiB, {len(inventory['gpus'])} GPUs"
            ),
            f"  Billing:   {billing}",
            *([self._reach_line(reach)] if reach else []),
            "  Emails are printed here. Press Ctrl-C to stop.",
            "",
        ]
        self.stdout.write("\n".join(banner))
        if engine:
            self._notebook_image_in_background()

        try:
            self._run(addrport, no_worker=no_worker, host=local.name)
        finally:
            if reach:
                reach.close()

    def _run(self, addrport: str, *, no_worker: bool, host: str) -> None:
        if no_worker or not settings.LATTICE_EMBEDDED_WORKER:
            self._serve(addrport)
            return
        # One worker for the control queue, the inbox (what agents say) and this
        # host's agent queue; the reporter keeps the local host's heartbeat and
        # workloads current.
        queues = [settings.CELERY_TASK_DEFAULT_QUEUE, INBOX_QUEUE, host_queue(host)]
        reporter = Reporter(host)
        # The agent's share sets the size: a start holds a thread until Jupyter answers.
        with embedded_worker(queues=queues, concurrency=agent_concurrency()), embedded_beat():
            reporter.start()
            try:
                self._serve(addrport)
            finally:
                reporter.stop()

    @staticmethod
    def _workload_reach(server: str, port: int) -> WorkloadReach | None:
        """With Docker, containers reach this server on the workload bridge's gateway
        (apps.devtools.workload_reach), unless LATTICE_WORKLOAD_API_URL says where."""
        if os.environ.get("LATTICE_WORKLOAD_API_URL"):
            return None
        from apps.runtimes.docker import DockerRuntime

        runtime = host_runtime()
        return workload_reach(runtime, server, port) if isinstance(runtime, DockerRuntime) else None

    @staticmethod
    def _reach_line(reach: WorkloadReach) -> str:
        line = f"  Workloads: reach this server at {reach.url}"
        if reach.isolated:
            return line + " (only that port: the rest of this machine stays refused)"
        return line + " (iptables not permitted: workloads are not isolated from this machine)"

    def _billing(self, server: str) -> str:
        """With LATTICE_BILLING on and no Stripe key, serve the Stripe test double beside
        Lattice (its Checkout and portal pages, and webhooks to this server)."""
        if not settings.LATTICE_BILLING:
            return "off (LATTICE_BILLING=true make dev turns plans and the Stripe double on)"
        if settings.STRIPE_SECRET_KEY:
            return f"Stripe, key {settings.STRIPE_SECRET_KEY[:8]}..."
        double = start_double(webhook_url=f"{server}/billing/stripe/webhook/")
        for name, value in settings_for(double).items():
            setattr(settings, name, value)
        return f"the local Stripe test double at {double.url} (nothing leaves this machine)"

    def _notebook_image_in_background(self) -> None:
        """With Docker, make sure the notebook image exists; build it beside the server if not,
        then (registry-free) the default template's image: other templates' images are built
        by the host the first time a notebook of theirs starts."""
        image = notebook_image()
        template = DEFAULT_TEMPLATE if settings.LATTICE_LOCAL_IMAGES else None
        if template and not template_builds_here(template):
            template = None
        if template and docker_image_exists(local_template_image(template)):
            template = None
        if docker_image_exists(image):
            self.stdout.write(f"  Notebook image: {image}")
            if template is None:
                return
        elif settings.LATTICE_NOTEBOOK_IMAGE or not can_build_locally():
            self.stdout.write(
                f"  Notebook image {image} is missing: build it with "
                "sudo images/notebook/build-local.sh, or set LATTICE_NOTEBOOK_IMAGE.",
            )
            return
        log = Path(settings.VAR_DIR) / "log" / "notebook-image.log"
        self.stdout.write(f"  Building the notebook images in the background (log: {log})")

        def build() -> None:
            built = build_local_notebook_image(log)
            self.stdout.write(
                f"  Notebook image {'ready: ' + built if built else 'failed: see ' + str(log)}"
            )
            if built and template:
                try:
                    ready = build_template_image(template, lambda _step: None, log=log)
                except ImageBuildError as exc:
                    self.stdout.write(f"  {exc} (log: {log})")
                else:
                    self.stdout.write(f"  Template image ready: {ready}")

        threading.Thread(target=build, name="notebook-image", daemon=True).start()

    def _serve(self, addrport: str) -> None:
        # Daphne's runserver: ASGI, so websockets work too. No autoreload: the
        # worker thread lives in this process.
        call_command("runserver", addrport, use_reloader=False, skip_checks=False)
