"""Deployments' Celery tasks: the controller's beat pass over every deployment.

``deployments.scale`` (beat, every LATTICE_DEPLOYMENT_SCALE_EVERY seconds) reconciles each
deployment that has something to look after: autoscaling reads the gateway's in-flight
counts, scale to zero reads the idle time, and a lost replica or a stuck stop is repaired
even when no event arrives. A reconcile queued on a change (``deployments.reconcile``) and
a replica's placement (``deployments.replica_place``) live beside their steps
(apps.deployments.controller, apps.deployments.replicas) and are imported here so Celery's
autodiscovery registers them.
"""

from __future__ import annotations

import logging

from celery import shared_task

from apps.deployments.controller import (
    active_deployment_ids,
    deployment_reconcile,
    deployment_reconcile_task,
)
from apps.deployments.models import Deployment
from apps.deployments.replicas import replica_place_task

logger = logging.getLogger(__name__)

__all__ = ["deployment_reconcile_task", "deployment_scale", "replica_place_task"]


@shared_task(name="deployments.scale", soft_time_limit=60, time_limit=90)
def deployment_scale() -> int:
    """One controller pass over every deployment; how many were looked at."""
    count = 0
    for deployment_id, team_id in active_deployment_ids():
        deployment = Deployment.objects.for_team(team_id).filter(pk=deployment_id).first()
        if deployment is None:
            continue
        try:
            deployment_reconcile(deployment)
        except Exception:
            # One deployment's trouble must not stop the others' scaling.
            logger.exception("reconcile of deployment %s", deployment_id)
        count += 1
    return count
