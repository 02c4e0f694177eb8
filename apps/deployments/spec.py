"""What a replica's host is asked to run: its workload's spec (apps.runtimes.base.Spec).

The revision's server: the built-in model server (its image and command for the host's
runtime, apps.runtimes.images) or the custom image with its own command and port. The
model version's files are mounted read-only at ``/model``: sent as a dataset entry with
``"path": "/model"``, which the host's agent builds once per content from the blob store,
like a notebook's dataset mounts (no weights baked into an image). The environment is the
revision's variables, its secrets (opened here, sent only to the host that runs it), the
team secrets it names (apps.teams.secrets, resolved at each replica's start) and ``PORT``;
the resources are the machine type's, with the GPUs its placement holds; the labels tell
the reconciler whose it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings

from apps.core.crypto import open_json
from apps.deployments.models import Revision
from apps.machines.scheduler import spec_limits
from apps.models.selectors import version_manifest
from apps.notebooks.mounts import content_key
from apps.runtimes import images
from apps.runtimes.base import Spec
from apps.teams.secrets import secrets_resolve

if TYPE_CHECKING:
    from apps.deployments.models import Replica

# Where the built-in model server listens inside its container (a custom image says its own).
BUILTIN_PORT = 8080
# The built-in server's health route (images/model-server/serve.py).
BUILTIN_HEALTH_PATH = "/health-check"
MODEL_PATH = "/model"


def model_mount(revision: Revision) -> list[dict[str, Any]]:
    """The model version's files as the one mount at /model: [path, sha256, size] each, and
    the content key of their folder on a host (the same files of one team, one folder)."""
    version = revision.model_version
    if version is None:
        return []
    files = version_manifest(revision.team, version)
    return [
        {
            "name": "model",
            "version_id": version.pk,
            "key": content_key(files, owner=version.team_id),
            "files": [[path, sha256, size] for path, sha256, size in files],
            "path": MODEL_PATH,
        }
    ]


def replica_env(revision: Revision, port: int, *, used_by: str = "") -> dict[str, str]:
    """The revision's variables, its secrets opened, the team secrets it names (resolved now,
    audited as a use by ``used_by``; one the team no longer has is a SecretError), and PORT
    (ours wins: the server must listen where the gateway looks)."""
    env = {str(k): str(v) for k, v in (revision.env or {}).items()}
    if revision.secret_env:
        secrets = open_json(bytes(revision.secret_env))
        if isinstance(secrets, dict):
            env.update({str(k): str(v) for k, v in secrets.items()})
    env.update(
        secrets_resolve(
            revision.team,
            revision.team_secrets or [],
            used_by=used_by or f"deployment revision {revision.pk}",
        )
    )
    env["PORT"] = str(port)
    return env


def replica_port(revision: Revision) -> int:
    return BUILTIN_PORT if revision.serving == Revision.Serving.BUILTIN else revision.port


def health_path(revision: Revision) -> str:
    """The path whose answer says the replica is ready ("" for a custom image without
    one: an open port is enough)."""
    if revision.serving == Revision.Serving.BUILTIN:
        return BUILTIN_HEALTH_PATH
    return revision.health_path


def replica_spec(replica: Replica) -> Spec:
    revision = replica.revision
    machine = replica.machine_type
    assert replica.placement is not None  # noqa: S101 - dispatched only once placed
    assert replica.host is not None  # noqa: S101
    port = replica_port(revision)
    if revision.serving == Revision.Serving.BUILTIN:
        image = images.model_server_image()
        command = images.model_server_command(replica.host.runtime)
    else:
        image, command = revision.image, list(revision.command or [])
    return Spec(
        name=replica.workload,
        image=image,
        command=command,
        port=port,
        env=replica_env(
            revision, port, used_by=f"deployment replica {replica.pk} (r{revision.number})"
        ),
        **spec_limits(machine, replica.placement),
        datasets=model_mount(revision),
        labels={
            "installation": settings.LATTICE_INSTALLATION,
            "kind": "deployment",
            "team": str(replica.team_id),
            "deployment": str(replica.deployment_id),
            "revision": str(revision.pk),
            "replica": str(replica.pk),
            "stream": f"deployment-{replica.deployment_id}",
        },
    )
