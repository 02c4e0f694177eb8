"""Compose's variable interpolation (tests/platform/compose.py), as the Compose
specification's "Interpolation" section says it works."""

from __future__ import annotations

import pytest

from tests.platform.compose import InterpolationError, interpolate, load
from tests.platform.layout import COMPOSE_FILE

ENV = {"SET": "value", "EMPTY": "", "OTHER": "other"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${SET}", "value"),
        ("$SET/x", "value/x"),
        ("a${SET}b", "avalueb"),
        ("${MISSING}", ""),
        ("${SET:-d}", "value"),
        ("${EMPTY:-d}", "d"),
        ("${MISSING:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${MISSING-d}", "d"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${MISSING+alt}", ""),
        ("${MISSING:-${OTHER}}", "other"),
        ("${MISSING:-${ALSO:-deep}}/x", "deep/x"),
        ("${MISSING:-http://minio:9000}", "http://minio:9000"),
        ("$${SET}", "${SET}"),
        ("celery@$$HOSTNAME", "celery@$HOSTNAME"),
        ("100$", "100$"),
        ("$ 1", "$ 1"),
        ("${SET:?need it}", "value"),
    ],
)
def test_interpolation(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${MISSING:?set MISSING}", "set MISSING"),
        ("${EMPTY:?set EMPTY}", "set EMPTY"),
        ("${MISSING?}", "MISSING is required"),
        ("${SET", "unclosed"),
        ("${1BAD}", "invalid variable name"),
        ("${SET!x}", "invalid expression"),
    ],
)
def test_interpolation_errors(text: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=message):
        interpolate(text, ENV)


def test_an_empty_but_set_variable_passes_the_unset_only_check() -> None:
    assert interpolate("${EMPTY?must be set}", ENV) == ""


def test_the_compose_file_loads_with_its_anchors_merged_and_interpolated() -> None:
    env = {
        "POSTGRES_USER": "u",
        "POSTGRES_PASSWORD": "p",
        "POSTGRES_DB": "d",
        "MINIO_ROOT_USER": "m",
    }

    services = load(COMPOSE_FILE, env)["services"]

    web = services["web"]["environment"]
    assert web["DATABASE_URL"] == "postgres://u:p@postgres:5432/d"
    assert web["AWS_ACCESS_KEY_ID"] == "m"  # ${AWS_ACCESS_KEY_ID:-${MINIO_ROOT_USER}}
    assert web["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["worker"]["environment"]["LATTICE_STORAGE"] == "s3"  # from x-app
    assert services["agent"]["command"][4] == "local"  # ${LATTICE_LOCAL_HOST_NAME:-local}
    assert services["worker"]["healthcheck"]["test"][1].endswith("celery@$HOSTNAME --timeout 5")
