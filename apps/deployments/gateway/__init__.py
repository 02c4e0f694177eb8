"""The deployments' gateway: every request for a deployment's endpoint, without Django's
request stack (no middleware, no view): a lean ASGI app that config.asgi mounts ahead of
the notebook proxy and Django.

The modules: ``addresses`` (which deployment a host or the invoke path names), ``access``
(who may call it, per auth mode), ``shared`` (the per-request read of the shared cache:
generations and rate counts), ``app`` (DeploymentGateway: the request, the hold, the
forwarding), ``signals`` (the model changes that make cached routes and credentials
stale). The route table is apps.deployments.routing, the counts apps.deployments.metrics.
"""

from __future__ import annotations

from apps.deployments.gateway.addresses import deployment_host, is_invoke_path
from apps.deployments.gateway.app import DeploymentGateway

__all__ = ["DeploymentGateway", "deployment_host", "is_invoke_path"]
