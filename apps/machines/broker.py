"""Each host's own broker user: Redis ACLs that reach its queue and the inbox, nothing else.

The trusted tier (web, control worker, beat) uses the full Redis user of REDIS_URL. A host's
agent gets a Redis user of its own, made by the control plane with the host's join token
(``host_broker_user_set``), whose rules allow what kombu's Redis transport does to consume
``host.<name>`` and publish to the inbox, found by watching an agent work (ACL LOG, MONITOR):

- PING and SELECT (connecting);
- BRPOP on its queue ``host.<name>`` and the priority lists beside it
  (``host.<name>\x06\x16<n>``), LPUSH there to put back what it took and did not finish
  (a warm shutdown);
- LPUSH to the inbox, write-only: it never reads what other hosts sent;
- no other command or key: not the cache, sessions, channel layer, streams, ``control``, the
  bindings; no pub/sub channel (no remote control, events or broadcast); no scripting.

Scripting is why the agent runs kombu without ack emulation (AGENT_TRANSPORT_OPTIONS): its
bookkeeping of unacknowledged messages takes a lock through Lua (EVALSHA, SCRIPT LOAD), and
Lua is where Redis's worst bugs have been (CVE-2025-49844 ran code on the server from a
script). Without it a message an agent took is its own until it finishes (or puts it back
at a warm shutdown); one lost with a killed agent is sent again by the control plane's
reconcilers (a start or stop that made no progress), which is how lost work was repaired
already.

Redis forgets ACL users when it restarts without an ACL file (compose's Redis keeps its
queues in an append-only file, not its users). The control plane keeps each user's password
as its SHA-256 (``BrokerUser``; Redis takes ``#<sha256>`` for a password) and beat makes lost
users again every few seconds (``broker_users_restore``), so a Redis restart locks agents
out for seconds, not until an operator rotates every host.

Host names are slugs (letters, digits, ``-`` and ``_``), so ``host.<name>`` holds no glob
character and no host's patterns match another's keys. ACL users are per Redis server, not
per database: one Redis server serves one Lattice. On the embedded default's in-memory
transport there are no users (its only host runs in the web process).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from celery import current_app
from django.conf import settings
from django.core.validators import validate_slug
from django.db import transaction

from apps.core.broker import INBOX_QUEUE
from apps.machines.models import BrokerUser, host_queue

if TYPE_CHECKING:
    from redis import Redis

logger = logging.getLogger(__name__)

# kombu's separator between a queue's name and its priority (kombu.transport.redis).
_PRIORITY_SEP = "\x06\x16"
# Every command an agent sends (see above).
_COMMANDS = ("ping", "select", "brpop", "lpush")
# The agent's kombu options: no ack emulation (it would need scripting, see above).
AGENT_TRANSPORT_OPTIONS = {"ack_emulation": False}


def broker_user(host_name: str) -> str:
    """The Redis user of host ``host_name``'s agent."""
    return f"{settings.LATTICE_BROKER_USER_PREFIX}{host_name}"


def broker_acl_rules(host_name: str, password: str = "", *, password_sha256: str = "") -> list[str]:
    """``ACL SETUSER <user> ...`` rules for host ``host_name``: its queue and the inbox. The
    password is given as itself or as its SHA-256 (hex), as Redis takes either."""
    validate_slug(host_name)
    queue = host_queue(host_name)
    return [
        "reset",
        "on",
        f"#{password_sha256}" if password_sha256 else f">{password}",
        "resetchannels",
        "-@all",
        *(f"+{command}" for command in _COMMANDS),
        f"~{queue}",
        f"~{queue}{_PRIORITY_SEP}*",
        f"%W~{INBOX_QUEUE}",
    ]


def _trusted_url() -> str | None:
    """The full broker URL of the trusted tier, or None on the in-memory transport."""
    # The app config/celery.py made current: no import of config from an app (layers).
    url = str(current_app.conf.broker_url or "")
    return url if url.startswith(("redis://", "rediss://")) else None


def _client(url: str) -> Redis:
    import redis

    return redis.Redis.from_url(url)


def host_broker_user_set(host_name: str) -> str | None:
    """Make (or remake, with a new password) host ``host_name``'s Redis user; connections
    still open with its old password are closed. The agent's broker URL, or None without
    Redis (the embedded default). Its ``BrokerUser`` row is locked until the caller's
    transaction ends, so a restore (below) never writes a password older than this one."""
    url = _trusted_url()
    if url is None:
        return None
    password = secrets.token_urlsafe(32)
    user = broker_user(host_name)
    with transaction.atomic():
        BrokerUser.objects.update_or_create(
            host_name=host_name,
            defaults={"password_sha256": hashlib.sha256(password.encode()).hexdigest()},
        )
        client = _client(url)
        try:
            client.execute_command("ACL", "SETUSER", user, *broker_acl_rules(host_name, password))
            client.execute_command("CLIENT", "KILL", "USER", user)
        finally:
            client.close()
    return agent_broker_url(url, user, password)


def host_broker_user_remove(host_name: str) -> None:
    """Delete host ``host_name``'s Redis user; Redis closes its open connections with it. Its
    row goes first, locked until the caller's transaction ends: a restore waits for the
    end, then finds no row, and never makes a revoked user again."""
    with transaction.atomic():
        BrokerUser.objects.filter(host_name=host_name).delete()
        url = _trusted_url()
        if url is None:
            return
        client = _client(url)
        try:
            client.execute_command("ACL", "DELUSER", broker_user(host_name))
        finally:
            client.close()


def broker_users_restore() -> list[str]:
    """Make again, with their own passwords (kept as SHA-256), the hosts' broker users that
    Redis lost: a Redis restart without an ACL file forgets every ACL user, which locks
    every agent out while queued messages (kept by its append-only file) wait. One ``ACL
    LIST`` when nothing is missing; beat runs it every few seconds. Each user is made
    holding its row's lock, from the row as it is then (a rotation or a revoke in flight
    is waited for), and only when Redis lacks it or has another password. The host names
    whose users were made again."""
    url = _trusted_url()
    if url is None:
        return []
    client = _client(url)
    restored = []
    try:
        present = _passwords(client)
        kept = dict(BrokerUser.objects.values_list("host_name", "password_sha256"))
        for host_name, sha256 in sorted(kept.items()):
            if sha256 in present.get(broker_user(host_name), ()):
                continue
            try:
                if _restore_one(client, host_name):
                    restored.append(host_name)
            except Exception:  # one user that fails must not keep the others out
                logger.exception("broker user of %s not made again", host_name)
    finally:
        client.close()
    return restored


def _passwords(client: Redis) -> dict[str, set[str]]:
    """Every ACL user Redis has, with the SHA-256 of its passwords: one ``ACL LIST`` (lines
    such as ``user <name> on #<sha256> ...``), however many hosts."""
    users: dict[str, set[str]] = {}
    for line in client.execute_command("ACL", "LIST"):
        words = (line.decode() if isinstance(line, bytes) else str(line)).split()
        if len(words) > 1 and words[0] == "user":
            users[words[1]] = {w[1:] for w in words[2:] if w.startswith("#")}
    return users


def _has_password(client: Redis, host_name: str, sha256: str) -> bool:
    found = client.acl_getuser(broker_user(host_name))
    if not found:
        return False
    passwords = found.get("passwords")
    return isinstance(passwords, list) and sha256 in passwords


def _restore_one(client: Redis, host_name: str) -> bool:
    with transaction.atomic():
        row = BrokerUser.objects.select_for_update().filter(host_name=host_name).first()
        if row is None or _has_password(client, host_name, row.password_sha256):
            return False  # revoked meanwhile, or made (rotated) meanwhile
        rules = broker_acl_rules(host_name, password_sha256=row.password_sha256)
        client.execute_command("ACL", "SETUSER", broker_user(host_name), *rules)
        return True


def agent_broker_url(trusted_url: str, user: str, password: str) -> str:
    """``trusted_url`` with ``user`` and ``password`` in place of the trusted tier's, and the
    address agents reach Redis at (LATTICE_AGENT_BROKER_ADDRESS) when it is another; its
    options (``?ssl_cert_reqs=required``) are kept."""
    parts = urlsplit(trusted_url)
    address = settings.LATTICE_AGENT_BROKER_ADDRESS or parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{address}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
