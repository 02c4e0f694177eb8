"""Signal receivers: allauth's account events that Lattice answers."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import get_adapter
from allauth.account.signals import email_added
from django.dispatch import receiver


@receiver(email_added, dispatch_uid="accounts.notify_email_added")
def _notify_email_added(
    sender: Any, request: Any, user: Any, email_address: Any, **kwargs: Any
) -> None:
    """Tell the primary address that another was added (allauth mails removals itself)."""
    get_adapter(request).send_notification_mail(
        "account/email/email_added",
        user,
        {"added_email": email_address.email},
    )
