"""Workload tokens: the API token a notebook session or a job attempt finds in its environment.

Each time a session or an attempt is sent to its host, the platform makes a token for it and
puts three variables in its container's environment (``workload_env``): ``LATTICE_URL`` (the
API, as the workload reaches it: ``LATTICE_WORKLOAD_API_URL``, else
``LATTICE_INTERNAL_URL``), ``LATTICE_TOKEN`` and ``LATTICE_TEAM`` (the team's slug), so
``lattice.Client()`` works there with no setup.

The token is a PersonalAccessToken with ``workload`` naming its workload: it acts as the
person who started the workload (a scheduled job run: whoever last changed what the job
does, apps.jobs.spec.run_actor), limited to the
workload's team and to ``WORKLOAD_SCOPES``, and it expires at the workload's deadline. The
host that runs the container sees its environment (decision 9: hosts are untrusted), so the
token is worth no more than that team, for that workload's life: it is revoked the moment the
session or attempt ends (``workload_tokens_revoke``, called where each one ends), and when
its person leaves the team. Making one is not audited (the start it belongs to is): one row
a session would be noise.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.hooks import user_teams
from apps.accounts.models import INVOKE_SCOPE, PersonalAccessToken
from apps.accounts.signals import tokens_revoked
from apps.accounts.tokens import new_plaintext, token_fields

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from apps.accounts.models import User
    from apps.teams.models import Team

# What the SDK does from inside a workload: read the team, use and add datasets and models,
# run jobs (read them and start runs of existing ones: the jobs API refuses a workload token
# making, changing or deleting a job, apps.jobs.api.views.WORKLOAD_REFUSAL), read notebooks,
# read and call deployments. Never billing, never members or
# invitations (teams:write), never tokens (no token makes tokens; a team-limited one sees
# and revokes only itself).
WORKLOAD_SCOPES = (
    "datasets:write",
    INVOKE_SCOPE,
    "deployments:read",
    "jobs:write",
    "models:write",
    "notebooks:read",
    "teams:read",
)
# The variables a workload gets.
URL_ENV, TOKEN_ENV, TEAM_ENV = "LATTICE_URL", "LATTICE_TOKEN", "LATTICE_TEAM"
# A token is made when its workload is sent to its host, before it runs: its deadline
# counts from its start, so the token allows this long for the start itself (a pull, a
# dataset copy). ``workload_tokens_expire`` moves it to the deadline once it has started.
START_ALLOWANCE = timedelta(hours=1)


def workload_api_url() -> str:
    """The API's address as workloads reach it (read now: ``manage.py dev`` sets its own)."""
    return str(settings.LATTICE_WORKLOAD_API_URL or settings.LATTICE_INTERNAL_URL).rstrip("/")


def workload_lifetime(limit: timedelta | None) -> timedelta:
    """How long a workload with maximum run time ``limit`` (None: none) keeps its token, from
    its start: ``limit``, or LATTICE_WORKLOAD_TOKEN_MAX_HOURS where it has none."""
    longest = timedelta(hours=float(settings.LATTICE_WORKLOAD_TOKEN_MAX_HOURS))
    return limit if limit is not None else longest


@transaction.atomic
def workload_token_create(
    *, user: User, team: Team, workload: str, name: str, expires_at: datetime
) -> str:
    """Make ``workload``'s token (acting as ``user``, limited to ``team``); return its
    plaintext, which is never stored. Not audited: its workload's start is."""
    plaintext = new_plaintext()
    PersonalAccessToken.objects.create(
        user=user,
        name=name[:100],
        **token_fields(plaintext),
        scopes=sorted(WORKLOAD_SCOPES),
        team=team,
        expires_at=expires_at,
        workload=workload,
    )
    return plaintext


def workload_env(
    *, user: User | None, team: Team, workload: str, name: str, expires_at: datetime
) -> dict[str, str]:
    """``LATTICE_URL``, ``LATTICE_TOKEN`` and ``LATTICE_TEAM`` for ``workload``, with a new
    token. Nothing when no one can act for it: ``user`` gone, inactive or not in the team
    (a scheduled run whose job's author left): its token would not work anyway."""
    if user is None or not user.is_active or team not in user_teams(user):
        return {}
    token = workload_token_create(
        user=user, team=team, workload=workload, name=name, expires_at=expires_at
    )
    return {URL_ENV: workload_api_url(), TOKEN_ENV: token, TEAM_ENV: team.slug}


def workload_tokens_expire(*, workloads: Iterable[str], at: datetime) -> None:
    """Bring the active tokens of ``workloads`` to expire at ``at`` if that is sooner (their
    workload has started: its deadline is known)."""
    PersonalAccessToken.objects.filter(
        workload__in=list(workloads), revoked_at=None, expires_at__gt=at
    ).update(expires_at=at)


def workload_tokens_revoke(
    *,
    workloads: Iterable[str] | None = None,
    user: User | int | None = None,
    team: Team | int | None = None,
) -> int:
    """Stop the workload tokens of ``workloads`` (or all of ``user``'s limited to ``team``)
    working at once; return how many. Not audited: the end (or the removal) is."""
    tokens = PersonalAccessToken.objects.exclude(workload="").filter(revoked_at=None)
    if workloads is not None:
        tokens = tokens.filter(workload__in=list(workloads))
    if user is not None:
        tokens = tokens.filter(user=user)
    if team is not None:
        tokens = tokens.filter(team=team)
    if workloads is None and user is None and team is None:
        return 0
    found = list(tokens.select_related("user"))
    if not found:
        return 0
    PersonalAccessToken.objects.filter(pk__in=[t.pk for t in found]).update(
        revoked_at=timezone.now()
    )
    by_user: dict[int, tuple[User, list[int]]] = {}
    for token in found:
        by_user.setdefault(token.user_id, (token.user, []))[1].append(token.pk)
    for owner, ids in by_user.values():
        # One UPDATE sends no post_save: tell whatever caches decisions about tokens.
        tokens_revoked.send(sender=PersonalAccessToken, user=owner, token_ids=ids)
    return len(found)
