"""The machine types a fresh Lattice offers. A data migration loads them; admins edit them.

GPU model names are what NVML reports for each card, so a host's inventory
matches them exactly. Prices are in USD per hour, in the range hosted
notebook platforms charge; apps.billing keeps their history.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

# (slug, name, vcpus, memory GiB, disk GiB, NVML GPU model, GPU count, USD per hour)
CATALOGUE: list[tuple[str, str, int, int, int, str, int, Decimal]] = [
    # The free tier: what the Free plan allows (apps.billing), at no charge.
    ("free-cpu", "Free CPU", 2, 8, 50, "", 0, Decimal("0.00")),
    ("free-gpu", "Free GPU (M4000)", 8, 30, 50, "Quadro M4000", 1, Decimal("0.00")),
    ("cpu-small", "CPU small", 2, 8, 50, "", 0, Decimal("0.04")),
    ("cpu-large", "CPU large", 8, 32, 100, "", 0, Decimal("0.16")),
    ("m4000", "Quadro M4000", 8, 30, 100, "Quadro M4000", 1, Decimal("0.45")),
    ("p5000", "Quadro P5000", 8, 30, 100, "Quadro P5000", 1, Decimal("0.78")),
    ("rtx4000", "Quadro RTX 4000", 8, 30, 100, "Quadro RTX 4000", 1, Decimal("0.56")),
    ("rtx5000", "Quadro RTX 5000", 8, 30, 100, "Quadro RTX 5000", 1, Decimal("0.82")),
    ("a4000", "RTX A4000", 8, 45, 100, "NVIDIA RTX A4000", 1, Decimal("0.76")),
    ("a100-40gb", "A100 40 GB", 12, 90, 200, "NVIDIA A100-PCIE-40GB", 1, Decimal("3.09")),
    ("a100-80gb", "A100 80 GB", 12, 90, 200, "NVIDIA A100-SXM4-80GB", 1, Decimal("3.18")),
    ("h100-80gb", "H100 80 GB", 20, 240, 500, "NVIDIA H100 80GB HBM3", 1, Decimal("5.95")),
    ("a100-80gb-x8", "8x A100 80 GB", 96, 640, 2000, "NVIDIA A100-SXM4-80GB", 8, Decimal("25.44")),
]


def catalogue_rows() -> list[dict[str, Any]]:
    """The catalogue as field values, keyed for MachineType.objects.update_or_create."""
    return [
        {
            "slug": slug,
            "defaults": {
                "name": name,
                "vcpus": vcpus,
                "memory_gib": memory,
                "disk_gib": disk,
                "gpu_model": gpu_model,
                "gpu_count": gpu_count,
                "hourly_price": price,
                "sort_order": order,
            },
        }
        for order, (slug, name, vcpus, memory, disk, gpu_model, gpu_count, price) in enumerate(
            CATALOGUE,
        )
    ]
