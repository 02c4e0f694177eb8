from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "apps.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from apps.billing.entitlements import billing_url
        from apps.teams.seats import seats_upgrade_url

        # Seats are the plan's: a team out of them is sent to its billing page.
        seats_upgrade_url.register(lambda team: billing_url(team.slug))
