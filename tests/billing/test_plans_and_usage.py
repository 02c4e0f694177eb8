"""Billing: usage derived from sessions at the price of the time, usage sent to Stripe
once, the plan's limits and the spend cap enforced by the services, and who may see
and change billing."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from apps.billing import metering
from apps.billing.entitlements import PlanLimitError, check_storage, current_plan
from apps.billing.models import BillingAccount, Subscription, UsageReport
from apps.billing.services import BillingError, machine_price_set, spend_cap_set
from apps.billing.usage import duration_text, usage_cost, usage_pieces
from apps.core.tenancy import team_scope
from apps.notebooks import lifecycle
from apps.notebooks.models import Notebook, NotebookSession
from apps.notebooks.services import notebook_create, notebook_start
from apps.teams.invitations import InvitationError, invitation_create
from apps.teams.models import Role
from tests.billing_fixtures import plan_slug, subscribe
from tests.factories import NotebookSessionFactory, UserFactory, add_member
from tests.notebook_fixtures import host_for_every_type

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 10, 9, 0, 0, tzinfo=UTC)


def _notebook(team, actor, machine, name="Work") -> Notebook:
    return notebook_create(
        team=team, actor=actor, name=name, template="scipy", machine_type=machine
    )


def _session(team, notebook, user, start, end=None, *, status="stopped") -> NotebookSession:
    return NotebookSessionFactory.create(
        notebook=notebook, started_by=user, started_at=start, ended_at=end, status=status
    )


def _ten_minutes_used(team, person, machine_type) -> None:
    """Ten minutes of ``machine_type`` used by ``person`` this period, ended 20 minutes ago."""
    now = timezone.now()
    notebook = _notebook(team, person, machine_type)
    _session(team, notebook, person, now - timedelta(minutes=30), now - timedelta(minutes=20))


class TestUsage:
    def test_a_session_of_1h_2m_3s_bills_exactly_that_many_seconds(self, acme, alice, priced):
        notebook = _notebook(acme, alice, priced)
        _session(acme, notebook, alice, T0, T0 + timedelta(hours=1, minutes=2, seconds=3))

        with team_scope(acme):
            pieces = usage_pieces(acme, T0 - timedelta(days=1), T0 + timedelta(days=1))
            cost = usage_cost(acme, T0 - timedelta(days=1), T0 + timedelta(days=1))

        assert sum(p.seconds for p in pieces) == 3723
        assert {p.hourly_price for p in pieces} == {Decimal("36.00")}
        assert cost == Decimal("37.23")

    def test_a_price_change_mid_period_bills_each_part_at_its_own_price(self, acme, alice, priced):
        notebook = _notebook(acme, alice, priced)
        machine_price_set(
            machine_type=priced,
            hourly_price=Decimal("72.00"),
            effective_from=T0 + timedelta(hours=1),
        )
        # Two hours across the change, then one hour after it.
        _session(acme, notebook, alice, T0, T0 + timedelta(hours=2))
        _session(acme, notebook, alice, T0 + timedelta(hours=3), T0 + timedelta(hours=4))

        with team_scope(acme):
            pieces = usage_pieces(acme, T0, T0 + timedelta(days=1))
            cost = usage_cost(acme, T0, T0 + timedelta(days=1))

        assert [(p.seconds, p.hourly_price) for p in pieces] == [
            (3600, Decimal("36.00")),
            (3600, Decimal("72.00")),
            (3600, Decimal("72.00")),
        ]
        assert cost == Decimal("36.00") + Decimal("72.00") * 2

    def test_only_the_part_inside_the_period_counts(self, acme, alice, priced):
        notebook = _notebook(acme, alice, priced)
        _session(acme, notebook, alice, T0 - timedelta(minutes=30), T0 + timedelta(minutes=30))

        with team_scope(acme):
            pieces = usage_pieces(acme, T0, T0 + timedelta(days=1))

        assert sum(p.seconds for p in pieces) == 1800

    def test_a_running_session_counts_up_to_now(self, acme, alice, priced):
        notebook = _notebook(acme, alice, priced)
        _session(acme, notebook, alice, T0, None, status="running")

        with team_scope(acme):
            pieces = usage_pieces(acme, T0, T0 + timedelta(days=1), now=T0 + timedelta(minutes=5))

        assert sum(p.seconds for p in pieces) == 300

    def test_a_session_across_midnight_is_split_by_day(self, acme, alice, priced):
        notebook = _notebook(acme, alice, priced)
        night = T0.replace(hour=23)
        _session(acme, notebook, alice, night, night + timedelta(hours=2))

        with team_scope(acme):
            pieces = usage_pieces(acme, T0, T0 + timedelta(days=2))

        assert [(str(p.day), p.seconds) for p in pieces] == [
            ("2026-03-10", 3600),
            ("2026-03-11", 3600),
        ]

    def test_a_future_price_does_not_change_todays(self, catalogue):
        machine = catalogue["cpu-small"]
        before = machine.hourly_price

        machine_price_set(
            machine_type=machine,
            hourly_price=Decimal("9.99"),
            effective_from=timezone.now() + timedelta(days=3),
        )

        machine.refresh_from_db()
        assert machine.hourly_price == before


class TestUsageToStripe:
    @pytest.fixture
    def subscribed(self, stripe_double, acme, alice, priced):
        subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        now = timezone.now()
        with team_scope(acme):
            Subscription.objects.filter(stripe_id=subscription_id).update(
                current_period_start=now - timedelta(hours=3),
                current_period_end=now + timedelta(days=27),
            )
        return now

    def _held_by_stripe(self, double) -> int:
        return sum(int(e["payload"]["value"]) for e in double.meter_events)

    def test_usage_is_sent_once_as_cents(self, stripe_double, acme, alice, priced, subscribed):
        notebook = _notebook(acme, alice, priced)
        start = subscribed - timedelta(hours=2)
        _session(acme, notebook, alice, start, start + timedelta(hours=1, minutes=2, seconds=3))

        with team_scope(acme):
            assert metering.usage_sync(acme) == 3723
            assert metering.usage_sync(acme) == 0  # nothing new

        assert len(stripe_double.meter_events) == 1
        event = stripe_double.meter_events[0]
        assert event["event_name"] == "lattice_usage_cents"
        assert event["payload"]["value"] == "3723"
        with team_scope(acme):
            assert metering.usage_reconcile(acme) == (3723, 3723)
            account = BillingAccount.objects.get(team=acme)
        assert account.usage_stripe_cents == 3723

    def test_resending_after_a_crash_creates_no_duplicates(
        self, stripe_double, acme, alice, priced, subscribed
    ):
        notebook = _notebook(acme, alice, priced)
        start = subscribed - timedelta(hours=2)
        _session(acme, notebook, alice, start, start + timedelta(minutes=10))
        with team_scope(acme):
            metering.usage_sync(acme)
            # The crash: Stripe took the event, Lattice died before recording that it had.
            UsageReport.objects.update(sent_at=None)

            assert metering.usage_sync(acme) == 600  # sent again...

        assert len(stripe_double.meter_events) == 1  # ...and counted once
        assert self._held_by_stripe(stripe_double) == 600
        with team_scope(acme):
            assert UsageReport.objects.filter(sent_at__isnull=False).count() == 1
            assert metering.usage_reconcile(acme) == (600, 600)

    def test_later_usage_sends_only_the_difference(
        self, stripe_double, acme, alice, priced, subscribed
    ):
        notebook = _notebook(acme, alice, priced)
        start = subscribed - timedelta(hours=2)
        _session(acme, notebook, alice, start, start + timedelta(minutes=10))
        with team_scope(acme):
            metering.usage_sync(acme)
        _session(
            acme, notebook, alice, start + timedelta(minutes=20), start + timedelta(minutes=25)
        )

        with team_scope(acme):
            assert metering.usage_sync(acme) == 300

        assert [e["payload"]["value"] for e in stripe_double.meter_events] == ["600", "300"]
        assert len({e["identifier"] for e in stripe_double.meter_events}) == 2

    def test_a_fraction_of_a_cent_waits_until_it_is_whole(
        self, stripe_double, acme, alice, catalogue, subscribed
    ):
        machine = catalogue["cpu-small"]  # $0.04 an hour
        notebook = _notebook(acme, alice, machine)
        start = subscribed - timedelta(hours=2)
        _session(acme, notebook, alice, start, start + timedelta(minutes=10))

        with team_scope(acme):
            assert metering.usage_sync(acme) == 0

        assert stripe_double.meter_events == []

    def test_a_free_team_sends_nothing(self, stripe_double, acme, alice, catalogue):
        with team_scope(acme):
            assert metering.usage_sync(acme) == 0
        assert stripe_double.meter_events == []

    def test_a_period_start_moving_back_bills_nothing_twice(
        self, stripe_double, acme, alice, priced, subscribed
    ):
        notebook = _notebook(acme, alice, priced)
        _session(acme, notebook, alice, subscribed - timedelta(hours=2), subscribed)
        with team_scope(acme):
            assert metering.usage_sync(acme, now=subscribed) == 7200
            # A plan change restarts the period an hour back, over time already reported.
            Subscription.objects.update(current_period_start=subscribed - timedelta(hours=1))

            assert metering.usage_sync(acme, now=subscribed + timedelta(minutes=5)) == 0

        assert self._held_by_stripe(stripe_double) == 7200

    def test_a_new_period_closes_the_old_one_dated_inside_it(
        self, stripe_double, acme, alice, priced, subscribed
    ):
        notebook = _notebook(acme, alice, priced)
        minutes = lambda n: subscribed + timedelta(minutes=n)  # noqa: E731
        _session(acme, notebook, alice, minutes(-90), minutes(-20))
        with team_scope(acme):
            assert metering.usage_sync(acme, now=minutes(-60)) == 1800
            # The period renews 30 minutes ago; the sweep runs ten minutes after that.
            Subscription.objects.update(
                current_period_start=minutes(-30), current_period_end=minutes(-30 + 30 * 24 * 60)
            )
            assert metering.usage_sync(acme, now=minutes(-20)) == 2400

        dated = [(e["timestamp"], int(e["payload"]["value"])) for e in stripe_double.meter_events]
        assert dated == [
            (int(minutes(-60).timestamp()) - 1, 1800),
            (int(minutes(-30).timestamp()) - 1, 1800),  # the old period's last half hour
            (int(minutes(-20).timestamp()) - 1, 600),  # the new one's first ten minutes
        ]

    def test_the_usage_up_to_a_cancellation_is_still_sent(
        self, stripe_double, acme, alice, priced, subscribed
    ):
        notebook = _notebook(acme, alice, priced)
        _session(acme, notebook, alice, subscribed - timedelta(hours=1), subscribed)
        with team_scope(acme):
            subscription = Subscription.objects.get()
        stripe_double.cancel_subscription(subscription.stripe_id)

        with team_scope(acme):
            cancelled = Subscription.objects.get()
            assert cancelled.status == "canceled"
            assert cancelled.ended_at is not None
            # (Stripe's period starts at checkout, a moment ago; the test's, 3 hours ago.)
            Subscription.objects.update(current_period_start=subscribed - timedelta(hours=3))
            assert metering.usage_sync(acme) == 3600
            assert metering.usage_sync(acme) == 0

        assert self._held_by_stripe(stripe_double) == 3600


class TestPlanLimits:
    @pytest.fixture(autouse=True)
    def _hosts(self, catalogue):
        # A host here offers every type: these starts are judged by the plan alone.
        host_for_every_type()

    def test_a_free_team_cannot_start_a_gpu_the_plan_lacks(
        self, stripe_double, acme, alice, catalogue
    ):
        notebook = _notebook(acme, alice, catalogue["p5000"])

        with team_scope(acme), pytest.raises(PlanLimitError) as refused:
            notebook_start(team=acme, actor=alice, notebook=notebook)

        assert refused.value.code == "plan_machine_type"
        assert str(refused.value) == (
            "Quadro P5000 is not included in the Free plan. Upgrade to Pro or Growth to use it."
        )
        assert refused.value.upgrade_url == f"/t/{acme.slug}/billing/"
        notebook.refresh_from_db()
        assert notebook.desired_state == Notebook.Desired.STOPPED  # nothing half-written
        with team_scope(acme):
            assert NotebookSession.objects.count() == 0

    def test_the_free_gpu_starts(self, stripe_double, acme, alice, catalogue):
        notebook = _notebook(acme, alice, catalogue["free-gpu"])

        with team_scope(acme):
            session = notebook_start(team=acme, actor=alice, notebook=notebook)

        assert session.status == "queued"

    def test_the_plans_concurrency_is_enforced(self, stripe_double, acme, alice, catalogue, client):
        first = _notebook(acme, alice, catalogue["free-cpu"], name="One")
        second = _notebook(acme, alice, catalogue["free-cpu"], name="Two")
        with team_scope(acme):
            notebook_start(team=acme, actor=alice, notebook=first)
        client.force_login(alice)

        response = client.post(f"/api/v1/teams/{acme.slug}/notebooks/{second.pk}/start/")

        assert response.status_code == 402
        assert response.json()["error"]["code"] == "plan_concurrency"
        assert "runs 1 notebook at once" in response.json()["error"]["message"]

    def test_upgrading_lifts_the_limit(self, stripe_double, acme, alice, catalogue):
        notebook = _notebook(acme, alice, catalogue["p5000"])
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")

        with team_scope(acme):
            session = notebook_start(team=acme, actor=alice, notebook=notebook)

        assert session.status == "queued"

    def test_the_html_refusal_links_to_the_plans(
        self, stripe_double, acme, alice, catalogue, client
    ):
        notebook = _notebook(acme, alice, catalogue["h100-80gb"])
        client.force_login(alice)

        response = client.post(f"/t/{acme.slug}/notebooks/{notebook.pk}/start/", follow=True)

        page = response.content.decode()
        assert "H100 80 GB is not included in the Free plan. Upgrade to Growth to use it." in page
        assert f'href="/t/{acme.slug}/billing/" class="upgrade-link"' in page

    def test_with_billing_off_every_machine_starts(self, acme, alice, catalogue, settings):
        settings.LATTICE_BILLING = False
        notebook = _notebook(acme, alice, catalogue["h100-80gb"])

        with team_scope(acme):
            assert current_plan(acme) is None
            assert notebook_start(team=acme, actor=alice, notebook=notebook).status == "queued"

    def test_seats_count_members_and_pending_invitations(self, stripe_double, acme, alice):
        # Free has 3 seats: alice and bob, and room for one more.
        with team_scope(acme):
            invitation_create(
                team=acme, actor=alice, email="c@example.com", role="member", link_base="http://x"
            )
            with pytest.raises(InvitationError) as refused:
                invitation_create(
                    team=acme, actor=alice, email="d@example.com", role="member", link_base="x"
                )
        assert refused.value.code == "seats"

    def test_seats_refused_in_the_api_and_pages_say_where_to_upgrade(
        self, stripe_double, acme, alice, client
    ):
        client.force_login(alice)
        api = f"/api/v1/teams/{acme.slug}/invitations/"
        first = client.post(
            api, {"email": "c@example.com", "role": "member"}, content_type="application/json"
        )
        assert first.status_code == 201

        refused = client.post(
            api, {"email": "d@example.com", "role": "member"}, content_type="application/json"
        )

        assert refused.status_code == 402
        error = refused.json()["error"]
        assert error["code"] == "seats"
        assert error["upgrade_url"] == f"http://testserver/t/{acme.slug}/billing/"
        page = client.post(
            f"/t/{acme.slug}/invitations/",
            {"email": "e@example.com", "role": "member"},
            follow=True,
        ).content.decode()
        assert "has no seats left on its plan" in page
        assert 'class="upgrade-link"' in page

    def test_the_machine_picker_says_which_plan_a_machine_needs(
        self, stripe_double, acme, alice, client, catalogue
    ):
        client.force_login(alice)

        page = client.get(f"/t/{acme.slug}/notebooks/new/").content.decode()

        def row(slug: str) -> str:  # the picker's choice for one machine type
            found = page[page.index(f'data-testid="machine-{slug}"') :]
            return found[: found.index("</label>")]

        assert "<strong>Free GPU (M4000)</strong>" in row("free-gpu")
        assert "· free" in row("free-gpu")
        assert "plan-note" not in row("free-gpu")
        assert "8 vCPU · 30 GiB RAM" in row("p5000")
        assert "$0.78/h" in row("p5000")
        assert 'data-testid="plan-note">needs Pro<' in row("p5000")
        assert "$5.95/h" in row("h100-80gb")
        assert 'data-testid="plan-note">needs Growth<' in row("h100-80gb")

    def test_storage_is_refused_up_front_with_the_room_left(self, stripe_double, acme):
        gib = 1024**3
        with team_scope(acme):
            check_storage(acme, used_bytes=4 * gib, adding_bytes=gib)  # exactly 5 GiB: fine
            with pytest.raises(PlanLimitError) as refused:
                check_storage(acme, used_bytes=4 * gib, adding_bytes=gib + 1)
        assert refused.value.code == "plan_storage"
        assert "has 1.00 GiB free" in str(refused.value)

    def test_idle_shutdown_is_capped_by_the_plan(self, stripe_double, acme, alice, catalogue):
        notebook = _notebook(acme, alice, catalogue["free-cpu"])
        notebook.idle_timeout_minutes = 0  # never
        notebook.save()

        with team_scope(acme):
            assert lifecycle.idle_timeout(notebook) == 60

    def test_the_notebook_list_shows_the_plans_cap_too(
        self, stripe_double, acme, alice, catalogue, client
    ):
        from apps.notebooks.services import team_notebook_settings_update

        _notebook(acme, alice, catalogue["free-cpu"])  # the team's default applies
        with team_scope(acme):
            team_notebook_settings_update(team=acme, actor=alice, idle_timeout_minutes=0)
        client.force_login(alice)

        body = client.get(f"/api/v1/teams/{acme.slug}/notebooks/").json()

        assert [n["effective_idle_timeout_minutes"] for n in body["results"]] == [60]

    def test_a_session_past_the_plans_cap_is_stopped(self, stripe_double, acme, alice, catalogue):
        long = _notebook(acme, alice, catalogue["free-cpu"], name="Long")
        short = _notebook(acme, alice, catalogue["free-gpu"], name="Short")
        now = timezone.now()
        old = _session(acme, long, alice, now - timedelta(hours=7), status="running")
        new = _session(acme, short, alice, now - timedelta(hours=1), status="running")

        with team_scope(acme):
            assert metering.plan_enforce(acme) == 1

        old.refresh_from_db()
        new.refresh_from_db()
        assert old.status in {"stopping", "stopped"}
        assert old.exit_reason == "plan_limit"
        assert new.status == "running"

    def test_after_a_downgrade_paid_machines_stop(self, stripe_double, acme, alice, catalogue):
        subscription_id = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        paid = _notebook(acme, alice, catalogue["p5000"])
        session = _session(acme, paid, alice, timezone.now(), status="running")

        stripe_double.cancel_subscription(subscription_id)
        with team_scope(acme):
            assert metering.plan_enforce(acme) == 1

        session.refresh_from_db()
        assert session.exit_reason == "plan_limit"


class TestSpendCap:
    @pytest.fixture(autouse=True)
    def _hosts(self, catalogue):
        # A host here offers every type: these starts are judged by the plan alone.
        host_for_every_type()

    def test_at_the_cap_nothing_new_starts(self, stripe_double, acme, alice, priced, catalogue):
        notebook = _notebook(acme, alice, priced)
        now = timezone.now()
        _session(acme, notebook, alice, now - timedelta(minutes=20), now - timedelta(minutes=10))
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        with team_scope(acme):
            Subscription.objects.update(current_period_start=now - timedelta(hours=1))
            spend_cap_set(team=acme, actor=alice, spend_cap="5", stop_at_cap=False)

            with pytest.raises(PlanLimitError) as refused:
                notebook_start(team=acme, actor=alice, notebook=notebook)

        assert refused.value.code == "spend_cap"
        assert "used $6.00 of its $5.00 spend cap" in str(refused.value)

    def test_alerts_at_50_80_100_once_each_then_running_machines_stop(
        self, stripe_double, acme, alice, priced, django_capture_on_commit_callbacks
    ):
        notebook = _notebook(acme, alice, priced)
        now = timezone.now()
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        with team_scope(acme):
            Subscription.objects.update(current_period_start=now - timedelta(hours=2))
            spend_cap_set(team=acme, actor=alice, spend_cap="10", stop_at_cap=True)
        running = _session(acme, notebook, alice, now - timedelta(seconds=550), status="running")
        mail.outbox.clear()

        def sweep(at: datetime) -> int:
            with team_scope(acme), django_capture_on_commit_callbacks(execute=True):
                return metering.spend_cap_enforce(acme, now=at)

        assert sweep(now) == 50  # $5.50
        assert sweep(now) == 50
        assert sweep(now + timedelta(seconds=300)) == 80  # $8.50
        assert running.__class__.objects.for_team(acme).get(pk=running.pk).status == "running"
        assert sweep(now + timedelta(seconds=460)) == 100  # $10.10

        subjects = [m.subject for m in mail.outbox]
        assert subjects == [
            "[Lattice] Acme has used 50% of its spend cap",
            "[Lattice] Acme has used 80% of its spend cap",
            "[Lattice] Acme has used 100% of its spend cap",
        ]
        assert "Running notebooks are being stopped." in mail.outbox[-1].body
        running.refresh_from_db()
        assert running.exit_reason == "spend_cap"

    def test_a_zero_cap_still_lets_free_machines_run(
        self, stripe_double, acme, alice, catalogue, django_capture_on_commit_callbacks
    ):
        free = _notebook(acme, alice, catalogue["free-cpu"])
        with team_scope(acme):
            spend_cap_set(team=acme, actor=alice, spend_cap="0", stop_at_cap=True)
            session = notebook_start(team=acme, actor=alice, notebook=free)
            assert session.status == "queued"
            NotebookSession.objects.filter(pk=session.pk).update(
                status="running", started_at=timezone.now() - timedelta(minutes=5)
            )
            with django_capture_on_commit_callbacks(execute=True):
                assert metering.spend_cap_enforce(acme) == 0
            session.refresh_from_db()
        assert session.ended_at is None
        assert session.status == "running"
        assert mail.outbox == []

    def test_a_restart_refused_by_the_cap_leaves_the_notebook_stopped(
        self, stripe_double, acme, alice, priced, django_capture_on_commit_callbacks
    ):
        from apps.notebooks.lifecycle import session_end
        from apps.notebooks.models import NotebookEvent

        notebook = _notebook(acme, alice, priced)
        now = timezone.now()
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        with team_scope(acme):
            Subscription.objects.update(current_period_start=now - timedelta(hours=1))
            session = _session(acme, notebook, alice, now - timedelta(minutes=20), status="running")
            Notebook.objects.filter(pk=notebook.pk).update(desired_state="running")
            spend_cap_set(team=acme, actor=alice, spend_cap="5", stop_at_cap=False)

            # The restart's old session ends; starting it again is refused at the cap.
            with django_capture_on_commit_callbacks(execute=True):
                session_end(session, reason="restarted")

            notebook.refresh_from_db()
            assert notebook.desired_state == Notebook.Desired.STOPPED
            assert NotebookSession.objects.filter(ended_at__isnull=True).count() == 0
            event = NotebookEvent.objects.filter(notebook=notebook).first()
            assert event is not None
            assert event.message.startswith("Not started again: This team has used $")

    def test_a_bad_cap_is_refused_with_a_reason(self, stripe_double, acme, alice, client):
        client.force_login(alice)
        url = f"/api/v1/teams/{acme.slug}/billing/"

        for bad in ("-1", "lots", "1e12"):
            response = client.patch(url, {"spend_cap": bad}, content_type="application/json")
            assert response.status_code == 400, bad
            assert "spend_cap" in response.json()["error"]["fields"]
        with team_scope(acme), pytest.raises(BillingError):
            spend_cap_set(team=acme, actor=alice, spend_cap="NaN", stop_at_cap=False)
        assert BillingAccount.objects.for_team(acme).filter(spend_cap__isnull=False).count() == 0

    def test_the_api_sets_and_reads_the_cap(self, stripe_double, acme, alice, client):
        client.force_login(alice)
        url = f"/api/v1/teams/{acme.slug}/billing/"

        response = client.patch(
            url, {"spend_cap": "250", "stop_at_cap": True}, content_type="application/json"
        )

        assert response.status_code == 200
        body = response.json()
        assert body["spend_cap"] == "250.00"
        assert body["stop_at_cap"] is True
        assert body["plan"]["slug"] == "free"
        assert body["enabled"] is True


class TestCheckoutAndPortal:
    def test_checkout_through_the_api_and_back(self, stripe_double, acme, alice, client):
        stripe_double.hold_webhooks = True  # the return page applies it, not the webhook
        client.force_login(alice)

        response = client.post(
            f"/api/v1/teams/{acme.slug}/billing/checkout/",
            {"plan": "growth"},
            content_type="application/json",
        )

        assert response.status_code == 201
        url = response.json()["url"]
        assert url.startswith(f"{stripe_double.url}/checkout/cs_")
        session_id = url.rsplit("/", 1)[-1]
        session = stripe_double.checkout_sessions[session_id]
        assert session["mode"] == "subscription"
        assert session["client_reference_id"] == str(acme.pk)
        prices = [i["price"]["id"] for i in stripe_double.checkout_details[session_id].line_items]
        assert prices == ["price_lattice_growth_monthly", "price_lattice_usage_cents"]
        stripe_double.complete_checkout(session_id)

        page = client.get(f"/t/{acme.slug}/billing/?checkout=success&session_id={session_id}")

        assert "is now on Growth" in page.content.decode()
        with team_scope(acme):
            assert plan_slug(acme) == "growth"

    def test_the_upgrade_button_returns_with_the_session_and_shows_the_plan_at_once(
        self, stripe_double, acme, alice, client
    ):
        """Stripe fills ``{CHECKOUT_SESSION_ID}`` into the success URL only when it reads the
        braces literally; the return page then applies the session before any webhook."""
        stripe_double.hold_webhooks = True  # the return page applies it, not the webhook
        client.force_login(alice)

        to_stripe = client.post(f"/t/{acme.slug}/billing/checkout/", {"plan": "pro"})

        assert to_stripe.status_code == 303
        session_id = to_stripe["Location"].rstrip("/").rsplit("/", 1)[-1]
        success_url = stripe_double.checkout_sessions[session_id]["success_url"]
        assert success_url.endswith("session_id={CHECKOUT_SESSION_ID}"), success_url
        returned = _pay_on_checkout(stripe_double, session_id)
        assert returned == success_url.replace("{CHECKOUT_SESSION_ID}", session_id)

        page = client.get(returned.removeprefix("http://testserver")).content.decode()

        assert 'data-testid="current-plan">Pro<' in page
        assert "is now on Pro" in page
        assert 'data-testid="upgrade-pro"' not in page
        with team_scope(acme):
            assert plan_slug(acme) == "pro"

        # The webhooks come late and apply the same subscription again: nothing doubles.
        stripe_double.hold_webhooks = False
        for event in list(stripe_double.events):
            stripe_double.resend(event["id"])
        client.get(returned.removeprefix("http://testserver"))  # a reload applies it again too
        assert stripe_double.webhook_statuses
        assert set(stripe_double.webhook_statuses) == {200}
        with team_scope(acme):
            assert Subscription.objects.count() == 1
            assert plan_slug(acme) == "pro"

    def test_a_second_checkout_is_sent_to_the_portal(self, stripe_double, acme, alice, client):
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        client.force_login(alice)

        response = client.post(
            f"/api/v1/teams/{acme.slug}/billing/checkout/",
            {"plan": "growth"},
            content_type="application/json",
        )
        assert response.status_code == 409
        assert "Manage billing" in response.json()["error"]["message"]

        portal = client.post(
            f"/api/v1/teams/{acme.slug}/billing/portal/", content_type="application/json"
        )
        assert portal.status_code == 201
        assert portal.json()["url"].startswith(f"{stripe_double.url}/portal/bps_")

    def test_an_unknown_plan_is_a_400(self, stripe_double, acme, alice, client):
        client.force_login(alice)
        response = client.post(
            f"/api/v1/teams/{acme.slug}/billing/checkout/",
            {"plan": "gold"},
            content_type="application/json",
        )
        assert response.status_code == 400
        assert response.json()["error"]["fields"]["plan"] == [
            "No such plan: see GET /api/v1/plans/."
        ]

    def test_the_free_plan_cannot_be_bought(self, stripe_double, acme, alice, client):
        client.force_login(alice)
        response = client.post(
            f"/api/v1/teams/{acme.slug}/billing/checkout/",
            {"plan": "free"},
            content_type="application/json",
        )
        assert response.status_code == 400
        assert stripe_double.checkout_sessions == {}
        assert plan_slug(acme) == "free"

    def test_stripe_down_is_a_503_not_a_traceback(self, stripe_double, acme, alice, client):
        stripe_double.stop()
        client.force_login(alice)
        response = client.post(
            f"/api/v1/teams/{acme.slug}/billing/checkout/",
            {"plan": "pro"},
            content_type="application/json",
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "billing_unavailable"


class TestWhoSeesBilling:
    @pytest.fixture
    def dave(self, acme):
        dave = UserFactory.create(email="dave@example.com")
        add_member(acme, dave, Role.ADMIN)
        return dave

    def test_members_and_viewers_cannot_see_or_change_billing(
        self, stripe_double, acme, bob, erin, client
    ):
        for person in (bob, erin):
            client.force_login(person)
            for path in ("", "usage/"):
                assert client.get(f"/t/{acme.slug}/billing/{path}").status_code == 403
            for path in ("checkout/", "portal/", "cap/"):
                assert client.post(f"/t/{acme.slug}/billing/{path}").status_code == 403
            api = f"/api/v1/teams/{acme.slug}/billing/"
            assert client.get(api).status_code == 403
            assert client.get(f"{api}usage/").status_code == 403
            assert (
                client.patch(api, {"spend_cap": "1"}, content_type="application/json").status_code
                == 403
            )
            assert client.post(f"{api}checkout/", {"plan": "pro"}).status_code == 403
            page = client.get(f"/t/{acme.slug}/").content.decode()
            assert f"/t/{acme.slug}/billing/" not in page
        assert BillingAccount.objects.for_team(acme).filter(spend_cap__isnull=False).count() == 0
        assert stripe_double.checkout_sessions == {}

    def test_an_admin_manages_billing(self, stripe_double, acme, dave, client):
        client.force_login(dave)

        response = client.post(f"/t/{acme.slug}/billing/checkout/", {"plan": "pro"})

        assert response.status_code == 303
        assert response["Location"].startswith(f"{stripe_double.url}/checkout/")

    def test_the_usage_page_shows_machines_members_and_days(
        self, stripe_double, acme, alice, priced, client
    ):
        _ten_minutes_used(acme, alice, priced)
        client.force_login(alice)

        page = client.get(f"/t/{acme.slug}/billing/usage/").content.decode()
        body = client.get(f"/api/v1/teams/{acme.slug}/billing/usage/").json()

        assert "CPU large" in page
        assert "alice@example.com" in page
        assert "<rect" in page
        assert body["seconds"] == 600
        assert Decimal(body["cost"]) == Decimal("6.00")
        assert body["by_machine_type"][0]["name"] == "CPU large"
        assert body["by_member"][0]["name"] == "alice@example.com"

    def test_with_billing_off_the_usage_page_says_nothing_is_charged(
        self, stripe_double, acme, alice, priced, client, settings
    ):
        _ten_minutes_used(acme, alice, priced)
        client.force_login(alice)
        billed = client.get(f"/t/{acme.slug}/billing/usage/").content.decode()
        settings.LATTICE_BILLING = False

        page = client.get(f"/t/{acme.slug}/billing/usage/").content.decode()

        # The same figures, said for what they are: list prices, not a charge.
        assert 'data-testid="usage-unbilled"' not in billed
        assert "billed by the second" in billed
        assert "Billing is off on this Lattice: nothing is charged." in page
        assert "billed by the second" not in page
        assert "$6.00" in page

    def test_a_period_without_usage_says_so_instead_of_a_blank_chart(
        self, stripe_double, acme, alice, client
    ):
        client.force_login(alice)

        page = client.get(f"/t/{acme.slug}/billing/usage/").content.decode()

        assert 'data-testid="usage-chart-empty"' in page
        assert "No usage this period yet." in page
        assert (
            "<svg"
            not in page.split('data-testid="usage-chart-empty"', 1)[0].rsplit(
                '<figure class="usage-chart"', 1
            )[-1]
        )

    def test_seconds_of_usage_show_as_seconds_not_zero_hours(
        self, stripe_double, acme, alice, priced, client
    ):
        notebook = _notebook(acme, alice, priced)
        now = timezone.now()
        _session(acme, notebook, alice, now - timedelta(minutes=5), now - timedelta(seconds=285))
        client.force_login(alice)

        page = client.get(f"/t/{acme.slug}/billing/usage/").content.decode()
        body = client.get(f"/api/v1/teams/{acme.slug}/billing/usage/").json()

        rows = [
            page.split(f'data-testid="{t}"', 1)[1].split("</table>", 1)[0]
            for t in ("by-machine", "by-member")
        ]
        for row in rows:
            assert "<td>15 s</td>" in row
            assert "0.00</td>" not in row.replace("$0.15", "")
        assert "usage-chart-empty" not in page
        assert "<rect" in page
        assert body["seconds"] == 15  # the API's numbers stay numbers
        assert body["by_machine_type"][0]["seconds"] == 15

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (0, "0 s"),
            (15, "15 s"),
            (59, "59 s"),
            (60, "1 min"),
            (754, "12 min 34 s"),
            (3599, "59 min 59 s"),
            (3600, "1.00 h"),
            (5400, "1.50 h"),
            (3723, "1.03 h"),
        ],
    )
    def test_durations_read_in_the_unit_that_fits(self, seconds, text):
        assert duration_text(seconds) == text


def _pay_on_checkout(double, session_id: str) -> str:
    """Press Subscribe on the double's hosted Checkout page; where Stripe sends the browser."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    pay = urllib.request.Request(  # noqa: S310 - the local double, over http
        f"{double.url}/checkout/{session_id}/pay", data=b"", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(pay)
    assert answer.value.code == 303
    return str(answer.value.headers["Location"])
