"""Dataset versions mounted into notebooks, read-only at ``/datasets/<name>``.

A mount is a row: attaching or removing one changes nothing in a running
notebook; it takes effect at the notebook's next start (or restart). At
start, ``mounts_for_spec`` lists what the host's agent needs to build each
version's folder (apps.machines.materialise) before the workload starts.

Refusals raise ``apps.notebooks.errors.NotebookError`` (and its kinds), so the
notebook pages and API show them as they show every other notebook refusal.
The mount pages are apps.notebooks.views.mounts, the API apps.notebooks.api.mounts.
Datasets learns of mounts only through hooks registered in apps.notebooks.apps:
the catalogue's "add to a notebook" list, and other teams' mounts removed when a
dataset goes private.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.db import transaction
from django.urls import reverse

from apps.core.audit import audit_record
from apps.datasets.models import Dataset, DatasetVersion
from apps.datasets.selectors import version_manifest, version_usable_by
from apps.notebooks.errors import NotebookConflictError, NotebookError
from apps.notebooks.locks import notebook_to_change
from apps.notebooks.models import Notebook, NotebookMount
from apps.teams.permissions import role_allows
from apps.teams.selectors import memberships_of

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.notebooks.models import NotebookSession
    from apps.teams.models import Team

logger = logging.getLogger(__name__)

NAME_MAX = 80


class MountNotFoundError(NotebookError):
    """What was named is not there, or not this team's to use: the same answer for both."""

    status_code = 404
    code = "not_found"


def mount_available(mount: NotebookMount) -> bool:
    """False once the version's dataset, another team's, is no longer public. Making a
    dataset private removes other teams' mounts of it (others_mounts_remove); one added
    while that edit was committing is left out at start, listed so it can be removed."""
    version = mount.version
    return (
        version.team_id == mount.team_id or version.dataset.visibility == Dataset.Visibility.PUBLIC
    )


def mountable_version(*, team: Team, version_id: object) -> DatasetVersion:
    """The version ``version_id`` names, if ``team`` may mount it: ready, and its own or public.

    Raises MountNotFoundError (404) for anything else, whether it exists or not: another
    team's version still uploading reads as missing too (its upload is that team's business).
    """
    try:
        pk = int(str(version_id))
    except ValueError:
        raise MountNotFoundError("Choose a dataset version to attach.", field="version") from None
    # The team's own, or a public dataset's ready one: anyone's to mount.
    version = version_usable_by(team=team, pk=pk)
    if version is None:
        raise MountNotFoundError(
            "That dataset version does not exist, or your team cannot use it.", field="version"
        )
    if version.status != DatasetVersion.Status.READY:
        raise NotebookError(
            "That version is still uploading: attach it once it is ready.", field="version"
        )
    return version


def _clean_name(name: str | None, version: DatasetVersion) -> str:
    name = (name or "").strip() or version.dataset.slug
    try:
        validate_slug(name)
    except ValidationError:
        raise NotebookError(
            "A folder name is letters, digits, hyphens and underscores, such as churn-data.",
            field="name",
        ) from None
    if len(name) > NAME_MAX:
        raise NotebookError(f"A folder name is at most {NAME_MAX} characters.", field="name")
    return name


@transaction.atomic
def mount_add(
    *,
    team: Team,
    actor: User,
    notebook: Notebook,
    version: DatasetVersion,
    name: str | None = None,
) -> NotebookMount:
    """Mount ``version`` at /datasets/<name> (default: the dataset's slug) from the
    notebook's next start; a running notebook sees it after a restart. Audited."""
    notebook = notebook_to_change(team, actor, notebook)
    # Checked again from the database: the caller's row may be stale or another team's.
    version = mountable_version(team=team, version_id=version.pk)
    name = _clean_name(name, version)
    mounts = NotebookMount.objects.for_team(team).filter(notebook=notebook)
    if mounts.filter(name=name).exists():
        raise NotebookConflictError(
            f"This notebook already has a dataset at /datasets/{name}: choose another folder name.",
            field="name",
        )
    same = mounts.filter(version__dataset_id=version.dataset_id).first()
    if same is not None:
        raise NotebookConflictError(
            f"{version.dataset.name} is mounted at /datasets/{same.name} already: remove it "
            "first to mount another version.",
            field="version",
        )
    mount = NotebookMount.objects.for_team(team).create(
        team=team,
        notebook=notebook,
        version=version,
        name=name,
        created_by=actor,
    )
    audit_record(
        team=team,
        actor=actor,
        action="notebook.dataset_mounted",
        target=notebook.name,
        dataset=version.dataset.name,
        dataset_team=version.team_id,
        version=version.number,
        path=f"/datasets/{name}",
    )
    return mount


@transaction.atomic
def mount_remove(*, team: Team, actor: User, notebook: Notebook, mount: NotebookMount) -> None:
    """Remove a mount; a running notebook keeps seeing it until it stops. Audited."""
    notebook = notebook_to_change(team, actor, notebook)
    row = (
        NotebookMount.objects.for_team(team)
        .select_related("version__dataset")
        .filter(pk=mount.pk, notebook=notebook)
        .first()
    )
    if row is None:
        raise MountNotFoundError("That dataset is not mounted in this notebook.")
    row.delete()
    audit_record(
        team=team,
        actor=actor,
        action="notebook.dataset_unmounted",
        target=notebook.name,
        dataset=row.version.dataset.name,
        version=row.version.number,
        path=f"/datasets/{row.name}",
    )


def notebook_mounts(notebook: Notebook) -> list[NotebookMount]:
    """The notebook's mounts, by name, with their versions and datasets."""
    return list(
        NotebookMount.objects.for_team(notebook.team_id)
        .filter(notebook=notebook)
        .select_related("version__dataset__team")
    )


def copy_allowance(total_bytes: int) -> int:
    """Seconds a start may take beyond the usual to copy ``total_bytes`` of datasets to its
    host, at LATTICE_DATASET_COPY_MIN_RATE (bytes a second): the agent's time limit and the
    reconciler's patience both grow by it, so a big dataset's first start is not cut off and
    sent again half way through its copy."""
    if total_bytes <= 0:
        return 0
    return -(-total_bytes // max(1, int(settings.LATTICE_DATASET_COPY_MIN_RATE)))


def mounted_bytes(notebook: Notebook) -> int:
    """The size of the versions a start of ``notebook`` mounts (what its host may copy)."""
    return sum(m.version.total_size for m in notebook_mounts(notebook) if mount_available(m))


def content_key(files: list[tuple[str, str, int]], *, owner: int | None = None) -> str:
    """The SHA-256 of a version's sorted manifest lines "path<TAB>sha256<TAB>size", after a
    line naming the ``owner`` team when given: the same files of one team make the same key,
    whichever of its versions holds them.

    mounts_for_spec gives the team that owns the version, so two teams that hold the same
    files get two folders on a host: how fast a notebook's folder is ready must not tell a
    team that another on that host holds what it holds. Other teams mounting a public
    version share its owner's folder (anyone may read it)."""
    lines = sorted(f"{path}\t{sha256}\t{size}" for path, sha256, size in files)
    if owner is not None:
        lines.insert(0, f"team\t{owner}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def mounts_for_spec(session: NotebookSession) -> list[dict[str, Any]]:
    """What the host's agent needs for each of the notebook's mounts: its name, its
    version, the content key of its folder, and [path, sha256, size] per file. The links
    it reads the blobs through are added when the start is sent
    (apps.datasets.blob_urls.with_read_urls)."""
    usable = []
    for mount in notebook_mounts(session.notebook):
        if not mount_available(mount):
            logger.warning(
                "notebook %s: version %s is no longer public; not mounted at /datasets/%s",
                session.notebook_id,
                mount.version_id,
                mount.name,
            )
            continue
        usable.append((mount.name, mount.version))
    return versions_for_spec(session.team_id, usable)


def versions_for_spec(
    team: Team | int, mounts: list[tuple[str, DatasetVersion]]
) -> list[dict[str, Any]]:
    """``mounts`` ((name, dataset version) pairs) as a spec's datasets (see mounts_for_spec),
    for a workload of ``team``: a notebook session's, a job run's."""
    out = []
    for name, version in mounts:
        # The caller checked the version is this team's to mount; the manifest is read only
        # if this team may read it (its own, or a public one).
        files = version_manifest(team=team, version_id=version.pk)
        out.append(
            {
                "name": name,
                "version_id": version.pk,
                "key": content_key(files, owner=version.team_id),
                "files": [[path, sha256, size] for path, sha256, size in files],
            }
        )
    return out


def others_mounts_remove(team: Team, dataset: Dataset) -> int:
    """Remove other teams' mounts of ``team``'s ``dataset`` (made from the catalogue while it
    was public), as it goes private; the team's own stay. How many went."""
    # Across teams on purpose: those mounts are rows of the teams that made them, which can no
    # longer see the dataset. The filter names this team's own dataset, so nothing else of
    # theirs is read or removed.
    others = (
        NotebookMount.objects.unscoped().filter(version__dataset_id=dataset.pk).exclude(team=team)
    )
    removed, _ = others.delete()
    return int(removed)


def attach_targets(user: User) -> list[tuple[Team, list[tuple[Notebook, str]]]]:
    """For the catalogue: the live notebooks of each team where ``user`` may manage notebooks,
    by team name, each with the URL its attach form takes (``notebooks:dataset_attach``)."""
    found: list[tuple[Team, list[tuple[Notebook, str]]]] = []
    # The person's own memberships, in every team: the list crosses teams by design.
    for membership in memberships_of(user).order_by("team__name"):
        if not role_allows(membership.role, "notebooks.manage"):
            continue
        team = membership.team
        notebooks = Notebook.objects.for_team(team).filter(deleted_at__isnull=True)
        targets = [
            (notebook, reverse("notebooks:dataset_attach", args=[team.slug, notebook.pk]))
            for notebook in notebooks
        ]
        if targets:
            found.append((team, targets))
    return found
