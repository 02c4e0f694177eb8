"""`manage.py create_join_token --host NAME`: credentials for a new host's agent.

Makes the single-use join token for host NAME and that host's own broker user, and prints
both once: the agent's LATTICE_AGENT_BROKER_URL and its --join-token (docs/hosts.md). With
--rotate, for a host already registered: a new broker password (the old one stops working
at once), the host's key is forgotten, and the token lets its agent join again.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.machines.models import Host
from apps.machines.services import (
    JOIN_TOKEN_TTL,
    HostCredentials,
    HostError,
    host_rotate_credentials,
    join_token_create,
)


class Command(BaseCommand):
    help = "Make credentials for one host to join: a join token (24 hours) and its broker URL."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", required=True, help="The host's name, e.g. gpu-2.")
        parser.add_argument(
            "--address",
            default="",
            help="The IP address the host publishes workloads on (its LATTICE_WORKLOAD_ADDRESS); "
            "may be left out only for the host Lattice itself runs on (127.0.0.1).",
        )
        parser.add_argument(
            "--rotate",
            action="store_true",
            help="For a registered host: replace its credentials (the old ones stop working).",
        )
        parser.add_argument("--note", default="", help="What the token is for.")

    def handle(
        self, *args: Any, host: str, address: str, rotate: bool, note: str, **options: Any
    ) -> None:
        try:
            if rotate:
                found = Host.objects.filter(name=host).first()
                if found is None:
                    raise CommandError(f"No host is named {host}: leave out --rotate.")
                credentials = host_rotate_credentials(actor=None, host=found, note=note)
            else:
                address = address or _default_address(host)
                credentials = join_token_create(
                    actor=None, host_name=host, workload_address=address, note=note
                )
        except HostError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(credentials_text(credentials))


def _default_address(host: str) -> str:
    """127.0.0.1 for the host on Lattice's own machine; any other must say where it is.

    A ready endpoint is believed only on the host's address, so a remote host recorded as
    127.0.0.1 by mistake could send members (and Jupyter's token) to the control plane's
    own loopback services."""
    if host == settings.LATTICE_LOCAL_HOST_NAME:
        return "127.0.0.1"
    raise CommandError(
        f"Give --address: the IP address {host} publishes workloads on (its "
        "LATTICE_WORKLOAD_ADDRESS, reachable from the web tier). 127.0.0.1 is right only for "
        "an agent on the machine Lattice's web tier runs on."
    )


def credentials_text(credentials: HostCredentials) -> str:
    """What an admin passes to the new agent (the command prints it, the admin shows it)."""
    hours = int(JOIN_TOKEN_TTL.total_seconds() // 3600)
    lines = [f"join token: {credentials.join_token}"]
    if credentials.broker_url:
        lines.append(f"LATTICE_AGENT_BROKER_URL={credentials.broker_url}")
    lines.append(
        f"Start the agent on {credentials.host_name} with: manage.py agent --host "
        f"{credentials.host_name} --join-token {credentials.join_token}"
    )
    lines.append(f"(the token is single use and valid {hours} hours; none of this is shown again)")
    return "\n".join(lines)
