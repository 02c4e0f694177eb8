"""Review of the warm pool (issue 19, Docker side), against the real engine and notebook
image. The test was xfail(strict) while the defect was there; fixed, it is a regular test
(docs/reviews/issue19-warm-pool.md)."""

from __future__ import annotations

import fcntl
import os
import secrets
import uuid

from tests.runtimes.test_pool import pool, pool_spec  # noqa: F401 - the fixture, reused


def test_r6_pool_remove_waits_for_or_refuses_a_claim_in_progress(
    pool,  # noqa: F811
    notebook_image,
    docker_client,
    tmp_path,
):
    runtime, made = pool
    name = f"pool-t{uuid.uuid4().hex[:8]}"
    made["containers"].append(name)
    state = runtime.pool_fill(pool_spec(notebook_image, name, secrets.token_hex(16)))
    slot = tmp_path / "pool" / name
    # A claim of this slot is in progress: pool_claim holds this lock from before it binds
    # the session's volumes until its record is written (apps/runtimes/docker.py).
    lock = os.open(slot / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The control plane's removal of the same slot arrives meanwhile (R2: the reconciler
        # removes a slot a start has just taken; or agent_remove_orphan).
        runtime.pool_remove(state)
        # The claim's container and slot must survive (or the removal must wait for it).
        assert docker_client.containers.get(state["container_id"]).status == "running"
        assert slot.is_dir()
    finally:
        os.close(lock)
