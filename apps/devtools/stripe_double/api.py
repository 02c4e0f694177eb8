"""Routing, pagination and ``expand`` for the v1 endpoints the double serves.

Endpoint modules register handlers with :func:`route`. A handler gets the state (whose
lock the caller holds), the decoded parameters and the ids from the URL, and returns
the object to send, or raises :class:`StripeDoubleError`. :func:`dispatch` answers with
a deep copy, expanded as the request's ``expand`` asks. :func:`resource` registers the
retrieve (and the plainly filtered list) that every kind of object has.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from . import objects
from .errors import StripeDoubleError, invalid, no_such
from .forms import Params, integer, string_list, text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .objects import JSON
    from .state import StripeState

    Handler = Callable[..., JSON]
    Store = Callable[[StripeState], dict[str, JSON]]
    Reader = Callable[[Params, str], Any]

MAX_LIMIT = 100
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Register a handler; ``{id}`` in the pattern is one path segment, passed in order."""
    compiled = re.compile(pattern.replace("{id}", "([^/]+)"))

    def register(handler: Handler) -> Handler:
        _ROUTES.append((method, compiled, handler))
        return handler

    return register


def dispatch(state: StripeState, method: str, path: str, params: Params) -> JSON:
    for allowed, pattern, handler in _ROUTES:
        match = pattern.fullmatch(path)
        if match is not None and allowed == method:
            body = copy.deepcopy(handler(state, params, *match.groups()))
            for expansion in string_list(params, "expand"):
                _expand(state, body, expansion.split("."), expansion)
            return body
    raise StripeDoubleError(
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
        status=404,
    )


def resource(
    path: str, object_name: str, store: Store, *, filters: dict[str, Reader] | None = None
) -> None:
    """Serve ``GET {path}/{id}`` from ``store``; with ``filters``, also ``GET {path}``.

    The list is the store newest first, keeping the objects whose field equals each
    filter's parameter (read by its reader, e.g. ``text``) where the request gives one.
    """

    def retrieve(state: StripeState, params: Params, object_id: str) -> JSON:
        return state.find(store(state), object_name, object_id)

    route("GET", path + "/{id}")(retrieve)
    if filters is None:
        return

    def listing(state: StripeState, params: Params) -> JSON:
        wanted = {name: read(params, name) for name, read in filters.items()}
        return page(matching(newest_first(store(state)), **wanted), params, path)

    route("GET", path)(listing)


def matching(items: Iterable[JSON], **wanted: Any) -> list[JSON]:
    """The items whose fields equal every wanted value that is not None."""
    return [
        item
        for item in items
        if all(value is None or item[name] == value for name, value in wanted.items())
    ]


def page(items: list[JSON], params: Params, url: str) -> JSON:
    """A list object over ``items`` (newest first), honouring limit and the cursors."""
    limit = integer(params, "limit") or 10
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid("Invalid limit: must be between 1 and 100", param="limit")
    ids = [item.get("id") for item in items]
    after, before = text(params, "starting_after"), text(params, "ending_before")
    if after is not None:
        if after not in ids:
            raise no_such("object", after, param="starting_after")
        items = items[ids.index(after) + 1 :]
    if before is not None:
        if before not in ids:
            raise no_such("object", before, param="ending_before")
        items = items[: ids.index(before)]
        return objects.list_object(items[-limit:], url, has_more=len(items) > limit)
    return objects.list_object(items[:limit], url, has_more=len(items) > limit)


def newest_first(store: dict[str, JSON]) -> list[JSON]:
    return list(reversed(store.values()))


def _expand(state: StripeState, node: Any, parts: list[str], path: str) -> None:
    if not isinstance(node, dict):
        return
    name, rest = parts[0], parts[1:]
    if name == "data" and node.get("object") == "list":
        for child in node["data"]:
            if rest:
                _expand(state, child, rest, path)
        return
    if name == "line_items" and node.get("object") == "checkout.session":
        # Stripe includes a session's line items only when asked to.
        items = copy.deepcopy(state.checkout_details[node["id"]].line_items)
        node[name] = objects.list_object(items, f"/v1/checkout/sessions/{node['id']}/line_items")
    if name not in node:
        raise invalid(f"This property cannot be expanded ({path}).", param="expand")
    if isinstance(node[name], str):
        found = _by_id(state, node[name])
        if found is None:
            raise invalid(f"This property cannot be expanded ({path}).", param="expand")
        node[name] = copy.deepcopy(found)
    if rest:
        _expand(state, node[name], rest, path)


def _by_id(state: StripeState, object_id: str) -> JSON | None:
    stores = (
        state.customers,
        state.subscriptions,
        state.invoices,
        state.prices,
        state.products,
        state.checkout_sessions,
        state.portal_sessions,
        state.meters,
    )
    return next((store[object_id] for store in stores if object_id in store), None)
