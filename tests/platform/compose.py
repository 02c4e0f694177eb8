"""Reading docker-compose.yml as Compose does: the YAML (anchors and ``<<`` merges, which
PyYAML's safe loader resolves) and Compose's variable interpolation, which is Compose's own.

``interpolate`` follows the Compose specification's "Interpolation" section
(compose-spec.io): ``$VAR`` and ``${VAR}``; ``${VAR:-default}`` (unset or empty) and
``${VAR-default}`` (unset); ``${VAR:?message}`` and ``${VAR?message}`` (an error);
``${VAR:+alternative}`` and ``${VAR+alternative}``; defaults that hold further
interpolation (``${A:-${B}}``); ``$$`` for a literal ``$`` (the container's own shell
variable). An unset variable with no default is the empty string, as Compose makes it (with
a warning). Small enough to write here: the libraries on PyPI that do this are either
Compose's whole loader or shell expansion, which differs (``$(...)``, ``~``, quoting).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """A ``${VAR?message}`` whose variable is missing, or a malformed expression."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with Compose's ``$`` expressions replaced from ``env``."""
    value, end = _expand(text, 0, env, closing=False)
    assert end == len(text)
    return value


def _expand(text: str, i: int, env: Mapping[str, str], *, closing: bool) -> tuple[str, int]:
    """Expand from ``i`` to the end, or (``closing``) to the ``}`` that ends this braced
    expression's word: (the expansion, the index after what was read, the ``}`` excluded)."""
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if closing and char == "}":
            return "".join(out), i
        if char != "$":
            out.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            value, i = _braced(text, i + 2, env)
            out.append(value)
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    if closing:
        raise InterpolationError(f"unclosed ${{ in {text!r}")
    return "".join(out), i


def _braced(text: str, i: int, env: Mapping[str, str]) -> tuple[str, int]:
    """``${...}`` whose name starts at ``i``: (its value, the index after its ``}``)."""
    match = _NAME.match(text, i)
    if match is None:
        raise InterpolationError(f"invalid variable name at {text[i:]!r}")
    name, i = match.group(), match.end()
    if text[i : i + 1] == "}":
        return env.get(name, ""), i + 1
    if i == len(text):
        raise InterpolationError(f"unclosed ${{ in {text!r}")
    operator = next((op for op in _OPERATORS if text.startswith(op, i)), None)
    if operator is None:
        raise InterpolationError(f"invalid expression after ${{{name} in {text!r}")
    word, end = _expand(text, i + len(operator), env, closing=True)
    present = name in env
    filled = present and env[name] != ""
    given = filled if operator.startswith(":") else present
    if operator.endswith("-"):
        value = env[name] if given else word
    elif operator.endswith("+"):
        value = word if given else ""
    else:  # "?": required
        if not given:
            raise InterpolationError(word or f"{name} is required")
        value = env[name]
    return value, end + 1


def interpolate_all(node: Any, env: Mapping[str, str]) -> Any:
    """Every string in a loaded YAML tree (values, not keys) interpolated."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_all(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_all(value, env) for key, value in node.items()}
    return node


def load(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file at ``path``, interpolated from ``env`` (what Compose reads from the
    shell and ``.env``)."""
    return interpolate_all(yaml.safe_load(path.read_text()), env)
