"""Shapes of the billing API. No logic here: services and selectors compute."""

from __future__ import annotations

from rest_framework import serializers

from apps.billing.invoices import STATUSES
from apps.billing.models import Plan, Subscription


class PlanSerializer(serializers.ModelSerializer[Plan]):
    machine_types: serializers.ManyRelatedField = serializers.SlugRelatedField(  # type: ignore[assignment]
        many=True, read_only=True, slug_field="slug"
    )

    class Meta:
        model = Plan
        fields = [
            "slug",
            "name",
            "description",
            "monthly_price",
            "machine_types",
            "max_running_notebooks",
            "storage_gib",
            "seats",
            "max_idle_minutes",
            "max_session_hours",
            "private_datasets",
            "max_deployments",
            "max_replicas",
            "is_default",
        ]
        read_only_fields = fields


class SubscriptionSerializer(serializers.ModelSerializer[Subscription]):
    plan: serializers.SlugRelatedField[Plan] = serializers.SlugRelatedField(
        read_only=True, slug_field="slug"
    )

    class Meta:
        model = Subscription
        fields = [
            "stripe_id",
            "plan",
            "status",
            "current_period_start",
            "current_period_end",
            "cancel_at_period_end",
            "past_due_since",
        ]
        read_only_fields = fields


class BillingSerializer(serializers.Serializer[dict[str, object]]):
    enabled = serializers.BooleanField(read_only=True)
    plan = PlanSerializer(read_only=True, allow_null=True)
    subscription = SubscriptionSerializer(read_only=True, allow_null=True)
    grace_ends = serializers.DateTimeField(read_only=True, allow_null=True)
    period_start = serializers.DateTimeField(read_only=True)
    period_end = serializers.DateTimeField(read_only=True)
    period_cost = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    spend_cap = serializers.DecimalField(
        max_digits=10, decimal_places=2, allow_null=True, required=False
    )
    stop_at_cap = serializers.BooleanField(required=False)


class UsageTotalSerializer(serializers.Serializer[dict[str, object]]):
    name = serializers.CharField()
    seconds = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=12, decimal_places=4)


class UsageSerializer(serializers.Serializer[dict[str, object]]):
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    seconds = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=12, decimal_places=4)
    by_machine_type = UsageTotalSerializer(many=True)
    by_member = UsageTotalSerializer(many=True)
    by_kind = UsageTotalSerializer(many=True, help_text="Notebooks and Deployments.")
    by_deployment = UsageTotalSerializer(
        many=True, help_text="Replica-seconds and cost per deployment, by its name."
    )
    by_day = UsageTotalSerializer(many=True)


class CheckoutSerializer(serializers.Serializer[dict[str, object]]):
    plan = serializers.SlugField(help_text="The plan's slug, from GET /api/v1/plans/.")
    success_url = serializers.URLField(required=False)
    cancel_url = serializers.URLField(required=False)


class PortalSerializer(serializers.Serializer[dict[str, object]]):
    return_url = serializers.URLField(required=False)


class RedirectSerializer(serializers.Serializer[dict[str, object]]):
    url = serializers.URLField(help_text="Send the person here (Stripe's hosted page).")


class InvoiceSerializer(serializers.Serializer[dict[str, object]]):
    """One invoice at Stripe. Amounts are integers in the currency's smallest unit
    (cents; the unit itself for zero-decimal currencies such as JPY)."""

    id = serializers.CharField(help_text="Stripe's invoice id (in_...).")
    number = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=STATUSES)
    created = serializers.DateTimeField()
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    currency = serializers.CharField(help_text="ISO 4217, lower case (usd).")
    total = serializers.IntegerField()
    amount_due = serializers.IntegerField()
    amount_paid = serializers.IntegerField()
    amount_remaining = serializers.IntegerField()
    hosted_invoice_url = serializers.URLField(
        allow_null=True, help_text="Stripe's page to see and pay it."
    )
    invoice_pdf = serializers.URLField(allow_null=True, help_text="Stripe's PDF of it.")


class InvoiceListSerializer(serializers.Serializer[dict[str, object]]):
    invoices = InvoiceSerializer(many=True, help_text="Newest first; drafts are left out.")
    has_more = serializers.BooleanField(
        help_text="Stripe holds older invoices (see them in the Customer Portal)."
    )
