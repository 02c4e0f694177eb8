"""One module per area of the API; each resource holds its Client and nothing else.

``Resource`` also holds what several areas share: naming a thing by id or name
(``resolve_id``) and reading a live stream (a notebook's or a run's log: ``stream_page``
and ``stream_follow``, the server's apps.notebooks.api.logs routes).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

from lattice.errors import Conflict, NotFound
from lattice.types import LogLine

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from lattice.client import Client
    from lattice.http import Transport

# The longest follow the server grants in one response (its MAX_FOLLOW_SECONDS); a longer
# follow is several responses, each resuming after the last message seen.
FOLLOW_SECONDS = 600
_LOG_PAGE = 1000


class Resource:
    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def transport(self) -> Transport:
        return self.client.transport

    def resolve_id(
        self,
        value: int | str,
        *,
        path: str,
        kind: str,
        team: str,
        keys: tuple[str, ...] = ("name",),
    ) -> int:
        """The id ``value`` names: itself when an int or digits, else the one item of the
        list at ``path`` whose ``keys`` (its name, or slug) equal it. NotFound when none
        does, Conflict when several do (then only the id says which)."""
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        found = [
            item
            for item in self.transport.paginated(path, page_size=200)
            if any(item.get(key) == text for key in keys)
        ]
        if not found:
            raise NotFound(f"No {kind} named {text!r} in team {team}.", code="not_found")
        if len(found) > 1:
            ids = ", ".join(str(item.get("id")) for item in found)
            raise Conflict(
                f"{len(found)} {kind}s in team {team} are named {text!r} (ids {ids}): "
                "give the id instead.",
                code="ambiguous_name",
            )
        return int(found[0]["id"])

    def stream_page(self, path: str) -> Iterator[dict[str, Any]]:
        """Every message a live stream's buffer holds now, oldest first."""
        after, epoch = 0, ""
        while True:
            page = self.transport.json(
                "GET", path, params={"after": after, "epoch": epoch, "limit": _LOG_PAGE}
            )
            messages = page.get("messages") or []
            yield from messages
            epoch = page.get("epoch") or ""
            if not messages:
                return
            after = int(messages[-1].get("seq") or 0)
            if after >= int(page.get("last") or 0):
                return

    def stream_position(self, path: str) -> tuple[int, str]:
        """The stream's latest message number and epoch: where a follow of only what comes
        next starts."""
        page = self.transport.json("GET", path, params={"after": 0, "limit": 1})
        return int(page.get("last") or 0), str(page.get("epoch") or "")

    def stream_follow(
        self, path: str, *, after: int = 0, epoch: str = "", seconds: int = FOLLOW_SECONDS
    ) -> Iterator[dict[str, Any]]:
        """The stream's messages after ``after`` as they come (``?follow=1``: NDJSON), until
        the server ends the response (the workload ended, or ``seconds`` passed)."""
        params: dict[str, Any] = {
            "follow": 1,
            "after": after,
            "timeout": max(1, min(int(seconds), FOLLOW_SECONDS)),
        }
        if epoch:
            params["epoch"] = epoch
        # The server sends nothing while nothing happens: wait as long as it may stay open.
        wait = httpx.Timeout(10.0, read=params["timeout"] + 30.0)
        with self.transport.stream("GET", path, params=params, timeout=wait) as response:
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def follow_lines(
        self,
        path: str,
        *,
        ended_by: Callable[[dict[str, Any]], bool | None],
        finished: Callable[[], bool],
    ) -> Iterator[LogLine]:
        """The stream at ``path`` from its oldest buffered message, as LogLines, followed
        until it ends: ``ended_by(message)`` says whether a message ends it (None: it says
        nothing; the latest verdict counts, as an older stop in the backlog may be followed
        by a start), and ``finished()`` is asked when the server closes a follow (its cap on
        one response) before a new one starts where this left off."""
        after = 0
        _, epoch = self.stream_position(path)
        while True:
            ended = False
            for message in self.stream_follow(path, after=after, epoch=epoch):
                after = int(message.get("seq") or after)
                yield from log_lines(message)
                verdict = ended_by(message)
                if verdict is not None:
                    ended = verdict
            if ended or finished():
                return
            _, epoch = self.stream_position(path)


def log_lines(message: dict[str, Any]) -> Iterator[LogLine]:
    """A stream message as LogLines: one per line of a logs message; one for a status
    change (``status`` set, ``text`` its words)."""
    seq = message.get("seq")
    kind = message.get("type")
    if kind == "logs":
        for text in message.get("lines") or []:
            yield LogLine(seq=seq, text=str(text), raw=message)
    elif kind in ("status", "run") and message.get("status"):
        status = str(message["status"])
        words = message.get("message") or message.get("label") or status
        yield LogLine(seq=seq, text=str(words), status=status, raw=message)
