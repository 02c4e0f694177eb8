"""The deployments story end to end, on real Docker, the model server's image and the ASGI
server (its gateway) with the embedded worker:

the iris example (examples/models/iris), trained in the model server's image so its pickle
matches that image's scikit-learn, is uploaded as version 1 and, with a predict.py that
also says ``"version": 2``, as version 2 (the models services' upload path). On version
1's page Alice clicks Deploy and fills the create form (protected); the deployment's page
shows its replica become ready. The endpoint answers a ``lat_`` token with
deployments:invoke on its own origin (``iris--acme.localhost``, by Host header) and under
the API, and refuses no token (401) and another team's member's token (403). While a load
loop sends requests without pause, the change form rolls out version 2 (0 failed requests;
the answers become v2's), then the page's rollback button brings version 1 back (0
failures; v1's answers again). Then the change form sets min replicas 0 and a short idle
time: the page's replica list empties, and the next request wakes a replica and is
answered, not dropped. The server's rows (revisions, replicas, events) say the same.

The controller's beat (deployments.scale, every LATTICE_DEPLOYMENT_SCALE_EVERY s in
production) and the live figures' push (deployments.publish_metrics, every 2 s) run here
as a thread calling the same functions every second.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from django.db import close_old_connections, connection
from playwright.sync_api import expect

from apps.core import stream
from apps.core.tenancy import team_scope
from apps.deployments import services
from apps.deployments.live import publish_metrics
from apps.deployments.models import Deployment, DeploymentEvent, Replica, Revision
from apps.deployments.tasks import deployment_scale
from apps.machines.inventory import collect
from apps.machines.services import host_ensure_local
from apps.runtimes import select
from tests.browser.conftest import log_in
from tests.factories import PersonalAccessTokenFactory
from tests.model_fixtures import make_model_version

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.browser, pytest.mark.docker]

S = Replica.Status
VS = Revision.Status
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
# Version 2 answers as version 1 does, and says which it is.
V2_PREDICT = b'''

_first_predict = predict


def predict(**inputs):
    """Version 1's answer, marked as version 2's."""
    return {**_first_predict(**inputs), "version": 2}
'''
READY_MS = 150_000


def trained_iris(image: str, docker_client: Any, folder: Path) -> dict[str, bytes]:
    """The iris example's model folder's files, trained by its train.py in ``image``."""
    from tests.runtimes.test_model_server_image import train_iris

    trained = train_iris(image, docker_client, folder)
    return {
        str(path.relative_to(trained)): path.read_bytes()
        for path in sorted(trained.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def docker_host(
    settings: Any,
    tmp_path: Path,
    asgi_live_server: str,
    embedded_celery: Any,
    docker_client: Any,
    model_server_image: str,
    catalogue: dict[str, Any],
) -> Iterator[Any]:
    """The local host on real Docker, its agent on the embedded worker's queue, with room
    for a rollout's surge (old and new replicas at once; the containers are small); blobs
    in a local folder read through this server's signed links."""
    from tests.notebook_fixtures import remove_installation_workloads

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LATTICE_DATASET_CACHE = tmp_path / "cache"
    settings.LATTICE_INTERNAL_URL = asgi_live_server
    settings.LATTICE_RUNTIME = "docker"
    settings.LATTICE_MODEL_SERVER_IMAGE = model_server_image
    # Quick drains: the story waits for old replicas to stop twice.
    settings.LATTICE_DEPLOYMENT_DRAIN_SECONDS = 5
    select._runtime.cache_clear()
    inventory = {**collect(), "cpu_count": 16, "memory_bytes": 64 * 1024**3}
    try:
        yield host_ensure_local(name="local", inventory=inventory, runtime="docker")
    finally:
        remove_installation_workloads(docker_client)
        select._runtime.cache_clear()


@pytest.fixture
def unique_replica_ids(transactional_db: None) -> None:
    """Number this test's replicas far from other test runs': their containers are named
    after them (lattice-dp-<replica>) on a Docker engine others share, and a neighbour's
    stop or clean-up of its own dp-2 must not meet this run's."""
    base = 800_000_000 + secrets.randbelow(100_000) * 1_000
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('deployments_replica', 'id'), %s)", [base]
        )


@pytest.fixture
def controller_beat(docker_host: Any) -> Iterator[None]:
    """The beat's two deployment entries, once a second: the controller's pass
    (deployments.scale) and the pages' live figures and status (deployments.publish_metrics,
    which is what moves the page's status badge)."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(1.0):
                close_old_connections()
                deployment_scale()
                publish_metrics()
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name="deployments-beat", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(30)


class Caller:
    """Requests to the deployment, on its own origin (by Host header) or under the API."""

    def __init__(self, server: str, token: str) -> None:
        self.server = server
        self.token = token

    def on_origin(self, token: str | None = None, timeout: float = 30) -> httpx.Response:
        headers = {"host": "iris--acme.localhost"}
        if token if token is not None else self.token:
            headers["authorization"] = f"Bearer {token if token is not None else self.token}"
        return httpx.post(f"{self.server}/predict", headers=headers, json=SETOSA, timeout=timeout)

    def on_api(self) -> httpx.Response:
        return httpx.post(
            f"{self.server}/api/v1/teams/acme/deployments/iris/invoke/predict",
            headers={"authorization": f"Bearer {self.token}"},
            json=SETOSA,
            timeout=30,
        )


class LoadLoop:
    """A thread sending requests one after another, without pause, noting each answer:
    the version that answered (1 or 2), or the failure."""

    def __init__(self, server: str, token: str) -> None:
        self.server, self.token = server, token
        self.answers: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-loop", daemon=True)

    def _run(self) -> None:
        headers = {"host": "iris--acme.localhost", "authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.server, headers=headers, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post("/predict", json=SETOSA)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                    continue
                output = answer.json()["output"]
                assert output["species"] == "setosa", output
                self.answers.append(int(output.get("version", 1)))

    def __enter__(self) -> LoadLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait_for(self, version: int, *, seconds: float) -> None:
        """Until the last 20 answers all came from ``version``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            tail = self.answers[-20:]
            if len(tail) == 20 and set(tail) == {version}:
                return
            time.sleep(0.2)
        raise AssertionError(
            f"answers never settled on v{version}: last {self.answers[-20:]}, "
            f"failures {self.failures[:5]}"
        )


def said(deployment: Deployment) -> str:
    """The deployment's replicas and events (for a failure's message)."""
    with team_scope(deployment.team_id):
        rows = [
            f"{p.workload} r{p.revision.number} {p.status}: {p.status_message} {p.exit_reason}"
            for p in Replica.objects.filter(deployment=deployment).select_related("revision")
        ]
        events = [
            f"{e.kind}: {e.message}"
            for e in DeploymentEvent.objects.filter(deployment=deployment).order_by("pk")
        ]
    return "replicas:\n" + "\n".join(rows) + "\nevents:\n" + "\n".join(events)


def wait_until(check: Any, what: str, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"not {what} after {seconds} s")


def replicas(deployment: Deployment, revision: Revision) -> list[Replica]:
    with team_scope(deployment.team_id):
        return list(Replica.objects.filter(deployment=deployment, revision=revision))


def revision(deployment: Deployment, number: int) -> Revision:
    with team_scope(deployment.team_id):
        return Revision.objects.get(deployment=deployment, number=number)


def old_replicas_stopped(deployment: Deployment, *, serving: int) -> bool:
    """Whether every replica of a revision other than r``serving`` has ended."""
    with team_scope(deployment.team_id):
        return not (
            Replica.objects.filter(
                deployment=deployment, status__in=[S.READY, S.DRAINING, S.STOPPING]
            )
            .exclude(revision__number=serving)
            .exists()
        )


def change(page: Any, deployment: Deployment, reason: str, **fields: str) -> None:
    """The change form, from the deployment's page: ``fields`` by label, then Roll out."""
    page.get_by_test_id("change").click()
    page.wait_for_url(f"**/t/acme/deployments/{deployment.pk}/change/")
    form = page.get_by_test_id("change-form")
    for label, value in fields.items():
        field = form.get_by_label(label, exact=True)
        if label == "Model version":
            field.select_option(label=value)
        else:
            field.fill(value)
    form.get_by_label("Why (optional)").fill(reason)
    form.get_by_role("button", name="Roll out").click()
    try:
        page.wait_for_url(f"**/t/acme/deployments/{deployment.pk}/")
    except Exception as exc:
        errors = page.locator(".field-error, [role=alert]").all_inner_texts()
        raise AssertionError(f"the change form said {errors}") from exc


def deploy_from_the_version_page(page: Any, version: Any, machine_type: Any) -> Deployment:
    """Deploy on the version's page, the create form (protected), and the deployment's page
    until its replica is ready there and the deployment serves."""
    page.goto(f"/t/acme/models/iris/v/{version.number}/")
    page.get_by_role("link", name="Deploy", exact=True).click()
    form = page.get_by_test_id("create-form")
    expect(form.get_by_label("Model version")).to_have_value(str(version.pk))
    expect(form.get_by_label("Name", exact=True)).to_have_value("Iris")
    form.get_by_label("Who may call it").select_option(value="protected")
    form.get_by_label("Machine type").select_option(value=str(machine_type.pk))
    form.get_by_test_id("deploy").click()
    page.wait_for_url("**/t/acme/deployments/*/")
    with team_scope(version.team_id):
        deployment = Deployment.objects.get(slug="iris")
    assert deployment.auth_mode == Deployment.Auth.PROTECTED
    r1 = revision(deployment, 1)
    assert r1.model_version_id == version.pk

    # The replica's states reach the open page; it ends ready.
    rows = page.locator("#dp-replicas tr[data-replica]")
    expect(rows).to_have_count(1, timeout=READY_MS)
    try:
        expect(rows.first.get_by_test_id("replica-state")).to_have_text("Ready", timeout=READY_MS)
    except AssertionError as exc:
        raise AssertionError(said(deployment)) from exc
    [first] = replicas(deployment, r1)
    assert first.status == S.READY
    # The controller's pass after the replica's ready event makes r1 serve.
    wait_until(lambda: revision(deployment, 1).status == VS.SERVING, "r1 serving", 30)
    expect(page.get_by_test_id("status-badge")).to_have_text("Ready")
    return deployment


def roll_out_under_load(
    page: Any, deployment: Deployment, load: LoadLoop, start: Any, *, to: int, number: int
) -> None:
    """With ``load`` running: ``start()`` (a form on the page) makes revision ``number``,
    which serves version ``to``; wait until only ``to`` answers and the old replicas have
    stopped. Every request was answered; once ``to`` answered, the old version never did."""
    was = 2 if to == 1 else 1
    load.wait_for(was, seconds=30)
    start()
    expect(page.get_by_test_id(f"revision-{number}")).to_be_visible()
    load.wait_for(to, seconds=READY_MS / 1000)
    wait_until(lambda: old_replicas_stopped(deployment, serving=number), "the old ones stopped", 60)
    load.stop()
    assert load.failures == [], load.failures[:10]
    assert load.answers.count(was) > 0
    assert was not in load.answers[load.answers.index(to) :]
    assert revision(deployment, number).status == VS.SERVING
    assert revision(deployment, number - 1).status == VS.RETIRED
    with team_scope(deployment.team_id):
        old = Replica.objects.filter(deployment=deployment, revision__number=number - 1)
        assert {p.status for p in old} == {S.STOPPED}
    print(f"r{number} (v{to}) rolled out under load: {len(load.answers)} requests, 0 failed")  # noqa: T201


def scale_to_zero_and_wake(page: Any, deployment: Deployment, call: Caller) -> float:
    """The change form's min replicas 0 and 5 s idle: the page's replica list empties;
    then one request wakes a replica and is answered. How long that request took."""
    change(
        page,
        deployment,
        "scale to zero",
        **{"Min replicas": "0", "Scale to zero after (seconds idle)": "5"},
    )
    expect(page.get_by_test_id("revision-4")).to_be_visible()
    r4 = revision(deployment, 4)
    assert (r4.min_replicas, r4.scale_to_zero_after) == (0, 5)
    # r4 rolls out, r3 stops, then r4 idles to zero: the page's list empties live.
    rows = page.locator("#dp-replicas tr[data-replica]")
    expect(rows).to_have_count(0, timeout=READY_MS)
    expect(page.get_by_test_id("status-badge")).to_have_text("Scaled to zero")
    with team_scope(deployment.team_id):
        assert not Replica.objects.filter(
            deployment=deployment, status__in=[S.PLACING, S.STARTING, S.LOADING, S.READY]
        ).exists()
        deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.SCALED_TO_ZERO
    assert revision(deployment, 4).replicas_wanted == 0

    asked = time.monotonic()
    woken = call.on_origin(timeout=150)
    cold = time.monotonic() - asked
    assert woken.status_code == 200, woken.text
    assert woken.json()["output"]["species"] == "setosa"
    assert "version" not in woken.json()["output"]
    expect(rows).to_have_count(1)
    [awake] = [p for p in replicas(deployment, r4) if p.status == S.READY]
    assert awake.ready_at is not None
    return cold


def test_deploy_call_roll_out_roll_back_and_wake_from_zero(
    asgi_page: Any,
    asgi_live_server: str,
    docker_host: Any,
    unique_replica_ids: None,
    controller_beat: None,
    docker_client: Any,
    model_server_image: str,
    tmp_path: Path,
    acme: Any,
    globex: Any,
    alice: Any,
    bob: Any,
    charlie: Any,
    password: str,
    catalogue: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The product's floor for the idle time is 60 s; the story idles 5 s to stay short.
    monkeypatch.setattr(services, "MIN_SCALE_TO_ZERO_AFTER", 5)
    stream.reset_for_tests()
    files = trained_iris(model_server_image, docker_client, tmp_path / "trained")
    v1 = make_model_version(acme, alice, "Iris", files, message="C=1")
    v2 = make_model_version(
        acme, alice, "Iris", {**files, "predict.py": files["predict.py"] + V2_PREDICT}
    )
    assert (v1.number, v2.number) == (1, 2)
    # Bob, a member of Acme, calls; Charlie is Globex's (his token has the scope too).
    token = PersonalAccessTokenFactory.create(user=bob, scopes=["deployments:invoke"]).plaintext
    outsider = PersonalAccessTokenFactory.create(
        user=charlie, scopes=["deployments:invoke"]
    ).plaintext
    call = Caller(asgi_live_server, token)
    page = asgi_page
    started = time.monotonic()

    log_in(page, alice.email, password)
    deployment = deploy_from_the_version_page(page, v1, catalogue["cpu-small"])

    # Calls: a token with deployments:invoke, on both addresses; none; an outsider's.
    answer = call.on_origin()
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"]["species"] == "setosa"
    assert "version" not in answer.json()["output"]
    on_api = call.on_api()
    assert on_api.status_code == 200, on_api.text
    assert on_api.json()["output"]["species"] == "setosa"
    assert on_api.headers["content-security-policy"] == "sandbox"
    assert call.on_origin(token="").status_code == 401
    assert call.on_origin(token=outsider).status_code == 403

    # Version 2 by the change form, then back to version 1 by r1's rollback button; each
    # while a load loop runs.
    with LoadLoop(asgi_live_server, token) as load:
        roll_out_under_load(
            page,
            deployment,
            load,
            lambda: change(page, deployment, "version 2", **{"Model version": "Iris v2"}),
            to=2,
            number=2,
        )
    assert revision(deployment, 2).model_version_id == v2.pk
    page.reload()
    with LoadLoop(asgi_live_server, token) as load:
        roll_out_under_load(
            page,
            deployment,
            load,
            lambda: page.get_by_test_id("rollback-1").click(),
            to=1,
            number=3,
        )
    r3 = revision(deployment, 3)
    assert (r3.model_version_id, r3.reason) == (v1.pk, "rolled back to r1")

    cold = scale_to_zero_and_wake(page, deployment, call)
    print(f"cold start from zero: {cold:.1f} s; story: {time.monotonic() - started:.0f} s")  # noqa: T201

    # The server's record of it all.
    with team_scope(acme):
        statuses = list(
            Revision.objects.filter(deployment=deployment)
            .order_by("number")
            .values_list("status", flat=True)
        )
        ended = set(
            Replica.objects.filter(deployment=deployment, revision__number__lt=4).values_list(
                "status", flat=True
            )
        )
        kinds = list(
            DeploymentEvent.objects.filter(deployment=deployment)
            .order_by("pk")
            .values_list("kind", flat=True)
        )
    assert statuses == [VS.RETIRED, VS.RETIRED, VS.RETIRED, VS.SERVING]
    assert ended == {S.STOPPED}
    assert kinds.count("rolled_out") == 4, kinds
    assert kinds.count("retired") == 3, kinds
    assert "rollout_failed" not in kinds
    # Scaled to zero after the last rollout; woken after that.
    last_rollout = len(kinds) - 1 - kinds[::-1].index("rolled_out")
    assert kinds.index("scaled_to_zero", last_rollout) < kinds.index("woken", last_rollout)
