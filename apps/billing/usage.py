"""Usage, derived from notebook sessions and machine prices: never accumulated.

A session is billed from ``started_at`` (its container was up) to ``ended_at``
(or now, while it runs; a lost session ends when it was last seen), whole
seconds, at the machine type's price in force at each second: a price change
splits the time at the change. Pieces are also split at midnight UTC so the
usage page can chart days.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

from django.db.models import Q
from django.utils import timezone

from apps.billing.models import MachinePrice
from apps.notebooks.models import NotebookSession

if TYPE_CHECKING:
    from collections.abc import Iterable

    from apps.teams.models import Team

_HOUR = Decimal(3600)
_MINUTE = 60


@dataclass(frozen=True)
class UsagePiece:
    """Part of one session, within one day and at one price."""

    session_id: int
    notebook_name: str
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


def usage_pieces(
    team: Team,
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
) -> list[UsagePiece]:
    """Every billed piece of the team's sessions between ``start`` and ``end``."""
    now = now or timezone.now()
    sessions = list(
        NotebookSession.objects.for_team(team)
        .filter(started_at__isnull=False, started_at__lt=end)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=start))
        .select_related("machine_type", "started_by", "notebook")
        .order_by("started_at", "pk")
    )
    return _pieces(sessions, start, end, now=now)


def teams_usage_costs(
    periods: dict[int, tuple[datetime, datetime]], *, now: datetime | None = None
) -> dict[int, Decimal]:
    """What each team has spent in its period (``periods``: team id -> start, end), by team
    id: one read of all their sessions and one of prices, however many teams. The teams are
    the caller's to check (the dashboard passes those whose bill the person may see)."""
    now = now or timezone.now()
    costs = {team_id: Decimal(0) for team_id in periods}
    if not periods:
        return costs
    overlapping = Q()
    for team_id, (start, end) in periods.items():
        overlapping |= Q(team_id=team_id, started_at__lt=end) & (
            Q(ended_at__isnull=True) | Q(ended_at__gt=start)
        )
    sessions = list(
        NotebookSession.objects.unscoped()
        .filter(overlapping, started_at__isnull=False)
        .select_related("machine_type", "started_by", "notebook")
    )
    prices = _price_table(s.machine_type_id for s in sessions)
    by_team: dict[int, list[NotebookSession]] = defaultdict(list)
    for session in sessions:
        by_team[session.team_id].append(session)
    for team_id, team_sessions in by_team.items():
        start, end = periods[team_id]
        pieces = _pieces(team_sessions, start, end, now=now, prices=prices)
        costs[team_id] = sum((p.cost for p in pieces), Decimal(0))
    return costs


def _pieces(
    sessions: Iterable[NotebookSession],
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    prices: dict[int, tuple[list[datetime], list[Decimal]]] | None = None,
) -> list[UsagePiece]:
    """The billed pieces of ``sessions`` (with their notebook, machine type and starter
    read) between ``start`` and ``end`` (at ``prices``, read here when not given)."""
    sessions = list(sessions)
    if prices is None:
        prices = _price_table(s.machine_type_id for s in sessions)
    pieces: list[UsagePiece] = []
    for session in sessions:
        if session.started_at is None:
            continue
        begin = _second(max(session.started_at, start))
        finish = _second(min(session.ended_at or now, end, now))
        if finish <= begin:
            continue
        instants, values = prices.get(session.machine_type_id, ([], []))
        cuts = {i for i in instants if begin < i < finish}
        day = begin.astimezone(UTC).replace(hour=0, minute=0, second=0) + timedelta(days=1)
        while day < finish:
            cuts.add(day)
            day += timedelta(days=1)
        edges = [begin, *sorted(cuts), finish]
        for a, b in itertools.pairwise(edges):
            at = bisect.bisect_right(instants, a) - 1
            # Before the first recorded price, the first price applies.
            price = values[max(at, 0)] if values else session.machine_type.hourly_price
            pieces.append(
                UsagePiece(
                    session_id=session.pk,
                    notebook_name=session.notebook.name,
                    machine_type=session.machine_type.name,
                    member=session.started_by.email if session.started_by else "(removed)",
                    day=a.astimezone(UTC).date(),
                    seconds=int((b - a).total_seconds()),
                    hourly_price=price,
                )
            )
    return pieces


def usage_cost(
    team: Team, start: datetime, end: datetime, *, now: datetime | None = None
) -> Decimal:
    return sum((p.cost for p in usage_pieces(team, start, end, now=now)), Decimal(0))


def session_costs(
    sessions: Iterable[NotebookSession], *, now: datetime | None = None
) -> dict[int, Decimal]:
    """What each session has cost from its start until now (or its end), by session id:
    the usage page's pieces, summed per session. Sessions not started yet cost nothing."""
    now = now or timezone.now()
    sessions = [s for s in sessions if s.started_at is not None]
    costs = {s.pk: Decimal(0) for s in sessions}
    if sessions:
        start = min(s.started_at for s in sessions if s.started_at is not None)
        for piece in _pieces(sessions, start, now, now=now):
            costs[piece.session_id] += piece.cost
    return costs


def cents(amount: Decimal) -> int:
    """Whole cents, rounded down: a fraction of a cent is billed once it is a whole one."""
    return int((amount * 100).to_integral_value(rounding=ROUND_FLOOR))


def totals_by(pieces: Iterable[UsagePiece], key: str) -> list[UsageTotal]:
    """Seconds and cost per ``key`` (machine_type, member or day), largest cost first."""
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
