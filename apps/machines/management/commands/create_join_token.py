from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.machines.services import JOIN_TOKEN_TTL, join_token_create


class Command(BaseCommand):
    help = "Make a single-use token that lets one new host join (valid 24 hours)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--note", default="", help="What the token is for, e.g. the host.")

    def handle(self, *args: Any, note: str, **options: Any) -> None:
        plaintext = join_token_create(actor=None, note=note)
        hours = int(JOIN_TOKEN_TTL.total_seconds() // 3600)
        self.stdout.write(f"{plaintext}\n(single use, valid {hours} hours; it is not shown again)")
