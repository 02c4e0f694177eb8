"""How long the registry-free image builds take from a cold cache.

Copies images/ into a temporary folder with a fresh comment in the notebook
image's requirements.txt, so every image gets a name (hash) Docker has never
seen: nothing comes from its build cache and pip downloads everything again (it
runs with --no-cache-dir). Then times, one after another, as a host builds them:

- the notebook image (images/notebook/build-local.sh: debootstrap + pip);
- each template's image on it (images/build-template.sh: docker build + check),
  by default Scientific Python and PyTorch (from LATTICE_WHEELS' CPU wheel
  when there is one, else PyTorch's CPU index).

Removes the images it built. Needs root and Docker, Debian's mirror and PyPI.

    python bench/image_build.py [--templates scipy pytorch] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str]) -> tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", nargs="*", default=["scipy", "pytorch"])
    parser.add_argument("--keep", action="store_true", help="keep the images built")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the notebook image's build needs root (debootstrap)")

    load = os.getloadavg()[0]
    built: list[str] = []
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="lattice-bench-images-") as folder:
        images = Path(folder) / "images"
        shutil.copytree(ROOT / "images", images)
        with (images / "notebook" / "requirements.txt").open("a") as requirements:
            requirements.write(f"# bench {secrets.token_hex(8)}: a name never built before\n")
        try:
            seconds, image = timed(["bash", str(images / "notebook" / "build-local.sh")])
            built.append(image)
            rows.append(("notebook (base)", seconds, image))
            for template in args.templates:
                seconds, image = timed(["bash", str(images / "build-template.sh"), template])
                built.append(image)
                rows.append((template, seconds, image))
        finally:
            if not args.keep:
                for image in reversed(built):
                    subprocess.run(["docker", "rmi", image], capture_output=True, check=False)

    print(f"{'image':<18} {'seconds':>8}  name")
    for name, seconds, image in rows:
        print(f"{name:<18} {seconds:>8.1f}  {image}")
    print(f"(load average at the start: {load:.1f}, {os.cpu_count()} CPUs)")
    print(json.dumps({name: round(seconds, 1) for name, seconds, _ in rows}))


if __name__ == "__main__":
    main()
