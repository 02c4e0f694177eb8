"""Account settings pages that allauth does not provide (allauth covers email,
password, two-factor and sessions; its pages share this area's layout)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from apps.accounts.forms import ProfileForm
from apps.accounts.services import user_update_profile
from apps.core.htmx import is_htmx

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from apps.accounts.models import User


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    user = cast("User", request.user)
    form = ProfileForm(request.POST or None, instance=user)
    saved = False
    if request.method == "POST" and form.is_valid():
        user_update_profile(user=user, name=form.cleaned_data["name"])
        if not is_htmx(request):
            messages.success(request, "Your profile is saved.")
            return redirect("accounts:profile")
        saved = True
    template = "accounts/_profile_form.html" if is_htmx(request) else "accounts/profile.html"
    return render(request, template, {"form": form, "saved": saved})
