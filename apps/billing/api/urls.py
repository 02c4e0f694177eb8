"""The billing API's routes.

``urlpatterns`` is the public plan list (/api/v1/plans/); ``team_urlpatterns`` are a
team's billing routes, relative to the team prefix that config.api_urls writes once
(/api/v1/teams/<team_slug>/).
"""

from __future__ import annotations

from django.urls import path

from apps.billing.api import views

urlpatterns = [
    path("plans/", views.PlanListView.as_view(), name="plans"),
]

team_urlpatterns = [
    path("billing/", views.BillingView.as_view(), name="billing"),
    path("billing/usage/", views.UsageView.as_view(), name="billing_usage"),
    path("billing/invoices/", views.InvoiceListView.as_view(), name="billing_invoices"),
    path("billing/checkout/", views.CheckoutView.as_view(), name="billing_checkout"),
    path("billing/portal/", views.PortalView.as_view(), name="billing_portal"),
]
