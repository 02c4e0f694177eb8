"""The `make dev` log (issue 14, defect 12): the embedded beat and worker keep their routine
lines quiet, and a printed mail stands out.

The local settings are loaded in a child process, as `manage.py dev` loads them; what it
prints is captured and read back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import logging

    import django
    from django.conf import settings

    django.setup()

    from celery.app.trace import logger as trace_logger
    from celery.beat import logger as beat_logger
    from celery.worker.strategy import logger as strategy_logger
    from django.core.mail import EmailMessage, get_connection

    beat_logger.info("Scheduler: Sending due task reconcile (apps.machines.tasks.reconcile)")
    strategy_logger.info("Task apps.machines.tasks.reconcile[1] received")
    trace_logger.info("Task apps.machines.tasks.reconcile[1] succeeded in 0.01s: None")
    beat_logger.warning("beat: the schedule could not be saved")
    logging.getLogger("apps.core.worker").info("embedded worker consuming default")

    connection = get_connection(settings.LATTICE_EMAIL_DELIVERY_BACKEND)
    EmailMessage(
        "Confirm your email address",
        "Open this link to confirm: http://localhost:8000/accounts/confirm-email/abc/",
        "lattice@localhost",
        ["newcomer@example.com"],
        connection=connection,
    ).send()
    """
)


def run_with_local_settings() -> str:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        # Given, so loading the settings writes no key into var/.
        "DJANGO_SECRET_KEY": "test-only-not-secret",
    }
    env.pop("LATTICE_EMAIL_DELIVERY_BACKEND", None)
    env.pop("LATTICE_LOG_LEVEL", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout + done.stderr


def test_routine_beat_and_worker_lines_are_quiet_warnings_are_not():
    output = run_with_local_settings()

    assert "Sending due task" not in output
    assert "received" not in output
    assert "succeeded in" not in output
    assert "beat: the schedule could not be saved" in output
    # Lattice's own INFO lines still show.
    assert "embedded worker consuming default" in output


def test_a_printed_mail_is_framed_with_its_recipient_and_subject():
    output = run_with_local_settings()
    lines = output.splitlines()

    start = lines.index("  EMAIL to newcomer@example.com: Confirm your email address")
    end = lines.index("  END OF EMAIL to newcomer@example.com")
    framed = "\n".join(lines[start:end])
    assert lines[start - 1] == lines[start + 1] == "=" * 78
    assert lines[end - 1] == lines[end + 1] == "=" * 78
    assert "http://localhost:8000/accounts/confirm-email/abc/" in framed
    assert "Subject: Confirm your email address" in framed
