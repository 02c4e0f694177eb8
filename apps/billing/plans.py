"""The plans a fresh Lattice offers, modelled on what hosted notebook platforms sell:
free CPU and a small free GPU; paid tiers unlock bigger GPUs, more storage, more
at once, and no session cap. A data migration loads them; admins edit them.

The Stripe price ids are the ones the local test double serves (apps.devtools.
stripe_double); a deployer on real Stripe replaces them in the admin, or runs
``manage.py billing_stripe_setup`` (docs/billing.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# Prices before billing existed: the price history starts here.
PRICES_SINCE = datetime(2020, 1, 1, tzinfo=UTC)

FREE_MACHINES = ["free-cpu", "free-gpu"]
PRO_MACHINES = [*FREE_MACHINES, "cpu-small", "cpu-large", "m4000", "p5000", "rtx4000", "rtx5000"]
GROWTH_MACHINES = [*PRO_MACHINES, "a4000", "a100-40gb", "a100-80gb", "h100-80gb", "a100-80gb-x8"]

PLANS: list[dict[str, Any]] = [
    {
        "slug": "free",
        "name": "Free",
        "description": "Free CPU and GPU machines, one at a time, 6-hour sessions.",
        "monthly_price": Decimal("0"),
        "stripe_price_id": "",
        "machines": FREE_MACHINES,
        "max_running_notebooks": 1,
        "storage_gib": 5,
        "seats": 3,
        "max_idle_minutes": 60,
        "max_session_hours": 6,
        "private_datasets": False,
        "max_deployments": 1,
        "max_replicas": 1,
        "is_default": True,
        "sort_order": 0,
    },
    {
        "slug": "pro",
        "name": "Pro",
        "description": "Mid-range GPUs, three at once, no session cap, private datasets.",
        "monthly_price": Decimal("8"),
        "stripe_price_id": "price_lattice_pro_monthly",
        "machines": PRO_MACHINES,
        "max_running_notebooks": 3,
        "storage_gib": 50,
        "seats": 10,
        "max_idle_minutes": 24 * 60,
        "max_session_hours": None,
        "private_datasets": True,
        "max_deployments": 3,
        "max_replicas": 3,
        "is_default": False,
        "sort_order": 1,
    },
    {
        "slug": "growth",
        "name": "Growth",
        "description": "Every GPU up to 8x A100 and H100, ten at once, 500 GiB.",
        "monthly_price": Decimal("39"),
        "stripe_price_id": "price_lattice_growth_monthly",
        "machines": GROWTH_MACHINES,
        "max_running_notebooks": 10,
        "storage_gib": 500,
        "seats": 50,
        "max_idle_minutes": None,
        "max_session_hours": None,
        "private_datasets": True,
        "max_deployments": 20,
        "max_replicas": 10,
        "is_default": False,
        "sort_order": 2,
    },
]

# The metered price that bills usage: one unit is one cent (docs/billing.md).
USAGE_PRICE_ID = "price_lattice_usage_cents"
USAGE_METER_ID = "mtr_lattice_usage"


def load_plans(plan_model: Any, machine_type_model: Any, machine_price_model: Any) -> None:
    """Create the plans above that are missing, and a first price for every machine type.

    Takes the models as arguments so the data migration can pass its historical ones
    (which lack the fields added after it: those are left to their own migrations).
    """
    known = {field.name for field in plan_model._meta.get_fields()}
    for row in PLANS:
        fields = {k: v for k, v in row.items() if k in known and k != "slug"}
        plan, created = plan_model.objects.get_or_create(slug=row["slug"], defaults=fields)
        if created:
            plan.machine_types.set(machine_type_model.objects.filter(slug__in=row["machines"]))
    for machine in machine_type_model.objects.all():
        machine_price_model.objects.get_or_create(
            machine_type=machine,
            effective_from=PRICES_SINCE,
            defaults={"hourly_price": machine.hourly_price},
        )
