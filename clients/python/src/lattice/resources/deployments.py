"""Deployments: create, status, invoke, logs, rollback (owner: helper "sdk").

A ``deployment`` argument is its slug, or its name.

``invoke`` returns the replica's answer, whatever its status (a model's own 400 or 500 is
an ``InvokeResult`` with that status, for the caller to read). Only Lattice's own refusals
are raised as LatticeError: the gateway marks each of its own answers with an
``X-Lattice-Error`` header (401 no or a bad token, 403 not allowed, 404 no such
deployment, 429 over the deployment's rate limit, 503 no ready replica in time or paused,
502/504 the replica did not answer). A throttled invoke is not sent again.

``logs(follow=True)`` is the replicas' log route's ``?follow=1`` (NDJSON), asked again
from the last line seen each time the server ends a response: it runs until the caller
stops reading, since a deployment does not end by itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lattice.errors import Conflict, LatticeError, NotFound
from lattice.resources import Resource, log_lines
from lattice.types import Deployment, InvokeResult

if TYPE_CHECKING:
    import builtins
    from collections.abc import Iterator

    from lattice.types import LogLine

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_LOG_PAGE = 500


class Deployments(Resource):
    def _where(self, deployment: str, team: str | None) -> str:
        """``/teams/<team>/deployments/<slug>/`` for the deployment named (by slug, or by
        name when it is not one)."""
        team_slug = self.client.team_slug(team)
        base = f"/teams/{team_slug}/deployments/"
        text = str(deployment).strip()
        if _SLUG.match(text):
            return f"{base}{text}/"
        found = [d for d in self.transport.paginated(base, page_size=200) if d.get("name") == text]
        if not found:
            raise NotFound(f"No deployment named {text!r} in team {team_slug}.", code="not_found")
        if len(found) > 1:
            slugs = ", ".join(str(d.get("slug")) for d in found)
            raise Conflict(
                f"{len(found)} deployments in team {team_slug} are named {text!r} "
                f"({slugs}): give the slug instead.",
                code="ambiguous_name",
            )
        return f"{base}{found[0]['slug']}/"

    def list(self, team: str | None = None) -> builtins.list[Deployment]:
        path = f"{self.client.team_path(team)}/deployments/"
        return [Deployment.from_api(item) for item in self.transport.paginated(path)]

    def get(self, deployment: str, *, team: str | None = None) -> Deployment:
        """Its status: revisions (newest first), replicas, the rollout, the traffic split
        and its endpoint's addresses."""
        return Deployment.from_api(self.transport.json("GET", self._where(deployment, team)))

    def create(
        self,
        name: str,
        *,
        model: str,
        version: int | None = None,
        alias: str | None = None,
        team: str | None = None,
        machine_type: str | None = None,
        **fields: Any,
    ) -> Deployment:
        """Deploy ``model`` (its slug) at ``version`` (a ready version's number), or
        following its ``alias``, on ``machine_type``; ``fields`` as the API takes them
        (auth_mode, description, min_replicas, max_replicas, env, team_secrets, ...)."""
        if (version is None) == (alias is None):
            raise LatticeError(
                "Give the model's version or an alias to follow (one of them).",
                code="invalid",
                status=400,
            )
        body: dict[str, Any] = {"name": name, "model": model, **fields}
        if version is not None:
            body["version"] = int(version)
        else:
            body["follows_alias"] = alias
        if machine_type is not None:
            body["machine_type"] = machine_type
        path = f"{self.client.team_path(team)}/deployments/"
        return Deployment.from_api(self.transport.json("POST", path, json=body))

    def rollback(self, deployment: str, revision: int, *, team: str | None = None) -> Deployment:
        """Roll back to ``revision`` (its number): a new revision with its spec, rolled out
        like any change; the deployment as it is then."""
        where = self._where(deployment, team)
        self.transport.json("POST", f"{where}revisions/{int(revision)}/rollback/")
        return Deployment.from_api(self.transport.json("GET", where))

    def invoke(
        self,
        deployment: str,
        payload: Any = None,
        *,
        path: str = "",
        method: str = "POST",
        team: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> InvokeResult:
        """One call of the endpoint (``/api/v1/teams/<team>/deployments/<slug>/invoke/<path>``)
        with the client's token; ``payload`` goes as JSON (bytes go as they are). The
        replica's answer, whatever its status; Lattice's own refusals raise (module doc)."""
        where = self._where(deployment, team)
        url = f"{where}invoke/{path.lstrip('/')}"
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if isinstance(payload, bytes | bytearray):
            kwargs["content"] = bytes(payload)
        elif payload is not None:
            kwargs["json"] = payload
        response = self.transport.send(method.upper(), url, **kwargs)
        if response.headers.get("X-Lattice-Error"):
            raise LatticeError.from_response(response)
        return InvokeResult(
            status=response.status_code,
            headers=dict(response.headers),
            body=response.content,
        )

    def logs(
        self, deployment: str, *, team: str | None = None, follow: bool = False
    ) -> Iterator[LogLine]:
        """Its replicas' recent log lines; with ``follow``, then new ones as they come
        (``?follow=1``, asked again from the last line seen whenever the server ends a
        response) until the caller stops reading."""
        path = f"{self._where(deployment, team)}logs/"
        after, epoch = 0, ""
        while True:
            page = self.transport.json(
                "GET", path, params={"after": after, "epoch": epoch, "limit": _LOG_PAGE}
            )
            messages = page.get("messages") or []
            for message in messages:
                after = max(after, int(message.get("seq") or 0))
                yield from log_lines(message)
            epoch = str(page.get("epoch") or "")
            if len(messages) < _LOG_PAGE:
                break
        while follow:
            for message in self.stream_follow(path, after=after, epoch=epoch):
                after = max(after, int(message.get("seq") or 0))
                yield from log_lines(message)

    def delete(self, deployment: str, *, team: str | None = None) -> None:
        """Delete it: every replica stopped, its keys revoked."""
        self.transport.request("DELETE", self._where(deployment, team))
