"""Deployments: create, status, invoke, logs, rollback (owner: helper "sdk")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lattice.resources import Resource

if TYPE_CHECKING:
    import builtins
    from collections.abc import Iterator

    from lattice.types import Deployment, InvokeResult, LogLine


class Deployments(Resource):
    def list(self, team: str | None = None) -> builtins.list[Deployment]:
        raise NotImplementedError

    def get(self, deployment: str, *, team: str | None = None) -> Deployment:
        raise NotImplementedError

    def create(
        self,
        name: str,
        *,
        model: str,
        version: int | None = None,
        alias: str | None = None,
        team: str | None = None,
        **fields: Any,
    ) -> Deployment:
        raise NotImplementedError

    def rollback(self, deployment: str, revision: int, *, team: str | None = None) -> Deployment:
        raise NotImplementedError

    def invoke(
        self,
        deployment: str,
        payload: Any = None,
        *,
        path: str = "",
        method: str = "POST",
        team: str | None = None,
    ) -> InvokeResult:
        """One call of the endpoint (``/api/v1/teams/<team>/deployments/<slug>/invoke/<path>``)
        with the client's token; ``payload`` goes as JSON."""
        raise NotImplementedError

    def logs(
        self, deployment: str, *, team: str | None = None, follow: bool = False
    ) -> Iterator[LogLine]:
        raise NotImplementedError

    def delete(self, deployment: str, *, team: str | None = None) -> None:
        raise NotImplementedError
