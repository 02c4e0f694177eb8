"""Writes to hosts: join tokens, registration, inventory, heartbeats, draining."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from apps.machines.models import GPUDevice, Host, HostJoinToken

if TYPE_CHECKING:
    from apps.accounts.models import User

JOIN_TOKEN_PREFIX = "latjoin_"  # noqa: S105 - a prefix, not a secret
JOIN_TOKEN_TTL = timedelta(hours=24)


class HostError(Exception):
    """A host operation the rules refuse; the message says why."""


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def join_token_create(*, actor: User | None, note: str = "") -> str:
    """A single-use token that lets one host register within JOIN_TOKEN_TTL; the plaintext."""
    plaintext = JOIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    HostJoinToken.objects.create(
        token_hash=_hash(plaintext),
        note=note,
        created_by=actor,
        expires_at=timezone.now() + JOIN_TOKEN_TTL,
    )
    return plaintext


@transaction.atomic
def host_register(*, name: str, join_token: str, inventory: dict[str, Any]) -> Host:
    """Register a new host with a join token, which is used up; apply its inventory."""
    token = (
        HostJoinToken.objects.select_for_update()
        .filter(token_hash=_hash(join_token), used_at__isnull=True)
        .first()
    )
    if token is None or token.expires_at <= timezone.now():
        raise HostError("This join token is not valid: it may be mistyped, used or expired.")
    if Host.objects.filter(name=name).exists():
        raise HostError(f"A host named {name} is already registered.")
    host = Host.objects.create(name=name, status=Host.Status.READY)
    token.used_at = timezone.now()
    token.host = host
    token.save(update_fields=["used_at", "host"])
    return host_apply_inventory(host=host, inventory=inventory)


@transaction.atomic
def host_ensure_local(*, name: str, inventory: dict[str, Any], runtime: str) -> Host:
    """The embedded default's own machine: registered without a token, kept ready."""
    host, _ = Host.objects.get_or_create(name=name, defaults={"status": Host.Status.READY})
    host.runtime = runtime
    host.labels = {**host.labels, "local": "true"}
    host.save(update_fields=["runtime", "labels"])
    return host_apply_inventory(host=host, inventory=inventory)


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
    fields = ["host_id", "index", "name", "memory_bytes", "parent_uuid", "mig_enabled", "present"]
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
    host.drain_requested = draining
    if host.status != Host.Status.OFFLINE:
        host.status = Host.Status.DRAINING if draining else Host.Status.READY
    host.save(update_fields=["drain_requested", "status"])
    return host
