"""bench/scheduler: placement time on a big fleet, and the ledger's invariant under load.

1,000 ready hosts x 8 GPUs (H100), 100 placements at once from 100 threads,
on PostgreSQL (DATABASE_URL). Reports each placement's time (p50, p95, max),
GPUs allocated twice (must be 0) and hosts over their CPU or memory (must be
0). Raw baselines in the same run: the same rows written by plain INSERTs
with the same 100 threads, one INSERT pair alone, and one placement alone.

    DATABASE_URL=postgres://... python bench/scheduler.py [--hosts N] [--gpus N] [--concurrency N]
        [--code OTHER_CHECKOUT]

"One placement alone" times placement_create only (each is released after, untimed).
On PostgreSQL the settings lend connections from a pool (config/settings/base.py): the
threads then reuse the pool's connections, warmed before both runs; DATABASE_POOL=0 gives
each thread a new connection, as before the pool.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

# --code DIR: measure another checkout's code (e.g. the base commit) with this bench.
_CODE = Path(__file__).resolve().parents[1]
if "--code" in sys.argv:
    _CODE = Path(sys.argv[sys.argv.index("--code") + 1]).resolve()
    # Run from there too: started inside this checkout, its apps/ were imported instead.
    os.chdir(_CODE)
sys.path.insert(0, str(_CODE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
# Room in the connection pool (config/settings/base.py) for every thread at once: the
# threads measure the database's concurrency, not a wait for a free connection.
os.environ.setdefault("DATABASE_POOL_MAX_SIZE", "128")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.test.utils import setup_databases, teardown_databases  # noqa: E402

from apps.machines.catalogue import catalogue_rows  # noqa: E402
from apps.machines.models import GPUAllocation, GPUDevice, Host, MachineType, Placement  # noqa: E402
from apps.machines.scheduler import (  # noqa: E402
    double_allocations,
    overcommitted_hosts,
    placement_create,
    placement_release,
)

if TYPE_CHECKING:
    from collections.abc import Callable

GIB = 1024**3
MODEL = "NVIDIA H100 80GB HBM3"


def build_fleet(hosts: int, gpus: int) -> None:
    Host.objects.bulk_create(
        [
            Host(name=f"h{n:05d}", status=Host.Status.READY, cpu_count=256, memory_bytes=2048 * GIB)
            for n in range(hosts)
        ],
        batch_size=1000,
    )
    GPUDevice.objects.bulk_create(
        [
            GPUDevice(
                host=host,
                uuid=f"GPU-{host.name}-{i}",
                index=i,
                name=MODEL,
                memory_bytes=80 * GIB,
            )
            for host in Host.objects.all()
            for i in range(gpus)
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # what autovacuum soon does on a real fleet


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"p50 {statistics.median(ms):7.1f} ms  p95 {percentile(ms, 0.95):7.1f} ms"
        f"  max {max(ms):7.1f} ms"
    )


def run_concurrently(work: Callable[[int], Any], count: int) -> tuple[list[float], list[str]]:
    """Start ``work(n)`` in ``count`` threads at once; each one's time, and any errors."""
    barrier = threading.Barrier(count)
    timings: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        try:
            barrier.wait()
            started = time.perf_counter()
            work(n)
            elapsed = time.perf_counter() - started
            with lock:
                timings.append(elapsed)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return timings, errors


def measure(args: argparse.Namespace) -> None:
    for row in catalogue_rows():
        MachineType.objects.update_or_create(slug=row["slug"], defaults=row["defaults"])
    h100 = MachineType.objects.get(slug="h100-80gb")
    started = time.perf_counter()
    build_fleet(args.hosts, args.gpus)
    built = time.perf_counter() - started
    print(f"fleet: {args.hosts} hosts x {args.gpus} GPUs, built in {built:.1f} s")
    spare = GPUDevice.objects.order_by("-pk")[0]
    pooled = bool(connection.settings_dict.get("OPTIONS", {}).get("pool"))
    print(f"connections: {'pooled (warmed: one per thread)' if pooled else 'one new per thread'}")
    # With a pool, open its connections before either run, so the first run does not pay
    # the connects the second then reuses.
    run_concurrently(lambda _n: connection.ensure_connection(), args.concurrency)

    def plain_insert(n: int) -> None:
        with transaction.atomic():
            placement = Placement.objects.create(
                host=spare.host,
                machine_type=h100,
                workload=f"base:{n}",
                vcpus=1,
                memory_gib=1,
            )
            GPUAllocation.objects.create(placement=placement, gpu=spare, active=False)

    alone_raw = []
    for n in range(20):
        t0 = time.perf_counter()
        plain_insert(n)
        alone_raw.append(time.perf_counter() - t0)
    raw, _ = run_concurrently(plain_insert, args.concurrency)
    Placement.objects.filter(workload__startswith="base:").delete()

    alone = []
    for n in range(20):
        t0 = time.perf_counter()
        placement = placement_create(machine_type=h100, workload=f"one:{n}")
        alone.append(time.perf_counter() - t0)
        placement_release(placement=placement)  # not timed: the fleet stays empty

    timings, errors = run_concurrently(
        lambda n: placement_create(machine_type=h100, workload=f"bench:{n}"),
        args.concurrency,
    )
    print(f"{args.concurrency} placements at once: {len(timings)} placed, {len(errors)} failed")
    if errors:
        print("  first error:", errors[0])
    print(f"  placement time                     {summary(timings)}")
    print(f"  baseline: plain INSERTs, as many   {summary(raw)}")
    print(f"one placement alone                  {summary(alone)}")
    print(f"baseline: one plain INSERT pair      {summary(alone_raw)}")
    print(f"double allocations: {double_allocations()}")
    print(f"overcommitted hosts: {overcommitted_hosts()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--code", help="the checkout whose apps/ to measure (default: this one)")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench/scheduler needs PostgreSQL: set DATABASE_URL=postgres://...")
    print(f"code: {Path(sys.modules[placement_create.__module__].__file__ or '').parents[2]}")
    # A throw-away database of its own: a test run on the same DATABASE_URL is not disturbed.
    connection.settings_dict["TEST"]["NAME"] = f"test_{connection.settings_dict['NAME']}_sched"
    config = setup_databases(verbosity=0, interactive=False)
    try:
        measure(args)
    finally:
        connection.close()
        teardown_databases(config, verbosity=0)


if __name__ == "__main__":
    main()
