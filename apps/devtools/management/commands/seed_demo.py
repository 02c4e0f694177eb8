"""`manage.py seed_demo`: the demo data of `manage.py dev` without the server."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.devtools.demo import demo_data_ensure


class Command(BaseCommand):
    help = "Create the embedded default's demo data (idempotent) and print the login."

    def handle(self, *args: Any, **options: Any) -> None:
        login = demo_data_ensure()
        self.stdout.write(f"Demo login: {login.email} / {login.password}")
