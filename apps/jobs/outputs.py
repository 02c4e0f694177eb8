"""What a run leaves: /outputs as a dataset or model version, or kept files (owner: outputs).

CONTRACT (foundation; the outputs helper fills it in):

- ``outputs_collect(run, attempt) -> bool``: after a succeeded attempt (exit 0), save what it
  left: the executed notebook (entrypoint "notebook", as a RunFile of kind "result") and
  /outputs as the job's ``output`` says (a new version of the dataset or model named
  ``output_name``, made when missing, with lineage: source "job", the run's pk, its input
  dataset versions; or RunFiles of kind "artifact" kept ``keep_files_days``). The host's
  agent reads the exited container's folders and sends them with single-use tickets
  (apps.models.services.saves, apps.machines.savefolder). Returns False when there is
  nothing to save (the run ends at once); else ``outputs_finished`` is called once, later.
- ``outputs_finished``: a Hook the app registers (apps.jobs.apps) to runs.run_outputs_done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from apps.jobs.models import Attempt, Run


def _nothing(run_id: int, *, ok: bool, message: str = "") -> None:
    return None


outputs_finished: Hook[..., None] = Hook("job outputs finished", default=_nothing)


def outputs_collect(run: Run, attempt: Attempt) -> bool:
    raise NotImplementedError
