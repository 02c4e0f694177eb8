"""The production Dockerfile, docker-compose.yml and .env.example hold together.

No image registry is reachable where these tests run, so the images cannot be
built here; these tests check what can be checked without building them.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parents[2]
# The environment the tests run in is the one the image installs (pyproject).
BIN = Path(sys.executable).parent
APP_SERVICES = {"migrate", "web", "worker", "beat", "agent"}
LONG_RUNNING = {"postgres", "redis", "minio", "web", "worker", "beat", "agent"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def env_example_names() -> set[str]:
    # Documented variables, set (NAME=...) or shown commented out (# NAME=...).
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]+)=", re.MULTILINE)
    return set(pattern.findall((ROOT / ".env.example").read_text()))


def settings_env_names() -> set[str]:
    """Every variable the settings read through django-environ."""
    pattern = re.compile(r"env(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]+)\"")
    names: set[str] = set()
    for path in (ROOT / "config" / "settings").glob("*.py"):
        names |= set(pattern.findall(path.read_text()))
    return names


def test_every_long_running_service_has_a_healthcheck(compose):
    services = compose["services"]

    assert set(services) >= LONG_RUNNING
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} disables its healthcheck"


def test_one_shot_services_are_waited_for(compose):
    services = compose["services"]
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"


def test_every_app_service_command_exists(compose):
    installed_commands = get_commands()
    for name in APP_SERVICES:
        command = compose["services"][name]["command"]
        program = command[0]
        if program == "python":
            assert command[1] == "manage.py"
            assert command[2] in installed_commands, f"{name}: no manage.py {command[2]}"
        elif program == "celery":
            assert command[1:3] == ["-A", "config"]
            assert (BIN / "celery").exists(), "celery is not installed"
            import config.celery

            assert config.celery.app.main == "lattice"
        elif program == "uvicorn":
            assert (BIN / "uvicorn").exists(), "uvicorn is not installed"
            assert_uvicorn_takes(command)
        else:
            pytest.fail(f"{name}: unexpected program {program}")


def test_healthchecks_that_run_manage_py_name_real_commands(compose):
    installed_commands = get_commands()
    for name in APP_SERVICES:
        test = compose["services"][name].get("healthcheck", {}).get("test", [])
        if "manage.py" in test:
            command = test[test.index("manage.py") + 1]
            assert command in installed_commands, f"{name}: no manage.py {command}"


def test_beat_uses_the_database_scheduler(compose):
    command = compose["services"]["beat"]["command"]

    scheduler = command[command.index("--scheduler") + 1]
    module, _, attribute = scheduler.partition(":")
    imported = __import__(module, fromlist=[attribute])
    assert hasattr(imported, attribute)


def test_every_variable_compose_uses_is_in_env_example(compose, env_example_names):
    text = (ROOT / "docker-compose.yml").read_text()
    # ${NAME} and ${NAME:-default}; $${NAME} is the container's own shell variable.
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]+)(?::-[^}]*)?\}", text))

    assert used, "compose references no variables: the pattern is wrong"
    assert used - env_example_names == set()


def test_every_variable_the_settings_read_is_in_env_example(env_example_names):
    read = settings_env_names()

    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= read
    assert read - env_example_names == set()


def test_env_example_holds_no_secret(env_example_names):
    text = (ROOT / ".env.example").read_text()

    assert re.search(r"^DJANGO_SECRET_KEY=$", text, re.MULTILINE)
    assert re.search(r"^POSTGRES_PASSWORD=$", text, re.MULTILINE)
    assert re.search(r"^MINIO_ROOT_PASSWORD=$", text, re.MULTILINE)


def test_the_dockerfile_builds_in_stages_and_runs_as_a_user():
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    stages = [line for line in lines if line.startswith("FROM ")]
    final = lines[lines.index(stages[-1]) :]

    assert len(stages) >= 2
    assert all("slim" in line or "${PYTHON_IMAGE}" in line for line in stages)
    assert any(line.startswith("ARG PYTHON_IMAGE=python:3.11-slim") for line in lines)
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users, "the final stage must switch to a non-root user"
    assert users[-1] not in {"root", "0"}
    assert any(line.startswith("HEALTHCHECK") for line in final)
    assert any(line.startswith("COPY --from=build") for line in final)
    cmd = next(line for line in final if line.startswith("CMD "))
    command = shlex.split(cmd[4:].replace('"', "").strip("[]").replace(",", " "))
    assert command[0] == "uvicorn"
    assert_uvicorn_takes(command)


def assert_uvicorn_takes(command: list[str]) -> None:
    """uvicorn's own command line parser accepts ``command``'s options, and it serves
    config.asgi:application with the websocket protocol the tests use (tests/asgi_server.py)."""
    import importlib

    # The click command, from the module (the package's ``uvicorn.main`` is a function).
    cli = importlib.import_module("uvicorn.main").main
    context = cli.make_context("uvicorn", command[1:])
    assert context.params["app"] == "config.asgi:application"
    assert context.params["ws"] == "websockets-sansio"
    # Deflating every log frame for every viewer cost 10x the latency (bench/log_stream).
    assert context.params["ws_per_message_deflate"] is False
    assert context.params["lifespan"] == "off"
    assert context.params["host"] == "0.0.0.0"  # noqa: S104 - inside its container


def test_the_image_and_compose_serve_the_same_asgi_application(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert "config.asgi:application" in dockerfile
    assert compose["services"]["web"]["command"][-1] == "config.asgi:application"


def test_the_agent_gets_its_own_broker_user_and_the_docker_socket_but_no_database(compose):
    agent = compose["services"]["agent"]
    environment = agent["environment"]

    assert environment["DJANGO_SETTINGS_MODULE"] == "config.settings.agent"
    assert environment["LATTICE_AGENT_BROKER_URL"] == "${LATTICE_AGENT_BROKER_URL}"
    assert not {"REDIS_URL", "DATABASE_URL", "DJANGO_SECRET_KEY"} & set(environment)
    assert "env_file" not in agent
    assert "/var/run/docker.sock:/var/run/docker.sock" in agent["volumes"]
    # Its key outlives the container: a restart does not need a new join.
    key_folder = environment["LATTICE_AGENT_KEY_FILE"].rpartition("/")[0]
    assert f"agent-data:{key_folder}" in agent["volumes"]


def test_the_control_worker_consumes_what_agents_send(compose):
    command = compose["services"]["worker"]["command"]

    assert command[command.index("--queues") + 1].split(",") == ["control", "inbox"]


def test_the_agent_holds_no_storage_credentials(compose):
    """A host reads the dataset blobs a start mounts through presigned URLs that start brings
    (docs/hosts.md): its agent gets no storage settings or credentials, nor the web tier's
    secret key, by name or inside another variable's value."""
    agent = compose["services"]["agent"]
    environment = agent["environment"]

    assert "env_file" not in agent
    given = {
        name
        for name in environment
        if name.startswith(("AWS_", "MINIO_", "LATTICE_AGENT_S3_", "LATTICE_STORAGE"))
        or name == "DJANGO_SECRET_KEY"
    }
    assert given == set()
    values = " ".join(str(value) for value in environment.values())
    assert not re.search(r"AWS_|MINIO_|SECRET", values), values


def test_the_agent_keeps_its_dataset_cache_where_docker_can_bind_it(compose):
    """Docker bind-mounts the folders the agent builds by their host path: the cache is the
    same path on both sides."""
    agent = compose["services"]["agent"]
    cache = agent["environment"]["LATTICE_DATASET_CACHE"]
    binds = [_split_bind(v) for v in agent["volumes"]]
    assert [cache, cache] in binds


def _split_bind(volume: str) -> list[str]:
    """``${A:-/x}:${A:-/x}`` split at the colon between them, not the ones inside."""
    depth = 0
    for i, char in enumerate(volume):
        depth += char == "{"
        depth -= char == "}"
        if char == ":" and depth == 0:
            return [volume[:i], volume[i + 1 :]]
    return [volume]
