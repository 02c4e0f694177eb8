"""The project's URLs plus one view that fails, to test the 500 page end to end."""

from __future__ import annotations

from django.urls import path

from config.urls import handler400, handler403, handler404, handler500, urlpatterns

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]


def fails(request):
    raise RuntimeError("a bug in a view")


urlpatterns = [*urlpatterns, path("fails/", fails)]
