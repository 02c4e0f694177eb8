"""Billing pages under /t/<team_slug>/billing/, and Stripe's webhook endpoint.

Owners and admins see billing (billing.view) and change it (billing.manage);
members and viewers get 403, outsiders 404 (apps.teams.scope).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.billing import services, stripe_api, webhooks
from apps.billing.entitlements import billing_enabled, billing_url, checkout_return_urls
from apps.billing.invoices import UNAVAILABLE, InvoicePage, invoice_list
from apps.billing.models import Plan
from apps.billing.selectors import billing_overview, billing_usage, plan_offered
from apps.billing.usage import duration_text
from apps.core.pages import page_action
from apps.teams.views import TeamPage

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.http import HttpRequest

    from apps.accounts.models import User


def _user(request: HttpRequest) -> User:
    return cast("User", request.user)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Stripe's deliveries: 400 for a bad or stale signature (nothing stored), else 200."""
    try:
        webhooks.event_receive(request.body, request.headers.get("Stripe-Signature", ""))
    except webhooks.WebhookRejectedError as exc:
        return JsonResponse({"error": {"code": "bad_signature", "message": str(exc)}}, status=400)
    return JsonResponse({"received": True})


class BillingPage(TeamPage):
    permission = "billing.view"

    def back_url(self) -> str:
        return reverse("billing:overview", kwargs={"team_slug": self.team.slug})

    def back(self) -> HttpResponse:
        return redirect(self.back_url())


class BillingOverviewView(BillingPage):
    template_name = "billing/overview.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        checkout = request.GET.get("checkout", "")
        if checkout == "success":
            # Apply the new subscription now; the webhook does the same, whichever is first.
            services.checkout_sync(team=self.team, session_id=request.GET.get("session_id", ""))
        overview = billing_overview(self.team)
        invoices = self._invoices(request) if overview.enabled else None
        plans = list(
            Plan.objects.filter(active=True)
            .prefetch_related("machine_types")
            .order_by("sort_order", "monthly_price")
        )
        response = self.page(
            request,
            section="billing",
            billing_enabled=overview.enabled,
            checkout=checkout,
            subscription=overview.subscription,
            plan=overview.plan,
            plans=plans,
            account=overview.account,
            grace_ends=overview.grace_ends,
            period_start=overview.period_start,
            period_end=overview.period_end,
            spent=overview.period_cost,
            invoices=invoices,
            invoices_unavailable=UNAVAILABLE if overview.enabled and invoices is None else "",
            cap_percent=overview.cap_percent,
        )
        # Its Upgrade and Manage forms answer with a redirect to Stripe's hosted pages,
        # which the CSP's form-action must allow.
        response._csp_update = {"form-action": ["'self'", *stripe_api.hosted_page_origins()]}  # type: ignore[attr-defined]
        return response

    def _invoices(self, request: HttpRequest) -> InvoicePage | None:
        """The team's recent invoices, or None when Stripe cannot give them now: the page
        says so and shows everything else (invoice_list has logged why)."""
        try:
            return invoice_list(team=self.team, actor=_user(request))
        except services.BillingUnavailableError:
            return None


class BillingAction(BillingPage):
    http_method_names = ["post"]
    permission = "billing.manage"

    def attempt(self, request: HttpRequest, action: Callable[[], HttpResponse]) -> HttpResponse:
        """Run ``action`` (a service call that answers with its own response); show its
        refusal on the billing page (apps.core.pages.page_action)."""
        return page_action(request, action, back=self.back_url())

    def to_stripe(self, request: HttpRequest, hosted_page: Callable[[], str]) -> HttpResponse:
        """Send the person (303) to the Stripe page whose address ``hosted_page``, a service
        call, returns; its refusal is shown on the billing page."""
        return self.attempt(request, lambda: HttpResponseRedirect(hosted_page(), status=303))


class CheckoutView(BillingAction):
    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        plan = plan_offered(request.POST.get("plan", ""))
        if plan is None:
            messages.error(request, "Choose one of the plans offered.")
            return self.back()
        success_url, cancel_url = checkout_return_urls(self.team.slug, request)
        return self.to_stripe(
            request,
            lambda: services.checkout_start(
                team=self.team,
                actor=_user(request),
                plan=plan,
                success_url=success_url,
                cancel_url=cancel_url,
            ),
        )


class PortalView(BillingAction):
    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        return self.to_stripe(
            request,
            lambda: services.portal_open(
                team=self.team,
                actor=_user(request),
                return_url=billing_url(self.team.slug, request),
            ),
        )


class SpendCapView(BillingAction):
    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        def go() -> HttpResponse:
            account = services.spend_cap_set(
                team=self.team,
                actor=_user(request),
                spend_cap=request.POST.get("spend_cap", "").strip().lstrip("$") or None,
                stop_at_cap=request.POST.get("stop_at_cap") == "on",
            )
            messages.success(
                request,
                f"Spend cap set to ${account.spend_cap:,.2f} a period."
                if account.spend_cap is not None
                else "Spend cap removed.",
            )
            return self.back()

        return self.attempt(request, go)


class UsageView(BillingPage):
    template_name = "billing/usage.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        usage = billing_usage(self.team)
        days = usage.by_day
        top = max((d.cost for d in days), default=Decimal(0))
        return self.page(
            request,
            section="billing",
            period_start=usage.period_start,
            period_end=usage.period_end,
            total_cost=usage.cost,
            total_seconds=usage.seconds,
            total_duration=duration_text(usage.seconds),
            by_machine=usage.by_machine_type,
            by_member=usage.by_member,
            by_kind=usage.by_kind,
            by_deployment=usage.by_deployment,
            account=services.account_for(self.team) if billing_enabled() else None,
            billing_on=billing_enabled(),
            chart_width=len(days) * 10,
            chart_top=top,
            days=[_bar(i, d.name, d.cost, top) for i, d in enumerate(days)],
        )


def _bar(index: int, day: str, cost: Decimal, top: Decimal) -> dict[str, Any]:
    height = float(cost / top) * 100 if top else 0.0
    return {
        "day": day,
        "cost": cost,
        "x": index * 10 + 1,
        "y": f"{100 - height:.2f}",
        "height": f"{height:.2f}",
    }
