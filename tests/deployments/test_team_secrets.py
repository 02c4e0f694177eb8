"""Team secrets in deployments: the names a revision lists reach each replica's environment
when it starts (audited as a use), the replicas' log lines are masked with the values, a
revision cannot name another team's secret, and a replica whose secret is gone fails
saying so."""

from __future__ import annotations

import uuid

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

    workload_logs(replica.host, replica.workload, uuid.uuid4().hex, 1, [f"key={VALUE}"])

    published = [m["lines"] for m in stream_after(deployment.stream, before) if m["type"] == "logs"]
    assert published == [[f"key={MASK}"]]


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
