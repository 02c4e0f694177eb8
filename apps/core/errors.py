"""The refusal every service raises: a message a person can act on, shown as it is.

Each app names its own (NotebookError, BillingError, DatasetError...) with a
conflict (409) and a permission (403) variant; the API turns any of them into its
error format with their status and code (apps.core.api.exceptions), and a page
shows the message, next to ``field`` when it names one.
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
