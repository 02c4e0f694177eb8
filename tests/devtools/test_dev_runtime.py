"""`manage.py dev` registers this machine with the runtime its agent will really use."""

from __future__ import annotations

from apps.core.engine import docker_engine
from apps.devtools.management.commands.dev import local_runtime


def test_lattice_runtime_process_is_what_the_local_host_says_even_where_docker_answers(settings):
    # The host's runtime picks a replica's command (apps.deployments.spec): "docker" here
    # would run `python3 /opt/lattice/serve.py` as a local process, which does not exist.
    settings.LATTICE_RUNTIME = "process"

    assert local_runtime() == ("process", None)


def test_auto_is_docker_when_a_daemon_answers_and_processes_otherwise(settings):
    settings.LATTICE_RUNTIME = "auto"
    engine = docker_engine()

    kind, found = local_runtime()

    assert kind == ("docker" if engine else "process")
    assert (found is None) == (engine is None)
