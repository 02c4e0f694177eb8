from __future__ import annotations

from django.urls import path

from apps.billing import views

app_name = "billing"

urlpatterns = [
    # Fixed: this is the address given to Stripe (docs/billing.md).
    path("billing/stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
    path("t/<slug:team_slug>/billing/", views.BillingOverviewView.as_view(), name="overview"),
    path("t/<slug:team_slug>/billing/checkout/", views.CheckoutView.as_view(), name="checkout"),
    path("t/<slug:team_slug>/billing/portal/", views.PortalView.as_view(), name="portal"),
    path("t/<slug:team_slug>/billing/cap/", views.SpendCapView.as_view(), name="cap"),
    path("t/<slug:team_slug>/billing/usage/", views.UsageView.as_view(), name="usage"),
]
