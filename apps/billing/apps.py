from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import AppConfig

# The audit log's words for what billing records (apps.core.audit.audit_describe).
AUDIT_PHRASES = {
    "billing.checkout_started": "{actor} went to checkout for the {target} plan",
    "billing.portal_opened": "{actor} opened the Stripe billing portal",
    "billing.spend_cap_changed": "{actor} changed the spend cap",
    "billing.subscription_changed": "The subscription to {target} is now {status}",
}

if TYPE_CHECKING:
    from apps.machines.models import MachineType


class BillingConfig(AppConfig):
    name = "apps.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # The plan's checks, plugged into the apps below billing that call them
        # (apps.core.hooks): their defaults are "no limit", as with LATTICE_BILLING off.
        from django.urls import reverse

        from apps.accounts.hooks import example_urls
        from apps.billing import entitlements, selectors, services
        from apps.billing.entitlements import billing_url
        from apps.core.audit import audit_phrases
        from apps.datasets import entitlements as datasets
        from apps.deployments import entitlements as deployments
        from apps.jobs.costs import run_costs as job_costs
        from apps.machines.hooks import machine_type_added
        from apps.notebooks import entitlements as notebooks
        from apps.teams.hooks import period_spend, period_spends
        from apps.teams.seats import seats_free, seats_upgrade_url

        notebooks.check_start.register(entitlements.check_start)
        notebooks.idle_limit.register(entitlements.idle_limit)
        notebooks.run_limit.register(entitlements.session_limit)
        notebooks.machine_notes.register(entitlements.machine_notes)
        # What running notebooks cost so far, and the team's spend (dashboard, overview).
        notebooks.session_costs.register(selectors.running_costs)
        job_costs.register(selectors.job_run_costs)
        period_spend.register(selectors.period_spend)
        period_spends.register(selectors.period_spends)
        datasets.check_storage.register(entitlements.check_storage)
        datasets.check_private_dataset.register(entitlements.check_private_dataset)
        deployments.check_replicas.register(entitlements.check_replicas)
        deployments.check_deployment.register(entitlements.check_deployment)

        # Seats are the plan's: a team out of them is sent to its billing page.
        seats_free.register(entitlements.seats_free)
        seats_upgrade_url.register(lambda team: billing_url(team.slug))

        @machine_type_added.register
        def first_price(machine_type: MachineType) -> None:
            # A new machine type's price holds from now on (Billing > Machine prices).
            services.machine_price_set(
                machine_type=machine_type, hourly_price=machine_type.hourly_price
            )

        # A new token of the billing area is shown a curl of the plans on offer.
        example_urls.register("billing", lambda _team: reverse("api:plans"))
        # The audit log says what this app records in words.
        for action, phrase in AUDIT_PHRASES.items():
            audit_phrases.register(action, phrase)
