"""Is a stored browser session still signed in? For access that outlives its request.

Log follows, team websockets and the notebook origins' cookies were let in by a
browser session. Signing out deletes that session, and a new password makes it
stale (Django keeps a hash of the password in it); either must end them too.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare


def session_signs_in(session_key: str | None, user_id: int, *, user: Any = None) -> bool:
    """Whether the stored session ``session_key`` still signs ``user_id`` in: not signed out
    or ended, and made under the user's current password (as django.contrib.auth.get_user
    checks it, fallback keys included), read without changing it. ``user``: that user as
    the caller has just read it from the database (saves reading it again)."""
    if not session_key:
        return False
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()
    if str(data.get(SESSION_KEY)) != str(user_id) or not data.get(HASH_SESSION_KEY):
        return False
    if user is None:
        user = get_user_model()._default_manager.filter(pk=user_id, is_active=True).first()
    if user is None or not user.is_active:
        return False
    stored = str(data[HASH_SESSION_KEY])
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return any(constant_time_compare(stored, expected) for expected in hashes)
