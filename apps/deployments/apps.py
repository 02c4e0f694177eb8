from __future__ import annotations

from django.apps import AppConfig

# The audit log's words for what deployments record (apps.core.audit.audit_describe).
AUDIT_PHRASES = {
    "deployment.created": "{actor} created the deployment {target}",
    "deployment.changed": "{actor} changed the deployment {target} (revision {revision})",
    "deployment.updated": "{actor} changed {target}'s settings ({fields})",
    "deployment.rolled_back": "{actor} rolled {target} back to revision {to}",
    "deployment.traffic_set": "{actor} split {target}'s traffic: {split}",
    "deployment.deleted": "{actor} deleted the deployment {target}",
    "deployment.key_created": "{actor} made the key {key} for {target}",
    "deployment.key_revoked": "{actor} revoked the key {key} of {target}",
}


class DeploymentsConfig(AppConfig):
    name = "apps.deployments"
    label = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        from apps.core.audit import audit_phrases
        from apps.deployments import controller, replicas
        from apps.deployments.gateway import signals as gateway_signals
        from apps.machines.hooks import WorkloadKind, workload_kinds
        from apps.models.hooks import alias_moved

        # The gateway forgets cached routes and credentials the moment they change.
        gateway_signals.connect()

        # A replica's workload is "dp-<replica>": its events (then a reconcile of its
        # deployment), its output (the deployment's stream), its placement by the line.
        workload_kinds.register(
            "dp",
            WorkloadKind(
                on_event=controller.on_replica_event,
                stream=replicas.workload_stream,
                placed=replicas.on_workload_placed,
            ),
        )
        # A followed alias moved: the deployments following it roll out its new version.
        alias_moved.register(controller.on_alias_moved)
        for action, phrase in AUDIT_PHRASES.items():
            audit_phrases.register(action, phrase)
        self._register_pages()

    def _register_pages(self) -> None:
        """The model version page's "Deploy" button and "Served by" list; the charts' task."""
        from apps.deployments import live, pages_hooks  # noqa: F401 - live: the worker's task
        from apps.models import hooks as model_hooks

        model_hooks.version_servers.register(pages_hooks.version_servers)
        model_hooks.version_actions.register(pages_hooks.version_actions)
