"""Email to the people who look after a team's billing (its owners and admins)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail import send_mail

from apps.billing.entitlements import billing_url
from apps.teams.selectors import member_emails_with

if TYPE_CHECKING:
    from apps.teams.models import Team


def billing_link(team: Team) -> str:
    """The billing page's address, for mail sent where no request gives the host."""
    hosts = [h for h in settings.ALLOWED_HOSTS if h and h != "*" and not h.startswith(".")]
    host = hosts[0] if hosts else "localhost"
    path = billing_url(team.slug)
    return f"{settings.ACCOUNT_DEFAULT_HTTP_PROTOCOL}://{host}{path}"


def billing_mail(team: Team, *, subject: str, body: str) -> int:
    """Send ``body`` to everyone whose role may see the team's billing; return how many."""
    recipients = member_emails_with(team, "billing.view")
    if not recipients:
        return 0
    send_mail(
        subject=f"[Lattice] {subject}",
        message=f"{body}\n\nBilling: {billing_link(team)}\n",
        from_email=None,
        recipient_list=recipients,
    )
    return len(recipients)
