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
            return json.loads(raw)
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
