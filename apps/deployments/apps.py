from __future__ import annotations

from django.apps import AppConfig

# The audit log's words for what deployments record (apps.core.audit.audit_describe).
AUDIT_PHRASES = {
    "deployment.created": "{actor} created the deployment {target}",
    "deployment.changed": "{actor} changed the deployment {target} (revision {revision})",
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
        from apps.deployments.gateway import signals as gateway_signals

        gateway_signals.connect()

        # The replicas' workloads ("dp-<replica>"), the alias hook, the model page's
        # servers and the token page's example are registered here as they are built.
        for action, phrase in AUDIT_PHRASES.items():
            audit_phrases.register(action, phrase)
