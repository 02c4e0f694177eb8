from __future__ import annotations

from typing import Any

from django.contrib import admin

from apps.billing.models import (
    BillingAccount,
    MachinePrice,
    Plan,
    StripeEvent,
    Subscription,
    UsageReport,
)
from apps.billing.services import machine_price_set


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "monthly_price",
        "stripe_price_id",
        "max_running_notebooks",
        "storage_gib",
        "seats",
        "max_deployments",
        "max_replicas",
        "is_default",
        "active",
    )
    list_editable = ("active",)
    filter_horizontal = ("machine_types",)
    prepopulated_fields = {"slug": ("name",)}


@admin.register(MachinePrice)
class MachinePriceAdmin(admin.ModelAdmin):
    """Add a row to change a price from a moment on; rows are not edited afterwards."""

    list_display = ("machine_type", "hourly_price", "effective_from", "created_at")
    list_filter = ("machine_type",)
    fields = ("machine_type", "hourly_price", "effective_from")

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        machine_price_set(
            machine_type=obj.machine_type,
            hourly_price=obj.hourly_price,
            effective_from=obj.effective_from,
        )


class _ReadOnly(admin.ModelAdmin):
    """Rows written only from what Stripe says, or what we told it."""

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        # What Stripe was told, or told us: deleting it would make Lattice tell it again.
        return False


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    list_display = ("team", "stripe_customer_id", "spend_cap", "stop_at_cap", "usage_checked_at")
    readonly_fields = (
        "team",
        "stripe_customer_id",
        "cap_alert_period",
        "cap_alert_percent",
        "usage_checked_at",
        "usage_sent_cents",
        "usage_stripe_cents",
    )

    def get_queryset(self, request: Any) -> Any:
        return BillingAccount.objects.unscoped().select_related("team")


@admin.register(Subscription)
class SubscriptionAdmin(_ReadOnly):
    list_display = ("stripe_id", "team", "plan", "status", "current_period_end", "past_due_since")
    list_filter = ("status", "plan")

    def get_queryset(self, request: Any) -> Any:
        return Subscription.objects.unscoped().select_related("team", "plan")


@admin.register(StripeEvent)
class StripeEventAdmin(_ReadOnly):
    list_display = ("stripe_id", "type", "outcome", "attempts", "received_at", "processed_at")
    list_filter = ("outcome", "type")
    search_fields = ("stripe_id",)


@admin.register(UsageReport)
class UsageReportAdmin(_ReadOnly):
    list_display = ("identifier", "team", "cents", "covers_until", "sent_at")

    def get_queryset(self, request: Any) -> Any:
        return UsageReport.objects.unscoped().select_related("team")
