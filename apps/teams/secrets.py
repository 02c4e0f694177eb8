"""Team secrets: set, deleted and read by name.

A secret is a name (an environment variable's) and a value sealed at rest
(apps.core.crypto). No page or API shows a value again once it is set: notebooks, jobs and
deployments name the secrets they want, get them as environment variables when their
workload starts (``secrets_resolve``, audited as a use), and their log lines are masked
with the values before anyone sees them (``mask_values`` and ``mask``, called by
apps.machines.reports.workload_logs).

- ``secret_set(*, team, actor, name, value, description="") -> TeamSecret``: made or
  replaced (admins and owners), the value sealed; audited without the value.
  ``secret_delete(*, team, actor, name)``.
- ``secrets_resolve(team, names, *, used_by) -> dict[str, str]``: the values of the team's
  secrets named (a missing one is a ServiceError naming it: a workload never starts with
  a secret silently absent); audited as a use by ``used_by`` ("job run 12", "notebook x").
- ``secret_names(team) -> list[str]``; ``check_names(team, names)``: refuse names the team
  does not have (a job of team A cannot name team B's secret: names are looked up in A).
- ``mask_values(team_id) -> list[str]`` and ``mask(lines, values) -> list[str]``: what log
  lines of the team's workloads are masked with. Values (and lines of a multi-line value)
  shorter than ``MASK_MIN_LENGTH`` characters are not masked: masking "1" or "yes" would
  garble every line and tell a reader the value anyway. A replaced or deleted value
  still masks for ``RETIRED_MASK_DAYS`` (models.RetiredSecret): a workload started with
  it may still print it.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.core.audit import audit_record
from apps.core.crypto import SealError, open_json, seal_json
from apps.core.errors import NotFoundError, ServiceError
from apps.teams.models import RetiredSecret, TeamSecret
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from collections.abc import Iterable

    from apps.accounts.models import User
    from apps.teams.models import Team

__all__ = [
    "MASK",
    "MASK_MIN_LENGTH",
    "RETIRED_MASK_DAYS",
    "SecretError",
    "check_names",
    "mask",
    "mask_values",
    "secret_delete",
    "secret_names",
    "secret_set",
    "secrets_resolve",
]

logger = logging.getLogger(__name__)

MASK = "****"
MASK_MIN_LENGTH = 4
# How long a replaced or deleted value still masks logs: a workload started with it (a
# notebook session, a run with no time limit) may print it as long as it runs.
RETIRED_MASK_DAYS = 30
MAX_VALUE_BYTES = 64 * 1024
_NAME_LENGTH = 64  # TeamSecret.name
_DESCRIPTION_LENGTH = 200  # TeamSecret.description

# How the agent ends a log line it cut short (apps.machines.logship.LogShipper._cut).
_LINE_CUT = re.compile(r"^(?P<kept>.*)(?P<marker> \[line cut: [\d,]+ characters\])$", re.S)
# An environment variable's name, as POSIX shells accept it.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names Lattice sets itself in a workload's environment: a secret may not shadow them.
_RESERVED_PREFIXES = ("LATTICE_", "NVIDIA_", "JUPYTER")
_RESERVED_NAMES = frozenset({"PATH", "HOME", "HOSTNAME", "USER", "SHELL", "PWD"})


class SecretError(ServiceError):
    """A secret's name, value or reference the rules refuse (400)."""

    status_code = 400
    code = "invalid"


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise SecretError("A secret needs a name.", field="name")
    if len(name) > _NAME_LENGTH or not _NAME.match(name):
        raise SecretError(
            "A secret's name is what the environment variable is called: letters, digits "
            "and underscores, not starting with a digit, at most 64 characters.",
            field="name",
        )
    if name.upper() in _RESERVED_NAMES or name.upper().startswith(_RESERVED_PREFIXES):
        raise SecretError(
            f"{name} is set by Lattice in every workload; choose another name.", field="name"
        )
    return name


def _check_value(value: str) -> str:
    if not isinstance(value, str) or value == "":
        raise SecretError("A secret needs a value.", field="value")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise SecretError("A secret's value may be at most 64 KiB.", field="value")
    return value


@transaction.atomic
def secret_set(
    *, team: Team, actor: User, name: str, value: str, description: str = ""
) -> TeamSecret:
    """Make or replace the team's secret ``name`` (admins and owners), its value sealed;
    audit it without the value; logs are masked with the new value once it commits."""
    require_permission(
        team, actor, "secrets.manage", message="Only the team's admins and owners set secrets."
    )
    name = _check_name(name)
    value = _check_value(value)
    description = (description or "").strip()
    if len(description) > _DESCRIPTION_LENGTH:
        raise SecretError("A description may be at most 200 characters.", field="description")
    secret = TeamSecret.objects.for_team(team).select_for_update().filter(name=name).first()
    created = secret is None
    if secret is None:
        secret = TeamSecret(team=team, name=name, created_by=actor)
    else:
        _retire(team, [secret])
    secret.sealed = seal_json(value)
    secret.description = description
    secret.updated_by = actor
    secret.save()
    audit_record(
        team=team,
        actor=actor,
        action="secret.created" if created else "secret.updated",
        target=name,
    )
    transaction.on_commit(lambda: _bump_generation(team.pk))
    return secret


@transaction.atomic
def secret_delete(*, team: Team, actor: User, name: str) -> None:
    """Delete the team's secret ``name`` (admins and owners); audit it. Workloads that name
    it can no longer start until it is set again (``secrets_resolve`` refuses)."""
    require_permission(
        team, actor, "secrets.manage", message="Only the team's admins and owners delete secrets."
    )
    _retire(team, list(TeamSecret.objects.for_team(team).select_for_update().filter(name=name)))
    deleted, _ = TeamSecret.objects.for_team(team).filter(name=name).delete()
    if not deleted:
        raise NotFoundError(f"This team has no secret named {name}.")
    audit_record(team=team, actor=actor, action="secret.deleted", target=name)
    transaction.on_commit(lambda: _bump_generation(team.pk))


def secret_names(team: Team) -> list[str]:
    """The names of the team's secrets, in order."""
    return list(TeamSecret.objects.for_team(team).order_by("name").values_list("name", flat=True))


def check_names(team: Team, names: Iterable[Any]) -> list[str]:
    """``names`` as a clean list (in order, once each), every one a secret of ``team``;
    else a SecretError (field "secrets") naming those it does not have. Names are looked
    up in ``team`` only: another team's secret of the same name is not found."""
    given = [] if isinstance(names, str) else list(names)
    if isinstance(names, str) or not all(isinstance(n, str) for n in given):
        raise SecretError("Secrets are a list of secret names.", field="secrets")
    wanted = list(dict.fromkeys(n.strip() for n in given if n.strip()))
    if not wanted:
        return []
    have = set(
        TeamSecret.objects.for_team(team).filter(name__in=wanted).values_list("name", flat=True)
    )
    missing = [n for n in wanted if n not in have]
    if missing:
        raise SecretError(
            f"This team has no secret named {', '.join(missing)}.",
            field="secrets",
            code="unknown_secret",
        )
    return wanted


@transaction.atomic
def secrets_resolve(
    team: Team, names: Iterable[str], *, used_by: str, actor: User | None = None
) -> dict[str, str]:
    """The values of the team's secrets ``names`` (name -> value), for a workload's
    environment. A name the team does not have (or a value no key opens) is a SecretError
    naming it. Each call with names is audited as a use by ``used_by`` ("job run 12")
    and stamps the secrets' ``last_used_at``; the values are never written anywhere."""
    wanted = check_names(team, names)
    if not wanted:
        return {}
    rows = list(TeamSecret.objects.for_team(team).filter(name__in=wanted))
    if len(rows) != len(wanted):  # deleted since check_names looked
        check_names(team, wanted)
    values: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: wanted.index(r.name)):
        try:
            values[row.name] = str(open_json(row.sealed))
        except SealError as exc:
            raise SecretError(
                f"The secret {row.name} cannot be opened with the configured keys; set it again.",
                field="secrets",
                code="secret_unreadable",
            ) from exc
    TeamSecret.objects.for_team(team).filter(pk__in=[r.pk for r in rows]).update(
        last_used_at=timezone.now()
    )
    audit_record(
        team=team,
        actor=actor,
        action="secret.used",
        target=used_by,
        names=", ".join(values),
    )
    return values


# --- Masking ------------------------------------------------------------------------------
# Log frames arrive many times a second; the values are opened once per team per process and
# kept until the team's generation (in the shared cache) changes: every set or delete bumps it.

_values_cache: dict[int, tuple[str, list[str]]] = {}


def _generation_key(team_id: int) -> str:
    return f"teams:secrets:generation:{team_id}"


def _bump_generation(team_id: int) -> None:
    cache.set(_generation_key(team_id), uuid.uuid4().hex, timeout=None)


def _generation(team_id: int) -> str:
    key = _generation_key(team_id)
    current = cache.get(key)
    if current is None:
        # A cache that lost the key (restarted, evicted) gets a new generation, so no
        # process keeps values it read under an older one.
        cache.add(key, uuid.uuid4().hex, timeout=None)
        current = cache.get(key)
    return str(current)


def _retire(team: Team, secrets: list[TeamSecret]) -> None:
    """Keep the values ``secrets`` hold now for masking (they are being replaced or deleted:
    a running workload may still print them); forget those retired long enough ago."""
    now = timezone.now()
    RetiredSecret.objects.for_team(team).filter(
        retired_at__lt=now - timedelta(days=RETIRED_MASK_DAYS)
    ).delete()
    RetiredSecret.objects.for_team(team).bulk_create(
        [RetiredSecret(team=team, name=s.name, sealed=s.sealed, retired_at=now) for s in secrets]
    )


def _mask_pieces(value: str) -> list[str]:
    """What a value is masked as: the value, and each line of a multi-line one (a log line
    holds one line of a key file at most)."""
    pieces = [value.strip("\r\n")]
    if "\n" in value:
        pieces += [line.strip() for line in value.splitlines()]
    return [p for p in pieces if len(p) >= MASK_MIN_LENGTH]


def mask_values(team_id: int) -> list[str]:
    """What the team's workloads' log lines are masked with: its secrets' values (and their
    lines), longest first, each at least ``MASK_MIN_LENGTH`` characters."""
    generation = _generation(team_id)
    cached = _values_cache.get(team_id)
    if cached is not None and cached[0] == generation:
        return cached[1]
    pieces: set[str] = set()
    since = timezone.now() - timedelta(days=RETIRED_MASK_DAYS)
    retired = RetiredSecret.objects.for_team(team_id).filter(retired_at__gte=since)
    for name, sealed in [
        *TeamSecret.objects.for_team(team_id).values_list("name", "sealed"),
        *retired.values_list("name", "sealed"),
    ]:
        try:
            pieces.update(_mask_pieces(str(open_json(sealed))))
        except SealError:
            logger.warning("team %s's secret %s cannot be opened: not masked", team_id, name)
    values = sorted(pieces, key=lambda p: (-len(p), p))
    _values_cache[team_id] = (generation, values)
    return values


def mask(lines: list[str], values: list[str]) -> list[str]:
    """``lines`` with every occurrence of each of ``values`` replaced by ``MASK`` (longest
    values first, so a value inside a longer one does not leave the rest showing)."""
    if not values:
        return lines
    masked = []
    for line in lines:
        shown = line
        for value in values:
            if value in shown:
                shown = shown.replace(value, MASK)
        masked.append(_mask_cut(shown, values))
    return masked


def _mask_cut(line: str, values: list[str]) -> str:
    """``line`` with the start of a value masked where the agent cut the line short
    (apps.machines.logship: "<kept> [line cut: N characters]"): the kept part may end with
    a value's first characters, which no whole-value match finds."""
    cut = _LINE_CUT.match(line)
    if cut is None:
        return line
    kept = cut.group("kept")
    for value in values:
        for length in range(len(value) - 1, MASK_MIN_LENGTH - 1, -1):
            if kept.endswith(value[:length]):
                return kept[:-length] + MASK + cut.group("marker")
    return line
