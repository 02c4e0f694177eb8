"""Revocation is immediate (ARCHITECTURE decision 12): one channel-layer group per user.

Whatever keeps a person's access open for a while joins ``user_group(user.pk)``:
the team websocket consumers, the notebook proxy's websockets, log follows. When
a membership ends or a role is lowered, the teams app calls ``access_changed``;
once the change commits, every such holder hears ``{"type": "access.changed",
"team": <team id or None>}``, checks the person's access again and closes what
it no longer allows. It does not wait for the client's next message.

A consumer handles the message in a method named ``access_changed`` (Channels
maps the type's dot to an underscore). ``team`` is None when every team is
concerned (the account was deactivated, say).
"""

from __future__ import annotations

from django.db import transaction

from apps.core.stream import group_send

ACCESS_CHANGED = "access.changed"


def user_group(user_id: int) -> str:
    """The channel-layer group every open connection of ``user_id`` joins."""
    return f"user.{user_id}"


def access_changed(*, user_id: int, team_id: int | None) -> None:
    """Tell every open connection of the user to check its access again, after commit."""
    payload = {"type": ACCESS_CHANGED, "team": team_id}
    transaction.on_commit(lambda: group_send(user_group(user_id), payload))
