"""Typed results: each a frozen dataclass of the fields scripts use most, with the server's
whole answer in ``raw`` (so a field the SDK does not name yet is still there).

``from_api(body)`` builds one from the API's JSON; unknown keys are ignored and missing ones
take their defaults, so a newer server does not break an older client.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Self


class _FromAPI:
    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)} - {"raw"}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in body.items() if k in names}, raw=body)  # type: ignore[call-arg]


@dataclass(frozen=True)
class User(_FromAPI):
    id: int = 0
    email: str = ""
    name: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Team(_FromAPI):
    slug: str = ""
    name: str = ""
    role: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Member(_FromAPI):
    id: int = 0
    email: str = ""
    role: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class MachineType(_FromAPI):
    slug: str = ""
    name: str = ""
    availability: str = "unknown"  # available | busy | unavailable | unknown
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Notebook(_FromAPI):
    id: int = 0
    name: str = ""
    status: str = ""
    machine_type: str | None = None
    open_url: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class NotebookEvent(_FromAPI):
    id: int = 0
    status: str = ""
    phase: str = ""
    message: str = ""
    percent: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class LogLine:
    """One message of a followed stream: a log line (``text``), or a status change
    (``status`` set, ``text`` its words)."""

    seq: int | None
    text: str
    status: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Dataset(_FromAPI):
    slug: str = ""
    name: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class DatasetVersion(_FromAPI):
    number: int = 0
    status: str = ""
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Model(_FromAPI):
    slug: str = ""
    name: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ModelVersion(_FromAPI):
    number: int = 0
    status: str = ""
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Deployment(_FromAPI):
    slug: str = ""
    name: str = ""
    status: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class InvokeResult:
    """A deployment's answer to one call."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass(frozen=True)
class Job(_FromAPI):
    id: int = 0
    name: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Run(_FromAPI):
    id: int = 0
    number: int = 0
    status: str = ""
    exit_code: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class TransferProgress:
    """Where an upload or download stands, for a progress bar. ``phase``: "hashing",
    "sending", "completing", "done" (uploads) or "receiving" (downloads). Bytes the server
    already held are counted in ``skipped_bytes``, never in ``sent_bytes``."""

    phase: str
    total_bytes: int
    done_bytes: int = 0
    sent_bytes: int = 0
    skipped_bytes: int = 0
    chunks_total: int = 0
    chunks_sent: int = 0
    chunks_skipped: int = 0
    files_total: int = 0
    files_done: int = 0
    # The server's id of the upload (None while hashing, and for downloads).
    upload_id: int | None = None
    # The version made (once "done"), its number.
    version: int | None = None
