"""The gateway's route table (owned by the gateway helper; this is the contract only)."""

from __future__ import annotations


def routes_changed(deployment_id: int) -> None:
    """Forget every process's cached routes of this deployment (call on commit)."""
    raise NotImplementedError
