"""The Docker backend against the real engine.

The test image is built here from Debian's static busybox (no registry is
reachable): its httpd stands in for a notebook server, so the test sees a
real container start, answer HTTP on a loopback port, log, and stop.
"""

from __future__ import annotations

import contextlib
import subprocess
import urllib.request
import uuid
from dataclasses import replace

import pytest
from docker.errors import NotFound

from apps.machines.agent import agent_remove_orphan
from apps.runtimes.base import Spec
from apps.runtimes.docker import DockerRuntime, isolate_workloads, isolation_rules
from tests.helpers import wait_for


@pytest.fixture
def runtime(docker_client):
    runtime = DockerRuntime(docker_client)
    made: list[str] = []
    yield runtime, made
    for name in made:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)


def web_spec(image, name, **kwargs):
    return Spec(
        name=name,
        image=image,
        command=["/bin/busybox", "httpd", "-f", "-v", "-p", "{port}", "-h", "/www"],
        port=8888,
        vcpus=0.5,
        memory_bytes=64 * 1024**2,
        pids_limit=64,
        labels={"team": "acme", "session": "7"},
        **kwargs,
    )


def test_start_ready_logs_stop_with_every_limit(runtime, busybox_image, docker_client):
    runtime, made = runtime
    name = f"t-{uuid.uuid4().hex[:8]}"
    made.append(name)
    volume = f"lattice-test-{name}"
    spec = web_spec(busybox_image, name, volumes={volume: "/data"})

    state = runtime.start(spec)
    assert runtime.start(spec) == state  # idempotent: one container

    assert wait_for(lambda: runtime.endpoint(state) is not None, timeout=20)
    answers: list[bytes] = []

    def answered() -> bool:
        # Docker's port proxy accepts (so the endpoint is there) a moment before httpd in the
        # container does, and resets that connection: ask again until httpd answers.
        try:
            with urllib.request.urlopen(str(runtime.endpoint(state)), timeout=5) as response:  # noqa: S310
                answers.append(response.read())
        except OSError:
            return False
        return True

    assert wait_for(answered, timeout=20)
    assert answers[-1] == b"lattice test server\n"
    assert wait_for(lambda: any("response:200" in line for line in runtime.logs(state)), timeout=20)
    assert runtime.progress(state)[-1].phase == "ready"

    attrs = docker_client.api.inspect_container(state["container_id"])
    host = attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 * 1024**2
    assert host["PidsLimit"] == 64
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges=true" in host["SecurityOpt"]
    assert host["Privileged"] is False
    assert host["PortBindings"]["8888/tcp"][0]["HostIp"] == "127.0.0.1"
    assert attrs["Config"]["User"] == "1000:1000"
    assert attrs["Config"]["Labels"]["lattice.managed"] == "true"
    assert attrs["Config"]["Labels"]["lattice.team"] == "acme"
    assert "NVIDIA_VISIBLE_DEVICES=void" in attrs["Config"]["Env"]
    assert [m["Name"] for m in attrs["Mounts"]] == [volume]
    assert name in {m.name for m in runtime.list_managed()}
    # And the kernel agrees: no new privileges, no capabilities, not root.
    status = docker_client.containers.get(state["container_id"]).exec_run(
        ["/bin/busybox", "cat", "/proc/self/status"],
    )
    fields = dict(
        line.split(":\t", 1) for line in status.output.decode().splitlines() if ":\t" in line
    )
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapEff"], 16) == 0
    assert fields["Uid"].split()[0] == "1000"

    runtime.stop(state, timeout=5)

    assert runtime.poll(state) == 0
    assert runtime.endpoint(state) is None
    # The volume outlives the container.
    assert docker_client.volumes.get(volume).name == volume
    docker_client.volumes.get(volume).remove()


def test_the_gpu_request_names_exactly_the_allocated_uuids(runtime, busybox_image, docker_client):
    runtime, made = runtime
    name = f"t-{uuid.uuid4().hex[:8]}"
    made.append(name)
    uuids = ["GPU-760f8a75-6c8e-6441-bcc9-a8cf94fe74a1", "GPU-11111111-2222-3333-4444-555555555555"]
    spec = web_spec(busybox_image, name, gpu_uuids=uuids, env={"NVIDIA_VISIBLE_DEVICES": "all"})

    # No NVIDIA runtime here: create without starting, and read what was asked for.
    container = runtime.create(spec)

    attrs = docker_client.api.inspect_container(container.id)
    requests = attrs["HostConfig"]["DeviceRequests"]
    assert len(requests) == 1
    assert requests[0]["DeviceIDs"] == uuids
    assert requests[0]["Capabilities"] == [["gpu"]]
    assert f"NVIDIA_VISIBLE_DEVICES={','.join(uuids)}" in attrs["Config"]["Env"]
    assert "NVIDIA_VISIBLE_DEVICES=all" not in attrs["Config"]["Env"]


def test_a_missing_image_that_cannot_be_pulled_says_so(runtime):
    from apps.runtimes.base import WorkloadError

    runtime, made = runtime
    name = f"t-{uuid.uuid4().hex[:8]}"
    made.append(name)
    spec = web_spec("lattice-test/not-built-anywhere:1", name)

    with pytest.raises(WorkloadError, match="not on this host and could not be downloaded"):
        runtime.start(spec)


def test_a_container_that_exits_reports_its_status(runtime, busybox_image):
    runtime, made = runtime
    name = f"t-{uuid.uuid4().hex[:8]}"
    made.append(name)
    spec = Spec(
        name=name, image=busybox_image, command=["/bin/busybox", "sh", "-c", "echo bye; exit 3"]
    )

    state = runtime.start(spec)

    assert wait_for(lambda: runtime.poll(state) is not None, timeout=20)
    assert runtime.poll(state) == 3
    assert list(runtime.logs(state)) == ["bye"]
    assert list(runtime.logs(state, tail=1)) == ["bye"]
    assert list(runtime.logs(state, tail=0)) == []
    assert runtime.progress(state)[-1].phase == "failed"


def test_the_backfill_follows_on_from_its_last_line_missing_none(runtime, busybox_image):
    # Docker follows by time: from the last recent line's second, skipping what is not
    # newer than that line (the old lines share its second).
    runtime, made = runtime
    name = f"t-{uuid.uuid4().hex[:8]}"
    made.append(name)
    script = (
        "for n in 0 1 2 3 4; do echo old $n; done; "
        "while [ ! -e /tmp/go ]; do sleep 0.1; done; echo printed in between; sleep 1; echo after"
    )
    state = runtime.start(
        Spec(name=name, image=busybox_image, command=["/bin/busybox", "sh", "-c", script])
    )
    assert wait_for(lambda: len(list(runtime.logs(state))) == 5, timeout=20)

    # A tail longer than the log (but not twice as long) gives all of it.
    assert runtime.logs_backfill(state, tail=8)[0] == [f"old {n}" for n in range(5)]
    recent, rest = runtime.logs_backfill(state, tail=2)
    go = ["/bin/busybox", "touch", "/tmp/go"]  # noqa: S108 - inside the container
    runtime._container(state).exec_run(go)
    assert wait_for(lambda: "printed in between" in list(runtime.logs(state)), timeout=10)

    assert recent == ["old 3", "old 4"]
    assert list(rest) == ["printed in between", "after"]


def test_workloads_cannot_reach_each_other_or_private_addresses(
    runtime, busybox_image, docker_client
):
    runtime, made = runtime
    assert isolate_workloads(runtime)
    network = docker_client.networks.get("lattice-workloads")
    assert network.attrs["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    subnet = network.attrs["IPAM"]["Config"][0]["Subnet"]
    for destination in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"):
        rule = ["DOCKER-USER", "-s", subnet, "-d", destination, "-j", "REJECT"]
        assert (
            subprocess.run(["iptables", "-C", *rule], capture_output=True, check=False).returncode
            == 0
        )

    names = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    made.extend(names)
    server, client = (runtime.start(web_spec(busybox_image, name)) for name in names)
    server_ip = docker_client.api.inspect_container(server["container_id"])["NetworkSettings"][
        "Networks"
    ]["lattice-workloads"]["IPAddress"]

    assert wait_for(lambda: runtime.endpoint(server) is not None, timeout=20)  # the server is up
    # From one workload to the other's server: no way through (both are this test's own).
    fetch = [
        "/bin/busybox",
        "sh",
        "-c",
        f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 {server_ip} 8888",
    ]
    probe = docker_client.containers.get(client["container_id"]).exec_run(fetch)
    assert b"lattice test server" not in probe.output
    # The server itself reaches its own address: the refusal is the network's doing.
    own = docker_client.containers.get(server["container_id"]).exec_run(fetch)
    assert b"lattice test server" in own.output


@contextlib.contextmanager
def host_service():
    """A TCP server on every address of this machine (the host): its port."""
    import socket
    import threading

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))  # noqa: S104 - the point: reachable on every address
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.sendall(b"host service\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()


def host_addresses(docker_client, network):
    """The host's own addresses a container might aim at: the workloads' gateway, the
    default bridge's gateway, and the address the host's default route leaves from."""
    import socket

    addresses = {c["Gateway"] for c in network.attrs["IPAM"]["Config"] if "Gateway" in c}
    default_bridge = docker_client.networks.get("bridge").attrs["IPAM"]["Config"]
    addresses |= {c["Gateway"] for c in default_bridge if "Gateway" in c}
    # No default route: the gateways will do.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe, contextlib.suppress(OSError):
        probe.connect(("192.0.2.123", 9))  # UDP: sends nothing, picks the source address
        addresses.add(probe.getsockname()[0])
    return sorted(addresses)


def reaches(container, address, port):
    command = f"/bin/busybox nc -w 2 {address} {port} </dev/null"
    return b"host service" in container.exec_run(["/bin/busybox", "sh", "-c", command]).output


def test_workloads_cannot_open_connections_to_the_host(runtime, busybox_image, docker_client):
    runtime, made = runtime
    assert isolate_workloads(runtime)
    network = docker_client.networks.get("lattice-workloads")
    host_rule = next(rule for rule in isolation_rules(runtime) if rule[0] == "INPUT")
    # The rule names this network's bridge, and only it.
    assert host_rule[1:3] == ["-i", f"br-{network.id[:12]}"]
    name = f"t-{uuid.uuid4().hex[:8]}"
    made.append(name)
    workload = docker_client.containers.get(
        runtime.start(web_spec(busybox_image, name))["container_id"]
    )
    neighbour = docker_client.containers.run(  # another network's container: Docker's default
        busybox_image,
        ["/bin/busybox", "sleep", "60"],
        detach=True,
        network="bridge",
        labels={"lattice.test": "host-isolation"},
    )

    try:
        with host_service() as port:
            addresses = host_addresses(docker_client, network)
            # Without the INPUT rule (as on main before this rule existed) every address answers.
            subprocess.run(["iptables", "-D", *host_rule], check=True)
            try:
                reachable_before = {a: reaches(workload, a, port) for a in addresses}
            finally:
                assert isolate_workloads(runtime)
            assert isolate_workloads(runtime)  # twice: still one copy
            reachable_after = {a: reaches(workload, a, port) for a in addresses}
            neighbour_reaches = {a: reaches(neighbour, a, port) for a in addresses}
        resolves = workload.exec_run(
            ["/bin/busybox", "nslookup", runtime.container_name(name), "127.0.0.11"]
        )
    finally:
        neighbour.remove(force=True)

    assert len(addresses) >= 2
    assert reachable_before == dict.fromkeys(addresses, True)
    assert reachable_after == dict.fromkeys(addresses, False)
    # Other networks are not Lattice's to filter; names still resolve on ours.
    assert neighbour_reaches == dict.fromkeys(addresses, True)
    assert resolves.exit_code == 0, resolves.output
    listed = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True, check=True)
    assert listed.stdout.count(f"-i br-{network.id[:12]} ") == 1


def test_the_local_image_tag_matches_the_build_script(notebook_image):
    from apps.runtimes.images import local_notebook_image

    assert notebook_image == local_notebook_image()


def test_a_restarted_agent_finds_its_workloads_by_label_and_stops_them(
    busybox_image, docker_client
):
    name = f"t-{uuid.uuid4().hex[:8]}"
    DockerRuntime(docker_client).start(web_spec(busybox_image, name))

    # A new runtime, as after an agent restart: it knows nothing but the labels.
    fresh = DockerRuntime(docker_client)
    found = {m.name: m for m in fresh.list_managed()}

    assert found[name].running
    assert found[name].labels["lattice.team"] == "acme"
    fresh.stop(found[name].state, timeout=5)
    assert name not in {m.name for m in fresh.list_managed()}


def test_a_changed_spec_replaces_the_running_container(runtime, busybox_image, docker_client):
    runtime, made = runtime
    name = f"t-{uuid.uuid4().hex[:8]}"
    made.append(name)
    first = runtime.start(web_spec(busybox_image, name))

    smaller = Spec(
        name=name,
        image=busybox_image,
        command=["/bin/busybox", "httpd", "-f", "-p", "{port}", "-h", "/www"],
        memory_bytes=32 * 1024**2,
    )

    second = runtime.start(smaller)

    assert second["container_id"] != first["container_id"]
    attrs = docker_client.api.inspect_container(second["container_id"])
    assert attrs["HostConfig"]["Memory"] == 32 * 1024**2


def test_volumes_carry_the_installation_of_their_workload(runtime, busybox_image, docker_client):
    runtime, made = runtime
    name = f"t-{uuid.uuid4().hex[:8]}"
    made.append(name)
    volume = f"lattice-test-{name}"
    spec = web_spec(busybox_image, name, volumes={volume: "/data"})
    spec.labels["installation"] = "test-labelled"
    state: dict = {"name": name}
    try:
        state = runtime.start(spec)
        labels = docker_client.volumes.get(volume).attrs["Labels"]
        assert labels["lattice.installation"] == "test-labelled"
    finally:
        # By its id: by name, a container labelled for another installation is not ours.
        runtime.stop(state)
        runtime.remove_volume(volume)


def test_test_clean_up_leaves_another_installations_workloads(busybox_image, docker_client):
    """A dev server on the same engine keeps its notebooks while the suite cleans up: the
    clean-up removes only what carries this test run's installation label."""
    from django.conf import settings

    from tests.browser.conftest import _remove_notebook_containers, _remove_volumes
    from tests.notebook_fixtures import remove_installation_workloads

    notebook_id = 424242
    theirs = {
        "lattice.kind": "notebook",
        "lattice.installation": f"dev-{uuid.uuid4().hex[:8]}",
        "lattice.notebook": str(notebook_id),
    }
    ours = {**theirs, "lattice.installation": settings.LATTICE_INSTALLATION}
    volume_name = f"lattice-nb-test-{uuid.uuid4().hex[:12]}"
    their_volume = docker_client.volumes.create(volume_name, labels=theirs)
    our_volume = docker_client.volumes.create(f"{volume_name}-ours", labels=ours)
    command = ["/bin/busybox", "sleep", "60"]
    their_container = docker_client.containers.create(busybox_image, command, labels=theirs)
    our_container = docker_client.containers.create(busybox_image, command, labels=ours)
    try:
        _remove_notebook_containers(docker_client, [notebook_id])
        _remove_volumes(docker_client, [volume_name])
        remove_installation_workloads(docker_client)

        their_container.reload()  # raises NotFound if it was removed
        their_volume.reload()
        with pytest.raises(NotFound):
            our_container.reload()
        with pytest.raises(NotFound):
            our_volume.reload()
    finally:
        with contextlib.suppress(NotFound):
            their_container.remove(force=True)
        with contextlib.suppress(NotFound):
            our_container.remove(force=True)
        with contextlib.suppress(NotFound):
            their_volume.remove(force=True)
        with contextlib.suppress(NotFound):
            our_volume.remove(force=True)


def test_a_same_named_container_of_another_installation_is_never_touched(
    runtime, busybox_image, docker_client, settings
):
    """Two Lattices on one engine (a developer's `make dev` beside a test run) may both run a
    workload "dp-1": this one's stop, poll and orphan removal by name leave the other's be."""
    runtime, made = runtime
    name = f"t-{uuid.uuid4().hex[:8]}"
    made.append(name)
    spec = replace(web_spec(busybox_image, name), labels={"installation": "someone-else"})
    theirs = runtime.start(spec)

    runtime.stop({"name": name})  # by name: no container id
    assert runtime.poll({"name": name}) == 0  # not found, as far as this Lattice goes
    settings.LATTICE_RUNTIME = "docker"  # the agent's task on this engine
    agent_remove_orphan("local", name)

    container = docker_client.containers.get(theirs["container_id"])
    assert container.status == "running"
    assert container.labels["lattice.installation"] == "someone-else"
    assert settings.LATTICE_INSTALLATION != "someone-else"


def test_a_stop_racing_another_waits_for_the_container_to_go(runtime, busybox_image):
    """Two stops of one workload at once (a job's attempt ending, then its run ending, each
    an agent.stop on the host's queue): the one that finds the removal already in progress
    returns only once the container is gone, so the volumes it then removes are free
    (Docker refused them, 409 "volume is in use", when it returned at once)."""
    import threading
    from functools import partial

    runtime, made = runtime
    for _ in range(10):
        name = f"t-{uuid.uuid4().hex[:8]}"
        made.append(name)
        volume = f"lattice-test-{name}"
        state = runtime.start(
            Spec(
                name=name,
                image=busybox_image,
                command=["/bin/busybox", "sh", "-c", "echo done"],
                volumes={volume: "/data"},
            )
        )
        exited = partial(runtime.poll, state)
        assert wait_for(lambda: exited() is not None, timeout=20)  # noqa: B023 - waited here
        both = threading.Barrier(2)
        errors: list[BaseException] = []

        def stop(volumes: list[str], state=state, both=both, errors=errors) -> None:
            both.wait()
            try:
                runtime.stop(state, timeout=1)
                for each in volumes:
                    runtime.remove_volume(each)
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=stop, args=([],)),
            threading.Thread(target=stop, args=([volume],)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert runtime.poll(state) == 0  # gone (poll's answer for a missing container)
        assert not runtime.volume_exists(volume)
