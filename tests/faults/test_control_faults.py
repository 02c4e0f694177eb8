"""The control plane's faults on the fault layout (tests/faults/layout.py): the control
worker killed, the web process killed, Redis restarted, PostgreSQL killed. One injection
covers both phases: a notebook R has been running since before (a file in its /notebooks),
and the fault strikes while notebook S's session is mid-start. The faulted part is brought
back at once, as compose's ``restart: unless-stopped`` would. Then, within 30 s of the
injection, the system converges (tests/faults/converge.py): S ends up running (or cleanly
failed with no container and a message), R still runs with its file, no GPU twice, billed
seconds equal the seconds run (± one report interval, and the whole second cut).

The layout's short intervals (reconcile every 1 s, a host offline after 15 s, agents report
every 1 s, a start that made no progress sent again after 5 s: tests/faults/layout.py) are
its configuration; production's defaults are longer (30 s, 90 s, 15 s, 60 s).

Each test prints ``FAULT <fault> during start|run: converged in X.Ys`` (``-s``) and appends
it to the file named by ``LATTICE_FAULT_REPORT`` if set.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.faults import converge

pytestmark = pytest.mark.usefixtures("fresh_layout")  # conftest.py: a clean slate

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.faults.layout import FaultLayout

LIMIT = 30.0
REPORT_EVERY = 1.0  # the layout's LATTICE_AGENT_REPORT_EVERY
BILLING_TOLERANCE = REPORT_EVERY + 1.0  # as tests/faults/test_converge.py says why
PASSING = ("scheduled", "pulling", "starting")
# A start that outlives this has stalled (the checker's "passing for too long").
TRANSIENT = 25.0
STABLE = 3.0


# --- R: a notebook running since before (one for the module, kept running) ----------------


@dataclass
class Running:
    notebook: int
    session: int
    files: dict[str, str] = field(default_factory=dict)


_R: dict[str, Running] = {}


def latest_session(layout: FaultLayout, notebook: int) -> tuple[int, str] | None:
    rows = layout.sql(
        "SELECT id, status FROM notebooks_notebooksession WHERE notebook_id = %s "
        "ORDER BY id DESC LIMIT 1",
        [notebook],
    )
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


def running_r(layout: FaultLayout, api: httpx.Client) -> Running:
    """R, running (started by the first test that needs it), with one more file written."""
    r = _R.get("r")
    if r is None or latest_session(layout, r.notebook) != (r.session, "running"):
        notebook = layout.start_notebook(api, name="R")
        session = latest_session(layout, notebook)
        assert session is not None
        r = _R["r"] = Running(notebook, session[0])
    name = f"before-{len(r.files)}.txt"
    r.files[name] = f"written at {time.time()}"
    converge.write_file(layout, r.notebook, name, r.files[name])
    return r


# --- JupyterLab through the web ---------------------------------------------------------------


class Lab:
    """A member's way into a notebook's JupyterLab through the web's proxy, as a browser has
    it: a Lattice session, the launch's ticket, then the notebook origin's cookie."""

    def __init__(self, layout: FaultLayout, notebook: int) -> None:
        self.layout = layout
        self.notebook = notebook
        port = layout.url.rsplit(":", 1)[1].rstrip("/")
        self.host = f"nb-{notebook}.layout-usercontent.test:{port}"
        ticket = layout.manage(
            "shell",
            "-c",
            "from importlib import import_module\n"
            "from django.conf import settings\n"
            "from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY\n"
            "from apps.accounts.models import User\n"
            "from apps.notebooks.origin import ticket_issue\n"
            f"user = User.objects.get(email={layout.user_email!r})\n"
            "store = import_module(settings.SESSION_ENGINE).SessionStore()\n"
            "store[SESSION_KEY] = str(user.pk)\n"
            "store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]\n"
            "store[HASH_SESSION_KEY] = user.get_session_auth_hash()\n"
            "store.create()\n"
            f"print(ticket_issue(user=user, notebook_id={notebook}, path='/nb/{notebook}/lab',"
            " session_key=store.session_key))\n",
        ).split()[-1]
        with httpx.Client(base_url=layout.url, timeout=10) as client:
            redeemed = client.get(
                "/_lattice/ticket", params={"ticket": ticket}, headers={"Host": self.host}
            )
        assert redeemed.status_code in {302, 303, 307}, redeemed.text
        self.cookies = dict(redeemed.cookies)
        assert self.cookies, redeemed.headers

    def answers(self) -> bool:
        """Whether JupyterLab's /api/status answers 200 through the web's proxy."""
        try:
            with httpx.Client(base_url=self.layout.url, timeout=3, cookies=self.cookies) as c:
                got = c.get(f"/nb/{self.notebook}/api/status", headers={"Host": self.host})
        except httpx.HTTPError:
            return False
        return got.status_code == 200 and "started" in got.text


# --- one fault, both phases --------------------------------------------------------------------


@dataclass
class Outcome:
    start: float
    run: float
    s_status: str


def api_status(api: httpx.Client, layout: FaultLayout, notebook: int) -> str | None:
    try:
        got = api.get(f"/teams/{layout.team_slug}/notebooks/{notebook}/", timeout=3)
    except httpx.HTTPError:
        return None
    return str(got.json()["status"]) if got.status_code == 200 else None


def about(layout: FaultLayout, notebook: int, lines: list[str]) -> list[str]:
    return [line for line in lines if f"notebook {notebook}" in line]


def quiet_problems(layout: FaultLayout) -> list[str] | None:
    """problems(), or None while the database (or an engine) does not answer."""
    try:
        return converge.problems(layout, transient_timeout=TRANSIENT)
    except Exception:
        return None


def fault_both_phases(  # noqa: PLR0915 - the brief's steps, in order
    layout: FaultLayout,
    fault: str,
    inject: Callable[[], None],
    *,
    lab_must_answer: bool = False,
) -> Outcome:
    """The brief's shape, steps 2-6: R running, S started, ``inject`` (the fault and the
    bringing back) while S is mid-start; then both phases' convergence, measured from the
    injection, and the invariants."""
    with (
        layout.api() as api,
        converge.RunClock(layout) as clock,
        contextlib.ExitStack() as cleanup,
    ):
        r = running_r(layout, api)
        lab = Lab(layout, r.notebook) if lab_must_answer else None
        assert lab is None or lab.answers(), "R's JupyterLab does not answer before the fault"
        s = layout.create_notebook(api, f"S {fault}")
        cleanup.callback(stop_quietly, layout, api, s)  # even after a failure: room for the next
        started = api.post(f"/teams/{layout.team_slug}/notebooks/{s}/start/")
        assert started.status_code in {200, 202}, started.text
        deadline = time.monotonic() + 30
        while (mid := latest_session(layout, s)) is None or mid[1] not in PASSING:
            assert mid is None or mid[1] != "running", "S was running before the fault struck"
            assert time.monotonic() < deadline, f"S never mid-start: {mid}"
            time.sleep(0.02)
        s_session = mid[0]

        injected = time.monotonic()
        inject()
        brought_back = time.monotonic() - injected

        # Each phase converged when its state became right and stayed so (STABLE seconds,
        # to the end): a state right at once, then broken by the fault's after-effects (the
        # reconciler's next pass), is not converged.
        run_at: float | None = None
        start_at: float | None = None
        restarted: list[str] = []
        seen: list[str] | None = []
        s_state: tuple[int, str] | None = None
        while True:
            restarted.extend(supervise(layout))
            seen = quiet_problems(layout)
            now = time.monotonic() - injected
            run_ok = start_ok = False
            if seen is not None:
                run_ok = (
                    not about(layout, r.notebook, seen)
                    and latest_session(layout, r.notebook) == (r.session, "running")
                    and api_status(api, layout, r.notebook) == "running"
                    and (lab is None or lab.answers())
                )
                s_state = latest_session(layout, s)
                settled = s_state is not None and s_state[1] in ("running", "failed")
                start_ok = not seen and settled
            run_at = (now if run_at is None else run_at) if run_ok else None
            start_at = (now if start_at is None else start_at) if start_ok else None
            if (
                run_at is not None
                and start_at is not None
                and now - max(run_at, start_at) >= STABLE
            ):
                break
            if now > LIMIT + STABLE:
                break
            time.sleep(0.25)
        logs = {n: layout.log(n)[-2500:] for n in ("worker", "web", "beat")}
        assert run_at is not None, f"R not consistent within {LIMIT:.0f}s: {seen}\n{logs}"
        assert start_at is not None, (
            f"S not settled within {LIMIT:.0f}s: S {s_state}; problems {seen}\n{logs}"
        )
        converge.wait_converged(layout, 5, transient_timeout=TRANSIENT)  # and it stays so
        converge.report(f"FAULT {fault} during start: converged in {start_at:.1f}s")
        converge.report(f"FAULT {fault} during run: converged in {run_at:.1f}s")
        print(  # noqa: T201
            f"  ({fault}: brought back in {brought_back:.1f}s; S session {s_state};"
            f" restarted as compose's restart: unless-stopped would: {restarted or 'none'})"
        )

        # S: running, or failed cleanly (no container, a message saying why).
        assert s_state is not None
        if s_state[1] == "failed":
            assert converge.container_of(layout, s) is None
            message = layout.sql("SELECT status_message FROM notebooks_notebook WHERE id = %s", [s])
            assert message, s
            assert message[0][0], f"S failed without a message: {s_state}"
        else:
            assert converge.container_of(layout, s) is not None
        # R: still the same session, running, every file there.
        assert latest_session(layout, r.notebook) == (r.session, "running")
        for name, text in r.files.items():
            assert converge.read_file(layout, r.notebook, name) == text, name
        # Billing: what was billed is what ran, for R and S.
        for session in {r.session, s_session, s_state[0]}:
            billed, ran = converge.billed_vs_ran(layout, clock, session)
            assert abs(billed - ran) <= BILLING_TOLERANCE, (session, billed, ran)
        assert start_at <= LIMIT
        assert run_at <= LIMIT
        return Outcome(start_at, run_at, s_state[1])


def stop_quietly(layout: FaultLayout, api: httpx.Client, notebook: int) -> None:
    with contextlib.suppress(httpx.HTTPError):
        api.post(f"/teams/{layout.team_slug}/notebooks/{notebook}/stop/")


def supervise(layout: FaultLayout) -> list[str]:
    """What compose's ``restart: unless-stopped`` does for every service of the layout: one
    that exited is started again (the layout's processes only; its servers are the fault).
    Their names, with the time they were found down."""
    found = []
    for name in layout.services:
        if not layout.running(name):
            found.append(f"{name} (exited {layout.layout.processes[name].returncode})")
            layout.start(name, wait=False)
    return found


@pytest.fixture
def healthy(fault_layout: FaultLayout) -> Any:
    fault_layout.healthy()
    try:
        yield fault_layout
    finally:
        fault_layout.healthy()


# --- the faults -----------------------------------------------------------------------------------


def test_control_worker_killed(healthy: FaultLayout) -> None:
    layout = healthy

    def inject() -> None:
        layout.kill("worker")
        layout.start("worker", wait=False)

    fault_both_phases(layout, "control worker killed", inject)


def test_web_killed(healthy: FaultLayout) -> None:
    layout = healthy

    def inject() -> None:
        layout.kill("web")
        layout.start("web", wait=False)

    fault_both_phases(layout, "web killed", inject, lab_must_answer=True)


def test_redis_restarted(healthy: FaultLayout) -> None:
    """Redis loses its ACL users at a restart: the agents get theirs back from beat
    (apps.machines.broker.broker_users_restore), with no help from the test."""
    import redis

    layout = healthy
    users = layout.broker_users()
    assert len(users) == 2, users

    def inject() -> None:
        layout.redis.restart()
        client = redis.Redis.from_url(layout.redis.url)
        assert client.ping()
        client.close()

    fault_both_phases(layout, "Redis restarted", inject)
    # The same users with the same rules (Redis may list a user's permissions in another order).
    assert _rules(layout.broker_users()) == _rules(users)


def _rules(users: list[str]) -> list[tuple[str, ...]]:
    return sorted(tuple(sorted(rule.split())) for rule in users)


def test_postgres_killed(healthy: FaultLayout) -> None:
    """SIGKILL to PostgreSQL and all its processes (the harsher fault: crash recovery at its
    start, every connection cut with no goodbye), started again at once."""
    layout = healthy

    def inject() -> None:
        layout.postgres.kill()
        layout.postgres.start()
        assert layout.sql("SELECT 1") == [(1,)]

    fault_both_phases(layout, "PostgreSQL killed", inject)
