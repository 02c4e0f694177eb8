"""What the apps above machines plug into it (apps.core.hooks), from their ``AppConfig.ready()``.

- ``workload_kinds``: what the control plane does with the reports of a kind of workload,
  by the prefix of its name ("nb" for "nb-12-s34"): who handles its events and which stream
  its output goes to. A workload of a kind nobody registered is handled here (a failure
  frees its placement) and its output is dropped.
- ``machine_type_added``: told of each machine type an admin adds (its first price is
  recorded, say); by default nothing.
- ``host_draining``: told (once it commits) that an admin drains a host: what runs there
  hears of it (a notebook's notice); by default nothing.
- ``host_move_now``: an admin's "Move notebooks now" on a draining host: what runs there is
  stopped to start again elsewhere; how many; by default none.
- ``host_only_copies``: what exists only on a host (a notebook's files not yet saved
  anywhere else), named, for the refusal to remove it; by default nothing.
- ``host_offline``: told (in the reconciler's pass) that a host went offline: what it was
  doing for the apps above ends (a notebook snapshot it was reading fails at once); by
  default nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apps.core.hooks import Hook, HookTable

if TYPE_CHECKING:
    from collections.abc import Callable

    from apps.machines.models import Host, MachineType


@dataclass(frozen=True)
class WorkloadKind:
    """One kind of workload's handlers, both given the reporting host's name and the
    workload's: ``on_event(host, workload, event, data)`` for what its agent says of it
    (progress, started, ready, failed, stopped), ``stream(host, workload)`` for the
    stream its output goes to, or None when that host does not run it, and
    ``placed(workload)``, told once a waiting request of that workload was placed by
    whoever moved the line (apps.machines.queue), so it goes on at once, and
    ``lines(host, workload, lines)``, shown each frame of its output (masked, as published)
    from the host it is placed on, for a kind that reads something out of it."""

    on_event: Callable[[str, str, str, dict[str, Any]], None]
    stream: Callable[[str, str], str | None]
    placed: Callable[[str], None] | None = None
    lines: Callable[[str, str, list[str]], None] | None = None


workload_kinds: HookTable[str, WorkloadKind] = HookTable("workload kinds")


def workload_kind(name: str) -> WorkloadKind | None:
    """The registered kind of workload ``name`` ("<kind>-..."), if any."""
    return workload_kinds.get(name.split("-", 1)[0])


def _nothing(machine_type: MachineType) -> None:
    return None


machine_type_added: Hook[[MachineType], None] = Hook("machine type added", default=_nothing)


def _told_nothing(host: Host) -> None:
    return None


host_draining: Hook[[Host], None] = Hook("host draining", default=_told_nothing)


def _moved_none(host: Host) -> int:
    return 0


host_move_now: Hook[[Host], int] = Hook("move off a host now", default=_moved_none)


def _holds_nothing(host: Host) -> list[str]:
    return []


host_only_copies: Hook[[Host], list[str]] = Hook("only copies on a host", default=_holds_nothing)


host_offline: Hook[[Host], None] = Hook("host offline", default=_told_nothing)
