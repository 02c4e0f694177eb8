"""A notebook's files on its hosts: its volume lives where it last ran.

Duplicating a notebook copies that volume on that host (and its newest snapshot, when that
is exactly its files); deleting one removes it from every
host once its session has ended. Both are asked of the hosts' agents once the transaction
commits.
"""

from __future__ import annotations

from django.db import transaction

from apps.machines.agent import agent_copy_volume, agent_remove_volumes
from apps.machines.models import Host
from apps.notebooks.models import Notebook, NotebookSession
from apps.notebooks.snapshots import snapshot_copy_into, snapshot_latest
from apps.notebooks.templates import image_for


def on_commit_copy_storage(source: Notebook, target: Notebook) -> None:
    """Copy ``source``'s files into ``target``: a COPY of its newest READY snapshot (same
    blobs, nothing copied) when that snapshot is exactly its files (no volume host: a copy
    made from a snapshot, or restored, not started since; or ``volume_saved``), so the
    duplicate restores it wherever it first starts; and, when the files are on a host
    (``volume_host``; before issue 20, the host where it last ran), a copy of its volume on
    that host, which then holds the duplicate's files too (``volume_host``; saved when the
    snapshot copy is exactly them)."""
    latest = snapshot_latest(source)
    saved = latest is not None and (source.volume_host_id is None or source.volume_saved)
    if saved and latest is not None:
        snapshot_copy_into(latest, target, actor=target.created_by)
    last = (
        NotebookSession.objects.for_team(source.team_id)
        .filter(notebook=source, host__isnull=False)
        .select_related("host")
        .order_by("-pk")
        .first()
    )
    host = source.volume_host or (last.host if last is not None else None)
    if host is None:
        return  # never ran, or its files are only in that snapshot: nothing on a host
    image = last.image if last is not None else image_for(source.template, source.custom_image)
    Notebook.objects.for_team(target.team_id).filter(pk=target.pk).update(
        volume_host=host, volume_saved=saved
    )
    target.volume_host = host
    target.volume_saved = saved
    args = (host.name, source.volume, target.volume, image)
    transaction.on_commit(lambda: agent_copy_volume.apply_async(args=args, queue=host.queue))


def on_commit_remove_storage(notebook: Notebook) -> None:
    """Remove a deleted notebook's volume from every host (it lives where it last ran)."""
    volume = notebook.volume

    def remove() -> None:
        for host in Host.objects.exclude(status=Host.Status.OFFLINE):
            agent_remove_volumes.apply_async(args=(host.name, [volume]), queue=host.queue)

    transaction.on_commit(remove)
