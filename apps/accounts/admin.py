"""The admin's pages for accounts. Deactivating or deleting an account closes the person's
open websockets and streams at once (apps.core.revocation), as a removal from a team does."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from apps.accounts.models import User
from apps.core.revocation import access_changed


class UserCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):  # type: ignore[name-defined]
        model = User
        fields = ("email",)


class UserEditForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):  # type: ignore[name-defined]
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    ordering = ("email",)
    list_display = ("email", "name", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email", "name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined")

    def get_readonly_fields(self, request: Any, obj: User | None = None) -> Any:
        # The address is allauth's (EmailAddress, verified): people change it in
        # their settings, where the new one is verified first.
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "email") if obj is not None else fields

    def save_model(self, request: Any, obj: User, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            access_changed(user_id=obj.pk, team_id=None)

    def delete_model(self, request: Any, obj: User) -> None:
        user_id = obj.pk
        super().delete_model(request, obj)
        access_changed(user_id=user_id, team_id=None)

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        user_ids = list(queryset.values_list("pk", flat=True))
        super().delete_queryset(request, queryset)
        for user_id in user_ids:
            access_changed(user_id=user_id, team_id=None)
