"""Secrets at rest: values sealed with Fernet (``cryptography``) under keys from settings.

``LATTICE_SECRETS_KEYS``: Fernet keys, newest first (comma-separated in the environment);
values are sealed with the first and opened with any, so a key is rotated by putting a new
one first, re-sealing, then dropping the old. Without it, one key is derived from
SECRET_KEY (HKDF-SHA256): then changing SECRET_KEY makes every stored secret unreadable
(they must be entered again), so production should set the keys.
"""

from __future__ import annotations

import base64
import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

__all__ = ["SealError", "open_json", "seal_json"]


class SealError(Exception):
    """A sealed value none of the keys opens (the keys changed, or it was tampered with)."""


def _derived_key(secret: str) -> bytes:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"lattice secrets").derive(
        secret.encode()
    )
    return base64.urlsafe_b64encode(raw)


@cache
def _box(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in keys] or [Fernet(_derived_key(secret_key))])


def _current() -> MultiFernet:
    return _box(tuple(getattr(settings, "LATTICE_SECRETS_KEYS", ()) or ()), settings.SECRET_KEY)


def seal_json(value: object) -> bytes:
    """``value`` as JSON, sealed with the newest key."""
    return _current().encrypt(json.dumps(value, sort_keys=True).encode())


def open_json(sealed: bytes) -> object:
    """What ``seal_json`` sealed. Raises SealError when no key opens it."""
    try:
        return json.loads(_current().decrypt(bytes(sealed)))
    except InvalidToken as exc:
        raise SealError("A stored secret cannot be opened with the configured keys.") from exc
