"""API v1 shapes of notebooks, their sessions and events, and what the notebook calls accept.

Serializers only validate and render; every rule (names, images, idle limits,
who may do what) is apps.notebooks.services', whose refusals the views turn
into the API's error format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.machines.selectors import machine_type_offered
from apps.models.models import ModelVersion
from apps.notebooks import lifecycle
from apps.notebooks.models import Notebook, NotebookEvent, NotebookSession, Status
from apps.notebooks.origin import launch_path
from apps.notebooks.services import MAX_IDLE_MINUTES
from apps.notebooks.templates import template_choices
from apps.teams.api.serializers import secret_names_field

if TYPE_CHECKING:
    from apps.machines.models import MachineType

MAX_LOG_PAGE = 1000
MAX_FOLLOW_SECONDS = 600


class NotebookSessionSerializer(serializers.ModelSerializer):
    host = serializers.CharField(source="host.name", read_only=True, default=None)

    class Meta:
        model = NotebookSession
        fields = [
            "id",
            "status",
            "requested_at",
            "started_at",
            "ready_at",
            "ended_at",
            "exit_reason",
            "host",
        ]
        read_only_fields = fields


class NotebookSerializer(serializers.ModelSerializer):
    """A notebook as a person sees it. Context (optional, saves queries in lists):
    ``sessions`` maps notebook id -> its latest session; ``team_idle_minutes`` is the
    team's default idle shutdown and ``idle_limit`` the plan's cap on it."""

    machine_type: serializers.SlugRelatedField[MachineType] = serializers.SlugRelatedField(
        slug_field="slug",
        read_only=True,
    )
    effective_idle_timeout_minutes = serializers.SerializerMethodField(
        help_text="Minutes of idleness before it is stopped (its own, or the team's); 0 = never.",
    )
    open_url = serializers.SerializerMethodField(
        help_text=(
            "Where JupyterLab opens while the notebook runs (null otherwise): a path on "
            "Lattice that lets the signed-in person in to the notebook's own origin, "
            "nb-<id>.<user-content domain>."
        ),
    )
    session = serializers.SerializerMethodField(help_text="The latest session, if it ever ran.")
    created_by = serializers.EmailField(source="created_by.email", read_only=True, default=None)
    secret_names = serializers.ListField(
        source="secrets",
        child=serializers.CharField(),
        read_only=True,
        help_text="The team secrets it gets as environment variables (names only; set them "
        "with `secrets`).",
    )

    class Meta:
        model = Notebook
        fields = [
            "id",
            "name",
            "template",
            "custom_image",
            "machine_type",
            "status",
            "status_message",
            "desired_state",
            "idle_timeout_minutes",
            "effective_idle_timeout_minutes",
            "secret_names",
            "git_url",
            "git_ref",
            "git_secret",
            "open_url",
            "session",
            "created_at",
            "created_by",
        ]
        read_only_fields = fields

    def get_effective_idle_timeout_minutes(self, notebook: Notebook) -> int:
        if "team_idle_minutes" not in self.context:
            return lifecycle.idle_timeout(notebook)
        # A page of notebooks: the team's default and the plan's cap, read once for all.
        minutes = notebook.idle_timeout_minutes
        if minutes is None:
            minutes = int(self.context["team_idle_minutes"])
        return lifecycle.idle_capped(minutes, self.context["idle_limit"])

    def get_open_url(self, notebook: Notebook) -> str | None:
        return launch_path(notebook.pk) if notebook.status == Status.RUNNING else None

    @extend_schema_field(NotebookSessionSerializer(allow_null=True))
    def get_session(self, notebook: Notebook) -> dict[str, Any] | None:
        sessions: dict[int, NotebookSession] | None = self.context.get("sessions")
        if sessions is not None:
            session = sessions.get(notebook.pk)
        else:
            session = (
                NotebookSession.objects.for_team(notebook.team_id)
                .select_related("host")
                .filter(notebook=notebook)
                .order_by("-pk")
                .first()
            )
        return NotebookSessionSerializer(session).data if session is not None else None


def _idle_minutes(**options: Any) -> serializers.IntegerField:
    """The notebook's own idle shutdown, as the create and update calls take it."""
    return serializers.IntegerField(
        min_value=0,
        max_value=MAX_IDLE_MINUTES,
        required=False,
        allow_null=True,
        help_text="Null: the team's default; 0: never stop for idleness.",
        **options,
    )


# The repository cloned into /notebooks/<repo> on a start that does not find it.
_GIT_FIELDS = {
    "git_url": (500, "An https:// or ssh:// URL, or user@host:path; blank for none."),
    "git_ref": (200, "A branch, tag or commit; blank: the default branch."),
    "git_secret": (
        64,
        (
            "The name of the team secret holding an access token (https) or an SSH deploy "
            "key; blank for a public repository."
        ),
    ),
}


def _git_field(name: str, **options: Any) -> serializers.CharField:
    max_length, help_text = _GIT_FIELDS[name]
    return serializers.CharField(
        max_length=max_length, required=False, allow_blank=True, help_text=help_text, **options
    )


# For a call that names ``machine_type`` by slug: the machine type, if it is offered. (A
# comment, not a docstring: drf-spectacular would show a docstring in the schema.)
class _MachineTypeBySlug:
    def validate_machine_type(self, slug: str) -> MachineType:
        machine_type = machine_type_offered(slug)
        if machine_type is None:
            raise serializers.ValidationError(f"No machine type {slug!r} is offered.")
        return machine_type


class NotebookCreateSerializer(_MachineTypeBySlug, serializers.Serializer):
    name = serializers.CharField(max_length=80)
    template = serializers.ChoiceField(choices=template_choices())
    machine_type = serializers.CharField(max_length=40, help_text="A machine type's slug.")
    custom_image = serializers.CharField(
        max_length=255,
        required=False,
        default="",
        allow_blank=True,
        help_text='For the "custom" template: the image to run.',
    )
    idle_timeout_minutes = _idle_minutes(default=None)
    secrets = secret_names_field(required=False, default=list)
    git_url = _git_field("git_url", default="")
    git_ref = _git_field("git_ref", default="")
    git_secret = _git_field("git_secret", default="")


class NotebookUpdateSerializer(_MachineTypeBySlug, serializers.Serializer):
    name = serializers.CharField(max_length=80, required=False)
    machine_type = serializers.CharField(
        max_length=40,
        required=False,
        help_text="A machine type's slug (only while the notebook is stopped).",
    )
    idle_timeout_minutes = _idle_minutes()
    secrets = secret_names_field(required=False)
    git_url = _git_field("git_url")
    git_ref = _git_field("git_ref")
    git_secret = _git_field("git_secret")


class NotebookDeleteSerializer(serializers.Serializer):
    confirmation = serializers.CharField(max_length=200, help_text="The notebook's name.")


class NotebookDuplicateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=80, help_text="The copy's name.")


class NotebookSaveModelSerializer(serializers.Serializer):
    folder = serializers.CharField(
        max_length=1024,
        help_text='The folder to save, relative to /notebooks ("." for all of /notebooks).',
    )
    model = serializers.SlugField(
        required=False, allow_blank=True, help_text="The slug of the team's model to add to."
    )
    model_name = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=80,
        help_text="Or (not both): the name of a new model to make.",
    )
    message = serializers.CharField(required=False, allow_blank=True, max_length=500)
    format = serializers.ChoiceField(
        choices=ModelVersion.Format.choices,
        default=ModelVersion.Format.OTHER,
        help_text="The version's format. A top-level metrics.json in the folder becomes "
        "its metrics once the version is ready.",
    )
    parent_version = serializers.IntegerField(
        required=False, allow_null=True, help_text="The id of the version it was tuned from."
    )


class NotebookSaveSerializer(serializers.Serializer):
    """A save of a notebook folder: where it is, how far, and what it made."""

    id = serializers.IntegerField()
    model = serializers.CharField(help_text="The model's slug.")
    folder = serializers.CharField()
    state = serializers.CharField(
        help_text="waiting, reading, sending, ready, existing (the same files as "
        "a version already there) or failed."
    )
    done = serializers.IntegerField(help_text="Bytes read or sent so far.")
    total = serializers.IntegerField(help_text="Bytes in all (0 while unknown).")
    version = serializers.IntegerField(
        allow_null=True, help_text="The version's number, once there is one."
    )
    failure = serializers.CharField(help_text="Why it failed (empty unless it did).")


class NotebookEventSerializer(serializers.ModelSerializer):
    session: serializers.PrimaryKeyRelatedField[NotebookSession] = (
        serializers.PrimaryKeyRelatedField(read_only=True)
    )

    class Meta:
        model = NotebookEvent
        fields = ["id", "created_at", "status", "phase", "message", "percent", "session"]
        read_only_fields = fields


class LogsQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        min_value=0,
        default=0,
        help_text="Only messages numbered after this (the last seq you saw).",
    )
    epoch = serializers.CharField(
        max_length=64,
        required=False,
        default="",
        allow_blank=True,
        help_text="The epoch the page that gave `after` said: when the stream's buffer has "
        "another (it was lost in a restart and its numbers started over), all of it is "
        "returned, from the start.",
    )
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LOG_PAGE, default=200)
    follow = serializers.BooleanField(
        default=False,
        help_text="Stream new messages as NDJSON until the notebook stops or the timeout.",
    )
    timeout = serializers.IntegerField(
        min_value=1,
        max_value=MAX_FOLLOW_SECONDS,
        default=60,
        help_text="With follow: end the stream after this many seconds.",
    )


class LogsSerializer(serializers.Serializer):
    last = serializers.IntegerField(help_text="The number of the stream's latest message.")
    epoch = serializers.CharField(
        help_text="The stream buffer's epoch: its numbers mean something only within it. "
        "Pass it back with `after`."
    )
    restarted = serializers.BooleanField(
        required=False,
        help_text="Present (true) when the `epoch` passed is not the buffer's: the stream "
        "started over, these messages are numbered from the start; forget your numbers.",
    )
    messages = serializers.ListField(
        child=serializers.DictField(),
        help_text='Oldest first, each with its "seq": {"type": "logs", "lines": [...]} '
        'or {"type": "status", ...}. A logs message with "backfill": true holds the '
        "workload's recent lines, sent again after a restart: they replace those before.",
    )
