"""Shared fixtures: the people in every story, and the real services tests use.

alice and bob will share a team (the teams issue adds it); charlie is a
stranger. Tests that need PostgreSQL, Redis, a Docker engine or Chromium ask
for the fixture below and are skipped, with the reason, when the service is
not reachable; with LATTICE_REQUIRE_SERVICES=1 (CI) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection

from apps.teams.models import Role, Team
from tests.factories import PASSWORD, TeamFactory, UserFactory, add_member

pytest_plugins = [
    "tests.fast_flush",
    "tests.notebook_fixtures",
    "tests.asgi_server",
    "tests.client.sdk_fixtures",
    "tests.billing_fixtures",
    "tests.blob_fixtures",
    "tests.dataset_fixtures",
    "tests.deployment_fixtures",
    "tests.deployments.control_helpers",
    "tests.jobs.engine_fixtures",
    "tests.multihost",
    "tests.platform.layout",
]

if TYPE_CHECKING:
    from collections.abc import Iterator

    from apps.accounts.models import User

REQUIRE_SERVICES = os.environ.get("LATTICE_REQUIRE_SERVICES", "") in {"1", "true", "yes"}
ROOT = Path(__file__).resolve().parents[1]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to run on the project's .venv when pyproject.toml changed since it was
    installed (a merge added a dependency): each test module that imports the new package
    would be a collection error, and the run would pass only once something (make) had
    installed it. That happened to tests/models/test_example.py (scikit-learn)."""
    venv = ROOT / ".venv"
    stamp = venv / ".dev-installed"
    if Path(sys.prefix).resolve() != venv.resolve() or not stamp.exists():
        return  # another environment (CI's, a container's): its own business
    changed = [
        name
        for name in ("pyproject.toml", "clients/python/pyproject.toml")
        if (ROOT / name).exists() and (ROOT / name).stat().st_mtime > stamp.stat().st_mtime
    ]
    if changed:
        pytest.exit(
            f"{changed[0]} changed since .venv was installed: run `make .venv/.dev-installed` "
            "(it installs the new dependencies), then the tests.",
            returncode=4,
        )


def service_missing(reason: str) -> None:
    """Skip the test, or fail it when CI requires every service."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (LATTICE_REQUIRE_SERVICES=1 makes this fatal)", pytrace=False)
    pytest.skip(reason)  # a service is missing and not required


@pytest.fixture(scope="session", autouse=True)
def _database_is_postgres_when_required(
    django_db_setup: Any, django_db_blocker: Any
) -> Iterator[None]:
    if REQUIRE_SERVICES and connection.vendor != "postgresql":
        pytest.fail(
            "LATTICE_REQUIRE_SERVICES=1 but the tests run on "
            f"{connection.vendor}: set DATABASE_URL=postgres://...",
            pytrace=False,
        )
    yield
    if connection.vendor == "postgresql":
        # A connection pool (config.settings.base) keeps connections that threads of the
        # tests' servers and workers still hold; the test database cannot be dropped while
        # any is open, so end them (this database's only, never another's) first.
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        connection.close()


@pytest.fixture(scope="session", autouse=True)
def _release_the_pool_folder() -> Iterator[None]:
    """The run's warm-pool folder (config.settings.test) is a shared bind mount once a Docker
    runtime has asked whether it can keep a pool: unmount it (and anything left below it)."""
    yield
    from django.conf import settings

    from apps.runtimes.pool import Slots, mounts_under

    slots = Slots(settings.LATTICE_POOL_DIR)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        slots.release()
    if not mounts_under(slots.root.parent):  # never remove files through a mount left behind
        shutil.rmtree(slots.root.parent, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Rate limits and used TOTP codes live in the cache: no test inherits another's."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _queued_email(settings: Any) -> None:
    """Send mail the way Lattice does (queued, then delivered to locmem).

    Django's test set-up swaps EMAIL_BACKEND for locmem; put ours back so tests
    go through apps.core.mail like production does.
    """
    settings.EMAIL_BACKEND = "apps.core.mail.QueuedEmailBackend"


@pytest.fixture
def postgres(db: None) -> None:
    if connection.vendor != "postgresql":
        service_missing("needs PostgreSQL: set DATABASE_URL=postgres://...")


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing(f"needs Redis at {url}: {exc}")
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=5)
        client.ping()
    except (DockerException, OSError) as exc:
        service_missing(f"needs a Docker engine that answers: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("LATTICE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        service_missing(f"needs Chromium at {path} (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    """Chromium, per test module: Playwright's sync API holds an event loop in this
    thread while it runs, which later async tests (Channels) must not inherit."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # tests make between page actions are still ordinary blocking calls.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    """A page in a fresh browser context (its own cookies), aimed at the live server."""
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def catalogue(db: None) -> dict[str, Any]:
    """The seeded machine types. A data migration loads them, but tests that
    commit (transaction=True) flush every table afterwards, so load them again."""
    from apps.machines.catalogue import catalogue_rows
    from apps.machines.models import MachineType

    for row in catalogue_rows():
        MachineType.objects.update_or_create(slug=row["slug"], defaults=row["defaults"])
    return {m.slug: m for m in MachineType.objects.all()}


@pytest.fixture
def alice(db: None) -> User:
    """Owner of Acme."""
    return UserFactory.create(email="alice@example.com", name="Alice Smith")


@pytest.fixture
def bob(db: None) -> User:
    """A member of Acme."""
    return UserFactory.create(email="bob@example.com", name="Bob Jones")


@pytest.fixture
def charlie(db: None) -> User:
    """A stranger: owner of Globex, in no team of alice's."""
    return UserFactory.create(email="charlie@example.org", name="Charlie Outsider")


@pytest.fixture
def erin(acme: Team) -> User:
    """A viewer of Acme: reads what the team has, changes nothing."""
    user = UserFactory.create(email="erin@example.com", name="Erin Viewer")
    add_member(acme, user, Role.VIEWER)
    return user


@pytest.fixture
def acme(alice: User, bob: User) -> Team:
    team = TeamFactory.create(name="Acme", slug="acme")
    add_member(team, alice, Role.OWNER)
    add_member(team, bob, Role.MEMBER)
    return team


@pytest.fixture
def globex(charlie: User) -> Team:
    team = TeamFactory.create(name="Globex", slug="globex")
    add_member(team, charlie, Role.OWNER)
    return team


@pytest.fixture
def password() -> str:
    return PASSWORD


BUSYBOX = Path("/bin/busybox")


def _busybox_image_tar() -> bytes:
    """A root filesystem with Debian's static busybox, a web root and a data folder."""
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for folder, owner, mode in (
            ("www", 1000, 0o755),
            ("data", 1000, 0o755),
            ("tmp", 0, 0o1777),
        ):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, owner, owner
            tar.addfile(info)
        page = b"lattice test server\n"
        info = tarfile.TarInfo("www/index.html")
        info.size, info.uid, info.gid = len(page), 1000, 1000
        tar.addfile(info, io.BytesIO(page))
    return out.getvalue()


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    """A tiny image built here (no registry is reachable); its httpd stands in for a server."""
    import hashlib

    from docker.errors import ImageNotFound

    if not BUSYBOX.exists():
        service_missing(
            "needs Debian's busybox-static at /bin/busybox (apt-get install busybox-static)"
        )
    data = _busybox_image_tar()
    tag = hashlib.sha256(data).hexdigest()[:12]
    name = f"lattice-test/busybox:{tag}"
    try:
        docker_client.images.get(name)
    except ImageNotFound:
        docker_client.api.import_image_from_data(data, repository="lattice-test/busybox", tag=tag)
    return name


@pytest.fixture(scope="session")
def notebook_image(docker_client: Any) -> str:
    """The notebook image, built here without a registry by images/notebook/build-local.sh
    (about a minute the first time; then found by the hash of its inputs)."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "images" / "notebook" / "build-local.sh"
    if os.geteuid() != 0:
        service_missing(f"building the notebook image needs root (debootstrap): run {script}")
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        service_missing(f"could not build the notebook image: {result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


def _template_image(notebook_image: str, template: str) -> str:
    """``template``'s image, built here by images/build-template.sh on the notebook image (a
    few minutes the first time; then found by the hash of its inputs)."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "images" / "build-template.sh"
    result = subprocess.run(
        ["bash", str(script), template], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        service_missing(f"could not build the {template} image: {result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def scipy_image(notebook_image: str) -> str:
    """The Scientific Python template's image: what the docker tests' notebooks run."""
    return _template_image(notebook_image, "scipy")


@pytest.fixture(scope="session")
def pytorch_image(notebook_image: str) -> str:
    """The PyTorch template's image (CPU torch from a local wheel, else PyTorch's CPU index)."""
    return _template_image(notebook_image, "pytorch")
