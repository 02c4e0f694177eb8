"""Personal access tokens: making, revoking and recognising them."""

from __future__ import annotations

import hashlib
import secrets
import string
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from apps.accounts.hooks import user_teams
from apps.accounts.models import TOKEN_PREFIX, TOKEN_SCOPES, PersonalAccessToken
from apps.accounts.signals import tokens_revoked
from apps.core.audit import audit_record
from apps.core.errors import ServiceError

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team

_ALPHABET = string.ascii_letters + string.digits
_SECRET_LENGTH = 40  # 40 base62 characters: about 238 bits
# Writing last-used on every request would turn reads into writes; once a minute is plenty.
_LAST_USED_RESOLUTION = timedelta(minutes=1)
EXPIRY_CHOICES_DAYS = (7, 30, 90, 365)


class TokenError(ServiceError):
    """A token request the rules refuse (400); the message is for the person."""


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_plaintext() -> str:
    """A new token's plaintext: the prefix and 40 random base62 characters."""
    return TOKEN_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LENGTH))


def token_fields(plaintext: str) -> dict[str, str]:
    """What a token row keeps of ``plaintext``: its hash and the prefix a person sees."""
    return {"token_hash": _hash(plaintext), "display_prefix": plaintext[: len(TOKEN_PREFIX) + 4]}


@transaction.atomic
def token_create(
    *,
    user: User,
    name: str,
    scopes: list[str],
    team: Team | None = None,
    expires_in_days: int | None = 30,
) -> tuple[PersonalAccessToken, str]:
    """Make a token; return it and its plaintext, which is never stored or shown again."""
    name = name.strip()
    if not name:
        raise TokenError("Give the token a name, so you know later what uses it.")
    unknown = sorted(set(scopes) - set(TOKEN_SCOPES))
    if unknown:
        raise TokenError(f"Unknown scopes: {', '.join(unknown)}.")
    if not scopes:
        raise TokenError("Choose at least one scope.")
    if team is not None and team not in user_teams(user):
        raise TokenError("You can only restrict a token to a team you are in.")
    if expires_in_days is not None and expires_in_days not in EXPIRY_CHOICES_DAYS:
        raise TokenError(f"Expiry must be one of {EXPIRY_CHOICES_DAYS} days, or never.")
    plaintext = new_plaintext()
    token = PersonalAccessToken.objects.create(
        user=user,
        name=name,
        **token_fields(plaintext),
        scopes=sorted(set(scopes)),
        team=team,
        expires_at=(timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None),
    )
    if team is not None:
        audit_record(team=team, actor=user, action="token.created", target=name)
    return token, plaintext


@transaction.atomic
def token_revoke(*, user: User, token: PersonalAccessToken) -> None:
    """Stop ``token`` working at once; audit it in its team, if it has one."""
    if token.user_id != user.pk:
        raise TokenError("That is not your token.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        tokens_revoked.send(sender=PersonalAccessToken, user=user, token_ids=[token.pk])
        if token.team is not None:
            audit_record(team=token.team, actor=user, action="token.revoked", target=token.name)


@transaction.atomic
def token_revoke_all(*, user: User) -> int:
    """Stop every token of ``user`` working at once; return how many.

    Audited once in each team the tokens could act in: a team-limited token in its
    team, an unrestricted one in every team the user is in.
    """
    tokens = list(PersonalAccessToken.objects.filter(user=user, revoked_at=None))
    PersonalAccessToken.objects.filter(pk__in=[t.pk for t in tokens]).update(
        revoked_at=timezone.now()
    )
    if tokens:
        # One UPDATE sends no post_save: say so to whatever caches decisions about tokens.
        tokens_revoked.send(sender=PersonalAccessToken, user=user, token_ids=[t.pk for t in tokens])
    for team in user_teams(user):
        names = sorted(t.name for t in tokens if t.team_id in (None, team.pk))
        if names:
            audit_record(
                team=team,
                actor=user,
                action="token.revoked_all",
                target=", ".join(names),
                tokens=names,
            )
    return len(tokens)


def token_authenticate(plaintext: str, *, ip: str | None) -> PersonalAccessToken | None:
    """The active token ``plaintext`` names, with its last use noted; None otherwise."""
    if not plaintext.startswith(TOKEN_PREFIX):
        return None
    token = (
        PersonalAccessToken.objects.select_related("user", "team")
        .filter(token_hash=_hash(plaintext))
        .first()
    )
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if (
        token.last_used_at is None
        or now - token.last_used_at > _LAST_USED_RESOLUTION
        or (token.last_used_ip != ip)
    ):
        PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_ip=ip)
        token.last_used_at, token.last_used_ip = now, ip
    return token
