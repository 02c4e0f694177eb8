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


def sessions_signing_in(pairs: set[tuple[str, int]]) -> set[str]:
    """Of the (session key, user id) pairs, the session keys that still sign their user in
    (``session_signs_in`` for each), read in a constant number of queries for all of them
    with the database session engines (the rows of the sessions, then their users): what a
    process-wide periodic check of its long-lived sockets asks. Other engines (signed
    cookies, cache) are asked one by one (no database query per key)."""
    pairs = {(key, user_id) for key, user_id in pairs if key}
    if not pairs:
        return set()
    engine = import_module(settings.SESSION_ENGINE)
    if settings.SESSION_ENGINE != "django.contrib.sessions.backends.db":
        return {key for key, user_id in pairs if session_signs_in(key, user_id)}
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    store = engine.SessionStore()
    rows = Session.objects.filter(
        session_key__in={key for key, _ in pairs}, expire_date__gt=timezone.now()
    ).values_list("session_key", "session_data")
    data = {key: store.decode(encoded) for key, encoded in rows}
    users = {
        user.pk: user
        for user in get_user_model()._default_manager.filter(
            pk__in={user_id for key, user_id in pairs if key in data}, is_active=True
        )
    }
    held: set[str] = set()
    for key, user_id in pairs:
        session = data.get(key)
        user = users.get(user_id)
        if session is None or user is None:
            continue
        if str(session.get(SESSION_KEY)) != str(user_id) or not session.get(HASH_SESSION_KEY):
            continue
        stored = str(session[HASH_SESSION_KEY])
        hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
        if any(constant_time_compare(stored, expected) for expected in hashes):
            held.add(key)
    return held
