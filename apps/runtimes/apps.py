from __future__ import annotations

from django.apps import AppConfig


class RuntimesConfig(AppConfig):
    name = "apps.runtimes"
    label = "runtimes"
    verbose_name = "Runtimes"
