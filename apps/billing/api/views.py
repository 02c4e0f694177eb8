"""The billing API: the team's plan, usage, spend cap, and Stripe's hosted pages.

Reading needs billing.view (owners, admins), changing needs billing.manage; a
token needs the "billing" area. A refusal by the plan elsewhere in the API is a
402 with a code from apps.billing.entitlements.LIMIT_CODES and ``upgrade_url``.
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, generics
from rest_framework.response import Response

from apps.billing import services
from apps.billing.api import serializers as s
from apps.billing.entitlements import billing_url, checkout_return_urls
from apps.billing.invoices import invoice_list
from apps.billing.models import Plan
from apps.billing.selectors import billing_overview, billing_usage, plan_offered
from apps.teams.api.base import TeamAPIView

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request

    from apps.accounts.models import User


def _user(request: Request) -> User:
    return cast("User", request.user)


@extend_schema(tags=["billing"])
class PlanListView(generics.ListAPIView[Plan]):
    """The plans offered, with what each allows."""

    token_area = "billing"
    serializer_class = s.PlanSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Plan]:
        return Plan.objects.filter(active=True).prefetch_related("machine_types")


@extend_schema(tags=["billing"])
class _BillingView(TeamAPIView):
    token_area = "billing"

    def get_team_queryset(self) -> QuerySet[Any]:
        return Plan.objects.none()


class BillingView(_BillingView):
    """The team's plan, subscription, this period's cost and spend cap; PATCH the cap."""

    team_permissions = {"GET": "billing.view", "PATCH": "billing.manage"}
    serializer_class = s.BillingSerializer

    def _body(self) -> dict[str, Any]:
        overview = billing_overview(self.team)
        return {
            "enabled": overview.enabled,
            "plan": overview.plan,
            "subscription": overview.subscription,
            "grace_ends": overview.grace_ends,
            "period_start": overview.period_start,
            "period_end": overview.period_end,
            "period_cost": overview.period_cost.quantize(Decimal("0.01")),
            "spend_cap": overview.spend_cap,
            "stop_at_cap": overview.stop_at_cap,
        }

    def get(self, request: Request, team_slug: str) -> Response:
        return Response(s.BillingSerializer(self._body()).data)

    def patch(self, request: Request, team_slug: str) -> Response:
        data = s.BillingSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        current = self._body()
        services.spend_cap_set(
            team=self.team,
            actor=_user(request),
            spend_cap=data.validated_data.get("spend_cap", current["spend_cap"]),
            stop_at_cap=data.validated_data.get("stop_at_cap", current["stop_at_cap"]),
        )
        return Response(s.BillingSerializer(self._body()).data)


class UsageView(_BillingView):
    """This period's usage: seconds and cost by kind (notebooks, deployments), by machine
    type, by member, by deployment and by day."""

    team_permissions = {"GET": "billing.view"}
    serializer_class = s.UsageSerializer

    def get(self, request: Request, team_slug: str) -> Response:
        return Response(s.UsageSerializer(asdict(billing_usage(self.team))).data)


class InvoiceListView(_BillingView):
    """The team's most recent invoices at Stripe, newest first (at most 24, no drafts).
    Empty while the team has no Stripe customer, and with billing off."""

    team_permissions = {"GET": "billing.view"}
    serializer_class = s.InvoiceListSerializer

    @extend_schema(
        responses={
            200: s.InvoiceListSerializer,
            503: OpenApiResponse(
                description="Stripe did not answer (error.code billing_unavailable); try later."
            ),
        },
    )
    def get(self, request: Request, team_slug: str) -> Response:
        found = invoice_list(team=self.team, actor=_user(request))
        return Response(
            s.InvoiceListSerializer(
                {"invoices": found.invoices, "has_more": found.has_more},
            ).data
        )


class CheckoutView(_BillingView):
    """Start a Stripe Checkout for a plan; send the person to the ``url`` returned."""

    team_permissions = {"POST": "billing.manage"}
    serializer_class = s.CheckoutSerializer

    @extend_schema(request=s.CheckoutSerializer, responses={201: s.RedirectSerializer})
    def post(self, request: Request, team_slug: str) -> Response:
        data = s.CheckoutSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        plan = plan_offered(data.validated_data["plan"])
        if plan is None:
            raise exceptions.ValidationError({"plan": ["No such plan: see GET /api/v1/plans/."]})
        success_url, cancel_url = checkout_return_urls(self.team.slug, request)
        url = services.checkout_start(
            team=self.team,
            actor=_user(request),
            plan=plan,
            success_url=data.validated_data.get("success_url") or success_url,
            cancel_url=data.validated_data.get("cancel_url") or cancel_url,
        )
        return Response({"url": url}, status=201)


class PortalView(_BillingView):
    """Open Stripe's Customer Portal (payment method, plan change, cancellation)."""

    team_permissions = {"POST": "billing.manage"}
    serializer_class = s.PortalSerializer

    @extend_schema(request=s.PortalSerializer, responses={201: s.RedirectSerializer})
    def post(self, request: Request, team_slug: str) -> Response:
        data = s.PortalSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        url = services.portal_open(
            team=self.team,
            actor=_user(request),
            return_url=data.validated_data.get("return_url")
            or billing_url(self.team.slug, request),
        )
        return Response({"url": url}, status=201)
