from __future__ import annotations

from typing import Any

from django.contrib import admin, messages

from apps.machines.models import GPUDevice, Host, HostJoinToken, MachineType, Placement
from apps.machines.services import host_set_draining, join_token_create


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
            from apps.billing.services import machine_price_set

            machine_price_set(machine_type=obj, hourly_price=obj.hourly_price)


class GPUDeviceInline(admin.TabularInline):
    model = GPUDevice
    extra = 0
    fields = ("index", "uuid", "name", "memory_bytes", "parent_uuid", "present")
    readonly_fields = fields
    can_delete = False


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "last_heartbeat_at", "cpu_count", "runtime", "driver_version")
    list_filter = ("status",)
    readonly_fields = (
        "last_heartbeat_at",
        "cpu_count",
        "memory_bytes",
        "disk_bytes",
        "driver_version",
    )
    inlines = [GPUDeviceInline]
    actions = ["drain", "undrain"]

    @admin.action(description="Drain: no new placements (running work stays)")
    def drain(self, request: Any, queryset: Any) -> None:
        for host in queryset:
            host_set_draining(host=host, draining=True)

    @admin.action(description="Make ready: accept new placements again")
    def undrain(self, request: Any, queryset: Any) -> None:
        for host in queryset:
            host_set_draining(host=host, draining=False)


@admin.register(HostJoinToken)
class HostJoinTokenAdmin(admin.ModelAdmin):
    """Tokens are made with the "Create a join token" action, which shows it once."""

    list_display = ("__str__", "created_by", "created_at", "expires_at", "used_at", "host")
    readonly_fields = ("token_hash", "created_by", "created_at", "expires_at", "used_at", "host")
    actions = ["make_token"]

    def has_add_permission(self, request: Any) -> bool:
        return False

    @admin.action(description="Create a join token (select any row, or none)")
    def make_token(self, request: Any, queryset: Any) -> None:
        plaintext = join_token_create(actor=request.user, note="made in the admin")
        self.message_user(
            request,
            f"Join token (shown once, valid 24 h): {plaintext}  Start the agent with: "
            f"manage.py agent --host NAME --join-token {plaintext}",
            messages.SUCCESS,
        )


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
