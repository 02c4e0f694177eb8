"""Team secrets in deployments: the names a revision lists reach each replica's environment
when it starts (audited as a use), the replicas' log lines are masked with the values, a
revision cannot name another team's secret, and a replica whose secret is gone fails
saying so."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from apps.core.errors import ServiceError
from apps.core.models import AuditEntry
from apps.core.stream import stream_after, stream_last
from apps.deployments.models import Replica
from apps.deployments.services import RevisionSpec, spec_fields
from apps.machines.models import MachineType
from apps.machines.reports import workload_logs
from apps.runtimes.fake import FakeRuntime
from apps.teams.models import TeamSecret
from apps.teams.secrets import MASK, secret_set
from tests.deployments.control_helpers import make_deployment, replicas_of
from tests.deployments.test_control_servers import builtin, process_host  # noqa: F401
from tests.model_fixtures import make_model_version

pytestmark = pytest.mark.django_db(transaction=True)

VALUE = "sk-deployment-secret-0123456789"


@pytest.fixture
def api_key(acme, alice):
    return secret_set(team=acme, actor=alice, name="OPENAI_API_KEY", value=VALUE)


def test_a_named_secret_is_in_each_replicas_environment_and_the_use_is_audited(
    acme, alice, host, gateway_calls, api_key
):
    deployment = make_deployment(acme, alice, env={"A": "1"}, team_secrets=["OPENAI_API_KEY"])

    [replica] = replicas_of(deployment)
    assert replica.status == Replica.Status.READY
    env = FakeRuntime._running[replica.workload]["env"]
    assert env == {"A": "1", "OPENAI_API_KEY": VALUE, "PORT": "8080"}
    used = AuditEntry.objects.for_team(acme).filter(action="secret.used")
    assert list(used.values_list("target", flat=True)) == [f"deployment replica {replica.pk} (r1)"]


def test_its_log_lines_are_masked_before_they_are_published(
    acme, alice, host, gateway_calls, api_key
):
    deployment = make_deployment(acme, alice, team_secrets=["OPENAI_API_KEY"])
    [replica] = replicas_of(deployment)
    before = stream_last(deployment.stream)

    assert replica.host is not None
    workload_logs(replica.host, replica.workload, uuid.uuid4().hex, 1, [f"key={VALUE}"])

    published = [m["lines"] for m in stream_after(deployment.stream, before) if m["type"] == "logs"]
    # The replica's own output may be shipped meanwhile (the log shipper is a thread of its
    # own): the frame sent here is among those published, masked, and no line holds the value.
    assert [f"key={MASK}"] in published
    assert not any(VALUE in line for lines in published for line in lines)


def test_a_revision_cannot_name_another_teams_secret(acme, globex, charlie, catalogue, host):
    secret_set(team=globex, actor=charlie, name="GLOBEX_KEY", value=VALUE)
    spec = RevisionSpec(
        machine_type=MachineType.objects.get(slug="cpu-small"),
        serving="custom",
        image="fake/server:1",
        team_secrets=["GLOBEX_KEY"],
    )

    with pytest.raises(ServiceError, match="GLOBEX_KEY") as refused:
        spec_fields(acme, spec)
    assert refused.value.field == "team_secrets"


def test_a_replica_whose_secret_is_gone_fails_saying_which(
    acme, alice, host, gateway_calls, api_key
):
    TeamSecret.objects.for_team(acme).filter(name="OPENAI_API_KEY").delete()

    deployment = make_deployment(acme, alice, team_secrets=["OPENAI_API_KEY"])

    [replica] = replicas_of(deployment)
    assert replica.status == Replica.Status.FAILED
    assert "OPENAI_API_KEY" in replica.status_message
    assert replica.workload not in FakeRuntime._running


LEAKY_SETUP = b"""
import os

def setup():
    print("the key is " + os.environ["OPENAI_API_KEY"] + " (setup)", flush=True)

def predict(**inputs):
    return {"key": os.environ["OPENAI_API_KEY"]}
"""


def test_a_real_replica_gets_the_value_and_its_printed_value_is_masked_on_the_stream(
    acme,
    alice,
    api_key,
    process_host,  # noqa: F811 - the fixture imported below
):
    """End to end on the process runtime: the model server (a real process) reads the value
    from its environment; the line it prints is shipped by the agent and published masked."""
    version = make_model_version(acme, alice, "Leaky", {"predict.py": LEAKY_SETUP})

    deployment = make_deployment(
        acme, alice, "Leaky", **builtin(version), team_secrets=["OPENAI_API_KEY"]
    )

    [replica] = replicas_of(deployment)
    assert replica.status == Replica.Status.READY, replica.status_message
    answer = httpx.post(f"{replica.endpoint}/predict", json={}, timeout=5)
    assert answer.json() == {"output": {"key": VALUE}}
    lines: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [
            line
            for m in stream_after(deployment.stream, 0)
            if m.get("type") == "logs"
            for line in m["lines"]
        ]
        if any("(setup)" in line for line in lines):
            break
        time.sleep(0.1)
    assert any(f"the key is {MASK} (setup)" in line for line in lines), lines
    assert not any(VALUE in line for line in lines)
