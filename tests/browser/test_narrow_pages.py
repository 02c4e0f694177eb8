"""Every page fits a phone 390 px wide (issue 14, defect 8).

At 390 px the notebook page scrolled sideways (its sessions table), the team tabs were cut
off and the sidebar became a sideways strip. Here Alice, owner of Acme with billing on, walks
every page in a 390 x 844 viewport, with rows in the tables (notebook sessions, dataset files,
tokens, members, audit entries), and each page must:

- not scroll sideways (``scrollWidth`` of the document at most 390);
- show every link, button and field whole: inside the viewport, or inside a container of its
  own that scrolls (a wide table scrolls in its frame, not the page);
- keep the main navigation reachable: a Menu button opens the sidebar's links as a list.

The pages come from the URL conf: ``test_every_page_is_walked`` fails on a page (a named
route that answers GET) that is in neither ``SIGNED_IN``, ``SIGNED_OUT`` nor ``NOT_WALKED``,
so a new page joins the walk the day it is added. Screenshots go to $LATTICE_SCREENSHOTS
when it names a folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from apps.datasets.models import Dataset
from apps.deployments import metrics
from apps.jobs.models import Run
from apps.jobs.runs import job_definition
from apps.models.services.aliases import alias_set
from apps.notebooks.models import Status
from tests.browser.conftest import log_in
from tests.dataset_fixtures import make_version
from tests.deployments.pages_fixtures import make_deployment, series_of
from tests.factories import NotebookFactory, NotebookSessionFactory, PersonalAccessTokenFactory
from tests.jobs.api_helpers import make_job
from tests.model_fixtures import make_model_version

pytestmark = [pytest.mark.browser]

WIDTH, HEIGHT = 390, 844

Scene = dict[str, Any]
# A page's URL from the scene; ``None``: a page without arguments.
Args = Callable[[Scene], dict[str, Any]] | None


def team(scene: Scene) -> dict[str, Any]:
    return {"team_slug": scene["team"].slug}


def notebook(scene: Scene) -> dict[str, Any]:
    return {**team(scene), "notebook_id": scene["notebook"].pk}


def dataset(scene: Scene) -> dict[str, Any]:
    return {**team(scene), "slug": scene["dataset"].slug}


def model(scene: Scene) -> dict[str, Any]:
    return {**team(scene), "model_slug": scene["model"].slug}


def model_version(scene: Scene) -> dict[str, Any]:
    return {**model(scene), "number": 2}


def deployment(scene: Scene) -> dict[str, Any]:
    return {**team(scene), "deployment_id": scene["deployment"].pk}


def job(scene: Scene) -> dict[str, Any]:
    return {**team(scene), "job_id": scene["job"].pk}


def job_run(scene: Scene) -> dict[str, Any]:
    return {**job(scene), "number": 1}


# Pages a signed-in owner sees, and their arguments.
SIGNED_IN: dict[str, Args] = {
    "core:dashboard": None,
    "teams:create": None,
    "teams:home": team,
    "teams:members": team,
    "teams:settings": team,
    "teams:audit": team,
    "teams:secrets": team,
    "notebooks:list": team,
    "notebooks:create": team,
    "notebooks:settings": team,
    "notebooks:detail": notebook,
    "notebooks:snapshots": notebook,
    "datasets:list": team,
    "datasets:detail": dataset,
    "datasets:upload": dataset,
    "models:list": team,
    "models:detail": model,
    "models:upload": model,
    "models:version": model_version,
    "models:diff": model,
    "deployments:list": team,
    "deployments:create": team,
    "deployments:detail": deployment,
    "deployments:change": deployment,
    "deployments:keys": deployment,
    "deployments:settings": deployment,
    "jobs:list": team,
    "jobs:create": team,
    "jobs:detail": job,
    "jobs:edit": job,
    "jobs:run": job_run,
    "jobs:run_rerun": job_run,
    "catalogue:index": None,
    "catalogue:detail": dataset,
    "billing:overview": team,
    "billing:usage": team,
    "accounts:profile": None,
    "accounts:tokens": None,
    "account_email": None,
    "account_change_password": None,
    "account_reauthenticate": None,
    "mfa_index": None,
    "mfa_activate_totp": None,
    "usersessions_list": None,
}
# Steps that show no navigation (allauth's "confirm it is you" pages, the entrance layout).
STEPS = {"account_reauthenticate", "mfa_activate_totp"}
# Pages inside a team: the sidebar lists the team's links too.
TEAM_PAGES = {name for name, args in SIGNED_IN.items() if args is not None} - {"catalogue:detail"}
# Pages a visitor sees (a link from a mail with a key that is not valid shows its page too).
SIGNED_OUT: dict[str, Args] = {
    "account_login": None,
    "account_signup": None,
    "account_reset_password": None,
    "account_reset_password_done": None,
    "account_email_verification_sent": None,
    "account_inactive": None,
    "account_reset_password_from_key_done": None,
    "account_confirm_email": lambda _: {"key": "not-a-key"},
    "account_reset_password_from_key": lambda _: {"uidb36": "1", "key": "not-a-key"},
    "invitation": lambda _: {"token": "not-a-token"},
}
# Named routes that answer GET but are not pages of their own, or not one a test can stand on.
NOT_WALKED = {
    "accounts:token_revoke": "POST only (a function view)",
    "accounts:tokens_revoke_all": "POST only (a function view)",
    "billing:stripe_webhook": "Stripe's webhook, not a page",
    "blob_read": "blob bytes for hosts",
    "healthz": "a probe",
    "readyz": "a probe",
    "account_logout": "signs out (its GET page is a button; after it the walk is signed out)",
    "account_set_password": "redirects to account_change_password for a person with a password",
    "account_request_reauthentication_code": "only while a login code is sent",
    "account_confirm_reauthentication_code": "only while a login code is sent",
    "account_confirm_login_code": "only while a login code is sent",
    "mfa_authenticate": "only half-way through a sign-in with two factors",
    "mfa_reauthenticate": "only with two factors on",
    "mfa_deactivate_totp": "only with two factors on",
    "mfa_view_recovery_codes": "only with two factors on",
    "mfa_generate_recovery_codes": "only with two factors on",
    "mfa_download_recovery_codes": "a file, not a page",
    "models:file": "a file, not a page",
    "job_files:download": "a file, not a page",
    "job_files:notebook": "redirects to the executed notebook on the results origin",
    "models:archive": "a file, not a page",
    "models:version_ref": "redirects to models:version (an alias or latest)",
    "models:edit": "POST only; a GET redirects to models:detail",
    "models:delete": "POST only; a GET redirects to models:detail",
    "models:alias_set": "POST only; a GET redirects to models:detail",
    "models:alias_remove": "POST only; a GET redirects to models:detail",
    "notebooks:saves": "a fragment of notebooks:detail (its list of saves, which it polls)",
    "hostsave_progress": "POST only, for hosts with a save's ticket (a function view)",
    "hostsave_manifest": "POST only, for hosts with a save's ticket (a function view)",
    "hostsave_complete": "POST only, for hosts with a save's ticket (a function view)",
    "hostsave_fail": "POST only, for hosts with a save's ticket (a function view)",
    "hostsave_chunk_target": "POST only, for hosts with a save's ticket (a function view)",
    "hostsave_chunk": "PUT only, a chunk's bytes from a host with a save's ticket",
}

# Whatever is visible and sticks out of the viewport, unless it is in a wide table that scrolls
# sideways in a container of its own (.table-wrap). Tabs, menus and forms must fit whole.
OUTSIDE = """(width) => {
    const scrolls = (el) => {
        for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
            const x = getComputedStyle(up).overflowX;
            const wide = (x === "auto" || x === "scroll") && up.scrollWidth > up.clientWidth;
            const own = wide && up.querySelector("table") !== null;
            if (own) { return true; }
        }
        return false;
    };
    const out = [];
    const seen = "a, button, input, select, textarea, summary, h1, h2, label, .badge, progress";
    for (const el of document.querySelectorAll(seen)) {
        const box = el.getBoundingClientRect();
        if (!box.width || !box.height || getComputedStyle(el).visibility === "hidden") { continue; }
        if (el.closest(".skip-link, .visually-hidden")) { continue; }  // off screen on purpose
        if ((box.left < -1 || box.right > width + 1) && !scrolls(el)) {
            const name = (el.innerText || el.value || el.name || el.id || "").trim().slice(0, 40);
            const where = `${Math.round(box.left)}..${Math.round(box.right)}`;
            out.push(`${el.tagName.toLowerCase()} "${name}" at ${where}`);
        }
    }
    return out;
}"""

# What makes a page wider than the viewport: the outermost elements that reach past it.
WIDEST = """(width) => {
    const out = [];
    for (const el of document.body.querySelectorAll("*")) {
        if (el.getBoundingClientRect().right <= width + 1) { continue; }
        if (el.parentElement && el.parentElement.getBoundingClientRect().right > width + 1) {
            continue;
        }
        out.push(`${el.tagName.toLowerCase()}.${el.className}`);
    }
    return out.slice(0, 5);
}"""


def page_names() -> set[str]:
    """Every named route outside the admin and the API that answers GET."""

    def walk(resolver: URLResolver, prefix: str, namespace: str) -> Any:
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                inner = ":".join(filter(None, [namespace, pattern.namespace or ""]))
                yield from walk(pattern, prefix + str(pattern.pattern), inner)
            elif isinstance(pattern, URLPattern) and pattern.name:
                yield (
                    prefix + str(pattern.pattern),
                    ":".join(filter(None, [namespace, pattern.name])),
                    pattern,
                )

    names = set()
    for path, name, pattern in walk(get_resolver(), "", ""):
        if path.startswith(("admin/", "api/", "^static/", "static/")):
            continue
        view_class = getattr(pattern.callback, "view_class", None)
        if view_class is not None and "get" not in view_class.http_method_names:
            continue
        if view_class is not None and not hasattr(view_class, "get"):
            continue  # a POST-only class view
        names.add(name)
    return names


def test_every_page_is_walked() -> None:
    walked = set(SIGNED_IN) | set(SIGNED_OUT) | set(NOT_WALKED)
    assert not set(SIGNED_IN) & set(SIGNED_OUT)
    missing = sorted(page_names() - walked)
    assert not missing, (
        f"pages the 390 px walk does not know; add them to SIGNED_IN/SIGNED_OUT: {missing}"
    )
    gone = sorted(walked - page_names())
    assert not gone, f"names the walk lists that the URL conf does not have: {gone}"


@pytest.fixture
def scene(acme, alice, bob, settings, catalogue, billing_plans, media, monkeypatch) -> Scene:
    settings.LATTICE_BILLING = True
    now = timezone.now()
    long_name = "Training a very long named model on the full dataset of cat photographs"
    notebook = NotebookFactory.create(
        team=acme, name=long_name, machine_type=catalogue["cpu-small"]
    )
    for hours in (30, 20, 10):
        started = now - timedelta(hours=hours)
        NotebookSessionFactory.create(
            notebook=notebook,
            started_by=alice,
            status=Status.STOPPED,
            started_at=started,
            ready_at=started,
            ended_at=started + timedelta(minutes=95),
            exit_reason="stopped",
        )
    for n in range(3):
        NotebookFactory.create(team=acme, name=f"Analysis {n}", machine_type=catalogue["cpu-small"])
    version = make_version(
        acme,
        "Cat photographs of the whole neighbourhood from 2019 to 2026",
        {
            "images/very/deeply/nested/folder/with-a-long-file-name-0001.jpeg": b"x" * 2000,
            "README.md": b"Cats.\n",
        },
        visibility=Dataset.Visibility.PUBLIC,
        description="Every cat photographed from the window, with the time and the weather.",
    )
    PersonalAccessTokenFactory.create(user=alice, name="Laptop script for the nightly training job")
    long_path = "checkpoints/very/deeply/nested/folder/with-a-long-file-name-0001.safetensors"
    model_name = "A classifier of cat photographs from the whole neighbourhood"
    make_model_version(acme, alice, model_name, {long_path: b"x" * 2000, "predict.py": b"1"})
    second = make_model_version(
        acme,
        alice,
        model_name,
        {long_path: b"y" * 3000, "predict.py": b"1"},
        message="Retrained on the photographs of 2026 with a longer schedule",
        metadata={"metrics": {"accuracy": 0.9731}, "parameters": {"learning_rate": 0.0003}},
        dataset_versions=[version.pk],
    )
    alias_set(team=acme, actor=alice, model=second.model, name="production", version=second)
    # The gateway's figures (apps.deployments.metrics, another helper's module until merged).
    monkeypatch.setattr(metrics, "series", lambda d, **_: series_of(d))
    monkeypatch.setattr(metrics, "recent_requests", lambda _d: [])
    deployed = make_deployment(acme, alice, catalogue["cpu-small"], name="Cat classifier API")
    nightly = make_job(
        acme,
        alice,
        "Nightly retraining of the cat classifier on every new photograph",
        command="python train.py --epochs 30 --data /datasets/cat-photographs --out /outputs",
        schedule="0 3 * * *",
    )
    Run.objects.for_team(acme).create(
        team=acme,
        job=nightly,
        number=1,
        definition=job_definition(nightly),
        status=Run.Status.FAILED,
        status_message="The process exited with 3: see its last log lines.",
        exit_code=3,
    )
    return {
        "job": nightly,
        "team": acme,
        "notebook": notebook,
        "dataset": version.dataset,
        "model": second.model,
        "deployment": deployed,
    }


def url_of(name: str, args: Args, scene: Scene) -> str:
    return reverse(name, kwargs=args(scene) if args else None)


def shoot(page: Any, name: str) -> None:
    folder = os.environ.get("LATTICE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(Path(folder) / f"{re.sub(r'[^a-z0-9]+', '-', name)}.png"), full_page=True
        )


def fits(page: Any, name: str) -> list[str]:
    """What is wrong with the page at 390 px: nothing, or a line per fault."""
    faults = []
    width = page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
    )
    if width > WIDTH:
        widest = page.evaluate(WIDEST, WIDTH)
        faults.append(f"{name} ({page.url}): scrolls sideways, {width} px wide: {widest}")
    faults += [f"{name}: {what} sticks out" for what in page.evaluate(OUTSIDE, WIDTH)]
    return faults


def open_menu(page: Any, *, team_page: bool) -> None:
    """The navigation is one button away: closed, the sidebar takes no room; open, its links
    are a list down the page."""
    menu = page.get_by_role("button", name="Menu")
    expect(menu).to_be_visible(timeout=2_000)
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden(timeout=2_000)
    menu.click()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Dashboard")).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "true")
    if team_page:
        names = ("Overview", "Notebooks", "Datasets", "Members")
        tops = [nav.get_by_role("link", name=n).bounding_box(timeout=2_000)["y"] for n in names]
        assert tops == sorted(set(tops)), f"the team's links are not a list down the page: {tops}"


@pytest.mark.django_db(transaction=True)
def test_every_page_fits_390_px(browser, live_server, scene, alice, password, tmp_path) -> None:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": WIDTH, "height": HEIGHT}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    faults: list[str] = []

    for name, args in SIGNED_OUT.items():
        page.goto(url_of(name, args, scene))
        shoot(page, f"out-{name}")
        faults += fits(page, name)

    log_in(page, alice.email, password)
    for name, args in SIGNED_IN.items():
        response = page.goto(url_of(name, args, scene))
        assert response is not None
        assert response.status == 200, (name, response.status, page.url)
        shoot(page, f"in-{name}")
        faults += fits(page, name)
        if name in STEPS:
            expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
            continue
        try:
            open_menu(page, team_page=name in TEAM_PAGES)
        except (AssertionError, PlaywrightTimeoutError) as error:
            faults.append(f"{name}: the navigation: {str(error).splitlines()[0]}")
            continue
        shoot(page, f"menu-{name}")
        faults += fits(page, f"{name} (menu open)")

    assert not faults, "\n".join(faults)
    assert errors == []
    context.close()
