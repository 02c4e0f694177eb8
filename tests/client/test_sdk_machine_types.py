"""The SDK's machine types: specs, price and live availability as the server reports it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from lattice.errors import NotFound

if TYPE_CHECKING:
    import lattice

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_type_says_whether_a_host_here_can_run_it_now(sdk: lattice.Client, host: Any) -> None:
    types = {t.slug: t for t in sdk.machine_types.list()}

    small = types["cpu-small"]
    assert small.availability == "available"
    assert small.free is not None
    assert small.free > 0
    assert small.vcpus > 0
    assert small.hourly_price
    assert small.raw["availability"]["state"] == "available"
    gpu = next(t for t in types.values() if t.gpu_count)
    # The local host has no GPU: no host here offers a GPU type.
    assert gpu.availability == "unavailable"
    assert gpu.free == 0


def test_an_outsiders_machine_types_are_not_found(sdk: lattice.Client, globex: Any) -> None:
    with pytest.raises(NotFound):
        sdk.machine_types.list(team="globex")
