"""Signal receivers: allauth's account events that Lattice answers."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import get_adapter
from allauth.account.signals import email_added, password_changed, password_reset, password_set
from allauth.usersessions.models import UserSession
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete
from django.dispatch import receiver

from apps.core.revocation import access_changed


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


@receiver(user_logged_out, dispatch_uid="accounts.signed_out_revokes")
@receiver(password_changed, dispatch_uid="accounts.password_changed_revokes")
@receiver(password_set, dispatch_uid="accounts.password_set_revokes")
@receiver(password_reset, dispatch_uid="accounts.password_reset_revokes")
def _session_ended(sender: Any, user: Any = None, **kwargs: Any) -> None:
    """Signing out or a new password ends what the old session holds open (team websockets,
    notebook origins' sockets) at once, not at their next check (apps.core.revocation)."""
    if user is not None and user.pk is not None:
        access_changed(user_id=user.pk, team_id=None)


@receiver(post_delete, sender=UserSession, dispatch_uid="accounts.session_ended_revokes")
def _user_session_ended(sender: Any, instance: UserSession, **kwargs: Any) -> None:
    """A session ended from the sessions page (allauth deletes its row with it)."""
    access_changed(user_id=instance.user_id, team_id=None)
