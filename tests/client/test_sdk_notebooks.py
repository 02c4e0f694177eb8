"""The SDK's notebooks against a live server on the fake runtime: made, named by id or by
name, started and followed to ready through its phases, opened, read, stopped, deleted;
a failed start raised with the server's words."""

from __future__ import annotations

from typing import Any

import pytest

import lattice
from apps.runtimes import select
from lattice.errors import LatticeError, NotFound, PaymentRequired, PermissionDenied
from tests.client.sdk_fixtures import token_of
from tests.notebook_fixtures import host_for_every_type

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_notebook_is_made_started_opened_stopped_and_deleted_by_name(
    sdk: lattice.Client, host: Any
) -> None:
    made = sdk.notebooks.create("Churn model", machine_type="cpu-small")
    assert made.status == "stopped"
    assert [n.name for n in sdk.notebooks.list()] == ["Churn model"]
    assert sdk.notebooks.get(made.id).name == "Churn model"
    assert sdk.notebooks.get(str(made.id)).id == made.id

    started = sdk.notebooks.start("Churn model")
    ready = sdk.notebooks.wait("Churn model", timeout=30)

    assert started.id == made.id
    assert ready.status == "running"
    assert sdk.notebooks.open_url("Churn model") == f"{sdk.url}/nb/{made.id}/"
    lines = list(sdk.notebooks.logs("Churn model"))
    assert any(line.status == "running" for line in lines)
    assert sdk.notebooks.stop("Churn model").status == "stopped"
    with pytest.raises(LatticeError) as not_running:
        sdk.notebooks.open_url(made.id)
    assert not_running.value.code == "not_running"
    sdk.notebooks.delete("Churn model")
    assert sdk.notebooks.list() == []


def test_an_unknown_name_is_not_found_in_words(sdk: lattice.Client, catalogue: Any) -> None:
    with pytest.raises(NotFound) as refused:
        sdk.notebooks.get("Nope")

    assert str(refused.value) == "No notebook named 'Nope' in team acme."


def test_wait_follows_the_phases_until_it_runs(
    sdk: lattice.Client, host: Any, settings: Any, embedded_celery: Any
) -> None:
    settings.LATTICE_RUNTIME = "fake:pulls"
    select._runtime.cache_clear()
    made = sdk.notebooks.create("Puller", machine_type="cpu-small")
    events: list[lattice.types.NotebookEvent] = []

    sdk.notebooks.start(made.id)
    ready = sdk.notebooks.wait(made.id, timeout=60, on_event=events.append)

    assert ready.status == "running"
    statuses = [event.status for event in events]
    assert statuses[-1] == "running"
    assert "pulling" in statuses, statuses
    assert any(event.percent for event in events if event.status == "pulling"), events
    sdk.notebooks.stop(made.id)


def test_a_start_that_fails_raises_notebook_failed_with_the_servers_message(
    sdk: lattice.Client, host: Any, settings: Any
) -> None:
    settings.LATTICE_RUNTIME = "fake:crashes"
    select._runtime.cache_clear()
    made = sdk.notebooks.create("Crasher", machine_type="cpu-small")
    sdk.notebooks.start(made.id)

    with pytest.raises(LatticeError) as failed:
        sdk.notebooks.wait(made.id, timeout=30)

    assert failed.value.code == "notebook_failed"
    after = sdk.notebooks.get(made.id)
    assert after.status_message
    assert after.status_message in str(failed.value)


def test_a_viewer_may_read_but_not_start(
    asgi_live_server: str, sdk: lattice.Client, erin: Any, host: Any
) -> None:
    made = sdk.notebooks.create("Shared", machine_type="cpu-small")
    viewer = lattice.Client(url=asgi_live_server, token=token_of(erin), team="acme")

    assert viewer.notebooks.get("Shared").id == made.id
    with pytest.raises(PermissionDenied) as refused:
        viewer.notebooks.start("Shared")
    assert refused.value.status == 403


def test_a_start_the_plan_refuses_is_payment_required_with_its_words(
    sdk: lattice.Client, stripe_double: Any, catalogue: Any
) -> None:
    host_for_every_type()
    made = sdk.notebooks.create("Big", machine_type="p5000")

    with pytest.raises(PaymentRequired) as refused:
        sdk.notebooks.start("Big")

    assert refused.value.status == 402
    assert refused.value.code == "plan_machine_type"
    assert "not included in the Free plan" in str(refused.value)
    assert sdk.notebooks.get(made.id).desired_state == "stopped"
    p5000 = next(t for t in sdk.machine_types.list() if t.slug == "p5000")
    assert p5000.plan_note


def test_following_the_log_ends_when_the_notebook_stops(sdk: lattice.Client, host: Any) -> None:
    made = sdk.notebooks.create("Followed", machine_type="cpu-small")
    sdk.notebooks.start(made.id)
    followed = sdk.notebooks.logs(made.id, follow=True)
    seen = []
    for line in followed:
        seen.append(line)
        if line.status == "running":
            break

    sdk.notebooks.stop(made.id)
    rest = list(followed)

    assert rest
    assert rest[-1].status == "stopped"
