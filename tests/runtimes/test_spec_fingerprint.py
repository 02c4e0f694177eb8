"""Spec.fingerprint: the identity of a workload by which a runtime keeps a running container
for a start sent again (apps.runtimes.docker DockerRuntime.start)."""

from __future__ import annotations

from apps.runtimes.base import Spec


def spec(**changes: object) -> Spec:
    base: dict[str, object] = {
        "name": "nb-1-s1",
        "image": "img",
        "command": ["jupyter"],
        "env": {"LATTICE_TOKEN": "one", "JUPYTER_TOKEN": "j"},
    }
    return Spec(**{**base, **changes})  # type: ignore[arg-type]


def test_volatile_env_values_are_not_part_of_the_fingerprint() -> None:
    first = spec(volatile_env=["LATTICE_TOKEN"])
    again = spec(volatile_env=["LATTICE_TOKEN"], env={"LATTICE_TOKEN": "two", "JUPYTER_TOKEN": "j"})
    assert first.fingerprint() == again.fingerprint()
    other = spec(volatile_env=["LATTICE_TOKEN"], env={"LATTICE_TOKEN": "one", "JUPYTER_TOKEN": "k"})
    assert other.fingerprint() != first.fingerprint()


def test_every_value_counts_without_volatile_env() -> None:
    assert (
        spec().fingerprint()
        != spec(env={"LATTICE_TOKEN": "two", "JUPYTER_TOKEN": "j"}).fingerprint()
    )
    # A spec with no volatile env hashes as before the field existed (running containers'
    # labels stay theirs across an upgrade).
    import hashlib
    import json
    from dataclasses import asdict

    whole = asdict(spec())
    whole.pop("volatile_env")
    old = hashlib.sha256(json.dumps(whole, sort_keys=True).encode()).hexdigest()[:16]
    assert spec().fingerprint() == old
