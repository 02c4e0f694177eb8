"""Writes to user accounts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from apps.accounts.models import User


@transaction.atomic
def user_update_profile(*, user: User, name: str) -> User:
    """Change the user's display name. No other side effects."""
    user.name = name
    user.save(update_fields=["name"])
    return user
