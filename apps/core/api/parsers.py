"""A JSON parser for the few API views whose body is a manifest (up to 100,000 files).

Django refuses a body past DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB) when it is read through
``request.body``, and DRF's own JSONParser reads it that way. A manifest of as many files
as a version may hold (datasets' MAX_FILES, 100,000) is about 10 MB of JSON, so the views
that take one use this parser instead: it reads the stream itself, up to
MANIFEST_MAX_BYTES. The global limit stays as it is for every other view.
"""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING, Any

from rest_framework import exceptions, status
from rest_framework.parsers import BaseParser

if TYPE_CHECKING:
    from collections.abc import Mapping

# 100,000 entries of {path (up to 1,024 characters), size, sha256} are ~20 MB at most.
MANIFEST_MAX_BYTES = 32 * 1024 * 1024
# A manifest lists at most datasets' MAX_FILES (100,000) files, one JSON object each, beside
# a few more (the body, metadata, lineage). Parsing stops at twice that many objects, which
# no manifest the services would take can reach: 32 MiB of "{}" would otherwise make
# millions of dicts (hundreds of MiB) before any check could count them. Up to there, the
# services' own checks say what is wrong, naming the field.
MANIFEST_FILES = 100_000
MANIFEST_MAX_OBJECTS = 2 * MANIFEST_FILES


class ManifestTooLargeError(ValueError):
    """More JSON objects than a manifest can hold."""


def manifest_loads(raw: bytes) -> Any:
    """``raw`` parsed as JSON, stopping (ManifestTooLargeError) at the first object past
    MANIFEST_MAX_OBJECTS; a ValueError for JSON that is not (nested too deep included)."""
    count = 0

    def counted(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal count
        count += 1
        if count > MANIFEST_MAX_OBJECTS:
            raise ManifestTooLargeError(f"A manifest lists at most {MANIFEST_FILES:,} files.")
        return dict(pairs)

    try:
        return json.loads(raw, object_pairs_hook=counted)
    except RecursionError as exc:
        raise ValueError("The JSON is nested too deep.") from exc


class BodyTooLargeError(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "The body is larger than this endpoint accepts."


class ManifestJSONParser(BaseParser):
    """JSON up to MANIFEST_MAX_BYTES (not a subclass of DRF's JSONParser on purpose: DRF
    reads a JSONParser's body through ``request.body``, with Django's global limit)."""

    media_type = "application/json"
    max_bytes = MANIFEST_MAX_BYTES

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = stream.read(self.max_bytes + 1)
        if len(raw) > self.max_bytes:
            raise BodyTooLargeError(
                f"Send at most {self.max_bytes // (1024 * 1024)} MiB of JSON here."
            )
        try:
            return manifest_loads(raw)
        except ManifestTooLargeError as exc:
            raise exceptions.ParseError(str(exc)) from exc
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
