"""Typed results: each a frozen dataclass of the fields scripts use most, with the server's
whole answer in ``raw`` (so a field the SDK does not name yet is still there).

``from_api(body)`` builds one from the API's JSON; unknown keys are ignored and missing ones
take their defaults, so a newer server does not break an older client.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Self


class _FromAPI:
    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)} - {"raw"}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in body.items() if k in names}, raw=body)  # type: ignore[call-arg]


# A run in one of these has not ended yet (the server's apps.jobs.models.OPEN_RUN_STATUSES).
RUN_OPEN_STATUSES = frozenset({"queued", "placing", "starting", "running"})
# A notebook in one of these has stopped trying to run.
NOTEBOOK_ENDED_STATUSES = frozenset({"stopped", "failed", "lost"})


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
    personal: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Member(_FromAPI):
    id: int = 0
    email: str = ""
    name: str = ""
    role: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class MachineType(_FromAPI):
    """A machine type with its specs, price, the team's plan note and live availability
    (``availability``: "available", "busy", "unavailable"; "unknown" if the server did not
    say; ``free``: how many more could be placed now; ``queued``: starts waiting for it)."""

    slug: str = ""
    name: str = ""
    availability: str = "unknown"  # available | busy | unavailable | unknown
    vcpus: int = 0
    memory_gib: int = 0
    disk_gib: int = 0
    gpu_model: str = ""
    gpu_count: int = 0
    gpu_memory_gib: int | None = None
    hourly_price: str = ""
    plan_note: str | None = None
    free: int | None = None
    queued: int | None = None
    availability_label: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Self:
        live = body.get("availability")
        flat = {k: v for k, v in body.items() if k != "availability"}
        if isinstance(live, dict):
            flat.update(
                availability=str(live.get("state") or "unknown"),
                free=live.get("free"),
                queued=live.get("queued"),
                availability_label=str(live.get("label") or ""),
            )
        elif isinstance(live, str):
            flat["availability"] = live
        if flat.get("hourly_price") is not None:
            flat["hourly_price"] = str(flat["hourly_price"])
        made = super().from_api(flat)
        return replace(made, raw=body)


@dataclass(frozen=True)
class Notebook(_FromAPI):
    """A notebook; ``open_url`` is the server's path that opens it while it runs (see
    ``Notebooks.open_url`` for the absolute URL), ``status_message`` the words next to the
    status (a phase, or what went wrong)."""

    id: int = 0
    name: str = ""
    status: str = ""
    machine_type: str | None = None
    open_url: str | None = None
    template: str = ""
    status_message: str = ""
    desired_state: str = ""
    created_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class NotebookEvent(_FromAPI):
    """A status change or start phase (from the events route, or a status message of the
    notebook's live stream: then ``id`` is its number in the stream)."""

    id: int = 0
    status: str = ""
    phase: str = ""
    message: str = ""
    percent: int | None = None
    created_at: str | None = None
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
class Revision(_FromAPI):
    """One revision of a deployment's spec: what it serves (``model`` and ``version``, or
    the alias it follows) on which machine."""

    id: int = 0
    number: int = 0
    status: str = ""
    status_message: str = ""
    reason: str = ""
    model: str | None = None
    version: int | None = None
    follows_alias: str = ""
    machine_type: str = ""
    replicas_wanted: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Replica(_FromAPI):
    id: int = 0
    revision: int = 0
    status: str = ""
    status_message: str = ""
    host: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Deployment(_FromAPI):
    """A deployment; from ``get`` (its status) also its revisions (newest first), replicas,
    the revision rolling out (``rollout``), the traffic split and its endpoint's addresses
    (``endpoints``: ``api``, ``origin``). A list's rows leave those empty."""

    slug: str = ""
    name: str = ""
    status: str = ""
    id: int = 0
    status_message: str = ""
    auth_mode: str = ""
    paused_reason: str = ""
    rollout: int | None = None
    revisions: list[Revision] = field(default_factory=list)
    replicas: list[Replica] = field(default_factory=list)
    traffic: list[dict[str, Any]] = field(default_factory=list)
    endpoints: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Self:
        flat = dict(body)
        flat["revisions"] = [Revision.from_api(r) for r in body.get("revisions") or []]
        flat["replicas"] = [Replica.from_api(r) for r in body.get("replicas") or []]
        flat["traffic"] = list(body.get("traffic") or [])
        flat["endpoints"] = dict(body.get("endpoints") or {})
        flat["paused_reason"] = body.get("paused_reason") or ""
        made = super().from_api(flat)
        return replace(made, raw=body)


@dataclass(frozen=True)
class InvokeResult:
    """A deployment's answer to one call: whatever status its replica answered (a 4xx or
    5xx of the model's own included; Lattice's own refusals are raised instead)."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300  # noqa: PLR2004

    def json(self) -> Any:
        import json

        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Job(_FromAPI):
    id: int = 0
    name: str = ""
    slug: str = ""
    source: str = ""
    command: str = ""
    machine_type: str | None = None
    last_run: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Run(_FromAPI):
    """A run of a job; ``ended`` once it has finished (succeeded, failed, cancelled, timed
    out...), with ``exit_code`` its command's (None when it never ran one)."""

    id: int = 0
    number: int = 0
    status: str = ""
    exit_code: int | None = None
    status_message: str = ""
    trigger: str = ""
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ended(self) -> bool:
        return bool(self.status) and self.status not in RUN_OPEN_STATUSES


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
