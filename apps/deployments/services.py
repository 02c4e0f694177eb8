"""Deployment services: every change a person makes to a deployment, its revisions, traffic
and keys. Each is one transaction: the actor's permission, the rules (a refusal is a
``DeploymentError`` naming the field to fix), an audit row, and the controller's reconcile
queued once it commits (apps.deployments.controller, which does the work: replicas,
rollouts, scaling).

A revision is immutable: every change of the spec makes a new one (its number the last + 1,
its ``reason`` what made it), and a rollback is a new revision with an earlier one's spec.
Secret variables are sealed (apps.core.crypto) and never returned: only their names are.
A key's plaintext is returned once, by ``key_create``; only its SHA-256 is kept.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import unicodedata
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.text import slugify

from apps.core.audit import audit_record
from apps.core.crypto import seal_json
from apps.datasets.paths import hidden_character
from apps.deployments import controller, entitlements, routing
from apps.deployments.endpoints import MAX_LABEL, slug_room
from apps.deployments.errors import (
    DeploymentConflictError,
    DeploymentError,
    DeploymentNotFoundError,
    DeploymentPermissionError,
)
from apps.deployments.models import Deployment, DeploymentKey, Revision
from apps.machines.availability import machine_type_availability
from apps.models.models import ModelAlias, ModelVersion
from apps.notebooks.lifecycle.start import no_host_message
from apps.notebooks.templates import TemplateError, validate_custom_image
from apps.teams.permissions import require_permission
from apps.teams.secrets import SecretError, check_names

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.machines.models import MachineType
    from apps.models.models import Model
    from apps.teams.models import Team

# The role permissions (apps.teams.permissions) these services ask for.
MANAGE = "deployments.manage"

# Bounds a revision's spec is checked against.
MAX_REPLICAS = 20
MAX_TARGET_IN_FLIGHT = 1000
MIN_SCALE_TO_ZERO_AFTER = 60
MAX_SCALE_TO_ZERO_AFTER = 7 * 24 * 3600
MIN_STARTUP_TIMEOUT = 10
MAX_STARTUP_TIMEOUT = 3600
MAX_RATE_LIMIT = 1_000_000
MAX_ENV = 100
MAX_ENV_VALUE = 32 * 1024
MAX_COMMAND_ARGS = 64
MAX_COMMAND_ARG = 4096
MAX_NAME = 80
MAX_HEALTH_PATH = 200
# A traffic split's shares add up to this.
WHOLE = 100
# The built-in server's port and health route (images/model-server/serve.py).
BUILTIN_PORT = 8080
BUILTIN_HEALTH_PATH = "/health-check"

# An environment variable's name as POSIX shells accept it.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Set by Lattice in every replica (apps.deployments.spec): a spec may not name them.
RESERVED_ENV = frozenset({"PORT"})
RESERVED_ENV_PREFIX = "LATTICE_"

KEY_PREFIX = "ldk_"
_KEY_ALPHABET = string.ascii_letters + string.digits
_KEY_LENGTH = 40  # base62 characters: about 238 bits
# What the key list shows of a key: "ldk_" and its first 8 characters.
_KEY_SHOWN = len(KEY_PREFIX) + 8


@dataclass(frozen=True)
class RevisionSpec:
    """What a revision serves and how; a change of any of it is a new revision."""

    machine_type: MachineType
    model_version: ModelVersion | None = None
    # Follow an alias of ``model`` instead of a fixed version.
    model: Model | None = None
    follows_alias: str = ""
    serving: str = "builtin"
    image: str = ""
    port: int = 8080
    command: list[str] = field(default_factory=list)
    health_path: str = ""
    min_replicas: int = 1
    max_replicas: int = 1
    target_in_flight: int = 4
    scale_to_zero_after: int | None = 900
    startup_timeout: int = 600
    canary_percent: int = 0
    env: dict[str, str] = field(default_factory=dict)
    # None: keep the previous revision's secrets.
    secrets: dict[str, str] | None = None
    # Names of the team's secrets (apps.teams.secrets), read when each replica starts.
    team_secrets: list[str] = field(default_factory=list)


def key_hash(plaintext: str) -> str:
    """What is kept of a deployment key (and what the gateway looks a key up by)."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _reconcile_on_commit(deployment: Deployment) -> None:
    # The controller (apps.deployments.controller) does the work once this commits.
    transaction.on_commit(partial(controller.deployment_reconcile_soon, deployment.pk))


def _routes_on_commit(deployment: Deployment) -> None:
    # The gateway's cached routes and auth of this deployment are stale once this commits.
    transaction.on_commit(partial(routing.routes_changed, deployment.pk))


def _may_manage(team: Team, actor: User) -> None:
    require_permission(
        team,
        actor,
        MANAGE,
        error=DeploymentPermissionError,
        message="Your role in this team does not allow changing deployments.",
    )


def _locked(team: Team, deployment: Deployment) -> Deployment:
    """The team's live deployment, locked for this transaction: 404 for another team's or
    a deleted one."""
    found = (
        # NO KEY UPDATE, as the controller's pass: an agent's event commits rows naming the
        # deployment while holding its replica (a delete's stop_all then waits for that
        # replica; FOR UPDATE here would deadlock them: tests/deployments/test_locks.py).
        Deployment.objects.for_team(team)
        .select_for_update(no_key=True)
        .filter(pk=deployment.pk, deleted_at__isnull=True)
        .first()
    )
    if found is None:
        raise DeploymentNotFoundError("No such deployment in this team.")
    return found


# --- the name ---------------------------------------------------------------------------


def clean_name(team: Team, name: str, *, exclude: int | None = None) -> tuple[str, str]:
    """``name`` as kept (NFC, spaces folded) and its slug (the first part of its endpoint's
    host name: at most 40 characters, no "--", which separates it from the team's, and
    short enough that "<slug>--<team>" fits in one DNS label: cut to
    ``endpoints.slug_room``); a 400 on "name" when it is empty, too long, hides characters
    or has no letter or digit (in what fits), a 409 when a live deployment of the team has
    the slug."""
    name = unicodedata.normalize("NFC", " ".join(str(name).split()))
    if not name:
        raise DeploymentError("Give the deployment a name.", field="name")
    hidden = hidden_character(name)
    if hidden:
        raise DeploymentError(
            f"A name cannot contain invisible or text-direction characters ({hidden}).",
            field="name",
        )
    if len(name) > MAX_NAME:
        raise DeploymentError(f"A name is at most {MAX_NAME} characters.", field="name")
    room = min(40, slug_room(team.slug))
    slug = re.sub(r"-{2,}", "-", slugify(name).replace("_", "-"))[:room].strip("-")
    if not slug:
        if room < 1:  # a team slug of 61+ characters (the model allows 60): no room at all
            raise DeploymentError(
                f"The team's short name, {team.slug}, leaves no room for a deployment's "
                f"address ({MAX_LABEL} characters in all).",
                field="name",
            )
        raise DeploymentError("A name needs a letter or a digit.", field="name")
    taken = Deployment.objects.for_team(team).filter(slug=slug, deleted_at__isnull=True)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise DeploymentConflictError(
            f"This team already has a deployment at {slug}: choose another name.", field="name"
        )
    return name, slug


def _auth_mode(value: str) -> str:
    if value not in Deployment.Auth.values:
        raise DeploymentError(
            f"The auth mode is one of: {', '.join(Deployment.Auth.values)}.", field="auth_mode"
        )
    return value


def _rate_limit(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_RATE_LIMIT:
        raise DeploymentError(
            f"The rate limit is 0 (none) to {MAX_RATE_LIMIT:,} requests a minute.",
            field="rate_limit_per_minute",
        )
    return value


# --- the spec ---------------------------------------------------------------------------


def _whole(value: Any, name: str, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise DeploymentError(f"{what} is {low} to {high}.", field=name)
    return value


def _variables(values: Any, name: str) -> dict[str, str]:
    """Environment variables as given, checked: names a shell accepts and Lattice does not
    set itself, string values of bounded size."""
    if not isinstance(values, dict):
        raise DeploymentError("Give the variables as an object of names and values.", field=name)
    if len(values) > MAX_ENV:
        raise DeploymentError(f"At most {MAX_ENV} variables.", field=name)
    for key, value in values.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise DeploymentError(
                f"{str(key)[:40]!r} is not a variable name: letters, digits and _, "
                "not starting with a digit.",
                field=name,
            )
        if key in RESERVED_ENV or key.startswith(RESERVED_ENV_PREFIX):
            raise DeploymentError(
                f"{key} is set by Lattice in every replica: choose another name.", field=name
            )
        if not isinstance(value, str):
            raise DeploymentError(f"The value of {key} must be a string.", field=name)
        if len(value) > MAX_ENV_VALUE:
            raise DeploymentError(
                f"The value of {key} is longer than {MAX_ENV_VALUE // 1024} KiB.", field=name
            )
    return dict(values)


def _model_version(team: Team, spec: RevisionSpec) -> tuple[ModelVersion | None, str]:
    """The ready model version of this team the spec serves (the alias's, when it follows
    one) and the alias it follows."""
    if spec.follows_alias:
        if spec.model is None:
            raise DeploymentError("Name the model whose alias to follow.", field="model")
        if spec.model_version is not None:
            raise DeploymentError(
                "Give a model version or an alias to follow, not both.", field="model_version"
            )
        alias = (
            ModelAlias.objects.for_team(team)
            .select_related("version")
            .filter(model_id=spec.model.pk, name=spec.follows_alias)
            .first()
        )
        if alias is None:
            raise DeploymentError(
                f"This team's model has no alias {spec.follows_alias!r}.", field="follows_alias"
            )
        return alias.version, spec.follows_alias
    if spec.model_version is None:
        if spec.serving == Revision.Serving.BUILTIN:
            raise DeploymentError(
                "Give the model version to serve (or an alias of a model to follow).",
                field="model_version",
            )
        return None, ""
    version = ModelVersion.objects.for_team(team).filter(pk=spec.model_version.pk).first()
    if version is None:
        raise DeploymentError("That is not a model version of this team.", field="model_version")
    if version.status != ModelVersion.Status.READY:
        raise DeploymentError(
            "That model version is not ready: wait for its upload to finish.",
            field="model_version",
        )
    return version, ""


def _serving(spec: RevisionSpec) -> dict[str, Any]:
    """The serving kind's fields as kept: the built-in server's own, or the custom image's,
    checked."""
    if spec.serving == Revision.Serving.BUILTIN:
        if spec.image or spec.command:
            raise DeploymentError(
                "The built-in model server runs its own image and command: choose custom "
                "serving to give them.",
                field="image" if spec.image else "command",
            )
        return {
            "serving": Revision.Serving.BUILTIN,
            "image": "",
            "port": BUILTIN_PORT,
            "command": [],
            "health_path": BUILTIN_HEALTH_PATH,
        }
    if spec.serving != Revision.Serving.CUSTOM:
        raise DeploymentError("Serving is builtin or custom.", field="serving")
    try:
        image = validate_custom_image(spec.image)
    except TemplateError as exc:
        raise DeploymentError(str(exc), field="image") from exc
    port = _whole(spec.port, "port", 1, 65535, "The port")
    command = spec.command
    if (
        not isinstance(command, list)
        or len(command) > MAX_COMMAND_ARGS
        or not all(isinstance(a, str) and len(a) <= MAX_COMMAND_ARG for a in command)
    ):
        raise DeploymentError(
            f"The command is a list of at most {MAX_COMMAND_ARGS} strings.", field="command"
        )
    health_path = spec.health_path or "/"
    if (
        not health_path.startswith("/")
        or len(health_path) > MAX_HEALTH_PATH
        or any(c.isspace() for c in health_path)
    ):
        raise DeploymentError(
            "The health path is a path on the server, like /health (no spaces).",
            field="health_path",
        )
    return {
        "serving": Revision.Serving.CUSTOM,
        "image": image,
        "port": port,
        "command": list(command),
        "health_path": health_path,
    }


def _machine_type(team: Team, machine_type: MachineType, max_replicas: int) -> MachineType:
    if machine_type is None or not machine_type.active:
        raise DeploymentError(
            "That machine type is not offered: choose another.", field="machine_type"
        )
    # The plan and the spend cap (billing off: no limits): a refusal is a 402.
    entitlements.check_replicas(team, machine_type, max_replicas)
    # A replica of a type no host could ever run would never start: refuse, like notebooks.
    if machine_type_availability(machine_type).state == "unavailable":
        raise DeploymentConflictError(
            no_host_message(machine_type.name, what="deployment"),
            field="machine_type",
            code="no_host_offers_type",
        )
    return machine_type


def spec_fields(team: Team, spec: RevisionSpec) -> dict[str, Any]:
    """A revision's spec fields (all but the secrets), checked against the rules and the
    team's plan: a DeploymentError naming the field to fix, a 402 from the plan, a 409
    ``no_host_offers_type``."""
    version, alias = _model_version(team, spec)
    min_replicas = _whole(spec.min_replicas, "min_replicas", 0, MAX_REPLICAS, "min_replicas")
    max_replicas = _whole(spec.max_replicas, "max_replicas", 1, MAX_REPLICAS, "max_replicas")
    if min_replicas > max_replicas:
        raise DeploymentError("max_replicas must be at least min_replicas.", field="max_replicas")
    scale_to_zero_after = spec.scale_to_zero_after
    if scale_to_zero_after is not None:
        _whole(
            scale_to_zero_after,
            "scale_to_zero_after",
            MIN_SCALE_TO_ZERO_AFTER,
            MAX_SCALE_TO_ZERO_AFTER,
            "The idle time before scaling to zero (seconds)",
        )
    fields: dict[str, Any] = {
        "model_version": version,
        "follows_alias": alias,
        **_serving(spec),
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "target_in_flight": _whole(
            spec.target_in_flight,
            "target_in_flight",
            1,
            MAX_TARGET_IN_FLIGHT,
            "The target of requests in flight per replica",
        ),
        "scale_to_zero_after": scale_to_zero_after,
        "startup_timeout": _whole(
            spec.startup_timeout,
            "startup_timeout",
            MIN_STARTUP_TIMEOUT,
            MAX_STARTUP_TIMEOUT,
            "The startup timeout (seconds)",
        ),
        "canary_percent": _whole(
            spec.canary_percent, "canary_percent", 0, 99, "The canary percentage"
        ),
        "env": _variables(spec.env, "env"),
    }
    try:
        fields["team_secrets"] = check_names(team, spec.team_secrets or [])
    except SecretError as refusal:
        raise DeploymentError(str(refusal), field="team_secrets") from refusal
    both = sorted(set(fields["team_secrets"]) & set(fields["env"]))
    if both:
        raise DeploymentError(
            f"{', '.join(both)}: a name is a plain variable or a team secret, not both.",
            field="team_secrets",
        )
    # Last: the plan and the hosts are asked only about a spec that is otherwise right.
    fields["machine_type"] = _machine_type(team, spec.machine_type, max_replicas)
    return fields


def _sealed(spec: RevisionSpec, env: dict[str, str], previous: Revision | None) -> dict[str, Any]:
    """The secret fields of a new revision: sealed from ``spec.secrets``, or the previous
    revision's as they are (None)."""
    if spec.secrets is None:
        if previous is None:
            return {"secret_env": b"", "secret_names": []}
        both = sorted(set(previous.secret_names) & set(env))
        if both:
            raise DeploymentError(
                f"{', '.join(both)}: already a secret variable; a name is a plain variable "
                "or a secret, not both.",
                field="env",
            )
        return {
            "secret_env": bytes(previous.secret_env),
            "secret_names": list(previous.secret_names),
        }
    values = _variables(spec.secrets, "secrets")
    both = sorted(set(values) & set(env))
    if both:
        raise DeploymentError(
            f"{', '.join(both)}: a name is a plain variable or a secret, not both.",
            field="secrets",
        )
    return {
        "secret_env": seal_json(values) if values else b"",
        "secret_names": sorted(values),
    }


def _revision_make(
    team: Team,
    actor: User,
    deployment: Deployment,
    fields: dict[str, Any],
    reason: str,
) -> Revision:
    """The deployment's next revision (the deployment is locked), which the controller
    rolls out."""
    last = Revision.objects.for_team(team).filter(deployment=deployment).aggregate(n=Max("number"))
    revision = Revision.objects.for_team(team).create(
        team=team,
        deployment=deployment,
        number=(last["n"] or 0) + 1,
        reason=reason[:200],
        created_by=actor,
        **fields,
    )
    deployment.rollout = revision
    deployment.save(update_fields=["rollout", "updated_at"])
    return revision


def _current(team: Team, deployment: Deployment) -> Revision | None:
    return Revision.objects.for_team(team).filter(deployment=deployment).order_by("-number").first()


# --- the services -------------------------------------------------------------------------


@transaction.atomic
def deployment_create(
    *, team: Team, actor: User, name: str, auth_mode: str, spec: RevisionSpec, description: str = ""
) -> Deployment:
    """Make a deployment and its revision 1; the controller rolls it out."""
    _may_manage(team, actor)
    name, slug = clean_name(team, name)
    auth_mode = _auth_mode(auth_mode)
    entitlements.check_deployment(team)
    fields = spec_fields(team, spec)
    secret_fields = _sealed(spec, fields["env"], None)
    try:
        with transaction.atomic():
            deployment = Deployment.objects.for_team(team).create(
                team=team,
                name=name,
                slug=slug,
                description=str(description)[:2000],
                auth_mode=auth_mode,
                created_by=actor,
            )
    except IntegrityError:  # made by another request since clean_name looked
        raise DeploymentConflictError(
            f"This team already has a deployment at {slug}: choose another name.", field="name"
        ) from None
    revision = _revision_make(team, actor, deployment, {**fields, **secret_fields}, "created")
    audit_record(
        team=team, actor=actor, action="deployment.created", target=name, revision=revision.number
    )
    _reconcile_on_commit(deployment)
    return deployment


@transaction.atomic
def deployment_change(
    *, team: Team, actor: User, deployment: Deployment, spec: RevisionSpec, reason: str = "changed"
) -> Revision:
    """A new revision with ``spec`` (secrets None: the previous revision's); the controller
    rolls it out."""
    _may_manage(team, actor)
    deployment = _locked(team, deployment)
    fields = spec_fields(team, spec)
    secret_fields = _sealed(spec, fields["env"], _current(team, deployment))
    revision = _revision_make(team, actor, deployment, {**fields, **secret_fields}, reason)
    audit_record(
        team=team,
        actor=actor,
        action="deployment.changed",
        target=deployment.name,
        revision=revision.number,
    )
    _reconcile_on_commit(deployment)
    return revision


@transaction.atomic
def deployment_rollback(
    *, team: Team, actor: User, deployment: Deployment, revision: Revision
) -> Revision:
    """A new revision with ``revision``'s spec (its secrets too), reason "rolled back to
    rN"; the controller rolls it out."""
    _may_manage(team, actor)
    deployment = _locked(team, deployment)
    earlier = Revision.objects.for_team(team).filter(pk=revision.pk, deployment=deployment).first()
    if earlier is None:
        raise DeploymentNotFoundError("No such revision of this deployment.")
    current = _current(team, deployment)
    if current is not None and current.pk == earlier.pk:
        raise DeploymentConflictError(
            f"r{earlier.number} is the newest revision already: nothing to roll back to.",
            field="revision",
        )
    fields = {name: getattr(earlier, name) for name in Revision.SPEC_FIELDS}
    fields["secret_env"] = bytes(fields["secret_env"])
    # What it ran on may be retired, or beyond the plan, since.
    _machine_type(team, earlier.machine_type, earlier.max_replicas)
    made = _revision_make(team, actor, deployment, fields, f"rolled back to r{earlier.number}")
    audit_record(
        team=team,
        actor=actor,
        action="deployment.rolled_back",
        target=deployment.name,
        to=earlier.number,
        revision=made.number,
    )
    _reconcile_on_commit(deployment)
    return made


@transaction.atomic
def deployment_set_traffic(
    *, team: Team, actor: User, deployment: Deployment, split: dict[int, int]
) -> None:
    """Split requests between serving revisions (revision id -> percent, summing to 100)."""
    _may_manage(team, actor)
    deployment = _locked(team, deployment)
    if not isinstance(split, dict) or not split:
        raise DeploymentError("Give each revision's share: revision -> percent.", field="traffic")
    for key, share in split.items():
        if not isinstance(key, int) or isinstance(key, bool):
            raise DeploymentError("Name revisions by their id.", field="traffic")
        _whole(share, "traffic", 0, WHOLE, "A share")
    if sum(split.values()) != WHOLE:
        raise DeploymentError(
            f"The shares add up to {sum(split.values())}, not 100.", field="traffic"
        )
    revisions = {
        r.pk: r
        for r in Revision.objects.for_team(team).filter(deployment=deployment, pk__in=list(split))
    }
    unknown = sorted(set(split) - set(revisions))
    if unknown:
        raise DeploymentError(f"No revision {unknown[0]} of this deployment.", field="traffic")
    not_serving = [r for r in revisions.values() if r.status != Revision.Status.SERVING]
    if any(split[r.pk] for r in not_serving):
        first = next(r for r in not_serving if split[r.pk])
        raise DeploymentConflictError(
            f"r{first.number} is {first.get_status_display().lower()}, not serving: only a "
            "serving revision can take requests.",
            field="traffic",
        )
    rollout = deployment.rollout
    if rollout is not None and rollout.status in (
        Revision.Status.PENDING,
        Revision.Status.STARTING,
    ):
        raise DeploymentConflictError(
            f"r{rollout.number} is being rolled out: set the split once it is serving.",
            field="traffic",
        )
    deployment.traffic = {str(pk): share for pk, share in split.items() if share}
    deployment.save(update_fields=["traffic", "updated_at"])
    words = ", ".join(
        f"r{revisions[pk].number} {share}%"
        for pk, share in sorted(split.items(), key=lambda item: revisions[item[0]].number)
        if share
    )
    audit_record(
        team=team, actor=actor, action="deployment.traffic_set", target=deployment.name, split=words
    )
    _routes_on_commit(deployment)
    _reconcile_on_commit(deployment)


@transaction.atomic
def deployment_update(
    *,
    team: Team,
    actor: User,
    deployment: Deployment,
    name: str | None = None,
    description: str | None = None,
    auth_mode: str | None = None,
    rate_limit_per_minute: int | None = None,
) -> Deployment:
    """Change what is given of its settings (not its spec: that is a new revision). A new
    name keeps the slug, so the endpoint's addresses stay as clients know them."""
    _may_manage(team, actor)
    deployment = _locked(team, deployment)
    changed: list[str] = []
    if name is not None:
        name, _ = _name_only(team, name, deployment)
        if name != deployment.name:
            deployment.name = name
            changed.append("name")
    if description is not None and str(description)[:2000] != deployment.description:
        deployment.description = str(description)[:2000]
        changed.append("description")
    if auth_mode is not None and _auth_mode(auth_mode) != deployment.auth_mode:
        deployment.auth_mode = auth_mode
        changed.append("auth_mode")
    if (
        rate_limit_per_minute is not None
        and _rate_limit(rate_limit_per_minute) != deployment.rate_limit_per_minute
    ):
        deployment.rate_limit_per_minute = rate_limit_per_minute
        changed.append("rate_limit_per_minute")
    if not changed:
        return deployment
    deployment.save(update_fields=[*changed, "updated_at"])
    audit_record(
        team=team,
        actor=actor,
        action="deployment.updated",
        target=deployment.name,
        fields=", ".join(changed),
    )
    _routes_on_commit(deployment)
    return deployment


def _name_only(team: Team, name: str, deployment: Deployment) -> tuple[str, str]:
    """A new name checked as a name; its slug is unused (the deployment keeps its own)."""
    try:
        return clean_name(team, name, exclude=deployment.pk)
    except DeploymentConflictError:
        # Another deployment has the slug this name would make: the name is still free,
        # since this one's slug does not change.
        cleaned = unicodedata.normalize("NFC", " ".join(str(name).split()))
        return cleaned, deployment.slug


@transaction.atomic
def deployment_delete(*, team: Team, actor: User, deployment: Deployment) -> None:
    """Stop every replica and delete it (kept, marked deleted: its history and bills stay;
    its slug is free again). Its keys stop working at once."""
    _may_manage(team, actor)
    deployment = _locked(team, deployment)
    now = timezone.now()
    deployment.deleted_at = now
    deployment.traffic = {}
    deployment.rollout = None
    deployment.save(update_fields=["deleted_at", "traffic", "rollout", "updated_at"])
    DeploymentKey.objects.for_team(team).filter(
        deployment=deployment, revoked_at__isnull=True
    ).update(revoked_at=now)
    controller.deployment_stop_all(deployment, "deleted")
    audit_record(team=team, actor=actor, action="deployment.deleted", target=deployment.name)
    _routes_on_commit(deployment)
    _reconcile_on_commit(deployment)


@transaction.atomic
def key_create(
    *, team: Team, actor: User, deployment: Deployment, name: str
) -> tuple[DeploymentKey, str]:
    """A key for the deployment: the row, and its plaintext ("ldk_" and 40 base62
    characters), which is never stored or shown again."""
    _may_manage(team, actor)
    deployment = _locked(team, deployment)
    name = " ".join(str(name).split())
    if not name:
        raise DeploymentError("Give the key a name, so you know later what uses it.", field="name")
    if len(name) > MAX_NAME:
        raise DeploymentError(f"A key's name is at most {MAX_NAME} characters.", field="name")
    plaintext = KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(_KEY_LENGTH))
    key = DeploymentKey.objects.for_team(team).create(
        team=team,
        deployment=deployment,
        name=name,
        key_hash=key_hash(plaintext),
        display_prefix=plaintext[:_KEY_SHOWN],
        created_by=actor,
    )
    audit_record(
        team=team,
        actor=actor,
        action="deployment.key_created",
        target=deployment.name,
        key=f"{name} ({key.display_prefix}…)",
    )
    _routes_on_commit(deployment)
    return key, plaintext


@transaction.atomic
def key_revoke(*, team: Team, actor: User, deployment: Deployment, key: DeploymentKey) -> None:
    """Revoke the key: the gateway refuses it at once (its caches are told on commit)."""
    _may_manage(team, actor)
    deployment = _locked(team, deployment)
    found = (
        DeploymentKey.objects.for_team(team)
        .select_for_update(no_key=True)
        .filter(pk=key.pk, deployment=deployment)
        .first()
    )
    if found is None:
        raise DeploymentNotFoundError("No such key of this deployment.")
    if found.revoked_at is not None:
        return
    found.revoked_at = timezone.now()
    found.save(update_fields=["revoked_at"])
    audit_record(
        team=team,
        actor=actor,
        action="deployment.key_revoked",
        target=deployment.name,
        key=f"{found.name} ({found.display_prefix}…)",
    )
    _routes_on_commit(deployment)
