"""Billing of deployments: replica-seconds metered by the same code as notebook sessions,
the plan's limits on deployments, replicas and machine types (the deployments app's
entitlement hooks), and the spend cap pausing deployments and resuming them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from apps.billing import metering, tasks
from apps.billing.entitlements import PlanLimitError
from apps.billing.models import Plan, Subscription
from apps.billing.selectors import billing_overview, billing_usage
from apps.billing.services import machine_price_set, spend_cap_set
from apps.billing.usage import teams_usage_costs, usage_cost, usage_pieces
from apps.core.tenancy import team_scope
from apps.deployments import controller
from apps.deployments import entitlements as hooks
from apps.deployments.models import Deployment, Replica, Revision
from apps.notebooks.models import NotebookSession
from apps.notebooks.services import notebook_create
from tests.billing_fixtures import subscribe
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 10, 9, 0, 0, tzinfo=UTC)


def _deployment(team, machine, name="Sentiment", *, status="ready") -> Deployment:
    deployment = Deployment.objects.for_team(team).create(
        team=team, name=name, slug=name.lower().replace(" ", "-"), status=status
    )
    Revision.objects.for_team(team).create(
        team=team,
        deployment=deployment,
        number=1,
        machine_type=machine,
        status=Revision.Status.SERVING,
        min_replicas=1,
        max_replicas=2,
    )
    return deployment


def _replica(deployment, start, end=None) -> Replica:
    revision = Revision.objects.for_team(deployment.team_id).get(deployment=deployment, number=1)
    return Replica.objects.for_team(deployment.team).create(
        team=deployment.team,
        deployment=deployment,
        revision=revision,
        machine_type=revision.machine_type,
        status=Replica.Status.READY if end is None else Replica.Status.STOPPED,
        started_at=start,
        ended_at=end,
    )


def _session(team, user, machine, start, end) -> NotebookSession:
    notebook = notebook_create(
        team=team, actor=user, name="Work", template="scipy", machine_type=machine
    )
    return NotebookSession.objects.for_team(team).create(
        team=team,
        notebook=notebook,
        machine_type=machine,
        started_by=user,
        template="scipy",
        image="lattice/notebook",
        jupyter_token="t",
        status="stopped",
        started_at=start,
        ended_at=end,
    )


class TestReplicaSeconds:
    def test_a_replica_bills_its_seconds_as_a_deployment_piece(self, acme, priced):
        deployment = _deployment(acme, priced)
        _replica(deployment, T0, T0 + timedelta(hours=1, minutes=2, seconds=3))

        with team_scope(acme):
            pieces = usage_pieces(acme, T0 - timedelta(days=1), T0 + timedelta(days=1))
            cost = usage_cost(acme, T0 - timedelta(days=1), T0 + timedelta(days=1))

        assert [(p.kind, p.label, p.member, p.seconds) for p in pieces] == [
            ("deployment", "Sentiment", "(deployments)", 3723)
        ]
        assert cost == Decimal("37.23")

    def test_sessions_and_replicas_add_up_in_one_reading(self, acme, alice, priced):
        _session(acme, alice, priced, T0, T0 + timedelta(minutes=10))
        deployment = _deployment(acme, priced)
        # Two replicas at once: each second of each is billed.
        _replica(deployment, T0 + timedelta(minutes=5), T0 + timedelta(minutes=15))
        _replica(deployment, T0 + timedelta(minutes=5), T0 + timedelta(minutes=15))

        with team_scope(acme):
            pieces = usage_pieces(acme, T0, T0 + timedelta(days=1))
            cost = usage_cost(acme, T0, T0 + timedelta(days=1))

        assert [(p.kind, p.seconds) for p in pieces] == [
            ("notebook", 600),
            ("deployment", 600),
            ("deployment", 600),
        ]
        assert cost == Decimal("18.00")

    def test_an_open_replica_counts_up_to_now_and_an_unstarted_one_not_at_all(self, acme, priced):
        deployment = _deployment(acme, priced)
        _replica(deployment, T0, None)
        _replica(deployment, None, None)  # still placing

        with team_scope(acme):
            pieces = usage_pieces(acme, T0, T0 + timedelta(days=1), now=T0 + timedelta(minutes=5))

        assert [p.seconds for p in pieces] == [300]

    def test_a_replica_is_split_at_midnight_and_at_a_price_change(self, acme, priced):
        machine_price_set(
            machine_type=priced, hourly_price=Decimal("72.00"), effective_from=T0.replace(hour=23)
        )
        deployment = _deployment(acme, priced)
        _replica(deployment, T0.replace(hour=22), T0.replace(hour=22) + timedelta(hours=3))

        with team_scope(acme):
            pieces = usage_pieces(acme, T0 - timedelta(days=1), T0 + timedelta(days=2))

        assert [(p.day.isoformat(), p.seconds, p.hourly_price) for p in pieces] == [
            ("2026-03-10", 3600, Decimal("36.00")),
            ("2026-03-10", 3600, Decimal("72.00")),
            ("2026-03-11", 3600, Decimal("72.00")),
        ]

    def test_each_team_is_charged_its_own_replicas(self, acme, priced):
        other = TeamFactory.create(name="Other", slug="other")
        _replica(_deployment(acme, priced), T0, T0 + timedelta(minutes=10))
        _replica(_deployment(other, priced), T0, T0 + timedelta(minutes=1))
        period = (T0, T0 + timedelta(days=1))

        costs = teams_usage_costs({acme.pk: period, other.pk: period}, now=T0 + timedelta(hours=1))

        assert costs == {acme.pk: Decimal("6.00"), other.pk: Decimal("0.60")}

    def test_the_usage_page_and_api_show_deployment_lines(
        self, stripe_double, acme, alice, priced, client
    ):
        now = timezone.now()
        _session(acme, alice, priced, now - timedelta(minutes=30), now - timedelta(minutes=20))
        _replica(
            _deployment(acme, priced), now - timedelta(minutes=40), now - timedelta(minutes=20)
        )
        client.force_login(alice)

        body = client.get(f"/api/v1/teams/{acme.slug}/billing/usage/").json()
        page = client.get(f"/t/{acme.slug}/billing/usage/")

        assert (body["seconds"], body["cost"]) == (1800, "18.0000")
        assert [(t["name"], t["seconds"], t["cost"]) for t in body["by_kind"]] == [
            ("Deployments", 1200, "12.0000"),
            ("Notebooks", 600, "6.0000"),
        ]
        assert [(t["name"], t["seconds"]) for t in body["by_deployment"]] == [("Sentiment", 1200)]
        assert ("(deployments)", 1200) in [(t["name"], t["seconds"]) for t in body["by_member"]]
        html = page.content.decode()
        assert 'data-testid="by-deployment"' in html
        assert "<td>Sentiment</td><td>20 min</td><td>$12.00</td>" in html
        with team_scope(acme):
            assert billing_usage(acme).cost == billing_overview(acme).period_cost == Decimal(18)

    def test_replica_seconds_are_sent_to_stripe(self, stripe_double, acme, alice, priced):
        subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        now = timezone.now()
        with team_scope(acme):
            Subscription.objects.filter(stripe_id=subscription_id).update(
                current_period_start=now - timedelta(hours=3),
                current_period_end=now + timedelta(days=27),
            )
        _replica(_deployment(acme, priced), now - timedelta(hours=2), now - timedelta(hours=1))

        with team_scope(acme):
            assert metering.usage_sync(acme) == 3600

        assert [e["payload"]["value"] for e in stripe_double.meter_events] == ["3600"]


class TestDeploymentLimits:
    """With billing on, a team without a subscription is on Free: one deployment of one
    replica, free machines only (apps.billing.plans)."""

    def test_the_plan_counts_deployments_through_the_hook(self, stripe_double, acme, catalogue):
        with team_scope(acme):
            hooks.check_deployment(acme)  # none yet
            _deployment(acme, catalogue["free-cpu"], "First")
            gone = _deployment(acme, catalogue["free-cpu"], "Gone")
            Deployment.objects.for_team(acme).filter(pk=gone.pk).update(deleted_at=timezone.now())

            with pytest.raises(PlanLimitError) as refused:
                hooks.check_deployment(acme)

        assert refused.value.status_code == 402
        assert refused.value.code == "plan_deployments"
        assert str(refused.value) == (
            "The Free plan has 1 deployment, and this team has that many. Delete one, or "
            "upgrade for more."
        )
        assert refused.value.upgrade_url == f"/t/{acme.slug}/billing/"

    def test_replicas_past_the_plans_maximum_are_refused(self, stripe_double, acme, catalogue):
        with team_scope(acme):
            hooks.check_replicas(acme, catalogue["free-cpu"], 1)
            with pytest.raises(PlanLimitError) as refused:
                hooks.check_replicas(acme, catalogue["free-cpu"], 2)

        assert refused.value.code == "plan_replicas"
        assert str(refused.value) == (
            "The Free plan runs at most 1 replica of a deployment; this asks for 2. Lower the "
            "maximum replicas. Upgrade to Pro or Growth for more."
        )
        assert refused.value.upgrade_url == f"/t/{acme.slug}/billing/"

    def test_a_gpu_the_plan_lacks_is_refused_and_an_upgrade_allows_it(
        self, stripe_double, acme, alice, catalogue
    ):
        with team_scope(acme), pytest.raises(PlanLimitError) as refused:
            hooks.check_replicas(acme, catalogue["p5000"], 1)
        assert refused.value.code == "plan_machine_type"
        assert "Upgrade to Pro or Growth to use it." in str(refused.value)

        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        with team_scope(acme):
            hooks.check_replicas(acme, catalogue["p5000"], 3)
            with pytest.raises(PlanLimitError) as more:
                hooks.check_replicas(acme, catalogue["p5000"], 4)
        assert more.value.code == "plan_replicas"
        assert "Upgrade to Growth for more." in str(more.value)

    def test_the_plans_show_their_deployment_limits(self, stripe_double, acme, alice, client):
        client.force_login(alice)

        plans = client.get("/api/v1/plans/").json()
        page = client.get(f"/t/{acme.slug}/billing/").content.decode()

        assert [(p["slug"], p["max_deployments"], p["max_replicas"]) for p in plans] == [
            ("free", 1, 1),
            ("pro", 3, 3),
            ("growth", 20, 10),
        ]
        assert '<td data-testid="plan-deployments">1, up to 1 replica each</td>' in page
        assert '<td data-testid="plan-deployments">20, up to 10 replicas each</td>' in page

    def test_blank_limits_mean_none(self, stripe_double, acme, catalogue):
        # What a plan made before these limits existed (or by an admin) has.
        Plan.objects.update(max_deployments=None, max_replicas=None)
        with team_scope(acme):
            for name in ("One", "Two", "Three"):
                _deployment(acme, catalogue["free-cpu"], name)
            hooks.check_deployment(acme)
            hooks.check_replicas(acme, catalogue["free-cpu"], 50)

    def test_at_the_spend_cap_no_paid_replica_starts(
        self, stripe_double, acme, alice, priced, catalogue
    ):
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        now = timezone.now()
        _replica(
            _deployment(acme, priced), now - timedelta(minutes=20), now - timedelta(minutes=10)
        )
        with team_scope(acme):
            Subscription.objects.update(current_period_start=now - timedelta(hours=1))
            spend_cap_set(team=acme, actor=alice, spend_cap="5", stop_at_cap=False)

            with pytest.raises(PlanLimitError) as refused:
                hooks.check_replicas(acme, priced, 1)
            hooks.check_replicas(acme, catalogue["free-cpu"], 1)  # free: the cap allows it

        assert refused.value.code == "spend_cap"
        assert "used $6.00 of its $5.00 spend cap" in str(refused.value)

    def test_with_billing_off_nothing_is_limited(self, settings, acme, catalogue):
        settings.LATTICE_BILLING = False
        with team_scope(acme):
            for name in ("One", "Two"):
                _deployment(acme, catalogue["h100-80gb"], name)
            hooks.check_deployment(acme)
            hooks.check_replicas(acme, catalogue["h100-80gb"], 20)


@pytest.fixture
def control(monkeypatch):
    """The control helper's deployment_pause/resume, doubled here until it lands: each
    call is recorded and does what the controller's does to the row (the lead rewires
    this at merge; the controller's own tests cover what else it does)."""
    calls: list[tuple[str, int, str]] = []

    def pause(deployment, reason):
        calls.append(("pause", deployment.pk, reason))
        Deployment.objects.for_team(deployment.team_id).filter(pk=deployment.pk).update(
            status=Deployment.Status.PAUSED, paused_reason=reason
        )

    def resume(deployment):
        calls.append(("resume", deployment.pk, ""))
        Deployment.objects.for_team(deployment.team_id).filter(pk=deployment.pk).update(
            status=Deployment.Status.DEPLOYING, paused_reason=""
        )

    monkeypatch.setattr(controller, "deployment_pause", pause)
    monkeypatch.setattr(controller, "deployment_resume", resume)
    return calls


class TestPlanPausesDeployments:
    def test_after_a_downgrade_a_paid_gpu_deployment_pauses_until_changed(
        self, stripe_double, control, acme, alice, catalogue
    ):
        subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        gpu = _deployment(acme, catalogue["p5000"], "Vision")
        with team_scope(acme):
            assert metering.plan_enforce(acme) == 0
        assert control == []

        stripe_double.cancel_subscription(subscription_id)
        with team_scope(acme):
            assert metering.plan_enforce(acme) == 1
            assert metering.plan_enforce(acme) == 0  # paused already

        reason = (
            "The team's plan does not allow this deployment: the Free plan does not include "
            "Quadro P5000. It resumes once the plan includes it (an upgrade), or after a "
            "change to a machine type the plan includes."
        )
        assert control == [("pause", gpu.pk, reason)]
        # A change to a free machine type (its newest revision) lets it run again.
        Revision.objects.for_team(acme).create(
            team=acme, deployment=gpu, number=2, machine_type=catalogue["free-cpu"]
        )
        with team_scope(acme):
            metering.plan_enforce(acme)
        assert [(kind, pk) for kind, pk, _ in control] == [("pause", gpu.pk), ("resume", gpu.pk)]

    def test_more_replicas_than_the_plan_runs_pause_it_and_an_upgrade_resumes_it(
        self, stripe_double, control, acme, alice, catalogue
    ):
        wide = _deployment(acme, catalogue["free-cpu"], "Wide")  # max_replicas 2; Free runs 1
        capped = _deployment(acme, catalogue["free-cpu"], "Capped", status="paused")
        Deployment.objects.for_team(acme).filter(pk=capped.pk).update(
            paused_reason="The team's spend cap is reached ($1.00 of $1.00 this billing period)."
        )

        with team_scope(acme):
            metering.plan_enforce(acme)
        assert [(kind, pk) for kind, pk, _ in control] == [("pause", wide.pk)]
        assert (
            "the Free plan runs at most 1 replica of a deployment and this one may run 2"
            in (control[0][2])
        )

        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        with team_scope(acme):
            metering.plan_enforce(acme)
        # The one the cap paused stays for the cap to resume.
        assert [(kind, pk) for kind, pk, _ in control] == [("pause", wide.pk), ("resume", wide.pk)]


class TestSpendCapPausesDeployments:
    @pytest.fixture
    def capped(self, stripe_double, acme, alice):
        """Pro, a period that began two hours ago, a $10 cap that does not stop notebooks."""
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        with team_scope(acme):
            Subscription.objects.update(current_period_start=timezone.now() - timedelta(hours=2))
            spend_cap_set(team=acme, actor=alice, spend_cap="10", stop_at_cap=False)
        mail.outbox.clear()

    def _sweep(self, team, django_capture_on_commit_callbacks, at=None) -> int:
        with team_scope(team), django_capture_on_commit_callbacks(execute=True):
            return metering.spend_cap_enforce(team, now=at)

    def test_replica_seconds_reach_the_cap_and_pause_the_paid_deployments(
        self, capped, control, acme, priced, catalogue, django_capture_on_commit_callbacks
    ):
        now = timezone.now()
        paid = _deployment(acme, priced, "Sentiment")
        free = _deployment(acme, catalogue["free-cpu"], "Free one")
        deleted = _deployment(acme, priced, "Deleted")
        Deployment.objects.for_team(acme).filter(pk=deleted.pk).update(deleted_at=now)
        # Only replicas ran: 1010 replica-seconds at a cent a second.
        _replica(paid, now - timedelta(seconds=1010))
        _replica(free, now - timedelta(hours=1))

        assert self._sweep(acme, django_capture_on_commit_callbacks, at=now) == 100

        assert [(kind, pk) for kind, pk, _ in control] == [("pause", paid.pk)]
        reason = control[0][2]
        ends = Subscription.objects.for_team(acme).get().current_period_end
        assert reason == (
            "The team's spend cap is reached ($10.10 of $10.00 this billing period). It "
            "resumes when an owner or admin raises or removes the cap, or when the next period "
            f"starts ({ends:%d %b})."
        )
        assert [m.subject for m in mail.outbox] == ["[Lattice] Acme has used 100% of its spend cap"]
        assert (
            "Deployments are paused until then (scaled to zero; their endpoints answer 503): "
            "Sentiment." in mail.outbox[0].body
        )
        assert "Running notebooks are being stopped." not in mail.outbox[0].body

        # The next sweep: paused already, nothing called or mailed again.
        assert self._sweep(acme, django_capture_on_commit_callbacks, at=now) == 100
        assert len(control) == 1
        assert len(mail.outbox) == 1

    def test_below_the_cap_nothing_is_paused(
        self, capped, control, acme, priced, django_capture_on_commit_callbacks
    ):
        now = timezone.now()
        _replica(_deployment(acme, priced), now - timedelta(seconds=900))

        assert self._sweep(acme, django_capture_on_commit_callbacks, at=now) == 80
        assert control == []
        assert "Deployments are paused" not in mail.outbox[0].body

    def test_a_raised_cap_resumes_what_the_cap_paused_and_nothing_else(
        self, capped, control, acme, alice, priced, django_capture_on_commit_callbacks
    ):
        now = timezone.now()
        paid = _deployment(acme, priced, "Sentiment")
        _replica(paid, now - timedelta(seconds=1010), now - timedelta(seconds=10))
        other = _deployment(acme, priced, "Held", status=Deployment.Status.PAUSED)
        Deployment.objects.for_team(acme).filter(pk=other.pk).update(
            paused_reason="Paused: the plan no longer includes CPU large."
        )
        self._sweep(acme, django_capture_on_commit_callbacks, at=now)
        assert [(kind, pk) for kind, pk, _ in control] == [("pause", paid.pk)]

        # A cap the spend still reaches resumes nothing.
        with team_scope(acme), django_capture_on_commit_callbacks(execute=True):
            spend_cap_set(team=acme, actor=alice, spend_cap="5", stop_at_cap=False)
        assert len(control) == 1

        # Raised above it: resumed at once, not at the next sweep.
        with team_scope(acme), django_capture_on_commit_callbacks(execute=True):
            spend_cap_set(team=acme, actor=alice, spend_cap="50", stop_at_cap=False)
        assert [(kind, pk) for kind, pk, _ in control] == [("pause", paid.pk), ("resume", paid.pk)]
        assert self._sweep(acme, django_capture_on_commit_callbacks, at=now) == 0
        assert len(control) == 2
        assert Deployment.objects.for_team(acme).get(pk=other.pk).status == "paused"

    def test_a_removed_cap_resumes_them_at_the_sweep_too(
        self, capped, control, acme, alice, priced, django_capture_on_commit_callbacks
    ):
        now = timezone.now()
        paid = _deployment(acme, priced)
        _replica(paid, now - timedelta(seconds=1010), now - timedelta(seconds=10))
        self._sweep(acme, django_capture_on_commit_callbacks, at=now)

        with team_scope(acme):
            spend_cap_set(team=acme, actor=alice, spend_cap=None, stop_at_cap=False)
        assert self._sweep(acme, django_capture_on_commit_callbacks, at=now) == 0

        assert [(kind, pk) for kind, pk, _ in control] == [("pause", paid.pk), ("resume", paid.pk)]

    def test_a_lifted_cap_does_not_resume_what_the_plan_no_longer_allows(
        self, stripe_double, control, acme, alice, priced, django_capture_on_commit_callbacks
    ):
        """R11: paused by the cap, then a downgrade the deployment does not fit (the Free
        plan lacks its machine type): lifting the cap pauses it for the plan instead of
        resuming it, and an upgrade resumes it."""
        subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        with team_scope(acme):
            Subscription.objects.update(current_period_start=timezone.now() - timedelta(hours=2))
            spend_cap_set(team=acme, actor=alice, spend_cap="10", stop_at_cap=False)
        now = timezone.now()
        paid = _deployment(acme, priced, "Sentiment")
        _replica(paid, now - timedelta(seconds=1010), now - timedelta(seconds=10))
        self._sweep(acme, django_capture_on_commit_callbacks, at=now)
        assert [(kind, pk) for kind, pk, _ in control] == [("pause", paid.pk)]

        stripe_double.cancel_subscription(subscription_id)
        with team_scope(acme), django_capture_on_commit_callbacks(execute=True):
            spend_cap_set(team=acme, actor=alice, spend_cap=None, stop_at_cap=False)

        assert [(kind, pk) for kind, pk, _ in control] == [("pause", paid.pk), ("pause", paid.pk)]
        assert control[1][2].startswith(
            "The team's plan does not allow this deployment: the Free plan does not include "
            "CPU large."
        )
        paused = Deployment.objects.for_team(acme).get(pk=paid.pk)
        assert (paused.status, paused.paused_reason) == (Deployment.Status.PAUSED, control[1][2])
        # The plan holds it now: an upgrade lets it run again.
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        with team_scope(acme):
            metering.plan_enforce(acme)
        assert [kind for kind, _, _ in control] == ["pause", "pause", "resume"]

    def test_the_sweep_visits_a_team_whose_only_usage_is_a_replica(
        self, stripe_double, acme, priced, monkeypatch
    ):
        swept = []
        monkeypatch.setattr(tasks, "team_sweep", lambda team: swept.append(team.slug))
        _replica(_deployment(acme, priced), timezone.now() - timedelta(minutes=1))

        tasks.sweep()

        assert swept == [acme.slug]
