"""Who an agent is: its host's name and signing key, and the signed envelope it sends in.

Every message from an agent to the control plane (join, report, workload event, log frame)
is one ``control.inbox`` task on the inbox queue whose only argument is an envelope:

    {"v": 1, "host": "gpu-2", "kind": "event", "at": 1712345678.12, "body": {...}, "sig": "..."}

``sig`` is HMAC-SHA256, under the host's key, of the canonical JSON of the other fields.
The control plane verifies it against the key it stored for that host when it joined
(apps.machines.inbox), so the host a message is about is the one whose key signed it: a
name in the body counts for nothing. ``at`` lets it refuse stale messages.

An agent process keeps its identity here: the real agent loads it from its key file
(``identity_load``), which it makes at its first join; the embedded default, whose only host
runs in the web process, sets it from the database (``identity_set``). Sending a message
under it is the inbox's (apps.machines.inbox.send): this module needs no other of this app.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

ENVELOPE_VERSION = 1
KINDS = frozenset({"join", "report", "event", "logs"})

_identities: dict[str, str] = {}
_lock = threading.Lock()


class IdentityError(Exception):
    """This process cannot speak for that host: it holds no key for it."""


def new_key() -> str:
    """A fresh signing key, as the hex text the key file and the database hold."""
    return secrets.token_hex(32)


def canonical(envelope: dict[str, Any]) -> bytes:
    """The bytes the signature covers: every field but ``sig``, in one fixed JSON form."""
    signed = [
        envelope.get("v"),
        envelope.get("host"),
        envelope.get("kind"),
        envelope.get("at"),
        envelope.get("body"),
    ]
    return json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signature(key: str, envelope: dict[str, Any]) -> str:
    return hmac.new(bytes.fromhex(key), canonical(envelope), hashlib.sha256).hexdigest()


def seal(host_name: str, key: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """An envelope of ``kind`` carrying ``body`` from ``host_name``, signed with ``key``."""
    envelope: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "host": host_name,
        "kind": kind,
        "at": time.time(),
        "body": body,
    }
    envelope["sig"] = signature(key, envelope)
    return envelope


def identity_set(host_name: str, key: str) -> None:
    """This process speaks for ``host_name`` with ``key``."""
    bytes.fromhex(key)  # refuse what is not a key now, not at the first message
    with _lock:
        _identities[host_name] = key


def identity_forget(host_name: str) -> None:
    with _lock:
        _identities.pop(host_name, None)


def identity_key(host_name: str) -> str:
    with _lock:
        key = _identities.get(host_name)
    if key is None:
        raise IdentityError(f"this agent holds no key for host {host_name}")
    return key


def identity_load(host_name: str, key_file: Path) -> tuple[str, bool]:
    """Load ``host_name``'s key from ``key_file``, making the file (mode 0600) when there is
    none yet. The key, and whether it is new (the agent must then join with it)."""
    key_file = Path(key_file)
    if key_file.exists():
        key = key_file.read_text().strip()
        identity_set(host_name, key)
        return key, False
    key = new_key()
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created with its mode, never readable by others even for a moment.
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(key + "\n")
    identity_set(host_name, key)
    return key, True
