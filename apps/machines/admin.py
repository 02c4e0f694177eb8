from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse

from apps.machines.hooks import host_move_now, machine_type_added
from apps.machines.management.commands.create_join_token import credentials_text
from apps.machines.models import (
    GPUDevice,
    Host,
    HostJoinToken,
    MachineType,
    Placement,
    PoolSlot,
    WarmPool,
)
from apps.machines.services import (
    HostCredentials,
    HostError,
    host_delete,
    host_name_check,
    host_removal_refusal,
    host_revoke,
    host_rotate_credentials,
    host_set_draining,
    host_stranded,
    join_token_create,
)


@admin.register(MachineType)
class MachineTypeAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "vcpus",
        "memory_gib",
        "gpu_model",
        "gpu_count",
        "hourly_price",
        "active",
    )
    list_editable = ("active",)
    list_filter = ("active",)
    prepopulated_fields = {"slug": ("name",)}

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        # A price change is dated, so usage before it keeps the old price: Billing >
        # Machine prices records it. A new type gets its first price here.
        return ("hourly_price",) if obj is not None else ()

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            # Billing records its first price (apps.machines.hooks).
            machine_type_added(obj)


class GPUDeviceInline(admin.TabularInline):
    model = GPUDevice
    extra = 0
    fields = ("index", "uuid", "name", "memory_bytes", "parent_uuid", "present")
    readonly_fields = fields
    can_delete = False


def _show_credentials(admin_view: Any, request: Any, credentials: HostCredentials) -> None:
    admin_view.message_user(request, credentials_text(credentials), messages.SUCCESS)


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "status",
        "last_heartbeat_at",
        "cpu_count",
        "runtime",
        "workload_address",
        "driver_version",
    )
    list_filter = ("status",)
    readonly_fields = (
        "last_heartbeat_at",
        "cpu_count",
        "memory_bytes",
        "disk_bytes",
        "driver_version",
    )
    exclude = ("reported_workloads",)
    inlines = [GPUDeviceInline]
    actions = ["drain", "move_now", "undrain", "rotate", "revoke"]

    @admin.action(description="Drain: no new placements (running work stays)")
    def drain(self, request: Any, queryset: Any) -> None:
        for host in queryset:
            host_set_draining(host=host, draining=True)

    @admin.action(description="Move notebooks now: stop each with a snapshot, start it elsewhere")
    def move_now(self, request: Any, queryset: Any) -> None:
        for host in queryset:
            if not host.drain_requested:
                self.message_user(
                    request,
                    f"{host.name} is not draining: drain it first (else they come back to it).",
                    messages.ERROR,
                )
                continue
            moved = host_move_now(host)
            self.message_user(
                request,
                f"{host.name}: {moved} notebook(s) stopping to start again on another host, "
                "with their files.",
                messages.SUCCESS,
            )

    @admin.action(description="Make ready: accept new placements again")
    def undrain(self, request: Any, queryset: Any) -> None:
        for host in queryset:
            host_set_draining(host=host, draining=False)

    @admin.action(description="Rotate credentials: a new broker password and join token")
    def rotate(self, request: Any, queryset: Any) -> None:
        for host in queryset:
            _show_credentials(self, request, host_rotate_credentials(actor=request.user, host=host))

    @admin.action(description="Revoke: cut its broker user and key off now, and drain it")
    def revoke(self, request: Any, queryset: Any) -> None:
        for host in queryset:
            host_revoke(host=host)
            if stranded := host_stranded(host):
                messages.warning(request, stranded)

    def changelist_view(self, request: Any, extra_context: Any = None) -> Any:
        if warning := shared_storage_warning():
            messages.warning(request, warning)
        return super().changelist_view(request, extra_context)

    def delete_view(
        self, request: Any, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> Any:
        # Refused before the confirmation page, saying what holds the host there.
        host = self.get_object(request, object_id)
        refusal = host_removal_refusal(host) if host is not None else None
        if host is not None and refusal is not None:
            self.message_user(request, refusal, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:machines_host_change", args=[host.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: Any, obj: Host) -> None:
        host_delete(host=obj)

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for host in queryset:
            try:
                host_delete(host=host)
            except HostError as exc:
                self.message_user(request, str(exc), messages.ERROR)


def shared_storage_warning() -> str:
    """What the hosts page warns of when teams' /storage is not served from one place
    (LATTICE_SHARED_STORAGE) while there are several hosts: each host would keep a /storage
    of its own, and a team's notebooks on different hosts would not see each other's files."""
    if settings.LATTICE_SHARED_STORAGE:
        return ""
    hosts = Host.objects.count()
    if hosts < 2:  # noqa: PLR2004 - one host: its own volume is the one place
        return ""
    return (
        f"There are {hosts} hosts but LATTICE_SHARED_STORAGE is not set: each host keeps its "
        "own copy of a team's /storage, so notebooks of one team on different hosts see "
        "different files. Mount one shared folder (NFS, say) at the same path on every host "
        "and the control plane, and set LATTICE_SHARED_STORAGE to it (docs/hosts.md, "
        '"Team storage").'
    )


class JoinTokenForm(forms.ModelForm):
    class Meta:
        model = HostJoinToken
        fields = ("host_name", "workload_address", "note")
        help_texts = {
            "host_name": "The new host's name (letters, digits, - and _): it joins only as this.",
            "workload_address": "The IP address the host publishes workloads on "
            "(its LATTICE_WORKLOAD_ADDRESS, reachable from the web tier); 127.0.0.1 only for "
            "an agent on the machine Lattice's web tier runs on.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # No default: a remote host left at 127.0.0.1 would have its ready endpoints believed
        # on the control plane's own loopback.
        self.fields["workload_address"].initial = None

    def clean_host_name(self) -> str:
        name = str(self.cleaned_data["host_name"])
        try:
            host_name_check(name)
        except HostError as exc:
            raise forms.ValidationError(str(exc)) from exc
        if Host.objects.filter(name=name).exists():
            raise forms.ValidationError(
                "A host of that name is registered: use its Rotate credentials action."
            )
        return name


@admin.register(HostJoinToken)
class HostJoinTokenAdmin(admin.ModelAdmin):
    """Adding one makes the host's join token and broker user, shown once."""

    form = JoinTokenForm
    list_display = (
        "__str__",
        "host_name",
        "created_by",
        "created_at",
        "expires_at",
        "used_at",
        "host",
    )
    readonly_fields = (
        "host_name",
        "workload_address",
        "note",
        "token_hash",
        "created_by",
        "created_at",
        "expires_at",
        "used_at",
        "host",
    )

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request: Any, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else JoinTokenForm.Meta.fields

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def save_model(self, request: Any, obj: HostJoinToken, form: Any, change: bool) -> None:
        credentials = join_token_create(
            actor=request.user,
            host_name=obj.host_name,
            workload_address=obj.workload_address,
            note=obj.note,
        )
        obj.pk = credentials.token_id
        obj.refresh_from_db()
        _show_credentials(self, request, credentials)


@admin.register(Placement)
class PlacementAdmin(admin.ModelAdmin):
    list_display = (
        "workload",
        "host",
        "machine_type",
        "team",
        "active",
        "created_at",
        "released_at",
    )
    list_filter = ("active", "host")


class PoolSlotInline(admin.TabularInline):
    model = PoolSlot
    fields = ("name", "status", "placement", "claimed_by", "created_at", "changed_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class WarmPoolForm(forms.ModelForm):
    class Meta:
        model = WarmPool
        fields = ("host", "machine_type", "image", "size", "hold_gpus")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        machine_type = data.get("machine_type")
        if machine_type and machine_type.is_gpu and data.get("size") and not data.get("hold_gpus"):
            raise forms.ValidationError(
                "A GPU machine type's warm containers need their GPUs: tick Hold GPUs "
                "(they are then reserved while they wait) or set the size to 0."
            )
        return data


@admin.register(WarmPool)
class WarmPoolAdmin(admin.ModelAdmin):
    """Warm containers per host and (image, machine type): the reconciler fills each pool up
    to its size within a pass (apps.machines.pool); a smaller size removes the surplus."""

    form = WarmPoolForm
    list_display = ("host", "machine_type", "image", "size", "hold_gpus", "ready", "last_error")
    readonly_fields = ("failed_at", "last_error")
    list_filter = ("host", "machine_type")
    inlines = (PoolSlotInline,)

    @admin.display(description="Ready now")
    def ready(self, obj: WarmPool) -> int:
        return obj.slots.filter(status=PoolSlot.Status.READY).count()
