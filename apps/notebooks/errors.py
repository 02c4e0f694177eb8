"""The notebooks app's refusals: one family under apps.core.errors' ServiceError.

The services, the mounts and the lifecycle raise them; a page shows the message as it is and
the API answers with their status and code, as for every other refusal.
"""

from __future__ import annotations

from apps.core.errors import ConflictError, PermissionDeniedError, ServiceError


class NotebookError(ServiceError):
    """A request the rules refuse. The message is shown to the person as it is."""


class NotebookConflictError(ConflictError, NotebookError):
    """Not possible in the notebook's current state (e.g. changing the machine while it runs)."""


class NotebookPermissionError(PermissionDeniedError, NotebookError):
    """The actor's role does not allow this (403)."""
