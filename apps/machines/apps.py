from __future__ import annotations

from django.apps import AppConfig


class MachinesConfig(AppConfig):
    name = "apps.machines"
    label = "machines"
    verbose_name = "Machines"
