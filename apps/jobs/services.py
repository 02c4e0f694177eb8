"""Writes on jobs: one transaction each, an audit row, work queued on commit (owner: API).

CONTRACT (foundation; the API and pages helper fills it in):

- ``job_create(*, team, actor, **fields) -> Job``, ``job_update(*, team, actor, job,
  **fields) -> Job``, ``job_delete(*, team, actor, job)``: validated (machine type offered,
  template known, notebook of this team, secrets of this team that exist, dataset versions
  this team may read, a cron expression django-celery-beat accepts, a Git URL of a
  supported scheme); a refusal is a JobError naming the field.
- ``job_run(*, team, actor, job, trigger="manual", changes=None) -> Run``: start a run
  (plan limits checked: apps.notebooks.entitlements.check_start); ``changes`` edit the
  definition for this run only (a re-run with an edited definition).
- ``run_rerun(*, team, actor, run, changes=None) -> Run``; ``run_cancel(*, team, actor, run)``.
"""
