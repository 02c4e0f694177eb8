"""Stripe's form encoding, decoded into nested dicts and lists, and the parameter readers.

stripe-python sends ``metadata[team]=1``, ``line_items[0][price]=price_x`` and
``expand[0]=customer`` (``lookup_keys[]=a`` works too). :func:`decode` turns those pairs
into ``{"metadata": {"team": "1"}, "line_items": [{"price": "price_x"}], ...}``: every
value stays a string, as on the wire, and the readers below convert them per parameter.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .errors import StripeDoubleError, invalid, missing_param

if TYPE_CHECKING:
    from collections.abc import Iterable

Params = dict[str, Any]

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
# Under these keys numbers are names, not list positions.
_MAPS = frozenset({"metadata", "payload"})


def parse(encoded: str) -> Params:
    """Decode a query string or form body."""
    return decode(parse_qsl(encoded, keep_blank_values=True))


def decode(pairs: Iterable[tuple[str, str]]) -> Params:
    root: Params = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise invalid(f"Invalid parameter name: {key}", param=key)
        path = [match.group(1), *_SEGMENT.findall(match.group(2))]
        node = root
        for depth, part in enumerate(path):
            name = str(len(node)) if part == "" else part
            if depth == len(path) - 1:
                if isinstance(node.get(name), dict):
                    raise invalid(f"Invalid value for {key}: expected a hash", param=key)
                node[name] = value
                break
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise invalid(f"Invalid value for {key}: it was also given a scalar", param=key)
            node = child
    return {key: _listify(value, key) for key, value in root.items()}


def _listify(value: Any, key: str) -> Any:
    """Turn ``{"0": a, "1": b}`` into ``[a, b]``, except under metadata-like keys."""
    if not isinstance(value, dict):
        return value
    items = {name: _listify(child, name) for name, child in value.items()}
    if key not in _MAPS and items and all(name.isdigit() for name in items):
        return [items[name] for name in sorted(items, key=int)]
    return items


def text(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {name} must be a string", param=name)
    return value


def required_text(params: Params, name: str) -> str:
    value = text(params, name)
    if value is None:
        raise missing_param(name)
    return value


def integer(params: Params, name: str, *, param: str | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StripeDoubleError(
            f"Invalid integer: {value}", code="parameter_invalid_integer", param=param or name
        ) from None


def boolean(params: Params, name: str) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if value in {"true", "false"}:
        return value == "true"
    raise invalid(f"Invalid boolean: {value}", param=name)


def mapping(params: Params, name: str) -> dict[str, Any]:
    value = params.get(name)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid(f"Invalid hash: {name} must be a hash", param=name)
    return value


def string_list(params: Params, name: str) -> list[str]:
    value = params.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid(f"Invalid array: {name} must be a list of strings", param=name)
    return value


def metadata(params: Params, current: dict[str, str] | None = None) -> dict[str, str]:
    """The metadata after this request: ``current`` as the ``metadata`` parameter updates it."""
    if "metadata" not in params:
        return dict(current or {})
    return metadata_update(current or {}, params["metadata"])


def metadata_update(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe's metadata rules: keys merge, an empty value unsets a key, "" unsets all."""
    if update == "":
        return {}
    if not isinstance(update, dict) or not all(isinstance(v, str) for v in update.values()):
        raise invalid("Invalid hash: metadata must be a hash of strings", param="metadata")
    merged = dict(current)
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
