"""The model registry's core: versions over datasets' blob store, made by its uploads."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest

from apps.datasets import upkeep
from apps.datasets.models import Blob, Upload
from apps.datasets.services.completion import upload_complete
from apps.datasets.services.uploads import chunk_receive, upload_missing
from apps.models.models import ModelFile, ModelVersion
from apps.models.selectors import lineage_datasets
from apps.models.services.registry import model_create
from apps.models.services.versions import version_start
from tests.dataset_fixtures import make_version, sha

pytestmark = pytest.mark.django_db

CHUNK = 4  # bytes: small files make several chunks


def manifest(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [{"path": p, "size": len(d), "sha256": sha(d)} for p, d in files.items()]


def save(team, actor, model, files: dict[str, bytes], **fields: Any) -> tuple[ModelVersion, int]:
    """Upload ``files`` as a version of ``model`` through the datasets protocol; the
    version and how many chunks were sent."""
    version, upload = version_start(
        team=team, actor=actor, model=model, files=manifest(files), **fields
    )
    if upload is None:
        return version, 0
    by_sha = {sha(d): d for d in files.values()}
    sent = 0
    for blob_sha, indexes in upload_missing(upload).items():
        for index in indexes:
            piece = by_sha[blob_sha][index * CHUNK : (index + 1) * CHUNK]
            chunk_receive(
                team=team,
                actor=actor,
                upload=upload,
                sha256=blob_sha,
                index=index,
                pieces=[piece],
                checksum=hashlib.sha256(piece).hexdigest(),
            )
            sent += 1
    return upload_complete(team=team, actor=actor, upload=upload), sent


FILES = {"model.pkl": b"weights-0123456789", "predict.py": b"def predict(x):\n    return x\n"}


def test_identical_content_is_the_same_version_and_one_changed_byte_a_new_one(acme, alice, media):
    model = model_create(team=acme, actor=alice, name="Iris")

    first, sent = save(acme, alice, model, FILES)
    assert (first.number, first.status, sent) == (1, "ready", 13)
    blobs = Blob.objects.count()

    again, sent_again = save(acme, alice, model, dict(reversed(FILES.items())))
    assert (again.pk, sent_again) == (first.pk, 0)
    assert ModelVersion.objects.for_team(acme).count() == 1

    changed = dict(FILES, **{"model.pkl": b"weights-0123456788"})
    second, sent = save(acme, alice, model, changed)
    assert second.number == 2
    # Only the changed file's bytes were sent and stored: predict.py's blob is shared.
    assert sent == 5
    assert Blob.objects.count() == blobs + 1
    shared = ModelFile.objects.for_team(acme).filter(path="predict.py")
    assert shared.values("blob_id").distinct().count() == 1
    assert Upload.objects.for_team(acme).filter(purpose="model", status="complete").count() == 2


def test_a_models_files_count_as_held_and_are_never_collected(acme, alice, globex, charlie, media):
    """Blobs a model holds are the team's (a dataset listing them sends nothing) and the
    housekeeping leaves them; another team still sends them."""
    model = model_create(team=acme, actor=alice, name="Iris")
    version, _ = save(acme, alice, model, FILES)

    assert version.ready_at is not None
    assert upkeep.blobs_collect(now=version.ready_at + timedelta(days=1)) == 0
    assert Blob.objects.count() == 2

    theirs = model_create(team=globex, actor=charlie, name="Copy")
    _, sent = save(globex, charlie, theirs, FILES)
    assert sent == 13  # another team's blobs are sent again and checked


def test_a_version_records_its_lineage(acme, alice, media):
    cats = make_version(acme, "Cats", {"a.csv": b"1,2\n"})
    model = model_create(team=acme, actor=alice, name="Iris")
    parent, _ = save(acme, alice, model, FILES)
    child, _ = save(
        acme,
        alice,
        model,
        {"model.pkl": b"fine-tuned"},
        dataset_versions=[cats.pk],
        parent=parent.pk,
        format="sklearn",
        metadata={"accuracy": 0.97},
    )
    assert list(lineage_datasets(acme, child)) == [cats]
    assert (child.parent, child.format, child.metadata) == (parent, "sklearn", {"accuracy": 0.97})
