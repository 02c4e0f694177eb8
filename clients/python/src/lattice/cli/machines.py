"""``lattice machine-types list``: what the team may run on, with live availability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from lattice.cli import output
from lattice.cli.context import common, state

if TYPE_CHECKING:
    from lattice.types import MachineType


@click.group("machine-types")
def group() -> None:
    """Machine types and whether a host can run them now."""


def availability(machine: MachineType) -> str:
    """ "available (3 free)", "busy (2 queued)", ...: the state and its numbers."""
    value: Any = machine.availability
    raw = machine.raw.get("availability")
    if isinstance(raw, dict):
        value = raw
    if isinstance(value, dict):
        label = str(value.get("state") or "unknown")
        if value.get("state") == "available" and value.get("free") is not None:
            return f"{label} ({value['free']} free)"
        if value.get("queued"):
            return f"{label} ({value['queued']} queued)"
        return label
    return str(value or "unknown")


def gpu(machine: MachineType) -> str:
    count, model = machine.raw.get("gpu_count") or 0, machine.raw.get("gpu_model") or ""
    return f"{count} x {model}" if count else "-"


@group.command("list")
@common
def machine_types_list() -> None:
    """The machine types the team may pick: specs, price, plan note, live availability."""
    found = state().client().machine_types.list(state().team)
    if state().json:
        output.print_json(found)
        return
    output.table(
        found,
        [
            ("SLUG", lambda m: m.slug),
            ("NAME", lambda m: m.name),
            ("VCPUS", lambda m: m.raw.get("vcpus")),
            ("MEMORY", lambda m: f"{m.raw['memory_gib']} GiB" if m.raw.get("memory_gib") else ""),
            ("GPU", gpu),
            ("$/HOUR", lambda m: m.raw.get("hourly_price")),
            ("PLAN", lambda m: m.raw.get("plan_note") or "included"),
            ("AVAILABILITY", availability),
        ],
        empty="No machine types offered.",
    )
