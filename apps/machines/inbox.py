"""The control plane's inbox: every message from an agent, verified before it is believed.

Agents put one task on the ``inbox`` queue per message, ``control.inbox(envelope)`` (the task
``inbox`` here; ``send`` puts it there), signed with their host's key
(apps.machines.identity); it is the only queue a host's broker user may write, and the only
task that runs from it (apps.core.broker). Here an envelope is checked, then handed on with
the host whose key signed it:

- its shape (version, kind, types) and age (LATTICE_INBOX_MAX_AGE either way);
- "join": the single-use join token made for that host name, and the new key it brings (the
  envelope must be signed with it) -> ``host_register``;
- anything else: the signature, under the key stored for the host it names; a host without a
  key (not joined, or revoked) is believed in nothing -> ``host_reported``,
  ``workload_event``, ``workload_logs`` (apps.machines.reports), which believe a host only
  about workloads placed on it.

Whatever fails is logged and dropped, never retried: a refusal is an answer.
"""

from __future__ import annotations

import hmac
import logging
import time
from datetime import UTC, datetime
from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from apps.machines.identity import ENVELOPE_VERSION, KINDS, identity_key, seal, signature
from apps.machines.models import Host
from apps.machines.reports import host_reported, workload_event, workload_logs
from apps.machines.services import HostError, host_register

logger = logging.getLogger(__name__)


@shared_task(name="control.inbox", soft_time_limit=30, time_limit=60)
def inbox(envelope: Any) -> None:
    """A signed message from an agent: verified, then believed only about its own host."""
    inbox_receive(envelope)


# How long an agent keeps trying to put a message on the inbox while the broker refuses it:
# Redis restarting (a second or two), then the agent's broker user lost until beat makes it
# again (LATTICE_BROKER_USERS_EVERY, apps.machines.broker). Celery's default (3 tries within
# a second) dropped a start's "started" event there, with the container running: the session
# then waited for the redispatch (LATTICE_NOTEBOOK_REDISPATCH_AFTER) to hear of it.
SEND_RETRY_POLICY = {
    "max_retries": 40,
    "interval_start": 0.25,
    "interval_step": 0.25,
    "interval_max": 1.0,
}  # about 35 s in all


def send(host_name: str, kind: str, body: dict[str, Any]) -> None:
    """Sign ``body`` as ``host_name`` (with the key this process holds for it) and put it on
    the inbox queue: how an agent says anything. Sent again while the broker refuses it
    (SEND_RETRY_POLICY), then the broker's error is raised."""
    envelope = seal(host_name, identity_key(host_name), kind, body)
    inbox.apply_async((envelope,), retry=True, retry_policy=SEND_RETRY_POLICY)


class RefusedError(Exception):
    """An envelope the inbox does not believe; the message says why."""


def _need(condition: bool, why: str) -> None:
    if not condition:
        raise RefusedError(why)


def _signed_by(envelope: dict[str, Any], key: str) -> bool:
    sig = envelope.get("sig")
    if not isinstance(sig, str) or not key:
        return False
    return hmac.compare_digest(sig, signature(key, envelope))


def _check_shape(envelope: Any) -> None:
    _need(isinstance(envelope, dict), "not an envelope")
    _need(envelope.get("v") == ENVELOPE_VERSION, "unknown version")
    _need(envelope.get("kind") in KINDS, "unknown kind")
    _need(isinstance(envelope.get("host"), str) and bool(envelope["host"]), "no host")
    _need(isinstance(envelope.get("body"), dict), "no body")
    at = envelope.get("at")
    _need(isinstance(at, int | float) and not isinstance(at, bool), "no time")
    _need(abs(time.time() - at) <= settings.LATTICE_INBOX_MAX_AGE, "stale or from the future")


def envelope_open(envelope: Any) -> tuple[Host, str, dict[str, Any]]:
    """The host whose key signed ``envelope``, its kind and body; RefusedError if not believed."""
    _check_shape(envelope)
    name, kind, body = envelope["host"], envelope["kind"], envelope["body"]
    if kind == "join":
        key = body.get("key")
        _need(isinstance(key, str) and _is_key(key), "a join brings no key")
        _need(_signed_by(envelope, key), "a join not signed with the key it brings")
        try:
            host = host_register(
                name=name,
                join_token=str(body.get("token", "")),
                key=key,
                inventory=_dict(body.get("inventory")),
            )
        except HostError as exc:
            raise RefusedError(str(exc)) from exc
        return host, kind, body
    found = Host.objects.filter(name=name).first()
    if found is None or not _signed_by(envelope, found.signing_key):
        raise RefusedError("bad signature")
    return found, kind, body


def _is_key(text: str) -> bool:
    try:
        return len(bytes.fromhex(text)) == 32  # noqa: PLR2004 - a 256-bit key
    except ValueError:
        return False


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    _need(isinstance(value, str) and bool(value), "a name is missing")
    return str(value)


def inbox_receive(envelope: Any) -> None:
    """One message from an agent (the task ``control.inbox``; see the module's docstring)."""
    try:
        host, kind, body = envelope_open(envelope)
        _HANDLERS[kind](host, body)
    except RefusedError as exc:
        claimed = envelope.get("host") if isinstance(envelope, dict) else None
        logger.warning("inbox: refused a message claiming host %r: %s", claimed, exc)


def _on_join(host: Host, body: dict[str, Any]) -> None:
    logger.info("host %s joined", host)


def _on_report(host: Host, body: dict[str, Any]) -> None:
    workloads, collected_at = body.get("workloads"), body.get("collected_at")
    if not isinstance(workloads, list):
        raise RefusedError("a report without workloads")
    if not isinstance(collected_at, int | float):
        raise RefusedError("a report without its time")
    reported = [w for w in workloads if _workload_shaped(w)]
    host_reported(host, _dict(body.get("inventory")), reported, collected_at)


def said_moment(value: Any, *, earliest: datetime) -> datetime | None:
    """A moment a host said (Unix time: its runtime's clock, Docker's State.StartedAt),
    believed only within reason, since a host is not trusted: not before ``earliest`` (what
    the control plane knows came first), not after now. None for anything else."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        moment = datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):  # nan, inf, out of range
        return None
    return moment if earliest <= moment <= timezone.now() else None


def _workload_shaped(workload: Any) -> bool:
    """A reported workload the reconciler can read: a name, and labels (if any) a mapping of
    strings. Anything else is dropped from the report, never believed half."""
    if not isinstance(workload, dict) or not isinstance(workload.get("name"), str):
        return False
    labels = workload.get("labels", {})
    return isinstance(labels, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    )


def _on_event(host: Host, body: dict[str, Any]) -> None:
    event = _str(body.get("event"))
    workload_event(host, _str(body.get("workload")), event, _dict(body.get("data")))


def _on_logs(host: Host, body: dict[str, Any]) -> None:
    frame, lines = body.get("frame"), body.get("lines")
    if not isinstance(frame, int) or frame < 1:
        raise RefusedError("a frame without its number")
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise RefusedError("a frame without lines")
    workload_logs(
        host,
        _str(body.get("workload")),
        _str(body.get("source")),
        frame,
        lines,
        backfill=body.get("backfill") is True,
    )


_HANDLERS = {"join": _on_join, "report": _on_report, "event": _on_event, "logs": _on_logs}
