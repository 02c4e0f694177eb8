"""docker-compose.yml's services, run for real as processes (tests/platform/layout.py): web
under uvicorn with production settings, the control worker, beat and an agent on this
machine's Docker engine, with PostgreSQL, Redis and S3 (moto)."""

from __future__ import annotations

import dataclasses
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.platform.layout import BIN, COMPOSE_FILE, S3_ACCESS_KEY, S3_SECRET_KEY, Layout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.docker

OPERATOR = "ops@layout.test"


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s", pytrace=False)
        time.sleep(0.25)


@pytest.fixture(scope="module")
def operator(production_layout: Layout) -> dict[str, str]:
    """An operator's account, its personal team and an API token, made with management
    commands run as ``docker compose run --rm web python manage.py ...`` runs them."""
    production_layout.manage(
        "createsuperuser",
        "--noinput",
        "--email",
        OPERATOR,
        env={"DJANGO_SUPERUSER_PASSWORD": secrets.token_urlsafe(16)},
    )
    made = production_layout.manage(
        "shell",
        "-c",
        "from apps.accounts.models import User\n"
        "from apps.accounts.tokens import token_create\n"
        "from apps.teams.services import team_create_personal\n"
        f"user = User.objects.get(email={OPERATOR!r})\n"
        "team = team_create_personal(user=user)\n"
        "_, plaintext = token_create(user=user, name='layout', team=team, expires_in_days=7,"
        " scopes=['teams:read', 'notebooks:write', 'datasets:write'])\n"
        "print(team.slug)\n"
        "print(plaintext)\n",
    )
    team, token = made.split()[-2:]
    return {"team": team, "token": token}


@pytest.fixture(scope="module")
def api(production_layout: Layout, operator: dict[str, str]) -> Iterator[httpx.Client]:
    client = httpx.Client(
        base_url=f"{production_layout.url}/api/v1/teams/{operator['team']}",
        headers={"Authorization": f"Bearer {operator['token']}"},
        timeout=30,
    )
    yield client
    client.close()


def test_the_web_answers_its_health_probe_through_uvicorn(production_layout: Layout) -> None:
    response = httpx.get(f"{production_layout.url}/readyz", timeout=5)

    assert response.status_code == 200
    # uvicorn, the process the compose file names, serves it: it says so in its header.
    assert response.headers.get("server") == "uvicorn"
    web = production_layout.processes["web"]
    cmdline = Path(f"/proc/{web.pid}/cmdline").read_bytes().split(b"\0")[:-1]
    # uvicorn is a script: the kernel runs its interpreter with the script's path first.
    assert [part.decode() for part in cmdline[1:]] == production_layout.spec("web")[0]
    print(  # noqa: T201 - the start's cost, shown with -s
        f"production layout started in {production_layout.start_seconds:.1f}s:",
        production_layout.timings,
    )


def test_an_api_token_made_by_the_operator_reads_the_api(
    production_layout: Layout, operator: dict[str, str], api: httpx.Client
) -> None:
    me = httpx.get(
        f"{production_layout.url}/api/v1/me",
        headers={"Authorization": f"Bearer {operator['token']}"},
        timeout=10,
    )
    refused = httpx.get(
        f"{production_layout.url}/api/v1/me",
        headers={"Authorization": "Bearer lat_not-a-token"},
        timeout=10,
    )

    assert me.status_code == 200, me.text
    assert me.json()["email"] == OPERATOR
    assert refused.status_code in {401, 403}
    assert api.get("/notebooks/").status_code == 200


def test_a_notebook_started_through_the_api_runs_on_docker_through_the_agent(
    production_layout: Layout, api: httpx.Client, docker_client: Any
) -> None:
    made = api.post(
        "/notebooks/", json={"name": "Layout", "template": "scipy", "machine_type": "cpu-small"}
    )
    assert made.status_code == 201, made.text
    notebook = made.json()["id"]

    started = api.post(f"/notebooks/{notebook}/start/")
    assert started.status_code in {200, 202}, started.text

    def status() -> str:
        return str(api.get(f"/notebooks/{notebook}/").json()["status"])

    wait_until(lambda: status() in {"running", "failed"}, 240, "the notebook never ran")
    assert status() == "running", api.get(f"/notebooks/{notebook}/events/").text
    ours = {"label": [f"lattice.installation={production_layout.installation}"]}
    containers = docker_client.containers.list(filters=ours)
    assert len(containers) == 1
    assert containers[0].labels.get("lattice.notebook") == str(notebook)

    stopped = api.post(f"/notebooks/{notebook}/stop/")
    assert stopped.status_code in {200, 202}, stopped.text
    wait_until(lambda: status() == "stopped", 120, "the notebook never stopped")
    assert docker_client.containers.list(filters=ours) == []


def test_a_dataset_upload_lands_in_the_s3_bucket_not_on_disk(
    production_layout: Layout, operator: dict[str, str], tmp_path: Path
) -> None:
    import boto3
    from botocore.config import Config

    from lattice import Client

    data = secrets.token_bytes(300_000)
    (tmp_path / "upload").mkdir()
    (tmp_path / "upload" / "weights.bin").write_bytes(data)
    client = Client(production_layout.url, operator["token"], operator["team"])

    version = client.datasets.upload("layout-data", tmp_path / "upload", state_dir=tmp_path)

    assert version.number == 1
    s3 = boto3.client(
        "s3",
        endpoint_url=production_layout.spec("web")[1]["AWS_S3_ENDPOINT_URL"],
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name="us-east-1",
        # moto keeps the multipart checksum on the whole object: the test compares bytes.
        config=Config(response_checksum_validation="when_required"),
    )
    bucket = production_layout.dotenv["AWS_STORAGE_BUCKET_NAME"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    bodies = [s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys]
    assert data in bodies, keys
    media = Path(production_layout.dotenv["LATTICE_MEDIA_ROOT"])
    on_disk = [p for p in media.rglob("*") if p.is_file()] if media.exists() else []
    assert on_disk == []


def test_beats_reconcile_takes_a_silent_host_offline_and_it_comes_back(
    production_layout: Layout,
) -> None:
    def host_status() -> str:
        rows = production_layout.sql(
            "SELECT status FROM machines_host WHERE name = %s", [production_layout.host_name]
        )
        return str(rows[0][0])

    # Beat's first heartbeat goes 30 s after it started (CELERY_BEAT_SCHEDULE): compose's
    # health check passes once it has arrived.
    wait_until(
        lambda: production_layout.healthcheck("beat").returncode == 0,
        60,
        "beat's health check never passed",
    )
    assert host_status() == "ready"

    production_layout.kill("agent")
    # Only the reconciler (control.reconcile, which beat sends) takes a host offline.
    wait_until(lambda: host_status() == "offline", 30, "beat's reconcile never ran")

    production_layout.start("agent")  # its key from the first start: no join again
    assert host_status() == "ready"
    health = production_layout.healthcheck("agent")
    assert health.returncode == 0, health.stderr


def test_the_compose_files_web_command_is_what_runs(
    production_layout: Layout, tmp_path: Path
) -> None:
    edited = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text()
    assert text.count('"--no-access-log", ') == 1
    edited.write_text(text.replace('"--no-access-log", ', '"--access-log", "--workers", "3", '))

    argv, env = dataclasses.replace(production_layout, compose_file=edited).spec("web")
    now, _ = production_layout.spec("web")

    assert argv[0] == str(BIN / "uvicorn") == now[0]
    assert "--no-access-log" in now
    assert "--no-access-log" not in argv
    assert argv[argv.index("--workers") + 1] == "3"
    assert argv[argv.index("--port") + 1] == production_layout.dotenv["LATTICE_HTTP_PORT"]
    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    assert env["LATTICE_STORAGE"] == "s3"
