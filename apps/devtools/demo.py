"""Demo data for the embedded default: a verified user to log in with.

The demo user has a personal team. Later issues add the machine catalogue and
the local host here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import transaction

from apps.accounts.models import User
from apps.teams.selectors import memberships_of
from apps.teams.services import team_create_personal
from config.files import write_private

DEMO_EMAIL = "demo@example.com"


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str


def _password_file() -> Path:
    return Path(settings.VAR_DIR) / "demo_password"


@transaction.atomic
def demo_data_ensure() -> DemoLogin:
    """Create the demo user (verified email) if missing; keep its password in var/."""
    path = _password_file()
    user = User.objects.filter(email__iexact=DEMO_EMAIL).first()
    if user is None or not path.exists():
        password = secrets.token_urlsafe(12)
        if user is None:
            user = User.objects.create_user(DEMO_EMAIL, password, name="Demo User")
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        path.unlink(missing_ok=True)
        write_private(path, password)
    EmailAddress.objects.update_or_create(
        user=user,
        email=DEMO_EMAIL,
        defaults={"verified": True, "primary": True},
    )
    if not memberships_of(user).filter(team__personal=True).exists():
        team_create_personal(user=user)
    return DemoLogin(email=DEMO_EMAIL, password=path.read_text().strip())
