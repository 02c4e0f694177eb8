"""Where a run's files come from: the runner script (apps.jobs.sources) and a notebook's Git
clone (apps.notebooks.gitsource), run on the real Docker runtime in the notebook image.

No engine here: each test builds the Spec a job's attempt would get (the runner as its
command, the workspace volume at /workspace) and starts it with DockerRuntime directly. The
repository is served over HTTP by ``git http-backend`` on the workloads' bridge gateway
(this host), asking for a token; workloads reach it because LATTICE_WORKLOAD_ALLOW names it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from typing import Any

import pytest
from docker.errors import NotFound

from apps.core.errors import ServiceError
from apps.core.models import AuditEntry
from apps.jobs.sources import runner_command, runner_env, source_env
from apps.notebooks.gitsource import (
    git_shown,
    git_source_problem,
    notebook_clone_command,
    repo_folder,
)
from apps.notebooks.models import Notebook
from apps.runtimes.base import Spec, WorkloadError, expand_command
from apps.runtimes.docker import (
    ALLOW_RULE_COMMENT,
    HOST_RULE_COMMENT,
    DockerRuntime,
    allow_rules,
    allowed_destinations,
    isolate_workloads,
    isolation_rules,
)
from apps.runtimes.process import LocalProcessRuntime
from apps.teams.secrets import secret_set
from tests.factories import TeamFactory
from tests.helpers import wait_for
from tests.jobs.gitserver import git, git_server

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": ["alpha = 1\n", "names = []\n"],
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "metadata": {},
            "source": [
                "import os\n",
                "print(f'alpha={alpha!r} names={names!r} in {os.getcwd()}')\n",
            ],
            "outputs": [],
            "execution_count": None,
        },
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "nbformat": 4,
    "nbformat_minor": 4,
}


@pytest.fixture
def repo(tmp_path):
    """A bare repository, project.git: main's run.sh says v1 (tagged v1), then v2; branch
    "feature" says feature; nb/params.ipynb has a parameters cell."""
    served = tmp_path / "srv"
    served.mkdir()
    git(served, "init", "-q", "--bare", "-b", "main", "project.git")
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    shas = {}
    (work / "nb").mkdir()
    (work / "nb" / "params.ipynb").write_text(json.dumps(NOTEBOOK))
    for version in ("v1", "v2"):
        (work / "run.sh").write_text(f"echo this is {version}\n")
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", version)
        shas[version] = git(work, "rev-parse", "HEAD")
        if version == "v1":
            git(work, "tag", "v1")
    git(work, "checkout", "-q", "-b", "feature", shas["v1"])
    (work / "run.sh").write_text("echo this is feature\n")
    git(work, "commit", "-q", "-am", "feature")
    shas["feature"] = git(work, "rev-parse", "HEAD")
    git(work, "push", "-q", str(served / "project.git"), "main", "feature", "v1")
    return served, shas


@pytest.fixture
def runtime(docker_client):
    runtime = DockerRuntime(docker_client)
    made: dict[str, list[str]] = {"containers": [], "volumes": []}
    yield runtime, made
    for name in made["containers"]:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)
    for volume in made["volumes"]:
        with contextlib.suppress(NotFound):
            docker_client.volumes.get(volume).remove(force=True)


@pytest.fixture
def server(settings, runtime, repo):
    """The repository served on the workloads' gateway, allowed by LATTICE_WORKLOAD_ALLOW
    (its rules taken away again afterwards)."""
    runtime, _ = runtime
    network = runtime.network()
    gateway = next(c["Gateway"] for c in network.attrs["IPAM"]["Config"] if "Gateway" in c)
    token = f"tok-{uuid.uuid4().hex}"
    with git_server(repo[0], address=gateway, token=token) as served:
        settings.LATTICE_WORKLOAD_ALLOW = [f"{gateway}:{served.port}"]
        rules = allow_rules(runtime)
        assert isolate_workloads(runtime)
        try:
            yield served
        finally:
            for rule in rules:
                subprocess.run(["iptables", "-D", *rule], capture_output=True, check=False)


def job(url: str, ref: str, **changes: Any) -> dict[str, Any]:
    return {
        "source": "git",
        "git_url": url,
        "git_ref": ref,
        "git_secret": "REPO_TOKEN",
        "entrypoint": "command",
        "command": "sh run.sh && echo ran commit $(cat .lattice-run/commit)",
        **changes,
    }


def start(runtime, image, command, *, env, volume=None, mount="/workspace", more=None):
    """Start ``command`` in the notebook image with ``volume`` at ``mount`` (and the
    volumes ``more`` names); wait for its end: (exit status, log lines, the volume)."""
    runtime, made = runtime
    name = f"t-src-{uuid.uuid4().hex[:8]}"
    volume = volume or f"lattice-test-{name}"
    made["containers"].append(name)
    made["volumes"].append(volume)
    spec = Spec(
        name=name,
        image=image,
        command=command,
        env=env,
        volumes={volume: mount, **(more or {})},
        labels={"test": "jobs-sources"},
    )
    state = runtime.start(spec)
    assert wait_for(lambda: runtime.poll(state) is not None, timeout=180)
    return runtime.poll(state), list(runtime.logs(state)), volume


def read_volume(docker_client, image, volume, path) -> str:
    output = docker_client.containers.run(
        image,
        # A final newline: Docker's log keeps a last line without one back.
        ["sh", "-c", f"cat /w/{path}; echo"],
        volumes={volume: {"bind": "/w", "mode": "ro"}},
        labels={"lattice.test": "jobs-sources"},
        remove=True,
    )
    return output.decode()


@pytest.fixture
def credential(acme, alice):
    """Sets Acme's team secret REPO_TOKEN (what the jobs name as their git_secret)."""

    def set_to(value: str) -> None:
        secret_set(team=acme, actor=alice, name="REPO_TOKEN", value=value)

    return acme, set_to


def run_env(definition, credential, token) -> dict[str, str]:
    """What source_env gives the run: the token, from the team secret; its use audited."""
    team, set_to = credential
    set_to(token)
    env = source_env(team, definition, used_by="job run 7")
    assert AuditEntry.objects.for_team(team).filter(action="secret.used").exists()
    # With the runner's own variables (the command, the Git URL...), as spec.run_env adds.
    return env | runner_env(definition)


def test_a_commit_a_tag_and_a_branch_are_each_cloned_and_run(
    runtime, notebook_image, server, repo, credential
):
    _, shas = repo
    url = server.url("project.git")
    seen = {}
    for ref, says, commit in (
        (shas["v1"], "this is v1", shas["v1"]),  # a commit (the shallow fetch by id)
        (shas["v1"][:10], "this is v1", shas["v1"]),  # abbreviated: the whole-fetch fallback
        ("v1", "this is v1", shas["v1"]),  # a tag
        ("feature", "this is feature", shas["feature"]),  # a branch
        ("", "this is v2", shas["v2"]),  # none: the default branch
    ):
        definition = job(url, ref)
        status, lines, _ = start(
            runtime,
            notebook_image,
            runner_command(definition, run_id=7),
            env=run_env(definition, credential, server.token),
        )
        seen[ref] = status, says in lines, f"ran commit {commit}" in lines, lines
    assert {ref: got[:3] for ref, got in seen.items()} == dict.fromkeys(seen, (0, True, True))
    assert f"lattice: commit {shas['feature']}" in seen["feature"][3]
    assert any("fetching the whole repository" in line for line in seen[shas["v1"][:10]][3])
    # The token was asked for (a 401 first) and given, never shown.
    assert server.refused >= len(seen)
    assert set(server.users) == {"x-access-token"}
    assert not [line for got in seen.values() for line in got[3] if server.token in line]


def test_a_bad_ref_fails_saying_so_and_a_wrong_token_fails(
    runtime, notebook_image, server, credential
):
    url = server.url("project.git")
    definition = job(url, "no-such-branch")
    status, lines, _ = start(
        runtime,
        notebook_image,
        runner_command(definition, run_id=8),
        env=run_env(definition, credential, server.token),
    )
    assert status == 2
    assert (
        f'lattice: "no-such-branch" is not a branch, tag or commit of {url} at no-such-branch'
        in lines
    )
    assert not any("ran commit" in line for line in lines)

    definition = job(url, "main")
    status, lines, _ = start(
        runtime,
        notebook_image,
        runner_command(definition, run_id=9),
        env=run_env(definition, credential, "not-the-token"),
    )
    assert status == 2
    assert f"lattice: could not fetch {url} at main (Git's message above)" in lines
    assert any("Authentication failed" in line for line in lines)
    assert not any("not-the-token" in line for line in lines)


FAKE_SSH = """#!/bin/sh
# Stands in for ssh: says what Git and the runner gave it, then fails as a refused login.
key=""; previous=""
for arg in "$@"; do [ "$previous" = "-i" ] && key="$arg"; previous="$arg"; done
echo "fake-ssh: $*" >&2
echo "fake-ssh: key mode $(stat -c %a "$key")" >&2
echo "fake-ssh: key public $(ssh-keygen -y -f "$key" | cut -d' ' -f1,2)" >&2
exit 255
"""


def test_an_ssh_url_is_fetched_with_the_deploy_key_in_a_private_file(
    runtime, notebook_image, docker_client, credential, tmp_path
):
    # No SSH server here: a stand-in ssh (first on PATH) reports what it was handed.
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True
    )
    private = (tmp_path / "key").read_text()
    public = " ".join((tmp_path / "key.pub").read_text().split()[:2])
    tools = f"lattice-test-fakessh-{uuid.uuid4().hex[:8]}"
    runtime[1]["volumes"].append(tools)
    docker_client.containers.run(
        notebook_image,
        ["sh", "-c", 'printf "%s" "$SCRIPT" > /x/ssh && chmod 755 /x/ssh'],
        environment={"SCRIPT": FAKE_SSH},
        volumes={tools: {"bind": "/x", "mode": "rw"}},
        user="0",
        labels={"lattice.test": "jobs-sources"},
        remove=True,
    )
    definition = job("ssh://git@git.example.invalid/team/project.git", "main")
    team, set_to = credential
    set_to(private.replace("\n", "\r\n"))  # pasted from Windows: the runner strips the CRs
    env = source_env(team, definition, used_by="job run 14")
    assert set(env) == {"LATTICE_GIT_SSH_KEY"}
    env["PATH"] = "/fakessh:/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"
    env |= runner_env(definition)

    status, lines, _ = start(
        runtime,
        notebook_image,
        runner_command(definition, run_id=14),
        env=env,
        more={tools: "/fakessh"},
    )

    assert status == 2
    handed = [line for line in lines if line.startswith("fake-ssh: ")]
    assert "fake-ssh: key mode 600" in handed
    assert f"fake-ssh: key public {public}" in handed
    args = handed[0]
    for option in ("IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=accept-new"):
        assert option in args
    assert "git@git.example.invalid" in args
    assert any(
        "lattice: could not fetch ssh://git@git.example.invalid/team/project.git at main" in line
        for line in lines
    )
    body = private.splitlines()[1]
    assert not any(body in line for line in lines)


def test_a_later_attempt_keeps_the_commit_an_earlier_one_fetched(
    runtime, notebook_image, server, credential
):
    definition = job(server.url("project.git"), "feature")
    env = run_env(definition, credential, server.token)
    command = runner_command(definition, run_id=10)
    status, lines, volume = start(runtime, notebook_image, command, env=env)
    assert status == 0
    asked = len(server.users)
    # The same run's workspace, a new container: nothing fetched, the same files run.
    status, lines, _ = start(runtime, notebook_image, command, env=env, volume=volume)
    assert status == 0
    assert "this is feature" in lines
    assert any("(fetched by an earlier attempt)" in line for line in lines)
    assert len(server.users) == asked


def test_a_notebook_runs_with_its_parameters_into_executed_ipynb(
    runtime, notebook_image, server, docker_client, credential
):
    definition = job(
        server.url("project.git"),
        "main",
        entrypoint="notebook",
        notebook_path="nb/params.ipynb",
        # A string the runtime's expansion would fill in, were it in the runner's script.
        parameters={"alpha": 0.25, "names": ["a", "{mount:/outputs} {port}"]},
    )
    status, lines, volume = start(
        runtime,
        notebook_image,
        runner_command(definition, run_id=11),
        env=run_env(definition, credential, server.token),
    )
    assert status == 0, lines
    executed = json.loads(
        read_volume(docker_client, notebook_image, volume, ".lattice-run/executed.ipynb")
    )
    printed = [
        text
        for cell in executed["cells"]
        for output in cell.get("outputs", [])
        for text in ["".join(output.get("text", ""))]
    ]
    # The parameters kept their types (a float, a list), and it ran in the notebook's folder.
    assert "alpha=0.25 names=['a', '{mount:/outputs} {port}'] in /workspace/nb\n" in printed
    # papermill's --log-output: the cell's output is in the run's log too.
    assert any("alpha=0.25 names=['a', '{mount:/outputs} {port}']" in line for line in lines)


def test_the_runner_execs_the_command_so_sigterm_reaches_it(runtime, notebook_image):
    definition = {"source": "none", "entrypoint": "command", "command": "cat /proc/$PPID/comm"}
    status, lines, _ = start(
        runtime, notebook_image, runner_command(definition, run_id=12), env=runner_env(definition)
    )
    assert status == 0
    assert "lattice: run 12 starting" in lines
    # The command's parent is the image's init (tini), not a runner's shell waiting on it:
    # the runner exec'd the command, so a SIGTERM to the workload reaches it.
    assert lines[-1] == "tini"


def test_a_notebooks_repository_is_cloned_on_its_first_start_only(
    runtime, notebook_image, server, credential
):
    notebook = Notebook(git_url=server.url("project.git"), git_ref="feature")
    env = {"LATTICE_GIT_TOKEN": server.token}
    shows = (
        "sh {mount:/notebooks}/project/run.sh; git -C /notebooks/project branch --show-current;"
        ' echo "token:${LATTICE_GIT_TOKEN:-unset}"; ls -a /notebooks'
    )
    command = notebook_clone_command(notebook, ["sh", "-c", shows])
    status, lines, volume = start(runtime, notebook_image, command, env=env, mount="/notebooks")
    assert status == 0, lines
    assert (
        f"lattice: cloning {server.url('project.git')} at feature into /notebooks/project" in lines
    )
    assert "this is feature" in lines
    assert "feature" in lines  # checked out as the branch, to work on
    assert "token:unset" in lines  # JupyterLab does not inherit the credential
    assert "project.lattice-clone" not in lines
    asked = len(server.users)

    status, lines, _ = start(
        runtime, notebook_image, command, env=env, volume=volume, mount="/notebooks"
    )
    assert status == 0
    assert "this is feature" in lines
    assert not any(line.startswith("lattice: cloning") for line in lines)
    assert len(server.users) == asked

    # A clone that fails: said, nothing half made left, and the start goes on.
    broken = notebook_clone_command(
        Notebook(git_url=server.url("project.git"), git_ref="no-such-ref"),
        ["ls", "-a", "/notebooks"],
    )
    status, lines, _ = start(runtime, notebook_image, broken, env=env, mount="/notebooks")
    assert status == 0
    assert any(line.startswith("lattice: could not clone") for line in lines)

    # Its secret could not be given (deleted since): said, no clone tried, the start goes on.
    status, lines, _ = start(
        runtime,
        notebook_image,
        command,
        env={"LATTICE_GIT_ERROR": "This team has no secret named REPO_TOKEN."},
        mount="/notebooks",
    )
    assert status == 0
    assert (
        f"lattice: could not clone {server.url('project.git')} at feature: "
        "This team has no secret named REPO_TOKEN." in lines
    )
    assert "this is feature" not in lines
    assert "project" not in lines
    assert "project.lattice-clone" not in lines


def test_source_env_gives_the_credential_its_url_needs(credential, bob):
    team, set_to = credential
    set_to("s3cret-value")
    https = job("https://git.example.com/team/project.git", "main")
    ssh = job("git@git.example.com:team/project.git", "main")
    assert source_env(team, https, used_by="job run 1") == {"LATTICE_GIT_TOKEN": "s3cret-value"}
    assert source_env(team, ssh, used_by="job run 2") == {"LATTICE_GIT_SSH_KEY": "s3cret-value"}
    assert source_env(team, {**ssh, "git_secret": ""}, used_by="job run 3") == {}
    assert source_env(team, {"source": "notebook"}, used_by="job run 4") == {}
    # Another team's secret name is not this team's: refused, naming it.
    other = TeamFactory.create(name="Other", slug="other")
    with pytest.raises(ServiceError, match="REPO_TOKEN"):
        source_env(other, https, used_by="job run 5")


def test_the_runner_survives_the_runtimes_command_expansion():
    # Docker fills {mount:/workspace} with /workspace; nothing else in the script changes,
    # and what the person wrote is not in it: it comes as the runner's variables.
    definition = job("https://git.example.com/{port}.git", "v1", command="awk '{print $1}' f")
    command = runner_command(definition, run_id=1)
    expanded = expand_command(
        command,
        port=8888,
        ip="0.0.0.0",  # noqa: S104 - what Docker fills in
        mounts={"/workspace": "/workspace"},
    )
    assert expanded[:2] == ["sh", "-c"]
    assert 'cd "/workspace"' in expanded[2]
    assert expanded[2].replace('cd "/workspace"', "") == command[2].replace(
        'cd "{mount:/workspace}"', ""
    )
    assert "awk" not in command[2]
    assert "git.example.com" not in command[2]
    assert 'exec sh -c "$lattice_command"' in expanded[2]
    assert runner_env(definition)["LATTICE_RUN_COMMAND"] == "awk '{print $1}' f"
    assert runner_env(definition)["LATTICE_RUN_GIT_URL"] == "https://git.example.com/{port}.git"


def test_a_command_with_braces_runs_as_written(runtime, notebook_image):
    # A Python f-string, a JSON literal: the runtime's {port}/{ip}/{mount:} filling is for
    # the runner's script, never for the person's command.
    command = (
        "echo '{port} {ip} {mount:/outputs}'; "
        'python3 -c \'import json; x = 2; print(f"{x} {{port}}", json.dumps({"a": 1}))\''
    )
    definition = {"source": "none", "entrypoint": "command", "command": command}
    status, lines, _ = start(
        runtime,
        notebook_image,
        runner_command(definition, run_id=17),
        env=runner_env(definition),
    )
    assert status == 0, lines
    assert "{port} {ip} {mount:/outputs}" in lines
    assert '2 {port} {"a": 1}' in lines
    # The command does not see the runner's variables.
    definition["command"] = "env | grep -c '^LATTICE_RUN_' || true"
    status, lines, _ = start(
        runtime, notebook_image, runner_command(definition, run_id=18), env=runner_env(definition)
    )
    assert status == 0, lines
    assert lines[-1] == "0"


@pytest.mark.parametrize(
    ("url", "ref", "ok"),
    [
        ("https://github.com/team/repo.git", "main", True),
        ("http://10.0.0.5:3000/team/repo", "v1.2.0", True),
        ("ssh://git@git.example.com:2222/team/repo.git", "", True),
        ("git@github.com:team/repo.git", "0123abcd", True),
        ("file:///etc", "main", False),
        ("/srv/repo.git", "main", False),
        ("ext::sh -c touch% /tmp/x", "main", False),
        ("-uhttps://x/y", "main", False),
        ("https://github.com/team/repo.git", "--upload-pack=touch /tmp/x", False),
        ("https://github.com/team/repo.git", "a..b", False),
        ("https://me:hunter22@github.com/team/repo.git", "main", False),
        ("https://me@github.com/team/repo.git", "main", True),
        ("https://github.com/team/repo.git", "main branch", False),
    ],
)
def test_git_sources_are_checked(url, ref, ok):
    assert (git_source_problem(url, ref) is None) is ok


def test_repository_folders_and_shown_urls():
    assert repo_folder("https://github.com/team/my-repo.git") == "my-repo"
    assert repo_folder("git@github.com:team/tools.git/") == "tools"
    assert repo_folder("https://example.com/") == "example.com"
    assert git_shown("https://me:hunter22@example.com/r.git", "v1") == (
        "https://me:****@example.com/r.git at v1"
    )


def test_workloads_reach_a_private_server_only_once_the_administrator_allows_it(
    settings, runtime, notebook_image, repo, credential
):
    rt, _ = runtime
    network = rt.network()
    gateway = next(c["Gateway"] for c in network.attrs["IPAM"]["Config"] if "Gateway" in c)
    host_rule = next(rule for rule in isolation_rules(rt) if rule[0] == "INPUT")
    with git_server(repo[0], address=gateway, token="allow-test-token") as served:
        definition = job(served.url("project.git"), "main")
        env = run_env(definition, credential, served.token)
        command = runner_command(definition, run_id=13)
        settings.LATTICE_WORKLOAD_ALLOW = []
        assert isolate_workloads(rt)
        refused_status, refused_lines, _ = start(runtime, notebook_image, command, env=env)
        reached_before = served.refused + len(served.users)

        settings.LATTICE_WORKLOAD_ALLOW = [f"{gateway}:{served.port}"]
        rules = allow_rules(rt)
        try:
            assert isolate_workloads(rt)
            # A refusal inserted later (as a re-run of an older agent would) goes on top...
            subprocess.run(["iptables", "-D", *host_rule], check=True)
            subprocess.run(["iptables", "-I", *host_rule], check=True)
            assert isolate_workloads(rt)  # ...and the next pass puts the allowance above it.
            listed = subprocess.run(
                ["iptables", "-S", "INPUT"], capture_output=True, text=True, check=True
            ).stdout
            allowed_status, allowed_lines, _ = start(runtime, notebook_image, command, env=env)
        finally:
            for rule in rules:
                subprocess.run(["iptables", "-D", *rule], capture_output=True, check=False)

    assert refused_status == 2
    assert reached_before == 0  # not one request got through
    assert "ran commit" not in " ".join(refused_lines)
    assert allowed_status == 0, allowed_lines
    assert "this is v2" in allowed_lines
    # One allowance per address and port: in DOCKER-USER per subnet, in INPUT on the bridge.
    assert [rule[0] for rule in rules].count("INPUT") == 1
    assert ALLOW_RULE_COMMENT in listed
    assert listed.index(ALLOW_RULE_COMMENT) < listed.index(HOST_RULE_COMMENT)


def test_a_bad_allowance_is_refused_by_name(settings):
    settings.LATTICE_WORKLOAD_ALLOW = ["git.internal"]
    with pytest.raises(WorkloadError, match=r"'git\.internal' is not host:port"):
        allowed_destinations()
    settings.LATTICE_WORKLOAD_ALLOW = ["127.0.0.1:3000", " localhost:22 ", ""]
    assert allowed_destinations() == [("127.0.0.1", 3000), ("127.0.0.1", 22)]


def test_the_runner_runs_on_the_process_runtime_too(tmp_path, repo, credential):
    # Local processes: the workspace is a folder ({mount:/workspace}), the host's git fetches.
    served, shas = repo
    with git_server(served, address="127.0.0.1", token="process-token") as server:
        definition = job(server.url("project.git"), "feature")
        runtime = LocalProcessRuntime(root=tmp_path / "runtime")
        spec = Spec(
            name=f"t-src-{uuid.uuid4().hex[:8]}",
            image="",
            command=runner_command(definition, run_id=15),
            env=run_env(definition, credential, server.token),
            volumes={"ws": "/workspace"},
        )
        state = runtime.start(spec)
        assert wait_for(lambda: runtime.poll(state) is not None, timeout=60)
        lines = list(runtime.logs(state))
    assert runtime.poll(state) == 0, lines
    assert "this is feature" in lines
    assert f"ran commit {shas['feature']}" in lines
    workspace = tmp_path / "runtime" / "volumes" / "ws"
    assert (workspace / ".lattice-run" / "commit").read_text().strip() == shas["feature"]

    notebook = job("", "", source="none", entrypoint="notebook", notebook_path="nb/x.ipynb")
    state = runtime.start(
        Spec(
            name=f"t-src-{uuid.uuid4().hex[:8]}",
            image="",
            command=runner_command(notebook, run_id=16),
            env={"PATH": "/usr/bin:/bin", **runner_env(notebook)},  # no papermill here
            volumes={"ws2": "/workspace"},
        )
    )
    assert wait_for(lambda: runtime.poll(state) is not None, timeout=30)
    # (This runtime's poll cannot tell the status here: 0 "unknown"; the log says it all.)
    assert any("papermill is not installed" in line for line in runtime.logs(state))
