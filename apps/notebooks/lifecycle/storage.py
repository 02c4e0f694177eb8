"""A notebook's files on its hosts: its volume lives where it last ran.

Duplicating a notebook copies that volume on that host; deleting one removes it from every
host once its session has ended. Both are asked of the hosts' agents once the transaction
commits.
"""

from __future__ import annotations

from django.db import transaction

from apps.machines.agent import agent_copy_volume, agent_remove_volumes
from apps.machines.models import Host
from apps.notebooks.models import Notebook, NotebookSession


def on_commit_copy_storage(source: Notebook, target: Notebook) -> None:
    """Copy ``source``'s files into ``target``'s volume, on the host that holds them (its
    ``volume_host``; before issue 20, the host where it last ran): the copy's files are on
    that host too (its ``volume_host``, not saved)."""
    last = (
        NotebookSession.objects.for_team(source.team_id)
        .filter(notebook=source, host__isnull=False)
        .select_related("host")
        .order_by("-pk")
        .first()
    )
    if last is None or last.host is None:
        return  # never ran: there are no files yet
    host = source.volume_host or last.host
    Notebook.objects.for_team(target.team_id).filter(pk=target.pk).update(
        volume_host=host, volume_saved=False
    )
    target.volume_host = host
    args = (host.name, source.volume, target.volume, last.image)
    transaction.on_commit(lambda: agent_copy_volume.apply_async(args=args, queue=host.queue))


def on_commit_remove_storage(notebook: Notebook) -> None:
    """Remove a deleted notebook's volume from every host (it lives where it last ran)."""
    volume = notebook.volume

    def remove() -> None:
        for host in Host.objects.exclude(status=Host.Status.OFFLINE):
            agent_remove_volumes.apply_async(args=(host.name, [volume]), queue=host.queue)

    transaction.on_commit(remove)
