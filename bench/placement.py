"""bench/placement: 20 notebook starts at once placed on 2 hosts vs 1 host (issue 20).

The scheduler's placement only (bench/scheduler.py's way: placement_create from 20 threads
at once, on PostgreSQL, a throw-away database ``lattice_bench_placement``), not a start on
real engines (tests/multihost.py's two engines and agents reached main as this was
written; starts on them through bench/start_latency.py's path are not measured here).
Two READY hosts, each with room for all 20 (64 vCPUs, 256 GiB), machine type
cpu-small (2 vCPUs, 8 GiB); a "1 host" round has the second host DRAINING (not placed on);
a "2 hosts, volumes" round gives each placement a preferred host (issue 20: a notebook's
volume host, ``prefer_host_id``), one in three host-1, the others host-2. Rounds
alternate the three kinds (``--runs`` of each); after each round every placement
is released, untimed. Reported: each placement's time (p50, p95, max over all rounds of a
kind), the spread (how many on each host, per round), failures (an overcommitted host after
a round counts 1,000).

    DATABASE_URL=postgres://... .venv/bin/python bench/placement.py [--runs 5] [--concurrency 20]

Prints a table, then one line of JSON at the end of stdout.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
os.environ.setdefault("DATABASE_POOL_MAX_SIZE", "64")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import setup_databases, teardown_databases  # noqa: E402

# bench/scheduler.py's helpers (this folder is on sys.path as a script).
from scheduler import percentile, run_concurrently  # noqa: E402

from apps.machines.catalogue import catalogue_rows  # noqa: E402
from apps.machines.models import Host, MachineType, Placement  # noqa: E402
from apps.machines.scheduler import (  # noqa: E402
    overcommitted_hosts,
    placement_create,
    placement_release,
)

GIB = 1024**3
DATABASE = "lattice_bench_placement"


def measure(args: argparse.Namespace) -> dict[str, object]:
    for row in catalogue_rows():
        MachineType.objects.update_or_create(slug=row["slug"], defaults=row["defaults"])
    small = MachineType.objects.get(slug="cpu-small")
    hosts = [
        Host.objects.create(
            name=f"host-{n}", status=Host.Status.READY, cpu_count=64, memory_bytes=256 * GIB
        )
        for n in (1, 2)
    ]
    run_concurrently(lambda _n: connection.ensure_connection(), args.concurrency)
    kinds = ("1 host", "2 hosts", "2 hosts, volumes")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    spreads: dict[str, list[dict[str, int]]] = {k: [] for k in kinds}
    failed: dict[str, int] = dict.fromkeys(kinds, 0)
    for round_ in range(args.runs * len(kinds)):
        kind = kinds[round_ % len(kinds)]
        Host.objects.filter(pk=hosts[1].pk).update(
            status=Host.Status.DRAINING if kind == "1 host" else Host.Status.READY
        )
        # "volumes": each notebook's files on one of the hosts (every third on host-1):
        # placement_create's prefer_host_id, as a start's request carries it.
        prefer = kind == "2 hosts, volumes"

        def place(n: int, r: int = round_, prefer: bool = prefer) -> Placement:
            host = hosts[0 if n % 3 == 0 else 1].pk if prefer else None
            return placement_create(machine_type=small, workload=f"nb:{r}:{n}", prefer_host_id=host)

        timings, errors = run_concurrently(place, args.concurrency)
        times[kind] += timings
        failed[kind] += len(errors)
        placed = Placement.objects.filter(workload__startswith=f"nb:{round_}:", active=True)
        spread = collections.Counter(placed.values_list("host__name", flat=True))
        spreads[kind].append({h.name: spread.get(h.name, 0) for h in hosts})
        if overcommitted_hosts():
            failed[kind] += 1000
        for placement in placed:
            placement_release(placement=placement)
    figures: dict[str, object] = {"concurrency": args.concurrency, "runs": args.runs}
    print(
        f"{args.concurrency} cpu-small placements at once (threads), {args.runs} rounds of each, "
        f"alternating; placement time only (not a container's start)"
    )
    for kind in kinds:
        ms = [t * 1000 for t in times[kind]]
        p50, p95 = statistics.median(ms), percentile(ms, 0.95)
        print(
            f"  {kind:<16}: p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  max {max(ms):6.1f} ms  "
            f"failed {failed[kind]}  spread {spreads[kind]}"
        )
        figures[kind] = {
            "p50_ms": round(p50, 1),
            "p95_ms": round(p95, 1),
            "max_ms": round(max(ms), 1),
            "failed": failed[kind],
            "spread": spreads[kind],
        }
    figures["load"] = round(os.getloadavg()[0], 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench/placement needs PostgreSQL: set DATABASE_URL=postgres://...")
    connection.settings_dict["TEST"]["NAME"] = DATABASE
    config = setup_databases(verbosity=0, interactive=False)
    try:
        figures = measure(args)
    finally:
        connection.close()
        teardown_databases(config, verbosity=0)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
