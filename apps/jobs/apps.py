from __future__ import annotations

from django.apps import AppConfig

# The audit log's words for what jobs record (apps.core.audit.audit_describe).
AUDIT_PHRASES = {
    "job.created": "{actor} created the job {target}",
    "job.updated": "{actor} changed the job {target} ({fields})",
    "job.deleted": "{actor} deleted the job {target}",
    "job.run_started": "{actor} started run {run} of {target}",
    "job.run_cancelled": "{actor} cancelled run {run} of {target}",
    "job.schedule_skipped": "The schedule of {target} skipped a run: run {run} was still running",
    "job.schedule_refused": "The schedule of {target} could not start a run: {reason}",
}


class JobsConfig(AppConfig):
    name = "apps.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from django.urls import reverse

        from apps.accounts.hooks import example_urls
        from apps.core.audit import audit_phrases
        from apps.datasets import hooks as dataset_hooks
        from apps.jobs import outputs, runs
        from apps.machines.hooks import WorkloadKind, workload_kinds
        from apps.models import hooks as model_hooks

        # An attempt's workload is "jb-<attempt>": its events, its output (the run's
        # stream; the Git commit the runner says in it), its placement by the line.
        workload_kinds.register(
            "jb",
            WorkloadKind(
                on_event=runs.on_attempt_event,
                stream=runs.workload_stream,
                placed=runs.on_workload_placed,
                lines=runs.workload_lines,
            ),
        )
        # Outputs saved (or not): the run ends.
        outputs.outputs_finished.register(runs.run_outputs_done)
        # A run's saves (apps.models.services.saves): each one's end, its kept files.
        model_hooks.save_sources.register(
            outputs.JOB,
            model_hooks.SaveSource(
                saved=outputs.files_keep, held=outputs.files_held, ended=outputs.ticket_ended
            ),
        )
        # A dataset or model version a run made links back to that run.
        dataset_hooks.source_link.register(outputs.version_made_by)
        model_hooks.source_links.register(outputs.JOB, outputs.version_made_by)
        # A new token of the jobs area is shown a curl of its team's jobs.
        example_urls.register(
            "jobs", lambda team: reverse("api:jobs", args=[team.slug]) if team else None
        )
        # The beat's "jobs.schedules" task is defined with the schedules it runs.
        from apps.jobs import schedules  # noqa: F401

        for action, phrase in AUDIT_PHRASES.items():
            audit_phrases.register(action, phrase)
