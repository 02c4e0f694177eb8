"""A compromised host: everything its agent holds, used against the rest of Lattice.

A GPU host runs strangers' code, so its agent's credentials are assumed stolen (ARCHITECTURE
decision 9, docs/hosts.md "Host threat model"). The attacker here holds exactly what an
agent of host ``cmp-...`` holds: its broker URL (its own Redis user, made by
``join_token_create``), its signing key and its used join token. It talks to the real
Redis with them, as raw commands and as hand-written Celery messages (an attacker is not
bound to our client code), while the trusted tier runs as in production: Redis for the
cache, channel layer, stream buffer and broker, and a real Celery worker consuming
``control`` and ``inbox``. Each test asserts on the server's state afterwards.

The victim is another team's notebook running on host ``local``.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from django.core import mail
from django.core.cache import cache

from apps.core import stream
from apps.core.stream import stream_after, stream_last
from apps.core.worker import embedded_worker
from apps.machines.broker import broker_user, host_broker_user_remove
from apps.machines.identity import new_key, seal, signature
from apps.machines.models import Host, Placement
from apps.machines.services import (
    host_register,
    host_revoke,
    host_rotate_credentials,
    host_set_draining,
    join_token_create,
)
from apps.notebooks import services
from apps.notebooks.models import Notebook, NotebookEvent, NotebookSession, Status
from config.celery import app as celery_app
from tests.factories import GPUDeviceFactory
from tests.helpers import wait_for
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
ATTACKER_ADDRESS = "10.1.2.3"
ROGUE = "http://10.66.66.66:8888"
MAIL = {
    "subject": "Your password was reset",
    "body": "Click here: http://evil.example/",
    "from_email": "noreply@lattice.example",
    "to": ["alice@example.com"],
    "cc": [],
    "bcc": [],
    "reply_to": [],
    "headers": {},
    "alternatives": [],
}


class Evil:
    """Unpickled, it makes a folder: proof that the reader ran the attacker's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def raw_task(
    task: str,
    args: list[Any],
    *,
    embed: dict[str, Any] | None = None,
    delivery_info: dict[str, Any] | None = None,
    content_type: str = "application/json",
    body: bytes | None = None,
) -> str:
    """A Celery message (protocol 2) as kombu's Redis transport stores it, written by hand."""
    task_id = str(uuid.uuid4())
    if body is None:
        options = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
        body = json.dumps([args, {}, {**options, **(embed or {})}]).encode()
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8" if content_type == "application/json" else "binary",
            "content-type": content_type,
            "headers": {
                "lang": "py",
                "task": task,
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "group": None,
                "retries": 0,
                "eta": None,
                "expires": None,
                "timelimit": [None, None],
                "argsrepr": "",
                "kwargsrepr": "",
                "origin": "gpu-host",
                "ignore_result": False,
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": "",
                "delivery_mode": 2,
                "delivery_info": delivery_info or {"exchange": "", "routing_key": "inbox"},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def mail_signature() -> dict[str, Any]:
    return {
        "task": "apps.core.tasks.deliver_email",
        "args": [MAIL],
        "kwargs": {},
        "options": {"queue": "control"},
        "subtask_type": None,
        "immutable": True,
    }


class Attacker:
    """Everything host ``name``'s agent holds: its broker URL, its key, its used join token."""

    def __init__(self, broker_url: str, name: str, key: str, join_token: str) -> None:
        self.broker_url = broker_url
        self.name = name
        self.key = key
        self.join_token = join_token
        self.redis = redis.Redis.from_url(broker_url)

    def push(self, queue: str, message: str) -> None:
        self.redis.lpush(queue, message)

    def attempt(self, queue: str, task: str, args: list[Any]) -> bool:
        """Push ``task`` onto ``queue`` (on main, a host's way to the control worker); whether
        Redis took it."""
        try:
            self.push(queue, raw_task(task, args))
        except redis.exceptions.NoPermissionError:
            return False
        return True

    def send(self, kind: str, body: dict[str, Any], *, as_host: str | None = None) -> None:
        """A signed message on the inbox, as its agent sends them (signed with its key)."""
        envelope = seal(as_host or self.name, self.key, kind, body)
        self.push("inbox", raw_task("control.inbox", [envelope]))

    def event(self, workload: str, event: str, **data: Any) -> None:
        self.send("event", {"workload": workload, "event": event, "data": data})

    def report(self, workloads: list[dict[str, Any]] | None = None, **inventory: Any) -> None:
        inventory = {"cpu_count": 16, "memory_bytes": 64 * 1024**3, "gpus": [], **inventory}
        body = {"inventory": inventory, "workloads": workloads or [], "collected_at": time.time()}
        self.send("report", body)

    def settle(self) -> None:
        """Wait until the control worker (one thread, the inbox in order) handled all sent."""
        before = Host.objects.get(name=self.name).reported_at
        self.report()
        assert wait_for(lambda: Host.objects.get(name=self.name).reported_at != before)


@pytest.fixture
def trusted(settings, redis_url, monkeypatch):
    """The web and control tier as production runs them, on the trusted Redis user."""
    prefix = f"cmp-{uuid.uuid4().hex[:8]}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": prefix,
        },
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": prefix},
        },
    }
    settings.REDIS_URL = redis_url
    stream.reset_for_tests()
    monkeypatch.setitem(celery_app.conf, "broker_url", redis_url)
    monkeypatch.setitem(celery_app.conf, "broker_transport", "apps.core.broker:Transport")
    _reset_celery_connections()
    client = redis.Redis.from_url(redis_url)
    client.delete("control", "inbox")
    yield SimpleNamespace(redis=client, prefix=prefix, url=redis_url)
    client.delete("control", "inbox")
    stream.reset_for_tests()
    _reset_celery_connections()


def _reset_celery_connections() -> None:
    celery_app._pool = None  # type: ignore[attr-defined]
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]


@pytest.fixture
def victim(trusted, acme, alice, host, notebook) -> NotebookSession:
    """acme's notebook, running on host ``local`` (started as usual, tasks inline)."""
    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)
    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    assert (session.status, session.host_id) == (Status.RUNNING, host.pk)
    assert session.endpoint.startswith("http://127.0.0.1:")
    return session


@pytest.fixture
def attacker(trusted, victim) -> Any:
    """A GPU host that joined as ``cmp-...``: what its agent holds, stolen."""
    name = f"cmp-{uuid.uuid4().hex[:8]}"
    credentials = join_token_create(actor=None, host_name=name, workload_address=ATTACKER_ADDRESS)
    assert credentials.broker_url is not None
    key = new_key()
    inventory = {"cpu_count": 16, "memory_bytes": 64 * 1024**3, "gpus": []}
    host_register(name=name, join_token=credentials.join_token, key=key, inventory=inventory)
    yield Attacker(credentials.broker_url, name, key, credentials.join_token)
    host_broker_user_remove(name)
    trusted.redis.delete(f"host.{name}")


@pytest.fixture
def live(trusted, victim, attacker, monkeypatch):
    """From here on, work goes through Redis to a real worker (one thread: the inbox in
    order), as in production."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    _reset_celery_connections()
    with embedded_worker(queues=["control", "inbox"], concurrency=1):
        yield


def unchanged(session: NotebookSession) -> tuple[Any, ...]:
    fresh = NotebookSession.objects.for_team(session.team_id).get(pk=session.pk)
    return (fresh.status, fresh.endpoint, fresh.ended_at, fresh.runtime_state)


def refused(call: Any) -> bool:
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    return False


# --- the cache, sessions and the channel layer: out of reach --------------------------------


def test_a_pickled_value_cannot_be_put_where_the_web_tier_unpickles_it(trusted, attacker, tmp_path):
    cache.set("ratelimit-probe", "unchanged")
    marker = tmp_path / "ran"
    evil = pickle.dumps(Evil(marker))
    rate_limit_key = cache.make_key("ratelimit-probe")
    session_key = cache.make_key(f"django.contrib.sessions.cache{uuid.uuid4().hex}")

    assert refused(lambda: attacker.redis.set(rate_limit_key, evil))
    assert refused(lambda: attacker.redis.set(session_key, evil))
    assert refused(lambda: attacker.redis.get(rate_limit_key))
    assert refused(lambda: attacker.redis.keys("*"))
    assert refused(attacker.redis.flushdb)

    assert cache.get("ratelimit-probe") == "unchanged"
    assert not marker.exists()


def test_the_channel_layer_and_other_streams_are_out_of_reach(trusted, victim, attacker):
    name = victim.notebook.stream
    last = stream_last(name)
    subscriber = attacker.redis.pubsub()

    def listen(*patterns: str) -> None:
        subscriber.psubscribe(*patterns)
        subscriber.get_message(timeout=2)

    assert refused(lambda: listen(f"{trusted.prefix}*"))
    assert refused(lambda: listen("*"))
    assert refused(lambda: attacker.redis.publish(f"{trusted.prefix}stream.{name}", "x"))
    assert refused(lambda: attacker.redis.get(f"lattice:stream:{name}:seq"))
    assert refused(lambda: attacker.redis.lrange(f"lattice:stream:{name}:buf", 0, -1))
    assert refused(lambda: attacker.redis.rpush(f"lattice:stream:{name}:buf", '9 {"x":1}'))
    assert refused(lambda: attacker.redis.eval("return redis.call('INCR', KEYS[1])", 1, "x"))

    assert stream_last(name) == last


# --- the control queue, and the inbox: no task but the inbox's own ---------------------------


def test_no_task_can_be_pushed_onto_the_control_queue(trusted, victim, attacker, live):
    before = unchanged(victim)

    pushed = [
        attacker.attempt("control", "apps.core.tasks.deliver_email", [MAIL]),
        attacker.attempt(
            "control",
            "control.workload_event",
            ["local", victim.workload, "failed", {"message": "x"}],
        ),
    ]
    attacker.settle()
    time.sleep(0.5)

    assert mail.outbox == []
    assert unchanged(victim) == before
    assert pushed == [False, False]
    assert refused(lambda: attacker.redis.rpop("control"))


def test_the_mail_task_pushed_onto_the_inbox_does_not_run(trusted, victim, attacker, live):
    # As it is, and claiming (in the message) that it was sent to the control queue.
    attacker.push("inbox", raw_task("apps.core.tasks.deliver_email", [MAIL]))
    claim = {"exchange": "", "routing_key": "control"}
    attacker.push("inbox", raw_task("apps.core.tasks.deliver_email", [MAIL], delivery_info=claim))
    attacker.push("inbox", raw_task("billing.sweep", [], delivery_info=claim))
    attacker.settle()

    assert mail.outbox == []
    assert trusted.redis.llen("control") == 0
    # The worker does deliver mail the trusted tier sends: the attacker's was refused.
    from django.core.mail import send_mail

    send_mail("Welcome", "body", None, ["dana@example.com"])
    assert wait_for(lambda: len(mail.outbox) == 1)
    assert mail.outbox[0].subject == "Welcome"


def test_the_body_cannot_say_where_a_message_came_from(trusted, victim, attacker, live):
    """Celery lays the body's third part over the request (celery.app.trace), so a body
    naming ``delivery_info`` would overrule the queue the transport stamped: the guard must
    not take the task's word for where it came from."""
    claim = {"delivery_info": {"exchange": "", "routing_key": "control"}}
    attacker.push("inbox", raw_task("apps.core.tasks.deliver_email", [MAIL], embed=claim))
    attacker.push("inbox", raw_task("control.inbox", [], embed=claim))
    attacker.settle()
    time.sleep(0.5)

    assert mail.outbox == []
    assert trusted.redis.llen("control") == 0


def test_the_inbox_task_carries_no_callback_to_the_control_worker(trusted, attacker, live):
    envelope = seal(attacker.name, attacker.key, "report", {"workloads": [], "collected_at": 0})
    chained = {"callbacks": [mail_signature()], "errbacks": [mail_signature()]}
    attacker.push("inbox", raw_task("control.inbox", [envelope], embed=chained))
    attacker.push("inbox", raw_task("control.inbox", [], embed=chained))  # fails: errbacks
    attacker.push(
        "inbox", raw_task("control.inbox", [envelope], embed={"chain": [mail_signature()]})
    )
    attacker.settle()
    time.sleep(0.5)  # anything sent on would be on the control queue by now

    assert mail.outbox == []


def test_a_pickled_message_on_the_inbox_is_never_loaded(trusted, attacker, live, tmp_path):
    marker = tmp_path / "ran"
    body = pickle.dumps([[Evil(marker)], {}, {}])
    pickled = raw_task(
        "control.inbox", [], content_type="application/x-python-serialize", body=body
    )
    attacker.push("inbox", pickled)
    attacker.settle()

    assert not marker.exists()


def test_a_message_put_back_from_the_inbox_goes_back_to_the_inbox(trusted, attacker):
    """The worker's broker transport says where a message came from, not the message: one
    it puts back (a restart while it held it) returns to the inbox, never to ``control``."""
    from kombu import Connection, Consumer, Queue

    claim = {"exchange": "", "routing_key": "control"}
    attacker.push("inbox", raw_task("apps.core.tasks.deliver_email", [MAIL], delivery_info=claim))
    got: list[Any] = []

    with Connection(trusted.url, transport="apps.core.broker:Transport") as conn:
        consumer = Consumer(
            conn, [Queue("inbox", no_declare=True)], callbacks=[lambda _body, m: got.append(m)]
        )
        with consumer:
            conn.drain_events(timeout=5)
        assert got[0].delivery_info["routing_key"] == "inbox"
        # Written anew on the way in (apps.core.broker.inbox_message): the id is the worker's.
        assert got[0].headers["task"] == "control.inbox"
        ours = got[0].headers["id"]
        # Closed without an acknowledgement: kombu puts the message back where it came from.

    # Another test's notebook may still ship a log line to the inbox: count only ours.
    def ids(queue: str) -> list[str]:
        return [json.loads(raw)["headers"]["id"] for raw in trusted.redis.lrange(queue, 0, -1)]

    assert ours not in ids("control")
    assert ids("inbox").count(ours) == 1


# --- another host's name, another host's workloads -------------------------------------------


def test_a_host_cannot_speak_for_another_host(trusted, victim, attacker, live):
    local = Host.objects.get(name="local")
    before = unchanged(victim)
    NotebookSession.objects.for_team(victim.team_id).filter(pk=victim.pk).update(
        status=Status.STARTING, endpoint=""
    )

    # As a host could on main: a task on the control queue naming the other host.
    attacker.attempt(
        "control",
        "control.workload_event",
        ["local", victim.workload, "ready", {"endpoint": ROGUE, "state": {}}],
    )
    attacker.attempt("control", "control.host_reported", ["local", {"cpu_count": 1}, [], 0])
    attacker.attempt("control", "control.host_join", ["local", attacker.join_token, {}])
    # Signed with its own key, in the other host's name.
    attacker.send(
        "event",
        {"workload": victim.workload, "event": "ready", "data": {"endpoint": ROGUE, "state": {}}},
        as_host="local",
    )
    attacker.send(
        "event",
        {"workload": victim.workload, "event": "failed", "data": {"message": "x"}},
        as_host="local",
    )
    attacker.send(
        "report",
        {"workloads": [], "inventory": {"cpu_count": 1}, "collected_at": time.time()},
        as_host="local",
    )
    # Joining again as the other host, or again as itself with a new key.
    for name in ("local", attacker.name):
        other_key = new_key()
        join = seal(name, other_key, "join", {"token": attacker.join_token, "key": other_key})
        attacker.push("inbox", raw_task("control.inbox", [join]))
    attacker.settle()

    session = NotebookSession.objects.for_team(victim.team_id).get(pk=victim.pk)
    assert (session.status, session.endpoint, session.ended_at) == (Status.STARTING, "", None)
    fresh = Host.objects.get(pk=local.pk)
    assert (fresh.signing_key, fresh.reported_at, fresh.cpu_count) == (
        local.signing_key,
        local.reported_at,
        local.cpu_count,
    )
    assert Host.objects.get(name=attacker.name).signing_key == attacker.key
    assert before[2] is None


def test_a_signed_event_for_a_workload_placed_elsewhere_changes_nothing(
    trusted, victim, attacker, live
):
    NotebookSession.objects.for_team(victim.team_id).filter(pk=victim.pk).update(
        status=Status.STARTING, endpoint=""
    )
    before = unchanged(victim)

    attacker.event(victim.workload, "ready", endpoint=ROGUE, state={"port": 8888})
    attacker.event(victim.workload, "failed", message="The server exited during start.")
    attacker.event(victim.workload, "stopped")
    # And as a host could on main, naming the host the workload is placed on.
    attacker.attempt(
        "control", "control.workload_event", ["local", victim.workload, "failed", {"message": "x"}]
    )
    attacker.settle()

    assert unchanged(victim) == before
    assert Placement.objects.get(pk=victim.placement_id).active


def test_a_report_judges_and_claims_nothing_of_another_host(trusted, victim, attacker, live):
    local = Host.objects.get(name="local")
    gpu = GPUDeviceFactory.create(host=local, uuid="GPU-victim-0", index=0, memory_bytes=1)
    stolen = {"uuid": gpu.uuid, "index": 0, "name": gpu.name, "memory_total": 1}

    claimed = [{"name": victim.workload, "running": True, "labels": {}}]
    attacker.report(workloads=claimed, gpus=[stolen])
    inventory = {"cpu_count": 16, "memory_bytes": 1, "gpus": [stolen]}
    attacker.attempt("control", "control.host_reported", [attacker.name, inventory, claimed])
    attacker.settle()
    time.sleep(0.5)

    gpu.refresh_from_db()
    assert (gpu.host_id, gpu.present) == (local.pk, True)
    placement = Placement.objects.get(pk=victim.placement_id)
    assert (placement.active, placement.last_seen_at) == (True, None)


# --- its own workloads: only its own address, only its own stream ----------------------------


def _placed_on_attacker(attacker: Any, acme: Any, alice: Any, name: str) -> NotebookSession:
    """A notebook of acme's placed on the attacker's host, its start sent to that host."""
    host_set_draining(host=Host.objects.get(name="local"), draining=True)
    notebook = make_notebook(acme, alice, name)
    services.notebook_start(team=acme, actor=alice, notebook=notebook)

    def scheduled() -> NotebookSession | None:
        return (
            NotebookSession.objects.for_team(acme)
            .filter(notebook=notebook, status=Status.SCHEDULED, host__name=attacker.name)
            .first()
        )

    assert wait_for(lambda: scheduled() is not None)
    session = scheduled()
    assert session is not None
    return session


@pytest.fixture
def own_session(victim, attacker, live, acme, alice, catalogue) -> NotebookSession:
    """A notebook of acme's placed on the attacker's host, started there."""
    session = _placed_on_attacker(attacker, acme, alice, "On the GPU host")
    attacker.event(session.workload, "started", state={"port": 40000})
    attacker.settle()
    return NotebookSession.objects.for_team(acme).get(pk=session.pk)


def test_a_percent_that_is_no_number_is_shown_as_none(
    victim, attacker, live, acme, alice, catalogue
):
    # JSON from a host may carry NaN and Infinity: floats Python cannot make a whole number of.
    session = _placed_on_attacker(attacker, acme, alice, "Odd numbers")

    for odd in (float("nan"), float("inf"), float("-inf")):
        attacker.event(session.workload, "progress", phase="pulling", percent=odd)
    attacker.settle()

    percents = list(
        NotebookEvent.objects.for_team(acme)
        .filter(session=session.pk, status=Status.PULLING)
        .values_list("percent", flat=True)
    )
    assert percents
    assert set(percents) == {None}


def test_a_build_report_puts_none_of_the_hosts_words_on_the_page(
    settings, victim, attacker, live, acme, alice, catalogue
):
    session = _placed_on_attacker(attacker, acme, alice, "Built on the GPU host")
    stream_key = Notebook.objects.for_team(acme).get(pk=session.notebook_id).stream
    before = stream_last(stream_key)
    phishing = "Your session expired: log in again at https://evil.example/login"

    def build(**data: Any) -> None:
        attacker.event(session.workload, "progress", phase="building", **data)

    # Its words where a download's percent goes, then in every field a build report has, and
    # numbers it has no business sending.
    attacker.event(session.workload, "progress", phase="pulling", percent=phishing)
    build(message=phishing, kind=phishing, step=2, of=3, percent=41)
    build(kind=[phishing], step=2, of=3)
    build(kind="packages", step=phishing, of=3)
    # Its words beside good numbers, said again as a long step is every 20 s: one event.
    for _ in range(4):
        build(message=phishing, kind="packages", step=2, of=3, percent=40)
    attacker.settle()

    notebook = Notebook.objects.for_team(acme).get(pk=session.notebook_id)
    said = "Building the Scientific Python image: step 2 of 3 (installing packages)..."
    assert (notebook.status, notebook.status_message) == (Status.PULLING, said)
    events = list(
        NotebookEvent.objects.for_team(acme)
        .filter(session=session.pk, status=Status.PULLING)
        .order_by("pk")
        .values_list("message", "percent")
    )
    assert events == [("Downloading the image: 0%.", None), (said, 40)]
    published = json.dumps(list(stream_after(stream_key, before)))
    assert said in published
    assert "evil.example" not in published
    assert not NotebookEvent.objects.for_team(acme).filter(message__contains="evil").exists()

    # Where this installation does not build the template's image, no host builds it.
    settings.LATTICE_LOCAL_TEMPLATES = []
    build(kind="check", step=3, of=3)
    attacker.settle()
    notebook.refresh_from_db()
    assert notebook.status_message == said


def test_a_ready_endpoint_off_the_hosts_own_address_is_refused(attacker, own_session):
    assert own_session.status == Status.STARTING

    for endpoint in (
        ROGUE,
        "http://127.0.0.1:6379",  # the web tier's own loopback
        f"http://{ATTACKER_ADDRESS}:22",  # a privileged port
        f"https://{ATTACKER_ADDRESS}:40000",
        f"http://user:pw@{ATTACKER_ADDRESS}:40000",
        f"http://{ATTACKER_ADDRESS}:40000/elsewhere",
        f"http://{ATTACKER_ADDRESS}.evil.example:40000",
    ):
        attacker.event(own_session.workload, "ready", endpoint=endpoint, state={})
    attacker.attempt(
        "control",
        "control.workload_event",
        [attacker.name, own_session.workload, "ready", {"endpoint": ROGUE}],
    )
    attacker.settle()
    time.sleep(0.5)

    session = NotebookSession.objects.for_team(own_session.team_id).get(pk=own_session.pk)
    assert (session.status, session.endpoint) == (Status.STARTING, "")

    # Its own address and an unprivileged port: believed.
    attacker.event(own_session.workload, "ready", endpoint=f"http://{ATTACKER_ADDRESS}:40000")
    attacker.settle()
    session.refresh_from_db()
    assert (session.status, session.endpoint) == (
        Status.RUNNING,
        f"http://{ATTACKER_ADDRESS}:40000",
    )


def test_a_stale_message_is_refused_even_when_signed(attacker, own_session):
    # A message seen on the wire (or kept by the host) two hours ago, replayed now.
    body = {
        "workload": own_session.workload,
        "event": "ready",
        "data": {"endpoint": f"http://{ATTACKER_ADDRESS}:40000"},
    }
    envelope = {"v": 1, "host": attacker.name, "kind": "event", "at": time.time() - 7200}
    envelope["body"] = body
    envelope["sig"] = signature(attacker.key, envelope)
    attacker.push("inbox", raw_task("control.inbox", [envelope]))
    attacker.settle()

    session = NotebookSession.objects.for_team(own_session.team_id).get(pk=own_session.pk)
    assert (session.status, session.endpoint) == (Status.STARTING, "")


def test_log_lines_reach_only_the_hosts_own_workloads_streams(victim, attacker, own_session):
    victims = victim.notebook.stream
    own = Notebook.objects.for_team(own_session.team_id).get(pk=own_session.notebook_id).stream
    # Relative to now: stream keys outlive a test database, and its ids start again at 1.
    before, own_before = stream_last(victims), stream_last(own)

    frame = {
        "source": uuid.uuid4().hex,
        "frame": 1,
        "lines": ["Your session expired: log in at evil.example"],
    }
    attacker.send("logs", {"workload": victim.workload, **frame})
    attacker.send("logs", {"workload": own_session.workload, **frame})
    attacker.settle()

    assert stream_last(victims) == before
    published = [m["lines"] for m in stream_after(own, own_before) if m["type"] == "logs"]
    assert published == [frame["lines"]]


def test_a_message_over_the_inbox_limit_is_refused_before_it_is_read(
    settings, attacker, own_session
):
    settings.LATTICE_INBOX_MAX_BYTES = 64 * 1024
    own = Notebook.objects.for_team(own_session.team_id).get(pk=own_session.notebook_id).stream
    before = stream_last(own)
    source = uuid.uuid4().hex

    big = {"workload": own_session.workload, "source": source, "frame": 1, "lines": ["z" * 100_000]}
    attacker.send("logs", big)
    small = {"workload": own_session.workload, "source": source, "frame": 2, "lines": ["ok"]}
    attacker.send("logs", small)
    attacker.settle()

    # The big frame never reached the stream; the next one, within the limit, did.
    published = [m["lines"] for m in stream_after(own, before) if m["type"] == "logs"]
    assert ["z" * 100_000] not in published
    assert published == [["ok"]]


# --- stolen credentials stop working at once ------------------------------------------------


def test_revoking_a_host_cuts_its_broker_user_and_its_key_at_once(trusted, attacker):
    attacker.redis.lpush("inbox", "still works")
    trusted.redis.delete("inbox")

    host_revoke(host=Host.objects.get(name=attacker.name))

    with pytest.raises((redis.exceptions.ConnectionError, redis.exceptions.AuthenticationError)):
        attacker.redis.lpush("inbox", "after revocation")
    assert trusted.redis.llen("inbox") == 0
    host = Host.objects.get(name=attacker.name)
    assert (host.signing_key, host.status) == ("", Host.Status.DRAINING)


def test_rotating_a_hosts_credentials_replaces_its_password(trusted, attacker):
    attacker.redis.ping()

    credentials = host_rotate_credentials(actor=None, host=Host.objects.get(name=attacker.name))

    with pytest.raises((redis.exceptions.ConnectionError, redis.exceptions.AuthenticationError)):
        attacker.redis.lpush("inbox", "old password")
    assert credentials.broker_url is not None
    assert redis.Redis.from_url(credentials.broker_url).ping()
    assert Host.objects.get(name=attacker.name).signing_key == ""


# --- and an honest agent does its job with no more than this --------------------------------


def test_a_real_agent_joins_and_reports_with_only_its_own_broker_user(trusted, tmp_path, live):
    name = f"cmp-{uuid.uuid4().hex[:8]}"
    credentials = join_token_create(actor=None, host_name=name)
    assert credentials.broker_url is not None
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.agent",
        LATTICE_AGENT_BROKER_URL=credentials.broker_url,
        LATTICE_AGENT_KEY_FILE=str(tmp_path / "host.key"),
        LATTICE_AGENT_ALIVE_FILE=str(tmp_path / "alive"),
        LATTICE_AGENT_REPORT_EVERY="1",
        LATTICE_RUNTIME="process",
        LATTICE_RUNTIME_DIR=str(tmp_path / "runtime"),
    )
    agent = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "agent",
            "--host",
            name,
            "--join-token",
            credentials.join_token,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for(
            lambda: Host.objects.filter(name=name, reported_at__isnull=False).exists(), 60
        ), "the agent never joined and reported"
        host = Host.objects.get(name=name)
        assert host.signing_key == (tmp_path / "host.key").read_text().strip()
        assert (tmp_path / "host.key").stat().st_mode & 0o777 == 0o600
        assert wait_for((tmp_path / "alive").exists, 10)
        health = subprocess.run(
            [sys.executable, "manage.py", "agent_health", "--max-age", "30"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert health.returncode == 0, health.stderr
    finally:
        agent.terminate()
        output = agent.communicate(timeout=30)[0]
        host_broker_user_remove(name)
        trusted.redis.delete(f"host.{name}")
    # Nothing it did was refused: its broker user allows all an agent needs.
    denied = [
        entry
        for entry in trusted.redis.execute_command("ACL", "LOG", "128")
        if _entry(entry).get("username") == broker_user(name)
    ]
    assert denied == [], output


def _entry(entry: Any) -> dict[str, Any]:
    if isinstance(entry, dict):
        return {
            k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in entry.items()
        }
    pairs = iter(entry)
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in zip(pairs, pairs, strict=False)
    }
