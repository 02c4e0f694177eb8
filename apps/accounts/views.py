"""Account settings pages that allauth does not provide (allauth covers email,
password, two-factor and sessions; its pages share this area's layout)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from apps.accounts.forms import ProfileForm, TokenForm
from apps.accounts.hooks import example_urls, user_teams
from apps.accounts.models import TOKEN_AREAS, PersonalAccessToken
from apps.accounts.reauthentication import reauthentication_required
from apps.accounts.services import user_update_profile
from apps.accounts.tokens import TokenError, token_create, token_revoke, token_revoke_all
from apps.core.htmx import is_htmx

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from apps.accounts.models import User
    from apps.teams.models import Team


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


def _team_choices(teams: list[Team]) -> list[tuple[str, str]]:
    """The token form's teams by name, with the slug beside a name two of them share."""
    names = Counter(t.name for t in teams)
    return [(t.slug, f"{t.name} ({t.slug})" if names[t.name] > 1 else t.name) for t in teams]


def _example_url(request: HttpRequest, token: PersonalAccessToken, teams: list[Team]) -> str | None:
    """A read the new token may make on this installation, for the page's ``curl`` example:
    the first of its areas (in TOKEN_AREAS order) with a list to GET; None when it has none
    (a team's list, for a person in no team)."""
    areas = {scope.partition(":")[0] for scope in token.scopes}
    team = token.team or (teams[0] if teams else None)
    for area in TOKEN_AREAS:
        # Each area's app registers its example (apps.accounts.hooks.example_urls).
        build = example_urls.get(area) if area in areas else None
        path = build(team) if build is not None else None
        if path:
            return request.build_absolute_uri(path)
    return None


@login_required
@require_http_methods(["GET", "POST"])
@reauthentication_required(allow_get=True)
def tokens(request: HttpRequest) -> HttpResponse:
    """List and make personal access tokens. A new token is shown on this response only.

    Making one asks for the password again (allauth replays the POST after it).
    """
    user = cast("User", request.user)
    teams = user_teams(user)
    choices = _team_choices(teams)
    form = TokenForm(request.POST or None, teams=choices)
    created = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            team = next((t for t in teams if t.slug == form.cleaned_data["team"]), None)
            try:
                token, plaintext = token_create(
                    user=user,
                    name=form.cleaned_data["name"],
                    scopes=form.cleaned_data["scopes"],
                    team=team,
                    expires_in_days=form.cleaned_data["expires_in_days"],
                )
            except TokenError as exc:
                form.add_error(None, str(exc))
                status = 400
            else:
                created = {
                    "token": token,
                    "plaintext": plaintext,
                    "example_url": _example_url(request, token, teams),
                }
                form = TokenForm(teams=choices)
        else:
            status = 400
    mine = PersonalAccessToken.objects.filter(user=user).select_related("team")
    listed = list(mine.filter(workload=""))
    # The platform's tokens for your running notebooks and jobs: shown apart, while they work.
    workload = [t for t in mine.exclude(workload="").filter(revoked_at=None) if t.is_active]
    response = render(
        request,
        "accounts/tokens.html",
        {
            "form": form,
            "tokens": listed,
            "workload_tokens": workload,
            "created": created,
            "any_unrevoked": any(t.revoked_at is None for t in [*listed, *workload]),
        },
        status=status,
    )
    # The page may hold a token in plain text: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["POST"])
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    user = cast("User", request.user)
    token = get_object_or_404(PersonalAccessToken, pk=token_id, user=user)
    token_revoke(user=user, token=token)
    messages.success(request, f"“{token.name}” is revoked: it stops working at once.")
    return redirect("accounts:tokens")


@login_required
@require_http_methods(["POST"])
def tokens_revoke_all(request: HttpRequest) -> HttpResponse:
    """Revoke every token at once: for a lost laptop or a leak, so it asks nothing again."""
    count = token_revoke_all(user=cast("User", request.user))
    if count:
        messages.success(request, f"All your tokens are revoked ({count}): none works any more.")
    else:
        messages.info(request, "You had no tokens to revoke.")
    return redirect("accounts:tokens")
