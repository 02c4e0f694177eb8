"""A machine type an admin adds is priced from the moment it is added.

The machines admin knows nothing of prices: it tells whoever registered on
apps.machines.hooks.machine_type_added, and billing records the first price there.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.billing.models import MachinePrice
from apps.machines.hooks import machine_type_added
from apps.machines.models import MachineType

pytestmark = pytest.mark.django_db

TINY = {
    "name": "Tiny",
    "slug": "tiny",
    "vcpus": 1,
    "memory_gib": 1,
    "disk_gib": 10,
    "gpu_model": "",
    "gpu_count": 0,
    "hourly_price": "0.2500",
    "active": "on",
    "sort_order": 0,
}


def test_a_machine_type_added_in_the_admin_is_priced_from_now(admin_client):
    before = timezone.now().replace(microsecond=0)
    response = admin_client.post(reverse("admin:machines_machinetype_add"), TINY)
    assert response.status_code == 302
    machine = MachineType.objects.get(slug="tiny")
    prices = list(MachinePrice.objects.filter(machine_type=machine))
    assert [p.hourly_price for p in prices] == [Decimal("0.2500")]
    assert before <= prices[0].effective_from <= timezone.now()


def test_the_price_is_billings_to_record_not_the_admins(admin_client):
    """With nothing registered on the hook (no billing), the type is added and unpriced."""
    unpriced: list[MachineType] = []
    with machine_type_added.override(unpriced.append):
        response = admin_client.post(reverse("admin:machines_machinetype_add"), TINY)
    assert response.status_code == 302
    machine = MachineType.objects.get(slug="tiny")
    assert machine.hourly_price == Decimal("0.2500")
    assert not MachinePrice.objects.filter(machine_type=machine).exists()
    assert unpriced == [machine]  # told once, of the row it added
