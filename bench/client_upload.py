"""bench/client_upload: ``lattice datasets upload`` against the browser uploader and the raw
API bench, in one run, against one server, with the same bytes.

The server is bench/upload.py's: uvicorn as in production (bench/start_latency.py
WEB_COMMAND) serving config.asgi:application with config.settings.local, PostgreSQL in a
throw-away database (``lattice_bench_client_upload_<pid>``, made and dropped), no Redis, local
storage in a fresh MEDIA_ROOT under the work folder (``--dir``, /var/tmp), on the same disk
as the data. One server for the whole run, warmed up by one API request. The data: ``--files``
(4) files of random bytes, ``--size-mib`` (1024) in all, in one folder; the page cache is
warm for every arm (it cannot be dropped here).

Three arms, each sending every byte to a fresh dataset (the team's datasets and the stored
blobs are deleted before each, as they are content-addressed; os.sync() runs, untimed):

- ``raw``: bench/upload.py's client in this process (``--workers`` threads, one httpx.Client
  each): the files hashed (timed apart), then start, PUT every chunk, complete.
- ``cli``: ``lattice datasets upload DATASET DIR --team T --workers W`` as a subprocess in a
  pseudo-terminal (its progress bar drawn, as a person sees it), with LATTICE_URL,
  LATTICE_TOKEN, and a fresh LATTICE_CONFIG and XDG state folder (no hash cache) in its
  environment; wall time from spawn to exit (the interpreter's start and hashing included);
  its CPU time from wait4(), its RSS sampled every 100 ms.
- ``browser``: Debian's Chromium (headless, the tests' flags), signed in by a session
  cookie, on the dataset's upload page: the folder set on its input, then wall time from
  the click on Start to the page's "Version N is ready" (hashing included, as a person sees
  it), timed inside the page (performance.now() at the click and at each state the uploader
  enters); Chromium's CPU and summed RSS over its process tree (psutil, every 100 ms; shared
  pages count in each process). Chromium is driven over the DevTools protocol directly,
  without enabling its Network domain. ``playwright`` (not run by default): the same page
  driven by Playwright, as tests/browser drive it; Playwright enables the Network domain,
  and Chromium then copies every request's body (each chunk) out to Playwright's driver:
  that costs the browser far more CPU than the upload itself, so it is not the browser's
  figure, only the bench's.

Every arm's time is "end to end" (hashing included); "send" is the time from the upload's
start (the server's Upload.created_at) to its version being ready (ready_at): the same
server-side clock for all three. The raw arm also gives its own client-side send time.
The arms' order rotates each round; medians of ``--rounds`` (3) rounds. The web server's
CPU time and RSS (sampled every 50 ms) are measured per arm, and the bench process's own
CPU time (in the playwright arm, with Playwright's node driver), so a saturated bench
client shows.

    eval "$(bash scripts/services.sh 2>/dev/null)"
    .venv/bin/python bench/client_upload.py [--size-mib 1024] [--files 4] [--rounds 3]
        [--arms raw cli browser playwright] [--workers 4] [--keep]

Prints a table, then one line of JSON (the figures) at the end of stdout. The CLI arm is
left out, with a line saying why, while ``lattice datasets upload`` does not exist yet.
Needs about 3 x the size free on --dir's disk. Exits non-zero only on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pty
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any

import httpx

# bench/upload.py's client, server and database helpers (this folder is on sys.path when
# run as a script).
import start_latency as common
import upload as base

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024**2
DATABASE = f"lattice_bench_client_upload_{os.getpid()}"  # two runs at once do not meet
ARMS = ("raw", "cli", "browser", "playwright")  # the last not by default
TREE_SAMPLE_SECONDS = 0.1
BROWSER_ARGS = [  # as tests/conftest.py's browser fixture
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
# Installed in the page before Start is clicked: when it was clicked, and when the
# uploader first entered each state (#dataset-upload's data-state), in ms.
TIMING_JS = """() => {
    const root = document.getElementById("dataset-upload");
    window.benchTimes = {};
    const note = () => {
        const state = root.dataset.state;
        if (!(state in window.benchTimes)) { window.benchTimes[state] = performance.now(); }
    };
    new MutationObserver(note).observe(root, {attributes: true, attributeFilter: ["data-state"]});
    document.getElementById("ds-start").addEventListener(
        "click", () => { window.benchTimes.click = performance.now(); }, {capture: true});
}"""
FINISHED_JS = """() => document.getElementById("dataset-upload").dataset.state === "done"
    || !document.getElementById("ds-error").hidden"""


# --- measuring --------------------------------------------------------------------------------


class TreeSampler:
    """The CPU time and summed RSS of this process's descendants whose name ``match`` accepts
    (and of this process, if ``own``), every 100 ms while a block runs. A process that was
    there at the start counts from its CPU time then; one that starts later, from zero; one
    that ends counts to its last sample."""

    def __init__(self, match: Any, *, own: bool = False) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.match = match
        self.own = own  # this process too
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.peak_rss = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def processes(self) -> list[Any]:
        found = [self.me] if self.own else []
        for process in self.me.children(recursive=True):
            with contextlib.suppress(self.psutil.Error):
                if self.match(process.name()):
                    found.append(process)
        return found

    def tick(self, *, starting: bool = False) -> None:
        rss = 0
        for process in self.processes():
            with contextlib.suppress(self.psutil.Error):
                times = process.cpu_times()
                rss += process.memory_info().rss
                cpu = float(times.user + times.system)
                self.first.setdefault(process.pid, cpu if starting else 0.0)
                self.last[process.pid] = cpu
        self.peak_rss = max(self.peak_rss, rss)
        self.count = len(self.last)

    def sample(self) -> None:
        while not self.stop.wait(TREE_SAMPLE_SECONDS):
            self.tick()

    def __enter__(self) -> TreeSampler:
        self.tick(starting=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.tick()

    @property
    def cpu(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def is_chromium(name: str) -> bool:
    return name.startswith("chrom")


def is_none(name: str) -> bool:
    return False


def is_driver(name: str) -> bool:
    return name == "node"


def version_of(setup: base.Setup, size: int, files: int) -> dict[str, Any]:
    """The team's only dataset's version (each arm starts with none): checked to be ready with
    every byte, all of them new to the server (none held already, so every byte was sent),
    and the server's send time (its upload's start to the version ready)."""
    from apps.core.tenancy import unscoped
    from apps.datasets.models import DatasetVersion, Upload

    with unscoped():
        versions = list(DatasetVersion.objects.filter(team=setup.team))
        if len(versions) != 1:
            raise base.BenchError(f"expected one version, found {versions}")
        version = versions[0]
        upload = Upload.objects.get(version=version)
    ready_at = version.ready_at
    if ready_at is None or (version.status, version.total_size, version.file_count) != (
        "ready",
        size,
        files,
    ):
        raise base.BenchError(
            f"version {version.pk}: {version.status}, {version.total_size} bytes in "
            f"{version.file_count} files; expected ready, {size} in {files}"
        )
    if upload.new_bytes != size:  # what it had to send: the blobs the server lacked
        raise base.BenchError(f"upload {upload.pk} had {upload.new_bytes} new bytes, not {size}")
    return {
        "version_bytes": version.total_size,
        "server_send_s": (ready_at - upload.created_at).total_seconds(),
    }


def measured(setup: base.Setup, run: Any) -> dict[str, Any]:
    """``run()``'s figures with the web server's CPU and RSS, the bench process's CPU and the
    machine's load around it."""
    cpu = time.process_time()
    with base.Sampler(setup.server.process.pid) as sampler:
        figures: dict[str, Any] = run()
    figures.update(
        server_cpu_s=sampler.cpu,
        server_rss_before_mib=sampler.before / MIB,
        server_rss_peak_mib=sampler.peak / MIB,
        machine_busy=sampler.machine_busy,
        bench_cpu_s=figures.get("bench_cpu_s", 0.0) + time.process_time() - cpu,
        load=os.getloadavg()[0],
    )
    return figures


class Cdp:
    """Chromium driven over the DevTools protocol directly, one page, with only the calls this
    needs (Runtime, DOM.setFileInputFiles, Page.navigate, Network.setCookie). The Network
    domain is never enabled: Playwright enables it, and Chromium then copies every request's
    body (each 32 MiB chunk, base64 in JSON) out to the driver: the playwright arm's figures
    include that."""

    def __init__(self, chromium: str, work: Path) -> None:
        from websockets.sync.client import connect

        self.profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=work))
        port = common.free_port()
        self.log = (self.profile / "chromium.log").open("wb")
        self.process = subprocess.Popen(
            [
                chromium,
                "--headless",
                *BROWSER_ARGS,
                f"--remote-debugging-port={port}",
                f"--user-data-dir={self.profile / 'profile'}",
                "about:blank",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                page = next(t for t in targets if t["type"] == "page")
                break
            except (httpx.HTTPError, StopIteration):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise base.BenchError("Chromium did not open its DevTools port") from None
                time.sleep(0.2)
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.last = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.last += 1
        self.socket.send(json.dumps({"id": self.last, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=120))
            if message.get("id") == self.last:
                if "error" in message:
                    raise base.BenchError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise base.BenchError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float, every: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise base.BenchError(f"timed out waiting for {expression[:80]}")
            time.sleep(every)

    def set_files(self, element_id: str, paths: list[str]) -> None:
        found = self.send("Runtime.evaluate", expression=f"document.getElementById({element_id!r})")
        self.send("DOM.setFileInputFiles", files=paths, objectId=found["result"]["objectId"])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


# --- the arms ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, setup: base.Setup, folder: Path, paths: list[Path], args: Any) -> None:
        self.setup = setup
        self.folder = folder
        self.paths = paths
        self.size = sum(p.stat().st_size for p in paths)
        self.files = len(paths)
        self.args = args
        self.manifest = base.hash_files(paths)  # what forget_blobs deletes
        self.playwright: Any = None
        self.browser: Any = None

    def fresh(self, label: str) -> str:
        """No dataset, no stored blob: the next upload sends every byte. A new dataset."""
        base.forget_blobs(self.setup, self.manifest)
        slug = base.new_dataset(self.setup, label)
        os.sync()
        return slug

    def raw(self, label: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            # The bench process's RSS while it is the client (ru_maxrss is its whole life's).
            with TreeSampler(is_none, own=True) as rss:
                cpu, start = time.process_time(), time.perf_counter()
                manifest = base.hash_files(self.paths)
                hashing, hash_cpu = time.perf_counter() - start, time.process_time() - cpu
                # It makes its own fresh dataset (forget_blobs, then a new one) and samples the
                # server itself too; the figures kept are this arm's own.
                sent = base.lattice(self.setup, self.folder, manifest, label)
            return {
                "wall_s": hashing + sent["seconds"],
                "hash_s": hashing,
                "send_s": sent["seconds"],
                "client_cpu_s": hash_cpu + sent["client_cpu_s"],
                "client_rss_peak_mib": rss.peak_rss / MIB,
            }

        os.sync()
        return measured(self.setup, run)

    def cli(self, label: str) -> dict[str, Any]:
        dataset = self.fresh(label)
        setup = self.setup
        # A fresh config and state folder each run: no saved settings, and no hash cache
        # (the CLI keeps one per file, so a rerun on unchanged files would not hash them).
        home = setup.work / "cli-home"
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATTICE_")}
        env.update(
            LATTICE_URL=setup.server.url,
            LATTICE_TOKEN=setup.token,
            LATTICE_CONFIG=str(home / "config.json"),
            XDG_CONFIG_HOME=str(home / "config"),
            XDG_STATE_HOME=str(home / "state"),
            XDG_CACHE_HOME=str(home / "cache"),
        )
        command = cli_command(self.folder, dataset, setup.team.slug, self.args.workers)
        log = home / "terminal.log"

        def run() -> dict[str, Any]:
            # In a terminal (a pseudo-terminal, 120 x 40), as a person runs it: its progress
            # bar is drawn (with --json, or output to a file, there is none).
            main, side = pty.openpty()
            fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
            with log.open("wb") as out:
                reader = threading.Thread(target=drain, args=(main, out), daemon=True)
                reader.start()
                # Its RSS sampled: wait4's ru_maxrss of a child counts the bench process's
                # memory it was forked from.
                with TreeSampler(lambda name: name == "lattice") as rss:
                    start = time.perf_counter()
                    process = subprocess.Popen(
                        command,
                        env=env,
                        stdin=side,
                        stdout=side,
                        stderr=side,
                        start_new_session=True,
                    )
                    os.close(side)
                    _, status, usage = os.wait4(process.pid, 0)
                    wall = time.perf_counter() - start
                reader.join(10)
            os.close(main)
            process.returncode = os.waitstatus_to_exitcode(status)
            said = log.read_text(errors="replace")
            if process.returncode or "version 1" not in said:
                raise base.BenchError(
                    f"{' '.join(command)} exited {process.returncode}: {said[-2000:]}"
                )
            return {
                "wall_s": wall,
                "client_cpu_s": usage.ru_utime + usage.ru_stime,
                "client_rss_peak_mib": rss.peak_rss / MIB,
            }

        return measured(setup, run)

    def start_browser(self) -> None:
        from playwright.sync_api import sync_playwright

        # Playwright's sync API runs an event loop in this thread; the ORM calls between its
        # page actions are ordinary blocking ones.
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(
            executable_path=self.args.chromium, headless=True, args=BROWSER_ARGS
        )

    def close(self) -> None:
        from django.db import connections

        # While Playwright runs, Django takes this thread for an async context and keeps its
        # connections apart: closed here, or the database cannot be dropped at the end.
        connections.close_all()
        if self.browser:
            self.browser.close()
        if self.playwright:
            self.playwright.stop()

    def page_url(self, dataset: str) -> str:
        return f"{self.setup.server.url}/t/{self.setup.team.slug}/datasets/{dataset}/upload/"

    def timeout(self) -> float:
        return max(600.0, self.size / MIB * 2)  # 0.5 MiB/s at the least

    def page_figures(self, evaluate: Any, chromium: TreeSampler, outside: float) -> dict[str, Any]:
        """What the page measured, once it says it is done (or why it stopped)."""
        said = evaluate("document.getElementById('ds-done').textContent") or ""
        if "is ready" not in said:
            problem = evaluate("document.getElementById('ds-error').textContent")
            raise base.BenchError(f"the page did not finish: {problem!r}")
        times = evaluate("window.benchTimes")
        return {
            "wall_s": (times["done"] - times["click"]) / 1000,
            "hash_s": (times["syncing"] - times["click"]) / 1000,
            "send_s": (times["done"] - times["syncing"]) / 1000,
            "outside_s": outside,
            "client_cpu_s": chromium.cpu,
            "client_rss_peak_mib": chromium.peak_rss / MIB,
            "client_processes": chromium.count,
        }

    def browser_cdp(self, label: str) -> dict[str, Any]:
        from django.conf import settings

        dataset = self.fresh(label)
        setup = self.setup
        chromium = Cdp(self.args.chromium, setup.work)
        try:
            chromium.send(
                "Network.setCookie",
                name=settings.SESSION_COOKIE_NAME,
                value=common.session_cookie(setup.user),
                url=setup.server.url,
            )
            chromium.send("Page.navigate", url=self.page_url(dataset))
            chromium.wait(
                "document.readyState === 'complete' && !!document.getElementById('ds-start')", 60
            )
            chromium.set_files("ds-folder", [str(self.folder)])
            chromium.wait(
                "document.getElementById('ds-selection').textContent"
                f".startsWith('{self.files} files')",
                60,
            )
            chromium.evaluate(f"({TIMING_JS})()")

            def run() -> dict[str, Any]:
                with TreeSampler(is_chromium) as tree:
                    start = time.perf_counter()
                    chromium.evaluate("document.getElementById('ds-start').click()")
                    chromium.wait(f"({FINISHED_JS})()", self.timeout())
                    outside = time.perf_counter() - start
                return self.page_figures(chromium.evaluate, tree, outside)

            return measured(setup, run)
        finally:
            chromium.close()

    def browser_playwright(self, label: str) -> dict[str, Any]:
        from django.conf import settings

        if not self.browser:
            self.start_browser()
        dataset = self.fresh(label)
        setup = self.setup
        context = self.browser.new_context()
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": common.session_cookie(setup.user),
                    "url": setup.server.url,
                }
            ]
        )
        try:
            page = context.new_page()
            page.goto(self.page_url(dataset))
            page.get_by_label("Folder").set_input_files(self.folder)
            page.get_by_test_id("selection").filter(has_text=f"{self.files} files").wait_for()
            page.evaluate(TIMING_JS)

            def run() -> dict[str, Any]:
                with TreeSampler(is_chromium) as tree, TreeSampler(is_driver) as driver:
                    start = time.perf_counter()
                    page.get_by_role("button", name="Start upload").click()
                    page.wait_for_function(FINISHED_JS, polling=100, timeout=self.timeout() * 1000)
                    outside = time.perf_counter() - start
                figures = self.page_figures(page.evaluate, tree, outside)
                figures["bench_cpu_s"] = driver.cpu  # Playwright's node driver
                return figures

            return measured(setup, run)
        finally:
            context.close()


def cli_command(folder: Path, dataset: str, team: str, workers: int) -> list[str]:
    return [
        str(ROOT / ".venv" / "bin" / "lattice"),
        "datasets",
        "upload",
        dataset,
        str(folder),
        "--team",
        team,
        "--workers",
        str(workers),
    ]


def drain(fd: int, out: Any) -> None:
    """Copy what the terminal shows into ``out`` until the program's side closes."""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: every holder of the other side has closed it
            return
        if not data:
            return
        out.write(data)


def cli_missing() -> str | None:
    """Why the CLI arm cannot run (``lattice datasets upload`` is not there yet), or None."""
    lattice = ROOT / ".venv" / "bin" / "lattice"
    if not lattice.exists():
        return f"{lattice} is not installed (make .venv/.dev-installed)"
    done = subprocess.run(
        [str(lattice), "datasets", "upload", "--help"], capture_output=True, text=True, check=False
    )
    if done.returncode:
        return (
            f"`lattice datasets upload --help` exited {done.returncode}: "
            + ((done.stderr or done.stdout).strip().splitlines() or [""])[-1]
        )
    return None


# --- the run ----------------------------------------------------------------------------------


def rounds(bench: Bench, arms: list[str], count: int) -> list[dict[str, Any]]:
    """Every arm once a round, the order rotated each round."""
    runs = []
    for round_ in range(count):
        order = arms[round_ % len(arms) :] + arms[: round_ % len(arms)]
        for arm in order:
            print(f"round {round_ + 1}: {arm}", file=sys.stderr)
            label = f"bench {arm} {round_}"
            if arm == "raw":
                figures = bench.raw(label)
            elif arm == "cli":
                figures = bench.cli(label)
            elif arm == "browser":
                figures = bench.browser_cdp(label)
            else:
                figures = bench.browser_playwright(label)
            figures.update(version_of(bench.setup, bench.size, bench.files))
            figures.update(arm=arm, round=round_ + 1)
            print(
                f"  {figures['wall_s']:.2f} s, {bench.size / MIB / figures['wall_s']:.0f} MiB/s "
                f"end to end; server send {figures['server_send_s']:.2f} s",
                file=sys.stderr,
            )
            runs.append(figures)
    base.forget_blobs(bench.setup, bench.manifest)
    return runs


def summary(runs: list[dict[str, Any]], arm: str, size: int) -> dict[str, Any]:
    mine = [r for r in runs if r["arm"] == arm]

    def median(key: str) -> float | None:
        values = [r[key] for r in mine if r.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    def rate(key: str) -> float | None:
        values = [size / MIB / r[key] for r in mine if r.get(key)]
        return round(statistics.median(values), 1) if values else None

    return {
        "arm": arm,
        "runs": len(mine),
        "mib_s_p50": rate("wall_s"),
        "send_mib_s_p50": rate("server_send_s"),
        "client_send_mib_s_p50": rate("send_s"),
        "wall_s_p50": median("wall_s"),
        "wall_s": [round(r["wall_s"], 3) for r in mine],
        "hash_s_p50": median("hash_s"),
        "send_s_p50": median("send_s"),
        "server_send_s_p50": median("server_send_s"),
        "client_cpu_s_p50": median("client_cpu_s"),
        "client_cpu_share_p50": round(
            statistics.median(r["client_cpu_s"] / r["wall_s"] for r in mine), 2
        ),
        "client_rss_peak_mib": round(max(r["client_rss_peak_mib"] for r in mine), 1),
        "bench_cpu_s_p50": median("bench_cpu_s"),
        "server_cpu_s_p50": median("server_cpu_s"),
        "server_rss_peak_mib": round(max(r["server_rss_peak_mib"] for r in mine), 1),
        "machine_busy_p50": median("machine_busy"),
        "load_p50": median("load"),
    }


def commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def report(results: dict[str, Any]) -> None:
    print(
        f"{results['size_mib']:g} MiB in {results['files']} files, fresh dataset and no stored "
        f"blob each run; medians of {results['rounds']} rounds, arm order rotated; uvicorn, local "
        f"storage; commit {results['commit']}; {results['cpus']} CPUs, load average "
        f"{results['load_before']:.2f} before, {results['load_after']:.2f} after"
    )
    if results.get("skipped"):
        print(f"left out: {results['skipped']}")
    print(
        f"{'arm':<10} {'MiB/s':>6} {'wall s':>7} {'hash s':>7} {'send s':>7} {'send MiB/s':>10} "
        f"{'client CPU s':>12} {'of wall':>7} {'client RSS':>10} {'bench CPU s':>11} "
        f"{'web CPU s':>9} {'web RSS':>7} {'busy':>5}"
    )

    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for s in results["arms"]:
        print(
            f"{s['arm']:<10} {num(s['mib_s_p50'], '.0f'):>6} {num(s['wall_s_p50'], '.2f'):>7} "
            f"{num(s['hash_s_p50'], '.2f'):>7} {num(s['server_send_s_p50'], '.2f'):>7} "
            f"{num(s['send_mib_s_p50'], '.0f'):>10} {num(s['client_cpu_s_p50'], '.1f'):>12} "
            f"{s['client_cpu_share_p50']:>7.0%} {s['client_rss_peak_mib']:>7.0f} MiB "
            f"{num(s['bench_cpu_s_p50'], '.1f'):>11} {num(s['server_cpu_s_p50'], '.1f'):>9} "
            f"{s['server_rss_peak_mib']:>3.0f} MiB {num(s['machine_busy_p50'], '.0%'):>5}"
        )
    print(
        "MiB/s and wall: end to end, hashing included (raw: its hashing plus its upload; cli: "
        "spawn to exit; browser: the click on Start to 'Version N is ready'). send: the "
        "upload's start to its version ready, on the server's clock. Client CPU: raw = this "
        "process; cli = the lattice process (wait4); browser = Chromium's processes. Bench "
        "CPU: this process (with Playwright's driver in the playwright arm). Web: the uvicorn "
        "process's CPU and peak RSS; busy: all CPUs, whoever used them."
    )
    raw = next((s for s in results["arms"] if s["arm"] == "raw"), None)
    if raw and raw["client_send_mib_s_p50"]:
        print(
            f"raw, its upload alone (hashing apart, client's clock): {raw['send_s_p50']:.2f} s, "
            f"{raw['client_send_mib_s_p50']:.0f} MiB/s"
        )
    print(json.dumps(results))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="lattice datasets upload vs browser vs raw API.")
    parser.add_argument("--size-mib", type=int, default=1024, help="all files together")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=ARMS,
        default=list(ARMS[:3]),
        help="playwright: the browser arm driven as tests/browser drive it (not by default)",
    )
    parser.add_argument("--workers", type=int, default=4, help="the raw client's PUTs at once")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="the work folder's")  # noqa: S108
    parser.add_argument("--chunk-mib", type=int, help="the server's chunk size (its default)")
    parser.add_argument(
        "--chromium",
        default=os.environ.get("LATTICE_CHROMIUM")
        or shutil.which("chromium")
        or "/usr/bin/chromium",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder and data")
    return parser.parse_args()


def main() -> None:
    args = arguments()

    arms: list[str] = [a for a in ARMS if a in args.arms]
    skipped = None
    if "cli" in arms and (why := cli_missing()):
        skipped = f"the CLI arm: {why}"
        print(f"left out {skipped}", file=sys.stderr)
        arms.remove("cli")
    if not arms:
        sys.exit("no arm to run")
    need = 3 * args.size_mib * MIB + 1024 * MIB
    free = shutil.disk_usage(args.dir).free
    if free < need:
        sys.exit(f"{args.dir} has {free / MIB:.0f} MiB free; this needs {need / MIB:.0f} MiB")

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="lattice-bench-client-upload-", dir=args.dir))
    server_env = base.configure(work, args.chunk_mib)
    bench = None
    try:
        base.bench_database(DATABASE)
        setup = base.make_setup(work, args.workers, server_env)
        folder = work / "data"
        print(f"writing {args.files} files of random bytes in {folder}", file=sys.stderr)
        paths = base.make_data(folder, args.size_mib * MIB, args.files)
        bench = Bench(setup, folder, paths, args)
        base.start_server(setup, DATABASE)
        try:
            runs = rounds(bench, arms, args.rounds)
        finally:
            bench.close()
            setup.server.close()
    finally:
        common.drop_database(DATABASE)
        if args.keep:
            print(f"kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    size = bench.size
    results = {
        "size_mib": size / MIB,
        "bytes": size,
        "files": args.files,
        "rounds": args.rounds,
        "workers": args.workers,
        "commit": commit(),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "skipped": skipped,
        "arms": [summary(runs, arm, size) for arm in arms],
        "runs": [
            {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in runs
        ],
    }
    report(results)


if __name__ == "__main__":
    main()
