"""Jobs, runs and kept files as tests need them, made straight in the database (the engine
and the API are other tests' business)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from django.utils import timezone

from apps.jobs.models import Job, Run, RunFile
from apps.machines.models import MachineType
from tests.dataset_fixtures import store_blob


def make_job(team: Any, actor: Any, **fields: Any) -> Job:
    values = {
        "name": "Nightly features",
        "slug": f"nightly-{uuid.uuid4().hex[:6]}",
        "machine_type": MachineType.objects.order_by("pk").first(),
        "template": "python",
        "command": "python make.py",
        "created_by": actor,
        **fields,
    }
    return Job.objects.for_team(team).create(team=team, **values)


def make_run(job: Job, actor: Any, **fields: Any) -> Run:
    number = Run.objects.for_team(job.team).filter(job=job).count() + 1
    values = {"number": number, "status": Run.Status.SUCCEEDED, "triggered_by": actor, **fields}
    return Run.objects.for_team(job.team).create(team=job.team, job=job, **values)


def keep_file(run: Run, path: str, data: bytes, *, kind: str, days: int = 3) -> RunFile:
    """A file the run kept (its bytes in the blob store) for ``days``."""
    blob = store_blob(data)
    return RunFile.objects.for_team(run.team_id).create(
        team_id=run.team_id,
        run=run,
        kind=kind,
        path=path,
        size=len(data),
        sha256=blob.sha256,
        blob=blob,
        expires_at=timezone.now() + timedelta(days=days),
    )


def executed_notebook(output_html: str) -> bytes:
    """An executed notebook: one cell that printed "answer 42" and showed ``output_html``."""
    cell = {
        "cell_type": "code",
        "id": "c1",
        "metadata": {},
        "execution_count": 1,
        "source": "print(41 + 1)",
        "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "answer 42\n"},
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {"text/html": output_html, "text/plain": "html"},
            },
        ],
    }
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}
    return json.dumps(notebook).encode()
