"""Usage, derived from what ran and machine prices: never accumulated.

Three kinds of things run on a machine type and are billed the same way: notebook
sessions, deployment replicas and job attempts. Each is billed from ``started_at`` (its
container was up) to ``ended_at`` (or now, while it runs; a lost one ends when
it was last seen; a job attempt ends at ``finished_at``, when its process exited or was
last seen, each attempt of a run billed for its own seconds), whole seconds, at the
machine type's price in force at each second: a price change splits the time at the
change. Pieces are also split at midnight UTC so the usage page can chart days. Every
piece carries its kind ("notebook", "deployment" or "job") and a label (the notebook's,
deployment's or job's name).
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import Q
from django.utils import timezone

from apps.billing.models import MachinePrice
from apps.deployments.models import Replica
from apps.jobs.models import Attempt, Run
from apps.notebooks.models import NotebookSession

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from django.db.models import QuerySet

    from apps.machines.models import MachineType
    from apps.teams.models import Team

_HOUR = Decimal(3600)
_MINUTE = 60


NOTEBOOK = "notebook"
DEPLOYMENT = "deployment"
JOB = "job"
KIND_NAMES = {NOTEBOOK: "Notebooks", DEPLOYMENT: "Deployments", JOB: "Jobs"}
# The "member" of a replica's time: replicas are started by the deployment's controller,
# not by a person, so their time is the team's deployments', not whoever created them.
DEPLOYMENTS_MEMBER = "(deployments)"


@dataclass(frozen=True)
class Metered:
    """One thing that ran on a machine type and is billed by the second: a notebook
    session or a deployment replica, read the same way."""

    kind: str
    pk: int
    team_id: int
    label: str
    member: str
    machine_type: MachineType
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class UsagePiece:
    """Part of one session or replica, within one day and at one price."""

    kind: str
    # The session's or replica's id; ``label`` is its notebook's or deployment's name.
    source_id: int
    label: str
    machine_type: str
    member: str
    day: date
    seconds: int
    hourly_price: Decimal

    @property
    def cost(self) -> Decimal:
        return self.hourly_price * self.seconds / _HOUR


@dataclass
class UsageTotal:
    name: str
    seconds: int = 0
    cost: Decimal = Decimal(0)

    @property
    def hours(self) -> Decimal:
        return Decimal(self.seconds) / _HOUR

    @property
    def duration(self) -> str:
        return duration_text(self.seconds)


def duration_text(seconds: int) -> str:
    """Machine time in the unit that fits: seconds, then minutes, then hours to the
    hundredth. Fifteen seconds read "15 s", not "0.00" hours."""
    if seconds < _MINUTE:
        return f"{seconds} s"
    if seconds < _HOUR:
        minutes, rest = divmod(seconds, _MINUTE)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    return f"{Decimal(seconds) / _HOUR:.2f} h"


def _price_table(
    machine_type_ids: Iterable[int],
) -> dict[int, tuple[list[datetime], list[Decimal]]]:
    table: dict[int, tuple[list[datetime], list[Decimal]]] = defaultdict(lambda: ([], []))
    rows = MachinePrice.objects.filter(machine_type_id__in=set(machine_type_ids)).order_by(
        "machine_type_id", "effective_from"
    )
    for row in rows:
        instants, prices = table[row.machine_type_id]
        instants.append(row.effective_from)
        prices.append(row.hourly_price)
    return table


def _second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _sessions(rows: QuerySet[NotebookSession]) -> list[Metered]:
    rows = rows.filter(started_at__isnull=False).select_related(
        "machine_type", "started_by", "notebook"
    )
    return [session_metered(session) for session in rows]


def session_metered(session: NotebookSession) -> Metered:
    """A started session (with its notebook, machine type and starter read) as metered."""
    assert session.started_at is not None  # noqa: S101 - only started ones are metered
    return Metered(
        kind=NOTEBOOK,
        pk=session.pk,
        team_id=session.team_id,
        label=session.notebook.name,
        member=session.started_by.email if session.started_by else "(removed)",
        machine_type=session.machine_type,
        started_at=session.started_at,
        ended_at=session.ended_at,
    )


def _replicas(rows: QuerySet[Replica]) -> list[Metered]:
    rows = rows.filter(started_at__isnull=False).select_related("machine_type", "deployment")
    return [
        Metered(
            kind=DEPLOYMENT,
            pk=replica.pk,
            team_id=replica.team_id,
            label=replica.deployment.name,
            member=DEPLOYMENTS_MEMBER,
            machine_type=replica.machine_type,
            started_at=replica.started_at,
            ended_at=replica.ended_at,
        )
        for replica in rows
        if replica.started_at is not None
    ]


def _attempts(rows: QuerySet[Attempt]) -> list[Metered]:
    rows = rows.filter(started_at__isnull=False).select_related(
        "machine_type", "run__job", "run__triggered_by"
    )
    return [
        Metered(
            kind=JOB,
            pk=attempt.pk,
            team_id=attempt.team_id,
            label=attempt.run.job.name,
            member=_run_member(attempt),
            machine_type=attempt.machine_type,
            started_at=attempt.started_at,
            # Billed to the process's end (or the last time it was seen), not to when its
            # container was removed after its outputs were read.
            ended_at=attempt.finished_at,
        )
        for attempt in rows
        if attempt.started_at is not None
    ]


def _run_member(attempt: Attempt) -> str:
    """Who a job attempt's time is billed to: the member who started its run, else how it
    was started (its schedule)."""
    run = attempt.run
    if run.triggered_by is not None:
        return run.triggered_by.email
    return "(schedule)" if run.trigger == run.Trigger.SCHEDULE else "(removed)"


# Every kind of metered thing: its model (with team, machine_type, started_at and the field
# its billing ends at), and how its rows are read as Metered.
_KINDS: tuple[tuple[type[Any], str, Callable[[Any], list[Metered]]], ...] = (
    (NotebookSession, "ended_at", _sessions),
    (Replica, "ended_at", _replicas),
    (Attempt, "finished_at", _attempts),
)


def _overlapping(start: datetime, end: datetime, *, until: str = "ended_at") -> Q:
    return Q(started_at__lt=end) & (Q(**{f"{until}__isnull": True}) | Q(**{f"{until}__gt": start}))


def _metered(where: Callable[[str], Q], *, team: Team | None) -> list[Metered]:
    """Everything of every kind matching ``where(its end field)``: of ``team``, or of the
    teams ``where`` names (each of its terms limits ``team_id``) when ``team`` is None."""
    found: list[Metered] = []
    for model, until, read in _KINDS:
        manager = model.objects
        rows = (
            manager.for_team(team).filter(where(until))
            if team is not None
            else manager.unscoped().filter(where(until))
        )
        found += read(rows)
    return sorted(found, key=lambda m: (m.started_at, m.kind, m.pk))


def usage_pieces(
    team: Team,
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
) -> list[UsagePiece]:
    """Every billed piece of the team's sessions and replicas between ``start`` and ``end``."""
    now = now or timezone.now()
    metered = _metered(lambda until: _overlapping(start, end, until=until), team=team)
    return _pieces(metered, start, end, now=now)


def teams_usage_costs(
    periods: dict[int, tuple[datetime, datetime]], *, now: datetime | None = None
) -> dict[int, Decimal]:
    """What each team has spent in its period (``periods``: team id -> start, end), by team
    id: one read of each kind of usage and one of prices, however many teams. The teams
    are the caller's to check (the dashboard passes those whose bill the person may see)."""
    now = now or timezone.now()
    costs = {team_id: Decimal(0) for team_id in periods}
    if not periods:
        return costs

    def overlapping(until: str) -> Q:
        where = Q()
        for team_id, (start, end) in periods.items():
            where |= Q(team_id=team_id) & _overlapping(start, end, until=until)
        return where

    metered = _metered(overlapping, team=None)
    prices = _price_table(m.machine_type.pk for m in metered)
    by_team: dict[int, list[Metered]] = defaultdict(list)
    for item in metered:
        by_team[item.team_id].append(item)
    for team_id, team_metered in by_team.items():
        start, end = periods[team_id]
        pieces = _pieces(team_metered, start, end, now=now, prices=prices)
        costs[team_id] = sum((p.cost for p in pieces), Decimal(0))
    return costs


def _pieces(
    metered: Iterable[Metered],
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    prices: dict[int, tuple[list[datetime], list[Decimal]]] | None = None,
) -> list[UsagePiece]:
    """The billed pieces of ``metered`` between ``start`` and ``end`` (at ``prices``, read
    here when not given)."""
    metered = list(metered)
    if prices is None:
        prices = _price_table(m.machine_type.pk for m in metered)
    pieces: list[UsagePiece] = []
    for item in metered:
        begin = _second(max(item.started_at, start))
        finish = _second(min(item.ended_at or now, end, now))
        if finish <= begin:
            continue
        instants, values = prices.get(item.machine_type.pk, ([], []))
        cuts = {i for i in instants if begin < i < finish}
        day = begin.astimezone(UTC).replace(hour=0, minute=0, second=0) + timedelta(days=1)
        while day < finish:
            cuts.add(day)
            day += timedelta(days=1)
        edges = [begin, *sorted(cuts), finish]
        for a, b in itertools.pairwise(edges):
            at = bisect.bisect_right(instants, a) - 1
            # Before the first recorded price, the first price applies.
            price = values[max(at, 0)] if values else item.machine_type.hourly_price
            pieces.append(
                UsagePiece(
                    kind=item.kind,
                    source_id=item.pk,
                    label=item.label,
                    machine_type=item.machine_type.name,
                    member=item.member,
                    day=a.astimezone(UTC).date(),
                    seconds=int((b - a).total_seconds()),
                    hourly_price=price,
                )
            )
    return pieces


def usage_cost(
    team: Team, start: datetime, end: datetime, *, now: datetime | None = None
) -> Decimal:
    """What the team's sessions and replicas cost between ``start`` and ``end``."""
    return sum((p.cost for p in usage_pieces(team, start, end, now=now)), Decimal(0))


def session_costs(
    sessions: Iterable[NotebookSession], *, now: datetime | None = None
) -> dict[int, Decimal]:
    """What each session has cost from its start until now (or its end), by session id:
    the usage page's pieces, summed per session. Sessions not started yet cost nothing."""
    now = now or timezone.now()
    metered = [session_metered(s) for s in sessions if s.started_at is not None]
    costs = {m.pk: Decimal(0) for m in metered}
    if metered:
        start = min(m.started_at for m in metered)
        for piece in _pieces(metered, start, now, now=now):
            costs[piece.source_id] += piece.cost
    return costs


def run_costs(runs: Iterable[Run], *, now: datetime | None = None) -> dict[int, Decimal]:
    """What each job run has cost so far, by run id: its attempts' billed pieces (the usage
    page's), summed per run. A run with no started attempt cost nothing."""
    now = now or timezone.now()
    runs = list(runs)
    costs = {run.pk: Decimal(0) for run in runs}
    run_of: dict[int, int] = {}
    metered: list[Metered] = []
    for team_id in {run.team_id for run in runs}:
        rows = Attempt.objects.for_team(team_id).filter(run_id__in=list(costs))
        run_of.update(rows.values_list("pk", "run_id"))
        metered += _attempts(rows)
    if metered:
        start = min(m.started_at for m in metered)
        for piece in _pieces(metered, start, now, now=now):
            costs[run_of[piece.source_id]] += piece.cost
    return costs


def cents(amount: Decimal) -> int:
    """Whole cents, rounded down: a fraction of a cent is billed once it is a whole one."""
    return int((amount * 100).to_integral_value(rounding=ROUND_FLOOR))


def totals_by(pieces: Iterable[UsagePiece], key: str) -> list[UsageTotal]:
    """Seconds and cost per ``key`` (machine_type, member, day, kind or label), largest
    cost first."""
    totals: dict[str, UsageTotal] = {}
    for piece in pieces:
        name = str(getattr(piece, key))
        total = totals.setdefault(name, UsageTotal(name))
        total.seconds += piece.seconds
        total.cost += piece.cost
    return sorted(totals.values(), key=lambda t: (-t.cost, -t.seconds, t.name))


def daily_costs(pieces: Iterable[UsagePiece], start: datetime, end: datetime) -> list[UsageTotal]:
    """One total per day of the period, in order, days without usage included."""
    by_day = {t.name: t for t in totals_by(pieces, "day")}
    days = []
    day = start.astimezone(UTC).date()
    last = (end - timedelta(seconds=1)).astimezone(UTC).date()
    while day <= last:
        days.append(by_day.get(str(day), UsageTotal(str(day))))
        day += timedelta(days=1)
    return days
