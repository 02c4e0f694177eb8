"""Deployment services: the rules of a revision's spec, revisions, rollback, traffic, keys,
settings and delete; each refusal names its field; secrets sealed; the controller told."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace

import pytest

from apps.core.audit import audit_describe
from apps.core.crypto import open_json
from apps.core.errors import PaymentRequiredError, ServiceError
from apps.core.models import AuditEntry
from apps.deployments import entitlements
from apps.deployments import services as sv
from apps.deployments.models import Deployment, DeploymentEvent, DeploymentKey, Revision
from apps.machines.models import MachineType
from apps.models.services.aliases import alias_set
from tests.deployments.conftest import everywhere_type, route_generation
from tests.model_fixtures import make_model_version
from tests.notebook_fixtures import make_host

pytestmark = pytest.mark.django_db


def spec(version, **fields):
    return sv.RevisionSpec(
        machine_type=everywhere_type("cpu-small"), model_version=version, **fields
    )


def refused(call, **kwargs):
    with pytest.raises(ServiceError) as caught:
        call(**kwargs)
    return caught.value


def revisions(deployment):
    return list(
        Revision.objects.for_team(deployment.team)
        .filter(deployment=deployment)
        .order_by("number")
        .values_list("number", "reason")
    )


# --- create ---------------------------------------------------------------------------


def test_create_makes_revision_1_audits_and_queues_the_reconcile(
    acme, alice, iris, everywhere, calls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        deployment = sv.deployment_create(
            team=acme,
            actor=alice,
            name="Iris  API",
            auth_mode="private",
            spec=spec(iris, env={"MODE": "fast"}, secrets={"API_SECRET": "s3cret"}),
            description="the flowers",
        )

    assert (deployment.name, deployment.slug, deployment.auth_mode) == (
        "Iris API",
        "iris-api",
        "private",
    )
    revision = Revision.objects.for_team(acme).get(deployment=deployment)
    assert (revision.number, revision.reason, revision.model_version) == (1, "created", iris)
    assert (revision.serving, revision.port, revision.health_path) == (
        "builtin",
        8080,
        "/health-check",
    )
    assert deployment.rollout == revision
    assert revision.env == {"MODE": "fast"}
    # The secret is sealed: not in the row as text, opened only by the key.
    assert revision.secret_names == ["API_SECRET"]
    assert b"s3cret" not in bytes(revision.secret_env)
    assert open_json(bytes(revision.secret_env)) == {"API_SECRET": "s3cret"}
    assert calls["reconcile"] == [deployment.pk]
    entry = AuditEntry.objects.for_team(acme).get(action="deployment.created")
    assert audit_describe(entry).endswith(" created the deployment Iris API")


def test_the_slug_never_holds_a_double_dash_and_is_at_most_40(acme, alice, iris, everywhere, calls):
    deployment = sv.deployment_create(
        team=acme, actor=alice, name="A -- b__c " + "x" * 60, auth_mode="public", spec=spec(iris)
    )
    assert "--" not in deployment.slug
    assert len(deployment.slug) <= 40
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", deployment.slug)


def test_a_name_taken_is_409_but_free_again_once_deleted(acme, alice, iris, deployment, calls):
    error = refused(
        sv.deployment_create,
        team=acme,
        actor=alice,
        name="iris api",
        auth_mode="public",
        spec=spec(iris),
    )
    assert (error.status_code, error.field) == (409, "name")

    sv.deployment_delete(team=acme, actor=alice, deployment=deployment)
    again = sv.deployment_create(
        team=acme, actor=alice, name="Iris API", auth_mode="public", spec=spec(iris)
    )
    assert again.slug == "iris-api"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas"),
        ({"max_replicas": 0, "min_replicas": 0}, "max_replicas"),
        ({"max_replicas": sv.MAX_REPLICAS + 1}, "max_replicas"),
        ({"min_replicas": -1}, "min_replicas"),
        ({"target_in_flight": 0}, "target_in_flight"),
        ({"scale_to_zero_after": 5}, "scale_to_zero_after"),
        ({"startup_timeout": 1}, "startup_timeout"),
        ({"canary_percent": 100}, "canary_percent"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"env": {"PORT": "9"}}, "env"),
        ({"env": {"LATTICE_X": "9"}}, "env"),
        ({"env": {"OK": 3}}, "env"),
        ({"secrets": {"has space": "x"}}, "secrets"),
        ({"env": {"TOKEN": "a"}, "secrets": {"TOKEN": "b"}}, "secrets"),
        ({"image": "ghcr.io/me/server:1"}, "image"),
        ({"serving": "other"}, "serving"),
    ],
)
def test_a_bad_spec_is_a_400_naming_the_field(acme, alice, iris, everywhere, calls, fields, field):
    error = refused(
        sv.deployment_create,
        team=acme,
        actor=alice,
        name="Bad",
        auth_mode="public",
        spec=spec(iris, **fields),
    )
    assert (error.status_code, error.field) == (400, field), str(error)
    assert not Deployment.objects.for_team(acme).exists()


def test_custom_serving_follows_the_notebooks_custom_image_rules(
    acme, alice, iris, everywhere, calls, settings
):
    settings.LATTICE_CUSTOM_IMAGE_REGISTRIES = ["ghcr.io"]
    custom = spec(iris, serving="custom", image="docker.io/evil/x:1", port=9000)
    error = refused(
        sv.deployment_create, team=acme, actor=alice, name="C", auth_mode="public", spec=custom
    )
    assert (error.status_code, error.field) == (400, "image")
    assert "not allowed" in str(error)

    error = refused(
        sv.deployment_create,
        team=acme,
        actor=alice,
        name="C",
        auth_mode="public",
        spec=replace(custom, image="ghcr.io/me/server:1", health_path="health"),
    )
    assert error.field == "health_path"

    made = sv.deployment_create(
        team=acme,
        actor=alice,
        name="C",
        auth_mode="public",
        spec=replace(
            custom, image="ghcr.io/me/server:1", command=["serve", "--fast"], health_path="/ok"
        ),
    )
    revision = Revision.objects.for_team(acme).get(deployment=made)
    assert (revision.image, revision.port, revision.command, revision.health_path) == (
        "ghcr.io/me/server:1",
        9000,
        ["serve", "--fast"],
        "/ok",
    )


def test_builtin_needs_a_model_version_and_only_a_ready_one_of_this_team(
    acme, alice, globex, charlie, iris, everywhere, calls
):
    error = refused(
        sv.deployment_create, team=acme, actor=alice, name="N", auth_mode="public", spec=spec(None)
    )
    assert (error.status_code, error.field) == (400, "model_version")

    theirs = make_model_version(globex, charlie, "Secret", {"m.pkl": b"theirs"})
    error = refused(
        sv.deployment_create,
        team=acme,
        actor=alice,
        name="N",
        auth_mode="public",
        spec=spec(theirs),
    )
    assert (error.status_code, error.field) == (400, "model_version")
    assert "Secret" not in str(error)


def test_following_an_alias_serves_its_version_and_needs_the_alias(
    acme, alice, iris, everywhere, calls
):
    following = sv.RevisionSpec(
        machine_type=everywhere_type("cpu-small"), model=iris.model, follows_alias="prod"
    )
    error = refused(
        sv.deployment_create, team=acme, actor=alice, name="F", auth_mode="public", spec=following
    )
    assert (error.status_code, error.field) == (400, "follows_alias")

    alias_set(team=acme, actor=alice, model=iris.model, name="prod", version=iris)
    made = sv.deployment_create(
        team=acme, actor=alice, name="F", auth_mode="public", spec=following
    )
    revision = Revision.objects.for_team(acme).get(deployment=made)
    assert (revision.model_version, revision.follows_alias) == (iris, "prod")


def test_another_teams_alias_cannot_be_followed(
    acme, alice, globex, charlie, iris, everywhere, calls
):
    theirs = make_model_version(globex, charlie, "Theirs", {"m.pkl": b"t"})
    alias_set(team=globex, actor=charlie, model=theirs.model, name="prod", version=theirs)
    error = refused(
        sv.deployment_create,
        team=acme,
        actor=alice,
        name="F",
        auth_mode="public",
        spec=sv.RevisionSpec(
            machine_type=everywhere_type("cpu-small"), model=theirs.model, follows_alias="prod"
        ),
    )
    assert (error.status_code, error.field) == (400, "follows_alias")


def test_a_type_no_host_offers_is_409_no_host_offers_type(
    acme, alice, iris, catalogue, fake_runtime, calls
):
    make_host(cpus=16, memory_gib=64)  # no GPU
    error = refused(
        sv.deployment_create,
        team=acme,
        actor=alice,
        name="G",
        auth_mode="public",
        spec=replace(spec(iris), machine_type=catalogue["h100-80gb"]),
    )
    assert (error.status_code, error.code, error.field) == (
        409,
        "no_host_offers_type",
        "machine_type",
    )
    assert "No host here offers H100 80 GB: a deployment on it would never start" in str(error)


def test_a_retired_machine_type_is_a_400(acme, alice, iris, everywhere, calls):
    MachineType.objects.filter(slug="cpu-large").update(active=False)
    error = refused(
        sv.deployment_create,
        team=acme,
        actor=alice,
        name="R",
        auth_mode="public",
        spec=replace(spec(iris), machine_type=MachineType.objects.get(slug="cpu-large")),
    )
    assert (error.status_code, error.field) == (400, "machine_type")


def test_the_plan_refuses_through_the_entitlement_hooks(acme, alice, iris, everywhere, calls):
    asked = []

    def no_more(team, machine_type, replicas):
        asked.append((team, machine_type.slug, replicas))
        raise PaymentRequiredError("Your plan runs 2 replicas at most.", upgrade_url="/up")

    with entitlements.check_replicas.override(no_more):
        error = refused(
            sv.deployment_create,
            team=acme,
            actor=alice,
            name="P",
            auth_mode="public",
            spec=spec(iris, max_replicas=5),
        )
    assert (error.status_code, error.code) == (402, "plan_limit")
    assert asked == [(acme, "cpu-small", 5)]

    def no_deployment(team):
        raise PaymentRequiredError("Your plan has 1 deployment.", upgrade_url="/up")

    with entitlements.check_deployment.override(no_deployment):
        error = refused(
            sv.deployment_create,
            team=acme,
            actor=alice,
            name="P",
            auth_mode="public",
            spec=spec(iris),
        )
    assert error.status_code == 402
    assert not Deployment.objects.for_team(acme).exists()


def test_a_viewer_cannot_deploy_and_an_outsider_cannot_either(
    acme, alice, erin, charlie, iris, everywhere, calls
):
    for actor in (erin, charlie):
        error = refused(
            sv.deployment_create,
            team=acme,
            actor=actor,
            name="V",
            auth_mode="public",
            spec=spec(iris),
        )
        assert error.status_code == 403


def test_an_unknown_auth_mode_is_a_400(acme, alice, iris, everywhere, calls):
    error = refused(
        sv.deployment_create, team=acme, actor=alice, name="A", auth_mode="open", spec=spec(iris)
    )
    assert (error.status_code, error.field) == (400, "auth_mode")


# --- change and rollback ---------------------------------------------------------------


def test_every_change_is_a_new_revision_and_secrets_none_keeps_the_sealed_ones(
    acme, alice, iris, deployment, calls
):
    first = Revision.objects.for_team(acme).get(deployment=deployment)
    with_secret = sv.deployment_change(
        team=acme, actor=alice, deployment=deployment, spec=spec(iris, secrets={"K": "v1"})
    )
    kept = sv.deployment_change(
        team=acme,
        actor=alice,
        deployment=deployment,
        spec=spec(iris, max_replicas=3),
        reason="more replicas",
    )
    cleared = sv.deployment_change(
        team=acme, actor=alice, deployment=deployment, spec=spec(iris, secrets={})
    )

    assert revisions(deployment) == [
        (1, "created"),
        (2, "changed"),
        (3, "more replicas"),
        (4, "changed"),
    ]
    assert kept.secret_names == ["K"]
    assert bytes(kept.secret_env) == bytes(with_secret.secret_env)
    assert (cleared.secret_names, bytes(cleared.secret_env)) == ([], b"")
    # Revision 1 is as it was: revisions are immutable.
    first.refresh_from_db()
    assert (first.max_replicas, first.secret_names) == (1, [])
    deployment.refresh_from_db()
    assert deployment.rollout == cleared
    assert AuditEntry.objects.for_team(acme).filter(action="deployment.changed").count() == 3


def test_a_plain_variable_cannot_take_a_kept_secrets_name(acme, alice, iris, deployment, calls):
    sv.deployment_change(
        team=acme, actor=alice, deployment=deployment, spec=spec(iris, secrets={"TOKEN": "s"})
    )
    error = refused(
        sv.deployment_change,
        team=acme,
        actor=alice,
        deployment=deployment,
        spec=spec(iris, env={"TOKEN": "plain"}),
    )
    assert (error.status_code, error.field) == (400, "env")


def test_a_change_is_queued_for_the_controller_on_commit(
    acme, alice, iris, deployment, calls, django_capture_on_commit_callbacks
):
    calls["reconcile"].clear()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        sv.deployment_change(team=acme, actor=alice, deployment=deployment, spec=spec(iris))
        assert calls["reconcile"] == []  # not before the commit
    for callback in queued:
        callback()
    assert calls["reconcile"] == [deployment.pk]


def test_a_refused_change_makes_no_revision(acme, alice, iris, deployment, calls):
    refused(
        sv.deployment_change,
        team=acme,
        actor=alice,
        deployment=deployment,
        spec=spec(iris, min_replicas=5, max_replicas=1),
    )
    assert revisions(deployment) == [(1, "created")]


def test_another_teams_deployment_cannot_be_changed(acme, globex, charlie, iris, deployment, calls):
    theirs = make_model_version(globex, charlie, "Theirs", {"m.pkl": b"t"})
    error = refused(
        sv.deployment_change,
        team=globex,
        actor=charlie,
        deployment=deployment,
        spec=spec(theirs),
    )
    assert error.status_code == 404


def test_rollback_copies_that_revisions_spec_into_a_new_revision(
    acme, alice, iris, deployment, calls
):
    v2 = make_model_version(acme, alice, "Iris", {"predict.py": b"def predict(x): return 2\n"})
    sv.deployment_change(
        team=acme,
        actor=alice,
        deployment=deployment,
        spec=spec(v2, max_replicas=4, env={"A": "1"}, secrets={"S": "x"}),
    )
    first = Revision.objects.for_team(acme).get(deployment=deployment, number=1)

    back = sv.deployment_rollback(team=acme, actor=alice, deployment=deployment, revision=first)

    assert (back.number, back.reason) == (3, "rolled back to r1")
    assert (back.model_version, back.max_replicas, back.env, back.secret_names) == (iris, 1, {}, [])
    entry = AuditEntry.objects.for_team(acme).get(action="deployment.rolled_back")
    assert "back to revision 1" in audit_describe(entry)


def test_rollback_to_the_newest_revision_or_anothers_is_refused(
    acme, alice, iris, deployment, calls, globex, charlie
):
    newest = Revision.objects.for_team(acme).get(deployment=deployment)
    error = refused(
        sv.deployment_rollback, team=acme, actor=alice, deployment=deployment, revision=newest
    )
    assert error.status_code == 409

    other = sv.deployment_create(
        team=acme, actor=alice, name="Other", auth_mode="public", spec=spec(iris)
    )
    sv.deployment_change(team=acme, actor=alice, deployment=other, spec=spec(iris))
    foreign = Revision.objects.for_team(acme).get(deployment=other, number=1)
    error = refused(
        sv.deployment_rollback, team=acme, actor=alice, deployment=deployment, revision=foreign
    )
    assert error.status_code == 404


# --- traffic ---------------------------------------------------------------------------


def serving(deployment, number):
    revision = Revision.objects.for_team(deployment.team).get(deployment=deployment, number=number)
    revision.status = Revision.Status.SERVING
    revision.save(update_fields=["status"])
    return revision


def test_traffic_splits_between_serving_revisions_summing_to_100(
    acme, alice, iris, deployment, calls, django_capture_on_commit_callbacks
):
    sv.deployment_change(team=acme, actor=alice, deployment=deployment, spec=spec(iris))
    r1, r2 = serving(deployment, 1), serving(deployment, 2)
    before = route_generation(deployment.pk)

    with django_capture_on_commit_callbacks(execute=True):
        sv.deployment_set_traffic(
            team=acme, actor=alice, deployment=deployment, split={r1.pk: 90, r2.pk: 10}
        )
        assert route_generation(deployment.pk) == before  # not before the commit

    deployment.refresh_from_db()
    assert deployment.traffic == {str(r1.pk): 90, str(r2.pk): 10}
    assert route_generation(deployment.pk) not in (None, before)  # the gateway's routes
    entry = AuditEntry.objects.for_team(acme).get(action="deployment.traffic_set")
    assert "r1 90%, r2 10%" in audit_describe(entry)


def test_traffic_refusals(acme, alice, iris, deployment, calls):
    sv.deployment_change(team=acme, actor=alice, deployment=deployment, spec=spec(iris))
    r1 = serving(deployment, 1)
    r2 = Revision.objects.for_team(acme).get(deployment=deployment, number=2)
    r2.status = Revision.Status.FAILED
    r2.save(update_fields=["status"])

    def split(value):
        return refused(
            sv.deployment_set_traffic, team=acme, actor=alice, deployment=deployment, split=value
        )

    assert split({r1.pk: 90}).field == "traffic"  # not 100
    assert split({r1.pk: 101}).status_code == 400
    assert split({}).status_code == 400
    failed = split({r1.pk: 50, r2.pk: 50})
    assert (failed.status_code, failed.field) == (409, "traffic")
    assert "not serving" in str(failed)
    other = sv.deployment_create(
        team=acme, actor=alice, name="Other", auth_mode="public", spec=spec(iris)
    )
    foreign = serving(other, 1)
    assert split({r1.pk: 50, foreign.pk: 50}).status_code == 400
    deployment.refresh_from_db()
    assert deployment.traffic == {}


def test_traffic_waits_for_a_rollout_under_way(acme, alice, iris, deployment, calls):
    sv.deployment_change(team=acme, actor=alice, deployment=deployment, spec=spec(iris))
    r1 = serving(deployment, 1)  # r2, the rollout, is pending
    error = refused(
        sv.deployment_set_traffic,
        team=acme,
        actor=alice,
        deployment=deployment,
        split={r1.pk: 100},
    )
    assert error.status_code == 409
    assert "being rolled out" in str(error)


# --- settings, delete --------------------------------------------------------------------


def test_update_changes_settings_only_and_keeps_the_slug(acme, alice, deployment, calls):
    updated = sv.deployment_update(
        team=acme,
        actor=alice,
        deployment=deployment,
        name="Flowers",
        auth_mode="public",
        rate_limit_per_minute=0,
    )
    assert (updated.name, updated.slug, updated.auth_mode, updated.rate_limit_per_minute) == (
        "Flowers",
        "iris-api",
        "public",
        0,
    )
    assert revisions(deployment) == [(1, "created")]
    entry = AuditEntry.objects.for_team(acme).get(action="deployment.updated")
    assert "name, auth_mode, rate_limit_per_minute" in audit_describe(entry)

    for kwargs, field in (
        ({"auth_mode": "nobody"}, "auth_mode"),
        ({"rate_limit_per_minute": -1}, "rate_limit_per_minute"),
        ({"name": " "}, "name"),
    ):
        error = refused(
            sv.deployment_update, team=acme, actor=alice, deployment=deployment, **kwargs
        )
        assert (error.status_code, error.field) == (400, field)


def test_delete_stops_everything_soft_deletes_and_revokes_keys(
    acme, alice, deployment, calls, django_capture_on_commit_callbacks
):
    key, _ = sv.key_create(team=acme, actor=alice, deployment=deployment, name="ci")
    before = route_generation(deployment.pk)
    with django_capture_on_commit_callbacks(execute=True):
        sv.deployment_delete(team=acme, actor=alice, deployment=deployment)

    deployment.refresh_from_db()
    assert deployment.deleted_at is not None
    # controller.deployment_stop_all ran: every revision retired, nothing wanted, said so.
    revisions = Revision.objects.for_team(acme).filter(deployment=deployment)
    assert {(r.status, r.replicas_wanted) for r in revisions} == {(Revision.Status.RETIRED, 0)}
    stopped = DeploymentEvent.objects.for_team(acme).get(deployment=deployment, kind="stopped")
    assert stopped.message == "Every replica stops: deleted"
    assert route_generation(deployment.pk) not in (None, before)
    key.refresh_from_db()
    assert key.revoked_at is not None
    # Deleted is gone for every service.
    error = refused(sv.deployment_delete, team=acme, actor=alice, deployment=deployment)
    assert error.status_code == 404


def test_a_member_may_delete_but_a_viewer_may_not(acme, bob, erin, deployment, calls):
    assert (
        refused(sv.deployment_delete, team=acme, actor=erin, deployment=deployment).status_code
        == 403
    )
    sv.deployment_delete(team=acme, actor=bob, deployment=deployment)


# --- keys ------------------------------------------------------------------------------


def test_a_key_is_ldk_and_40_base62_shown_once_and_kept_as_a_hash(acme, alice, deployment, calls):
    key, plaintext = sv.key_create(team=acme, actor=alice, deployment=deployment, name="CI")

    assert re.fullmatch(r"ldk_[A-Za-z0-9]{40}", plaintext)
    assert key.key_hash == hashlib.sha256(plaintext.encode()).hexdigest() == sv.key_hash(plaintext)
    assert key.display_prefix == plaintext[:12]
    stored = DeploymentKey.objects.for_team(acme).filter(pk=key.pk).values().get()
    assert plaintext not in str(stored)
    entry = AuditEntry.objects.for_team(acme).get(action="deployment.key_created")
    assert plaintext not in str(entry.data)
    assert "made the key CI" in audit_describe(entry)


def test_key_refusals_and_revoke(acme, alice, globex, charlie, deployment, calls):
    assert (
        refused(sv.key_create, team=acme, actor=alice, deployment=deployment, name=" ").field
        == "name"
    )
    key, _ = sv.key_create(team=acme, actor=alice, deployment=deployment, name="CI")
    # charlie, in his own team, cannot reach acme's key.
    assert (
        refused(
            sv.key_revoke, team=globex, actor=charlie, deployment=deployment, key=key
        ).status_code
        == 404
    )

    sv.key_revoke(team=acme, actor=alice, deployment=deployment, key=key)
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEntry.objects.for_team(acme).filter(action="deployment.key_revoked").count() == 1
