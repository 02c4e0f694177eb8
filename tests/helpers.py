"""Small helpers tests share: reading links out of sent mail, computing TOTP codes,
confirming the password again, waiting for something another thread or process does, API
tokens and a client that sends one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

from django.core import mail
from django.urls import reverse
from rest_framework.test import APIClient

from apps.accounts.models import TOKEN_SCOPES
from apps.accounts.tokens import token_create
from tests.factories import PASSWORD

if TYPE_CHECKING:
    from collections.abc import Callable

    from apps.accounts.models import PersonalAccessToken, User
    from apps.teams.models import Team

_LINK = re.compile(r"https?://\S+")


def last_mail_link(containing: str) -> str:
    """The first link containing ``containing`` in the newest message sent."""
    assert mail.outbox, "no email was sent"
    links = [link for link in _LINK.findall(str(mail.outbox[-1].body)) if containing in link]
    assert links, f"no link with {containing!r} in: {mail.outbox[-1].body}"
    return links[0]


def totp(secret: str, at: float | None = None, period: int = 30, digits: int = 6) -> str:
    """RFC 6238 TOTP (HMAC-SHA1), written out here so tests check allauth against the RFC.

    For "now", a code from a window about to close could expire before the
    server checks it (allauth allows no drift by default): wait for the next.
    """
    if at is None:
        left = period - time.time() % period
        if left < 3:
            time.sleep(left + 0.05)
    counter = int((time.time() if at is None else at) // period)
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**digits:0{digits}d}"


def reauthenticate(client, password: str | None = None) -> None:
    """Confirm the password on allauth's page, as a person asked again would."""
    response = client.post(reverse("account_reauthenticate"), {"password": password or PASSWORD})
    assert response.status_code == 302, "reauthentication was refused"


def wait_for(condition: Callable[[], object], timeout: float = 15.0) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds (asked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def make_token(
    user: User, scopes: list[str] | None = None, team: Team | None = None, days: int | None = 30
) -> tuple[PersonalAccessToken, str]:
    """A token of ``user``'s (every scope unless told) made by the app's token_create, and
    its plaintext."""
    return token_create(
        user=user, name="cli", scopes=scopes or list(TOKEN_SCOPES), team=team, expires_in_days=days
    )


def bearer(plaintext: str) -> APIClient:
    """An API client that sends ``plaintext`` as its bearer token."""
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return api


def logs_shipped(timeout: float = 5.0) -> None:
    """Wait until this process's log shippers have sent what their workloads printed: a
    start ships the workload's output from a thread of its own (apps.machines.logship), so
    a test that reads a stream right after a start would otherwise race that frame (the
    fake runtime's output ends at once, so its shippers finish)."""
    from apps.machines import logship

    deadline = time.monotonic() + timeout
    for shipper in list(logship._shippers.values()):
        shipper.done.wait(max(0.0, deadline - time.monotonic()))


def copy_client_beside(images_copy: Path) -> None:
    """Copy clients/python beside ``images_copy`` (a copy of images/): the notebook image
    installs the client, so its source is an input of the image's name (build-local.sh,
    apps.runtimes.images), and a copy without it names another image."""
    import shutil

    client = Path(__file__).resolve().parents[1] / "clients" / "python"
    shutil.copytree(
        client,
        images_copy.parent / "clients" / "python",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
