"""Ctrl-C during ``lattice datasets upload`` ends it at once with "Interrupted: run the same
command again to resume" and exit code 130, no traceback; the same command then finishes the
upload. (Counting the chunks a resume sends is the SDK's test, test_transfer_upload.py, and the
live story's.)"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.client.cli_helpers import SCRIPT, environment, lattice_process
from tests.helpers import make_token

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024  # small chunks: many requests, so the upload is still going when stopped
SIZE = 8 * 1024 * 1024


def chunks_received(team) -> int:
    from apps.datasets.models import UploadChunk

    return UploadChunk.objects.for_team(team).count()


def test_ctrl_c_then_the_same_command_resumes(asgi_live_server, alice, acme, media, tmp_path):
    _, token = make_token(alice)
    config = tmp_path / "cfg" / "config.json"
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "data.bin").write_bytes(os.urandom(SIZE))
    args = ["datasets", "upload", "big", str(folder), "--workers", "2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATTICE_")}
    env.update(
        {
            k: v
            for k, v in environment(asgi_live_server, token, config, "acme").items()
            if v is not None
        }
    )

    process = subprocess.Popen(
        [str(SCRIPT), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while chunks_received(acme) < 5:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no chunk arrived"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "Interrupted: run the same command again to resume."
    assert stdout == ""
    held = chunks_received(acme)
    assert held < SIZE // CHUNK

    again = lattice_process(*args, url=asgi_live_server, token=token, config=config, team="acme")

    assert again.exit_code == 0, again.stderr
    assert "big version 1 (ready)" in again.stderr
    assert "already on the server" in again.stderr
