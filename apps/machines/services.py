"""Writes to hosts: join tokens and credentials, registration, inventory, heartbeats, draining.

A host's credentials are made here, by an admin, for one host name: a single-use join token
and the host's own broker user (apps.machines.broker), whose URL is shown once with the
token. At its first start the agent makes its signing key, and joins with the token and the
key (apps.machines.inbox); from then on the key is the host's identity. Rotating a host's
credentials replaces its broker user's password and forgets its key (it joins again with
a new token); deleting a host removes its broker user.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.utils import timezone

from apps.core.errors import ServiceError
from apps.machines.broker import host_broker_user_remove, host_broker_user_set
from apps.machines.hooks import host_draining, host_only_copies
from apps.machines.identity import identity_set, new_key
from apps.machines.models import GPUDevice, Host, HostJoinToken, Placement

if TYPE_CHECKING:
    from apps.accounts.models import User

logger = logging.getLogger(__name__)

JOIN_TOKEN_PREFIX = "latjoin_"  # noqa: S105 - a prefix, not a secret
JOIN_TOKEN_TTL = timedelta(hours=24)
# A workload's published port: never a privileged one (a host's own services live there).
_LOWEST_WORKLOAD_PORT = 1024
_HIGHEST_PORT = 65535


class HostError(ServiceError):
    """A host operation the rules refuse (400); the message says why."""


@dataclass(frozen=True)
class HostCredentials:
    """What an admin hands to a new host's agent, shown once."""

    host_name: str
    join_token: str
    # The agent's broker URL (its own Redis user); None on the embedded default (no Redis).
    broker_url: str | None
    token_id: int


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def host_name_check(name: str) -> None:
    try:
        validate_slug(name)
    except ValidationError as exc:
        raise HostError(
            f"{name!r} is not a host name: use letters, digits, hyphens and underscores."
        ) from exc
    if len(name) > Host._meta.get_field("name").max_length:  # type: ignore[operator]
        raise HostError("A host name has at most 63 characters.")


def workload_address_check(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError as exc:
        raise HostError(
            f"{address!r} is not an IP address: give the address the host publishes "
            "workloads on (its LATTICE_WORKLOAD_ADDRESS)."
        ) from exc


@transaction.atomic
def join_token_create(
    *,
    actor: User | None,
    host_name: str,
    workload_address: str = "127.0.0.1",
    note: str = "",
) -> HostCredentials:
    """A single-use token that lets host ``host_name`` join within JOIN_TOKEN_TTL, and that
    host's broker user (made now); for a host already registered, see host_rotate_credentials.
    """
    host_name_check(host_name)
    address = workload_address_check(workload_address)
    if Host.objects.filter(name=host_name).exists():
        raise HostError(
            f"A host named {host_name} is already registered: rotate its credentials instead."
        )
    return _credentials_make(actor=actor, host_name=host_name, workload_address=address, note=note)


@transaction.atomic
def host_register(*, name: str, join_token: str, key: str, inventory: dict[str, Any]) -> Host:
    """Register host ``name`` with the join token made for it, which is used up, and the
    signing key its agent made; apply its inventory. A host whose credentials were rotated
    joins again so, under its own name; no join takes a name another host holds."""
    token = (
        HostJoinToken.objects.select_for_update()
        .filter(token_hash=_hash(join_token), used_at__isnull=True)
        .first()
    )
    if token is None or token.expires_at <= timezone.now():
        raise HostError("This join token is not valid: it may be mistyped, used or expired.")
    if token.host_name != name:
        raise HostError(f"This join token was not made for a host named {name}.")
    host = Host.objects.select_for_update().filter(name=name).first()
    if host is not None and (host.signing_key or token.host_id != host.pk):
        raise HostError(f"A host named {name} is already registered.")
    if host is None:
        host = Host.objects.create(name=name, status=Host.Status.READY)
    host.signing_key = key
    host.workload_address = token.workload_address
    host.save(update_fields=["signing_key", "workload_address"])
    token.used_at = timezone.now()
    token.host = host
    token.save(update_fields=["used_at", "host"])
    return host_apply_inventory(host=host, inventory=inventory)


@transaction.atomic
def host_rotate_credentials(*, actor: User | None, host: Host, note: str = "") -> HostCredentials:
    """New credentials for a registered host: its broker user gets a new password (open
    connections with the old one are closed), its signing key is forgotten (nothing signed
    with it is believed), and a join token made for it lets its agent join again."""
    # Only the newest token joins it: one made before (and perhaps leaked) no longer does.
    host = _key_forget(host)
    return _credentials_make(
        actor=actor,
        host_name=host.name,
        workload_address=host.workload_address,
        note=note or "rotated",
        host=host,
    )


def _key_forget(host: Host) -> Host:
    """Lock ``host``, forget its signing key and drop its unused join tokens: nothing it
    signs is believed, and no token made for it before joins it."""
    host = Host.objects.select_for_update().get(pk=host.pk)
    host.signing_key = ""
    host.save(update_fields=["signing_key"])
    HostJoinToken.objects.filter(host_name=host.name, used_at__isnull=True).delete()
    return host


def _credentials_make(
    *,
    actor: User | None,
    host_name: str,
    workload_address: str,
    note: str,
    host: Host | None = None,
) -> HostCredentials:
    """A join token for ``host_name`` and its broker user with a new password."""
    plaintext = JOIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = HostJoinToken.objects.create(
        token_hash=_hash(plaintext),
        host_name=host_name,
        workload_address=workload_address,
        note=note,
        created_by=actor,
        expires_at=timezone.now() + JOIN_TOKEN_TTL,
        host=host,
    )
    # The broker user is set last, inside the transaction rather than on commit: whoever is
    # shown these credentials may use them at once, within a transaction of its own (the
    # admin's form, a test); only a failed commit can leave Redis ahead of the database.
    return HostCredentials(host_name, plaintext, host_broker_user_set(host_name), token.pk)


@transaction.atomic
def host_revoke(*, host: Host) -> Host:
    """Cut a host off at once: its broker user is deleted (Redis closes its connections), its
    key forgotten, its unused join tokens dropped, and it takes no new placements. What it
    ran is lost once the reconciler finds it silent; it comes back only by rotation."""
    host = host_set_draining(host=_key_forget(host), draining=True)
    host_broker_user_remove(host.name)
    return host


@transaction.atomic
def host_removal_refusal(host: Host) -> str | None:
    """Why ``host`` cannot be removed now, naming what holds it, or None: what runs there
    (active placements), and what exists only there (a notebook's files not saved anywhere
    else: apps.machines.hooks ``host_only_copies``)."""
    running = list(
        Placement.objects.filter(host=host, active=True)
        .order_by("workload")
        .values_list("workload", flat=True)[:11]
    )
    if running:
        named = ", ".join(running[:10]) + (" and more" if len(running) > 10 else "")  # noqa: PLR2004
        return (
            f"{host.name} still runs {named}: drain it, and stop or move what runs there "
            "(Move notebooks now) first."
        )
    only = host_only_copies(host)
    if only:
        named = ", ".join(only[:10]) + (" and more" if len(only) > 10 else "")  # noqa: PLR2004
        return (
            f"{host.name} holds the only copy of the files of {named}: start each once on "
            "another host (or bring this one back until they are saved) first."
        )
    return None


def host_stranded(host: Host) -> str | None:
    """What revoking ``host`` strands, said to the admin who revokes it (a revoke is never
    refused: it cuts off stolen credentials): the notebooks whose only copy of their files
    is there (apps.machines.hooks ``host_only_copies``), or None."""
    only = host_only_copies(host)
    if not only:
        return None
    named = ", ".join(only[:10]) + (" and more" if len(only) > 10 else "")  # noqa: PLR2004
    return (
        f"{host.name} held the only copy of the files of {named}: until it is back (its "
        "credentials rotated), each starts elsewhere from its newest snapshot, if any, "
        "without the changes made after it."
    )


def host_delete(*, host: Host) -> None:
    """Delete a host that never ran anything (one with history is revoked instead) and its
    broker user, at once: not while something runs there or exists only there
    (``host_removal_refusal``)."""
    refusal = host_removal_refusal(host)
    if refusal is not None:
        raise HostError(refusal)
    if Placement.objects.filter(host=host).exists():
        raise HostError(f"{host.name} has run workloads: revoke it instead of deleting it.")
    HostJoinToken.objects.filter(host_name=host.name, used_at__isnull=True).delete()
    name = host.name
    host.delete()
    host_broker_user_remove(name)


@transaction.atomic
def host_ensure_local(*, name: str, inventory: dict[str, Any], runtime: str) -> Host:
    """The embedded default's own machine: registered without a token, kept ready. Its
    agent runs in this process, which therefore holds its key (apps.machines.identity)."""
    host, _ = Host.objects.get_or_create(name=name, defaults={"status": Host.Status.READY})
    host.runtime = runtime
    host.labels = {**host.labels, "local": "true"}
    host.workload_address = "127.0.0.1"
    if not host.signing_key:
        host.signing_key = new_key()
    host.save(update_fields=["runtime", "labels", "workload_address", "signing_key"])
    identity_set(host.name, host.signing_key)
    return host_apply_inventory(host=host, inventory=inventory)


def endpoint_on_host(host: Host, endpoint: str) -> bool:
    """Whether ``endpoint`` (as an agent reports it) is an HTTP server on ``host``'s workload
    address and an unprivileged port, and nothing more (no path, credentials or query)."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname is not None
        and parts.hostname == str(host.workload_address)
        and port is not None
        and _LOWEST_WORKLOAD_PORT <= port <= _HIGHEST_PORT
        and parts.username is None
        and parts.password is None
        and parts.path in {"", "/"}
        and not parts.query
        and not parts.fragment
        and endpoint == f"http://{parts.netloc}{parts.path}"
    )


@transaction.atomic
def host_apply_inventory(
    *,
    host: Host,
    inventory: dict[str, Any],
) -> Host:
    """Record capacity and GPUs as the agent reports them; a GPU no longer listed is not present."""
    host = Host.objects.select_for_update(no_key=True).get(pk=host.pk)
    host.cpu_count = int(inventory.get("cpu_count", 0))
    host.memory_bytes = int(inventory.get("memory_bytes", 0))
    host.disk_bytes = int(inventory.get("disk_bytes", 0))
    host.driver_version = str(inventory.get("driver_version", ""))
    host.last_heartbeat_at = timezone.now()
    if host.status == Host.Status.OFFLINE:
        host.status = Host.Status.DRAINING if host.drain_requested else Host.Status.READY
    host.save()
    # Agents report every few seconds and GPUs rarely change: read the rows
    # once and write only what differs, not one upsert per GPU per report.
    reported = {
        gpu["uuid"]: {
            "host_id": host.pk,
            "index": int(gpu["index"]),
            "name": gpu["name"],
            "memory_bytes": int(gpu["memory_total"]),
            "parent_uuid": gpu.get("parent_uuid", ""),
            "mig_enabled": bool(gpu.get("mig_mode", [0])[0]),
            "present": True,
        }
        for gpu in inventory.get("gpus", [])
    }
    known = {d.uuid: d for d in GPUDevice.objects.filter(uuid__in=reported)}
    # A GPU another host holds stays there: a host speaks for its own devices only.
    foreign = {uuid for uuid, device in known.items() if device.host_id != host.pk}
    if foreign:
        logger.warning("%s reported GPUs of other hosts, ignored: %s", host, sorted(foreign))
        reported = {uuid: values for uuid, values in reported.items() if uuid not in foreign}
    fields = ["index", "name", "memory_bytes", "parent_uuid", "mig_enabled", "present"]
    changed = []
    for uuid, values in reported.items():
        device = known.get(uuid)
        if device is None:
            continue
        if any(getattr(device, f) != v for f, v in values.items()):
            for f, v in values.items():
                setattr(device, f, v)
            changed.append(device)
    if changed:
        GPUDevice.objects.bulk_update(changed, fields)
    new = [GPUDevice(uuid=u, **v) for u, v in reported.items() if u not in known]
    if new:
        GPUDevice.objects.bulk_create(new)
    GPUDevice.objects.filter(host=host, present=True).exclude(uuid__in=reported).update(
        present=False,
    )
    return host


def host_set_draining(*, host: Host, draining: bool) -> Host:
    """Stop (or resume) new placements on ``host``; what runs there keeps running."""
    told = draining and not host.drain_requested
    host.drain_requested = draining
    if host.status != Host.Status.OFFLINE:
        host.status = Host.Status.DRAINING if draining else Host.Status.READY
    host.save(update_fields=["drain_requested", "status"])
    if told:
        # What runs there hears of it (a notebook's notice: it moves at its next stop).
        transaction.on_commit(partial(host_draining, host))
    return host
