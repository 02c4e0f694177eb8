"""What a file's path inside a dataset may be: relative, forward slashes, valid UTF-8,
no "." or ".." parts, no control or invisible characters, no name Windows reserves, and
within the lengths file systems take. It becomes a real path when a host materialises the
version or someone unpacks its archive, on any system, so nothing may escape the folder
and no two paths may land on one file.

Paths are kept in NFC, the form most systems write; two paths are the same name when
they match ignoring case and Unicode form (``path_key``), as on macOS and Windows.
"""

from __future__ import annotations

import re
import unicodedata

MAX_PATH_BYTES = 1024
MAX_PART_BYTES = 255

# Control (Cc), format (Cf: the bidi controls such as U+202E, zero-width characters, the
# byte-order mark), line and paragraph separators, surrogates and private use: characters
# that are invisible, reorder what is shown, or mean nothing on another machine.
_HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co"}
# Windows opens a device for these names, with any extension, in any case (and ignores
# spaces before the extension); the superscript digits count as digits there.
_RESERVED = re.compile(r"(?:CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|(?:COM|LPT)[0-9¹²³]) *", re.ASCII)


class PathError(ValueError):
    """A path refused; the message names it and says why."""


def shown(raw: str) -> str:
    """``raw`` as a message shows it: escapes for anything that is not plain ASCII text,
    so a bidi control cannot reorder the message around it; at most 120 characters."""
    return ascii(raw)[1:-1][:120]


def hidden_character(text: str) -> str | None:
    """The first control or invisible character in ``text``, as U+XXXX, or None."""
    for char in text:
        if unicodedata.category(char) in _HIDDEN:
            return f"U+{ord(char):04X}"
    return None


def clean_path(raw: object) -> str:
    """``raw`` in NFC, or PathError saying what is wrong with it."""
    if not isinstance(raw, str) or not raw:
        raise PathError("Every file needs a path, such as images/cat.jpg.")
    name = shown(raw)
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PathError(f"{name}: the name is not valid UTF-8.") from exc
    if "\x00" in raw:
        raise PathError(f"{name}: a path cannot contain a NUL character.")
    if any(unicodedata.category(c) == "Cc" for c in raw):
        raise PathError(f"{name}: a path cannot contain control characters.")
    hidden = hidden_character(raw)
    if hidden:
        raise PathError(
            f"{name}: a path cannot contain invisible or text-direction characters "
            f"({hidden}); rename the file."
        )
    if "\\" in raw:
        raise PathError(f"{name}: use / between folders, not backslashes.")
    if raw.startswith("/"):
        raise PathError(f"{name}: paths are relative to the dataset; remove the leading /.")
    path = unicodedata.normalize("NFC", raw)
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise PathError(f"{name}...: a path is at most {MAX_PATH_BYTES} bytes.")
    for part in path.split("/"):
        _check_part(name, part)
    return path


def _check_part(name: str, part: str) -> None:
    """PathError unless ``part``, one file or folder name of the path shown as ``name``,
    is one every system takes as itself."""
    if part in {"", ".", ".."}:
        raise PathError(f"{name}: empty, '.' and '..' parts are not allowed.")
    if len(part.encode("utf-8")) > MAX_PART_BYTES:
        raise PathError(f"{name}: a file or folder name is at most {MAX_PART_BYTES} bytes.")
    if _RESERVED.fullmatch(part.split(".", 1)[0].upper()):
        raise PathError(
            f"{name}: {shown(part)} is a device name on Windows (CON, PRN, AUX, NUL, "
            "COM1-9, LPT1-9, with any extension); rename it."
        )
    if part.endswith((" ", ".")):
        raise PathError(
            f"{name}: a file or folder name cannot end with a space or a dot (Windows "
            "drops them, so two names become one)."
        )


def posix_path(raw: object) -> str:
    """``raw`` as a notebook snapshot's path (a system upload, restored only onto a Linux
    host's volume): any names a POSIX file system takes, kept exactly as sent (no Unicode
    normalisation, backslashes, control characters, Windows' reserved names, trailing dots
    all kept): relative, no "", "." or ".." part, no NUL, valid UTF-8 (the host sends the
    bytes that are not UTF-8 escaped: apps.runtimes.volumefiles.wire_path), at most
    MAX_PATH_BYTES bytes (the column that keeps it; the host skips a longer one). Else
    PathError."""
    if not isinstance(raw, str) or not raw:
        raise PathError("Every file needs a path, such as images/cat.jpg.")
    name = shown(raw)
    try:
        size = len(raw.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise PathError(f"{name}: the name is not valid UTF-8.") from exc
    if "\x00" in raw:
        raise PathError(f"{name}: a path cannot contain a NUL character.")
    if raw.startswith("/"):
        raise PathError(f"{name}: paths are relative to the volume; remove the leading /.")
    if size > MAX_PATH_BYTES:
        raise PathError(f"{name}...: a path is at most {MAX_PATH_BYTES} bytes.")
    if any(part in {"", ".", ".."} for part in raw.split("/")):
        raise PathError(f"{name}: empty, '.' and '..' parts are not allowed.")
    return raw


def path_key(path: str) -> str:
    """What ``path`` is compared by: two paths with the same key are one file on a system
    that ignores case or Unicode form (canonical caseless matching, Unicode 3.13)."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", path).casefold())


def stays_inside(path: str) -> bool:
    """Whether ``path`` names a file inside its folder wherever it is unpacked: relative,
    no empty, "." or ".." parts, no backslash or NUL. (clean_path has refused anything else
    since paths were first checked; an archive checks again before writing a name.)"""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(part not in {"", ".", ".."} for part in path.split("/"))


def duplicates(paths: list[str]) -> tuple[str, str] | None:
    """The first two of ``paths`` that are one file ignoring case and Unicode form."""
    seen: dict[str, int] = {}
    for index, path in enumerate(paths):
        first = seen.setdefault(path_key(path), index)
        if first != index:
            return paths[first], path
    return None


def conflicts(paths: list[str]) -> list[str]:
    """Paths used both as a file and as a folder (``a`` and ``a/b``, or ``A`` and ``a/b``:
    case and Unicode form ignored), sorted."""
    files = {path_key(path): path for path in paths}
    clashing = set()
    for path in paths:
        parts = path_key(path).split("/")
        for i in range(1, len(parts)):
            folder = files.get("/".join(parts[:i]))
            if folder is not None:
                clashing.add(folder)
    return sorted(clashing)
