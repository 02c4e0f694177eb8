"""The routes hosts save a notebook folder through, with a ticket (apps.models.hostsaves)."""

from __future__ import annotations

from django.urls import path

from apps.models import hostsaves

_SAVE = "hosts/saves/<int:save_id>/"
_CHUNK = f"{_SAVE}blobs/<str:sha256>/chunks/<int:index>"

urlpatterns = [
    *(
        path(f"{_SAVE}{step}", hostsaves.hostsave_step, {"step": step}, name=f"hostsave_{step}")
        for step in ("progress", "manifest", "complete", "fail")
    ),
    path(f"{_CHUNK}/target", hostsaves.hostsave_chunk_target, name="hostsave_chunk_target"),
    path(_CHUNK, hostsaves.hostsave_chunk, name="hostsave_chunk"),
]
