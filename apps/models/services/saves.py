"""Saving a folder a host reads (a running notebook's, an exited job's) through a ticket, as
a model version, a dataset version, or files handed to the app that asked.

``save_begin`` makes the model version (uploading, its files not known yet) and a
single-use, short-lived ticket bound to one team, one actor and that version;
``save_begin_to`` a ticket for a new version of a dataset (made, with its lineage, when
the host sends the manifest), or for files that, once stored, go to
``apps.models.hooks.files_saved`` (a job run's kept files). The app that asked
(notebooks, jobs) sends the ticket to the host's agent, with the ``root`` the folder is
under (/notebooks, a job's /outputs or /workspace). The agent, which holds no database
credentials, then speaks the protocol of apps.machines.savefolder to apps.models.hostsaves,
whose every request comes here through ``save_by_ticket``: the ticket checked (only its
SHA-256 is stored), its life moved on, and the actor's permission checked again, so a
member removed mid-save stops it. Each step maps onto the one upload protocol of
apps.datasets (upload_open through version_manifest, chunk_target, chunk_receive,
upload_complete): no second copy of upload code. A step refused ends the save as failed,
with the refusal as its reason; the ticket is dead once the save ends either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import unicodedata
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils import timezone

from apps.core.audit import audit_record
from apps.core.errors import PermissionDeniedError, ServiceError
from apps.datasets.hooks import UploadPurpose
from apps.datasets.models import DatasetVersion, Upload
from apps.datasets.services.completion import upload_abandon, upload_complete
from apps.datasets.services.errors import DatasetPermissionError
from apps.datasets.services.manifest import manifest_clean, upload_manifest
from apps.datasets.services.uploads import (
    CHUNK_DAMAGED,
    chunk_receive,
    chunk_target,
    upload_missing,
    upload_open,
    upload_start,
)
from apps.models.hooks import files_held, files_saved, save_ended
from apps.models.models import ModelVersion, SaveTicket
from apps.models.services.errors import ModelError, ModelPermissionError
from apps.models.services.versions import version_begin, version_fail, version_manifest
from apps.runtimes.base import NOTEBOOKS_PATH
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from django.db.models import QuerySet

    from apps.accounts.models import User
    from apps.datasets.models import Blob, Dataset
    from apps.models.models import Model
    from apps.teams.models import Team

PHASES = ("reading", "sending")
# What a host's failure code means, in the server's words (apps.machines.savefolder and
# apps.runtimes.base.FolderError send the codes); {folder} is the save's own folder.
FAILURES = {
    "changed": "A file changed while the host saved it: save the folder again once "
    "nothing writes to it.",
    "vanished": "A file was removed while the host saved it: save the folder again.",
    "damaged": "A part of a file arrived damaged each time the host sent it: save the "
    "folder again.",
    "unreadable": "The host could not read {folder}.",
    "missing": "{folder} does not exist.",
    "not_folder": "{folder} is not a folder.",
    "link": "{folder} is reached through a link: give the folder it points to.",
    "outside": "The folder must be inside {root}.",
    "not_running": "The notebook stopped before its folder was saved.",
    "host_error": "The host could not finish the save (its log says why).",
}
FAILED_ELSE = "The host could not save {folder}."
# A job's folder is read after its process ended: "not running" means its container went.
FAILURES_AFTER_EXIT = {
    "not_running": "The run's container was gone before {folder} was saved.",
}
# An empty folder: no version without files; a run's files are simply none.
EMPTY = "{folder} holds no files: nothing to save."
# The upload purpose of a ticket whose files go to the app that asked (target "files").
FILES_PURPOSE = "files"
# The same, for a ticket with no person behind it (a notebook's snapshot): never refused
# by the storage quota (apps.datasets.hooks.UploadPurpose.system).
SYSTEM_PURPOSE = "system"
# A system save's file modes (permission bits).
DEFAULT_MODE = 0o644
MAX_MODE = 0o7777
# A save whose ticket died (expired, or gone) before the host ended it.
STOPPED_ANSWERING = "The host stopped answering while it saved this folder: save it again."
# What the version page lists of the paths a save skipped (links, devices, fifos).
SKIPPED_LISTED = 100


class TicketError(PermissionDeniedError):
    """A save ticket that is unknown, expired or used up (403)."""

    code = "ticket_invalid"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _lifetime() -> timedelta:
    return timedelta(seconds=int(settings.LATTICE_SAVE_TICKET_SECONDS))


@transaction.atomic
def save_begin(
    *,
    team: Team,
    actor: User,
    model: Model,
    folder: str,
    message: str = "",
    source: str = ModelVersion.Source.NOTEBOOK,
    source_id: int | None = None,
    source_label: str = "",
    dataset_versions: list[int] | None = None,
    parent: int | None = None,
    format: str = ModelVersion.Format.OTHER,  # noqa: A002 - the field's name
    root: str = NOTEBOOKS_PATH,
) -> tuple[SaveTicket, str]:
    """A new version of ``model`` to be filled from ``folder`` (under ``root``) by a host,
    and the ticket for it: (its row, the ticket itself, which is stored nowhere)."""
    version = version_begin(
        team=team,
        actor=actor,
        model=model,
        message=message,
        source=source,
        source_id=source_id,
        source_label=source_label,
        dataset_versions=dataset_versions,
        parent=parent,
        format=format,
    )
    version.progress = {"phase": "waiting", "done": 0, "total": 0}
    version.save(update_fields=["progress"])
    ticket, token = _ticket_create(
        team,
        actor,
        folder=folder,
        root=root,
        source=source,
        source_id=source_id,
        source_label=source_label,
        target=SaveTicket.Target.MODEL,
        model=model,
        version=version,
    )
    audit_record(
        team=team,
        actor=actor,
        action="model.save_started",
        target=model.name,
        folder=folder[:200],
        source=source_label[:200],
    )
    return ticket, token


def _ticket_create(
    team: Team,
    actor: User | None,
    *,
    folder: str,
    source_label: str,
    **fields: Any,
) -> tuple[SaveTicket, str]:
    """The ticket's row and the ticket."""
    token = secrets.token_urlsafe(32)
    ticket = SaveTicket.objects.for_team(team).create(
        team=team,
        created_by=actor,
        folder=folder[:1024],
        source_label=source_label[:200],
        token_hash=_hash(token),
        expires_at=timezone.now() + _lifetime(),
        **fields,
    )
    return ticket, token


@transaction.atomic
def save_begin_to(
    *,
    team: Team,
    actor: User,
    folder: str,
    root: str,
    source: str,
    source_id: int | None,
    source_label: str,
    dataset: Dataset | None = None,
) -> tuple[SaveTicket, str]:
    """A ticket to save ``folder`` (under ``root``) as a new version of ``dataset`` (made,
    with its lineage ``source``, ``source_id``, ``source_label``, when the host sends the
    manifest); without a dataset, as files stored in the blob store and handed, once all
    are in, to ``apps.models.hooks.files_saved`` (a job run's kept files). (its row, the
    ticket itself.) Audited for a dataset (model.save_to_dataset_started)."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    made = _ticket_create(
        team,
        actor,
        folder=folder,
        root=root,
        source=source,
        source_id=source_id,
        source_label=source_label,
        target=SaveTicket.Target.FILES if dataset is None else SaveTicket.Target.DATASET,
        dataset=dataset,
    )
    if dataset is not None:
        audit_record(
            team=team,
            actor=actor,
            action="model.save_to_dataset_started",
            target=dataset.name,
            folder=folder[:200],
            source=source_label[:200],
        )
    return made


@transaction.atomic
def save_begin_system(
    *,
    team: Team,
    folder: str,
    root: str,
    source: str,
    source_id: int,
    source_label: str = "",
) -> tuple[SaveTicket, str]:
    """A ticket with no person behind it (a notebook's snapshot, ``source`` "snapshot"):
    files stored in the blob store and handed, once all are in, to ``files_saved``. The
    ticket alone is the right, bound to its own upload; the storage quota never refuses
    it (an upload of SYSTEM_PURPOSE). (its row, the ticket itself.) Not audited: what
    asked for it records what it is for."""
    return _ticket_create(
        team,
        None,
        folder=folder,
        root=root,
        source=source,
        source_id=source_id,
        source_label=source_label,
        target=SaveTicket.Target.FILES,
    )


def ticket_url(ticket: SaveTicket) -> str:
    """Where the host uses its ticket: absolute, on the address hosts reach the web tier at."""
    path = reverse("hostsave_progress", args=[ticket.pk]).removesuffix("/progress")
    return f"{settings.LATTICE_INTERNAL_URL.rstrip('/')}{path}"


def save_by_ticket(save_id: int, token: str) -> SaveTicket:
    """The save a host's request speaks for: its ticket checked, its life moved on, its
    actor's permission checked again (a member removed or demoted mid-save fails it).
    Raises TicketError (403) for a ticket that is unknown, used up or expired."""
    found = (
        SaveTicket.objects.unscoped()
        .filter(pk=save_id)
        .select_related("team", "created_by", "model", "dataset", "version", "upload")
        .first()
    )
    if found is None or not hmac.compare_digest(found.token_hash, _hash(token)):
        raise TicketError("This save ticket is not valid.")
    if found.finished_at is not None:
        raise TicketError("This save ticket is used up: its save has ended.")
    now = timezone.now()
    if found.expires_at <= now:
        _finish(found, SaveTicket.Result.FAILED, STOPPED_ANSWERING)
        raise TicketError("This save ticket has expired.")
    SaveTicket.objects.for_team(found.team).filter(pk=found.pk).update(expires_at=now + _lifetime())
    if found.created_by_id is None:
        if found.target != SaveTicket.Target.FILES:  # never made so: refuse, not trust
            raise TicketError("This save ticket is not valid.")
        return found  # a system save: the ticket is the right
    permission, what = (
        ("models.manage", "models")
        if found.target == SaveTicket.Target.MODEL
        else ("datasets.manage", "files")
    )
    try:
        require_permission(
            found.team,
            found.created_by,
            permission,
            error=ModelPermissionError,
            message=f"{found.created_by} may no longer save {what} in this team.",
        )
    except ModelPermissionError as refused:
        _finish(found, SaveTicket.Result.FAILED, str(refused))
        raise
    return found


def save_abandon(*, ticket: SaveTicket, reason: str) -> None:
    """End a save from the control plane's side (what asked for it gave it up, or its host
    went silent): FAILED with ``reason``, its ticket dead, its upload closed."""
    _finish(ticket, SaveTicket.Result.FAILED, reason)


@contextlib.contextmanager
def ends_on_refusal(ticket: SaveTicket) -> Iterator[None]:
    """A step refused ends the save: the host stops at a 4xx, so nothing else would. Save
    a chunk that arrived damaged: the host sends that one again."""
    try:
        yield
    except ServiceError as refused:
        if refused.code != CHUNK_DAMAGED:
            _finish(ticket, SaveTicket.Result.FAILED, str(refused))
        raise


def _finish(ticket: SaveTicket, result: str, failure: str = "") -> None:
    """End the save once (the ticket used up); a failed one takes its half-made version
    and upload with it. Told to ``save_ended`` once that commits."""
    with transaction.atomic():
        updated = (
            SaveTicket.objects.for_team(ticket.team_id)
            .filter(pk=ticket.pk, finished_at__isnull=True)
            .update(result=result, failure=failure[:1000], finished_at=timezone.now())
        )
        if updated:
            ticket_id = ticket.pk
            transaction.on_commit(lambda: save_ended(ticket_id))
        if updated and result == SaveTicket.Result.FAILED:
            if ticket.version_id:
                version = ModelVersion.objects.for_team(ticket.team_id).get(pk=ticket.version_id)
                if version.status == ModelVersion.Status.UPLOADING:
                    version_fail(version=version, reason=failure)
            elif ticket.upload_id:
                _upload_give_up(ticket)
        if updated and result == SaveTicket.Result.FAILED and ticket.created_by_id is not None:
            # A system save's failure is its snapshot's to show (no person asked for it).
            audit_record(
                team=ticket.team,
                actor=ticket.created_by,
                action="model.save_failed",
                target=ticket.target_name,
                reason=failure[:200],
            )
    ticket.refresh_from_db()


def _upload_give_up(ticket: SaveTicket) -> None:
    """A failed dataset or files save: its upload closes (what it received is discarded),
    its dataset version stays unnumbered, marked as the datasets' upkeep marks an
    abandoned upload's."""
    upload = Upload.objects.for_team(ticket.team_id).select_for_update().get(pk=ticket.upload_id)
    upload_abandon(upload)
    if upload.version_id:
        DatasetVersion.objects.for_team(ticket.team_id).filter(
            pk=upload.version_id, status=DatasetVersion.Status.UPLOADING
        ).update(message="(failed save)")


def saves_expire(*, now: datetime | None = None) -> int:
    """Housekeeping (beat, models.upkeep): fail every save whose host went silent, so its
    version does not stay "uploading" for ever. A save whose ticket expired unused (the
    host died, its agent's task was lost) fails with STOPPED_ANSWERING, as does a version
    a host was to fill (``version_begin``'s: no upload yet) whose ticket is gone. A
    version the upload API started is not a save: its upload's abandon hook fails it
    (apps.models.services.versions). Returns how many saves it failed."""
    now = now or timezone.now()
    count = 0
    expired = (
        SaveTicket.objects.unscoped()  # housekeeping across every team
        .filter(finished_at__isnull=True, expires_at__lte=now)
        .select_related("team", "created_by", "model", "dataset")
    )
    for ticket in expired:
        _finish(ticket, SaveTicket.Result.FAILED, STOPPED_ANSWERING)
        count += ticket.result == SaveTicket.Result.FAILED
    live = SaveTicket.objects.unscoped().filter(  # housekeeping across every team
        finished_at__isnull=True, version_id=OuterRef("pk")
    )
    orphans = (
        ModelVersion.objects.unscoped()  # housekeeping across every team
        .filter(
            status=ModelVersion.Status.UPLOADING,
            upload__isnull=True,
            created_at__lt=now - _lifetime(),
        )
        .exclude(Exists(live))
    )
    for version in orphans:
        if version_fail(version=version, reason=STOPPED_ANSWERING).status == (
            ModelVersion.Status.FAILED
        ):
            count += 1
    return count


def _person(ticket: SaveTicket) -> User:
    """Who a model or dataset save speaks for (a system save has no one: never such)."""
    if ticket.created_by is None:
        raise TicketError("This save ticket is not valid.")
    return ticket.created_by


def _version(ticket: SaveTicket) -> ModelVersion:
    if ticket.version is None:
        raise ModelError("This save's version is gone.")
    return ticket.version


def save_progress(*, ticket: SaveTicket, phase: object, done: object, total: object) -> None:
    """What the host says it has read or sent so far, kept on the version for its pages."""
    if phase not in PHASES:
        raise ModelError(f"phase is one of {', '.join(PHASES)}.", field="phase")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (done, total)):
        raise ModelError("done and total are whole numbers of bytes.", field="done")
    if ticket.version_id:
        ModelVersion.objects.for_team(ticket.team_id).filter(
            pk=ticket.version_id, status=ModelVersion.Status.UPLOADING
        ).update(progress={"phase": phase, "done": done, "total": total})


def save_manifest(*, ticket: SaveTicket, files: object, skipped: object) -> dict[str, Any]:
    """The folder's files: the version's manifest (a hostile one is refused and ends the
    save). The same files as a version already there: that one, and nothing to send."""
    if ticket.target != SaveTicket.Target.MODEL:
        return _manifest_opened(ticket, files)
    if files == []:
        raise ModelError(EMPTY.format(folder=ticket.folder), field="files")
    with ends_on_refusal(ticket):
        version, upload = version_manifest(
            team=ticket.team, actor=_person(ticket), version=_version(ticket), files=files
        )
    if upload is None:
        SaveTicket.objects.for_team(ticket.team_id).filter(pk=ticket.pk).update(version=version)
        _finish(ticket, SaveTicket.Result.EXISTING)
        return {"state": "existing", "version": version.number}
    if isinstance(skipped, list) and skipped:
        listed = [str(path)[:1024] for path in skipped[:SKIPPED_LISTED]]
        version.metadata = {**version.metadata, "skipped": listed, "skipped_count": len(skipped)}
        version.save(update_fields=["metadata"])
    return {"state": "upload", "chunk_size": upload.chunk_size, "missing": upload_missing(upload)}


def _manifest_opened(ticket: SaveTicket, files: object) -> dict[str, Any]:
    """A dataset or files save's manifest: its upload opened (a dataset's with the new
    version and its lineage); the same answer again for a host that asks again. No files:
    a dataset save fails; a files save ends with none."""
    if ticket.upload_id is None:
        if files == [] and ticket.target == SaveTicket.Target.FILES:
            _finish(ticket, SaveTicket.Result.READY)
            return {"state": "existing", "version": None}
        if files == []:
            raise ModelError(EMPTY.format(folder=ticket.folder), field="files")
        with ends_on_refusal(ticket), transaction.atomic():
            upload = _upload_open(ticket, files)
            SaveTicket.objects.for_team(ticket.team_id).filter(pk=ticket.pk).update(
                upload=upload, dataset_version=upload.version
            )
        ticket.refresh_from_db()
    upload = _upload(ticket)
    return {"state": "upload", "chunk_size": upload.chunk_size, "missing": upload_missing(upload)}


def _upload_open(ticket: SaveTicket, files: object) -> Upload:
    if ticket.target == SaveTicket.Target.DATASET:
        if ticket.dataset is None:
            raise ModelError("This save's dataset is gone.")
        return upload_start(
            team=ticket.team,
            actor=_person(ticket),
            dataset=ticket.dataset,
            files=files,
            message=ticket.source_label,
            source=ticket.source,
            source_id=ticket.source_id,
            source_label=ticket.source_label,
        )
    if ticket.created_by_id is None:
        return upload_open(
            team=ticket.team,
            actor=None,
            # A snapshot keeps every name a POSIX file system takes, exactly (no Unicode
            # normalisation): the portable-name rules are for datasets and models.
            manifest=_with_modes(manifest_clean(files, posix=True), files),
            purpose=SYSTEM_PURPOSE,
        )
    return upload_open(
        team=ticket.team,
        actor=ticket.created_by,
        manifest=manifest_clean(files),
        purpose=FILES_PURPOSE,
    )


def _with_modes(cleaned: list[dict[str, Any]], files: object) -> list[dict[str, Any]]:
    """A system save's manifest keeps each file's ``mode`` (its permission bits, 0 to
    0o7777; 0o644 when not given), which a restore gives back. ``cleaned`` is
    manifest_clean's of ``files``: one entry per file, in the same order."""
    sent = files if isinstance(files, list) else []
    kept = []
    for entry, raw in zip(cleaned, sent, strict=True):
        mode = raw.get("mode", DEFAULT_MODE) if isinstance(raw, dict) else DEFAULT_MODE
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= MAX_MODE:
            raise ModelError(f"{entry['path']}: mode is a number from 0 to 0o7777.", field="files")
        kept.append({**entry, "mode": mode})
    return kept


def save_chunk_target(
    *, ticket: SaveTicket, sha256: str, index: int, checksum: str
) -> dict[str, Any]:
    """Where the host sends a chunk: S3's presigned part, or Lattice's address for it
    under the ticket (the team API's would want a person's session or token)."""
    with ends_on_refusal(ticket):
        target = chunk_target(
            team=ticket.team,
            actor=ticket.created_by,
            upload=_upload(ticket),
            sha256=sha256,
            index=index,
            checksum=checksum,
        )
    if str(target.get("url", "")).startswith("/"):
        target["url"] = reverse("hostsave_chunk", args=[ticket.pk, sha256, index])
    return target


def save_chunk_receive(
    *, ticket: SaveTicket, sha256: str, index: int, pieces: Iterable[bytes], checksum: str
) -> None:
    with ends_on_refusal(ticket):
        chunk_receive(
            team=ticket.team,
            actor=ticket.created_by,
            upload=_upload(ticket),
            sha256=sha256,
            index=index,
            pieces=pieces,
            checksum=checksum,
        )


def save_complete(*, ticket: SaveTicket) -> Any:
    """Every file checked and stored; the version ready with its number (or the version
    with the same files that became ready meanwhile): a model's, a dataset's (a new one
    every time: a job's run is its lineage), or the ticket itself for files (handed to
    files_saved in the completion's transaction). The ticket is used up."""
    if ticket.target != SaveTicket.Target.MODEL:
        with ends_on_refusal(ticket):
            made = upload_complete(
                team=ticket.team,
                actor=ticket.created_by,
                upload=_upload(ticket),
                allow_identical=True,
            )
        _finish(ticket, SaveTicket.Result.READY)
        return made
    with ends_on_refusal(ticket):
        made = upload_complete(team=ticket.team, actor=ticket.created_by, upload=_upload(ticket))
    same = made.pk != ticket.version_id
    SaveTicket.objects.for_team(ticket.team_id).filter(pk=ticket.pk).update(version=made)
    _finish(ticket, SaveTicket.Result.EXISTING if same else SaveTicket.Result.READY)
    return made


def save_fail(*, ticket: SaveTicket, code: object, path: object = "") -> None:
    """The host gave up (a file changed while it was read, the folder is gone): the
    version fails, in the server's words for the host's ``code`` (an unknown one gets
    FAILED_ELSE), naming ``path`` only when it is a file of the manifest the host sent for
    this save (the host is not trusted: its words and other paths are never shown). The
    ticket is used up."""
    words_for = FAILURES if ticket.root == NOTEBOOKS_PATH else {**FAILURES, **FAILURES_AFTER_EXIT}
    template = words_for.get(code, FAILED_ELSE) if isinstance(code, str) else FAILED_ELSE
    words = template.format(folder=ticket.folder, root=ticket.root)
    where = _manifest_path(ticket, path)
    _finish(ticket, SaveTicket.Result.FAILED, f"{where}: {words}" if where else words)


def _manifest_path(ticket: SaveTicket, path: object) -> str:
    """``path`` when it is one of the files the host listed for this save, else ""."""
    if not isinstance(path, str) or not path:
        return ""
    upload = ticket.upload or (ticket.version.upload if ticket.version is not None else None)
    if upload is None:
        return ""
    wanted = path if ticket.created_by_id is None else unicodedata.normalize("NFC", path)
    listed = {entry["path"] for entry in upload_manifest(upload)}
    return wanted if wanted in listed else ""


def _upload(ticket: SaveTicket) -> Any:
    upload = ticket.upload if ticket.target != SaveTicket.Target.MODEL else _version(ticket).upload
    if upload is None:
        raise ModelError("Send the folder's manifest first.")
    return upload


def _files_finish(
    team: Team,
    actor: User | None,
    upload: Upload,
    manifest: list[dict[str, Any]],
    blobs: dict[str, Blob],
) -> SaveTicket:
    """A files save's upload is complete: its files go to the app that asked, in the
    completion's transaction (so the blobs are held the moment they are stored)."""
    ticket = SaveTicket.objects.for_team(team).select_related("team").get(upload=upload)
    files_saved(ticket, manifest, blobs)
    return ticket


def _files_describe(upload: Upload) -> dict[str, Any]:
    return {"files": True}


def _files_abandon(upload: Upload) -> None:
    return None


def _held_elsewhere(team: Team | None) -> QuerySet[Any]:
    """What system saves keep is held through files_held already (files_purpose's)."""
    return Upload.objects.unscoped().none().values("pk")


files_purpose = UploadPurpose(
    permission="datasets.manage",
    finish=_files_finish,
    abandon=_files_abandon,
    holdings=files_held,
    describe=_files_describe,
)


system_purpose = UploadPurpose(
    permission="datasets.manage",
    finish=_files_finish,
    abandon=_files_abandon,
    holdings=_held_elsewhere,
    describe=_files_describe,
    system=True,
)
