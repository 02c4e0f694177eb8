"""``lattice notebooks open --json``: the browser it launches (``$BROWSER``, xdg-open) shares
no stdout with it, so what the browser prints never follows the JSON (REVIEW18 R9). In a
process of its own, where stdout is a real file descriptor the browser would inherit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
from lattice.cli import output
from lattice.cli.notebooks import _open_quietly
output.print_json({"url": "http://lattice.test/nb"})
_open_quietly("http://lattice.test/nb")
print("after")
"""


def test_what_the_browser_prints_never_reaches_stdout() -> None:
    env = {**os.environ, "BROWSER": "echo Opening in existing browser session. %s"}

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    *shown, last = done.stdout.strip().splitlines()
    assert json.loads("\n".join(shown)) == {"url": "http://lattice.test/nb"}
    assert last == "after"  # stdout works again afterwards
    assert "Opening" not in done.stdout
