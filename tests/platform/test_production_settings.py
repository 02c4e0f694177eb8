"""Production settings refuse to start half-configured, and pass `check --deploy`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k3Jx9vQ2mP7wL0aZ5rT8yU1iO4pS6dF-gH_jK2lX3cV5bN7mQ9wE1rT4yU6iO8pA"


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LATTICE_"))}
    base.pop("DATABASE_URL", None)
    base.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings.production", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    return run(["-c", "import django; django.setup()"], **env)


COMPLETE = {
    "DJANGO_SECRET_KEY": GOOD_KEY,
    "DJANGO_ALLOWED_HOSTS": "lattice.example.com",
    "DATABASE_URL": "postgres://lattice:pw@db.internal:5432/lattice",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "LATTICE_USER_CONTENT_DOMAIN": "example-usercontent.net",
}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "DJANGO_SECRET_KEY is not set"),
        ("", "DJANGO_SECRET_KEY is not set"),
        ("change-me", "placeholder or too weak"),
        ("django-insecure-" + "x" * 60, "placeholder or too weak"),
        ("short-but-random-Zq81", "placeholder or too weak"),
        ("a" * 64, "placeholder or too weak"),
    ],
    ids=["missing", "empty", "placeholder", "django-insecure", "short", "one-character"],
)
def test_it_refuses_a_missing_or_default_secret_key(key, message):
    env = {k: v for k, v in COMPLETE.items() if k != "DJANGO_SECRET_KEY"}
    if key is not None:
        env["DJANGO_SECRET_KEY"] = key

    result = load_settings(**env)

    assert result.returncode != 0
    assert message in result.stderr


def test_it_refuses_sqlite():
    result = load_settings(**{**COMPLETE, "DATABASE_URL": "sqlite:////tmp/x.sqlite3"})

    assert result.returncode != 0
    assert "must point at PostgreSQL" in result.stderr


def test_it_refuses_to_run_without_redis():
    env = {k: v for k, v in COMPLETE.items() if k != "REDIS_URL"}

    result = load_settings(**env)

    assert result.returncode != 0
    assert "REDIS_URL must be set" in result.stderr


def test_check_deploy_is_clean():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "DEBUG"], **COMPLETE)

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_security_headers_and_cookies_in_production():
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings as s\n"
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT,"
        " s.SECURE_HSTS_SECONDS >= 31536000, s.X_FRAME_OPTIONS,"
        " s.CONTENT_SECURITY_POLICY['DIRECTIVES']['script-src'])\n"
    )

    result = run(["-c", script], **COMPLETE)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "False",
        "True",
        "True",
        "True",
        "True",
        "DENY",
        "[\"'self'\"]",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"LATTICE_USER_CONTENT_DOMAIN": None}, "LATTICE_USER_CONTENT_DOMAIN must be set"),
        ({"LATTICE_USER_CONTENT_DOMAIN": "localhost"}, "LATTICE_USER_CONTENT_DOMAIN must be set"),
        (
            {"LATTICE_USER_CONTENT_DOMAIN": "usercontent.example.com"},
            "shares a site with Lattice's host lattice.example.com",
        ),
        ({"LATTICE_USER_CONTENT_DOMAIN": "example.com"}, "shares a site"),
        (
            {"DJANGO_ALLOWED_HOSTS": "lattice.example.com,.example-usercontent.net"},
            "shares a site with Lattice's host .example-usercontent.net",
        ),
        (
            {"DJANGO_CSRF_TRUSTED_ORIGINS": "https://*.example-usercontent.net"},
            "DJANGO_CSRF_TRUSTED_ORIGINS trusts https://*.example-usercontent.net",
        ),
        (
            {"DJANGO_CSRF_TRUSTED_ORIGINS": "https://nb-1.example-usercontent.net"},
            "DJANGO_CSRF_TRUSTED_ORIGINS trusts",
        ),
    ],
    ids=[
        "missing",
        "localhost",
        "sibling",
        "parent",
        "allowed-host",
        "csrf-wildcard",
        "csrf-notebook",
    ],
)
def test_it_refuses_a_user_content_domain_that_is_not_apart_from_lattice(changes, message):
    env = {**COMPLETE, **{k: v for k, v in changes.items() if v is not None}}
    for name in [k for k, v in changes.items() if v is None]:
        del env[name]

    result = load_settings(**env)

    assert result.returncode != 0
    assert message in result.stderr


def test_lattices_cookies_stay_host_only_in_production():
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings as s\n"
        "print(s.SESSION_COOKIE_DOMAIN, s.CSRF_COOKIE_DOMAIN, s.LATTICE_USER_CONTENT_DOMAIN)\n"
    )

    result = run(["-c", script], **COMPLETE)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "None", "example-usercontent.net"]


def test_a_cookie_domain_that_covers_the_user_content_domain_is_refused():
    from config.user_content import user_content_problems

    problems = user_content_problems(
        domain="example-usercontent.net",
        allowed_hosts=["lattice.example.com"],
        cookie_domains={"SESSION_COOKIE_DOMAIN": ".example-usercontent.net"},
        csrf_trusted_origins=[],
    )
    apart = user_content_problems(
        domain="example-usercontent.net",
        allowed_hosts=["lattice.example.com", ".lattice.example.com"],
        cookie_domains={"SESSION_COOKIE_DOMAIN": None, "CSRF_COOKIE_DOMAIN": "lattice.example.com"},
        csrf_trusted_origins=["https://lattice.example.com", "https://*.lattice.example.com"],
    )

    assert len(problems) == 1
    assert "SESSION_COOKIE_DOMAIN (.example-usercontent.net) covers" in problems[0]
    assert apart == []


# What production loads when it starts, and then everything it could load: the URL
# modules, the ASGI application, Celery, every module of every installed app, and every
# management command `manage.py` offers. Printed as JSON for the test below.
PRODUCTION_LOADS_ALL = """
import importlib, json, pkgutil, sys
import django
django.setup()
from django.apps import apps
from django.conf import settings
from django.core.management import get_commands, load_command_class
from django.urls import get_resolver
import config.api_urls, config.asgi, config.celery, config.urls
get_resolver().url_patterns
for app in apps.get_app_configs():
    if app.name.startswith("apps."):
        for found in pkgutil.walk_packages(app.module.__path__, app.name + "."):
            importlib.import_module(found.name)
commands = get_commands()
for name, app_name in commands.items():
    load_command_class(app_name, name)
print(json.dumps({
    "installed": settings.INSTALLED_APPS,
    "commands": commands,
    "modules": sorted(sys.modules),
}))
"""
DEV_COMMANDS = {"dev", "seed_demo"}


def test_production_imports_none_of_the_dev_tools():
    from django.core.management import get_commands

    # The test settings install the dev tools, so the names below are theirs.
    assert {name: get_commands().get(name) for name in DEV_COMMANDS} == dict.fromkeys(
        DEV_COMMANDS, "apps.devtools"
    )

    result = run(["-c", PRODUCTION_LOADS_ALL], **COMPLETE)

    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "apps.devtools" not in loaded["installed"]
    assert "apps.billing" in loaded["installed"]  # the walk did load the apps
    assert "apps.billing.services" in loaded["modules"]
    assert [m for m in loaded["modules"] if m.split(".")[:2] == ["apps", "devtools"]] == []
    assert DEV_COMMANDS & set(loaded["commands"]) == set()
    assert "apps.devtools" not in loaded["commands"].values()


def test_the_web_process_leaves_out_what_only_development_and_agents_need():
    """Under uvicorn (config.asgi imported first) daphne's app and with it Twisted are not
    loaded, nor the Docker SDK; manage.py (runserver) still lists daphne."""
    probe = (
        "import sys, config.asgi; from django.conf import settings; "
        "print(sorted(m for m in ('daphne', 'twisted', 'docker') if m in sys.modules), "
        "'daphne' in settings.INSTALLED_APPS)"
    )
    served = run(["-c", probe], **COMPLETE)
    assert served.returncode == 0, served.stderr
    assert served.stdout.split() == ["[]", "False"]
    listed = "import django; django.setup(); from django.conf import settings; "
    managed = run(["-c", listed + "print('daphne' in settings.INSTALLED_APPS)"], **COMPLETE)
    assert managed.returncode == 0, managed.stderr
    assert managed.stdout.strip() == "True"
