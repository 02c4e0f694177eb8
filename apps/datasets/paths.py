"""What a file's path inside a dataset may be: relative, forward slashes, valid UTF-8,
no "." or ".." parts, no control characters, and within the lengths file systems take.
It becomes a real path when a host materialises the version, so nothing may escape."""

from __future__ import annotations

import unicodedata

MAX_PATH_BYTES = 1024
MAX_PART_BYTES = 255


class PathError(ValueError):
    """A path refused; the message names it and says why."""


def clean_path(raw: object) -> str:  # noqa: C901 - one check per rule, in order
    if not isinstance(raw, str) or not raw:
        raise PathError("Every file needs a path, such as images/cat.jpg.")
    shown = ascii(raw)[1:-1][:120]
    try:
        encoded = raw.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PathError(f"{shown}: the name is not valid UTF-8.") from exc
    if "\x00" in raw:
        raise PathError(f"{shown}: a path cannot contain a NUL character.")
    if any(unicodedata.category(c) == "Cc" for c in raw):
        raise PathError(f"{shown}: a path cannot contain control characters.")
    if "\\" in raw:
        raise PathError(f"{shown}: use / between folders, not backslashes.")
    if raw.startswith("/"):
        raise PathError(f"{shown}: paths are relative to the dataset; remove the leading /.")
    if len(encoded) > MAX_PATH_BYTES:
        raise PathError(f"{shown}...: a path is at most {MAX_PATH_BYTES} bytes.")
    parts = raw.split("/")
    for part in parts:
        if part in {"", ".", ".."}:
            raise PathError(f"{shown}: empty, '.' and '..' parts are not allowed.")
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            raise PathError(f"{shown}: a file or folder name is at most {MAX_PART_BYTES} bytes.")
    return raw


def conflicts(paths: list[str]) -> list[str]:
    """Paths used both as a file and as a folder (``a`` and ``a/b``), sorted."""
    files = set(paths)
    clashing = set()
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in files:
                clashing.add(folder)
    return sorted(clashing)
