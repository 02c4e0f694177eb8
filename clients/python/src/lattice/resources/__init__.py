"""One module per area of the API; each resource holds its Client and nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lattice.client import Client
    from lattice.http import Transport


class Resource:
    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def transport(self) -> Transport:
        return self.client.transport
