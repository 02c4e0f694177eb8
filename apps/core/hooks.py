"""Hooks: how a lower app calls into a higher one without importing it.

The layer order (docs/architecture.md) lets an app import only the apps below it. Where
a lower app must ask a higher one something (may this team start a notebook? what does
a workload of kind "nb" do with its event?), the lower app declares a hook here-style,
in its own module, and the higher app registers its implementation from its
``AppConfig.ready()``. The lower app calls the hook and never names the higher app.

    # apps/notebooks/entitlements.py (lower)
    start_check = Hook[[Team, MachineType], None]("notebook start check", default=allow)

    # apps/billing/apps.py (higher)
    def ready(self):
        start_check.register(billing_start_check)

``Hook`` holds one implementation (a later ``register`` replaces it; ``override`` swaps
it for the length of a ``with`` block, for tests). ``HookTable`` holds one per key, for
dispatch by kind.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Generic, ParamSpec, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

P = ParamSpec("P")
R = TypeVar("R")


class Hook(Generic[P, R]):
    """One implementation, registered by a higher app, called by a lower one."""

    def __init__(self, name: str, *, default: Callable[P, R]) -> None:
        self.name = name
        self._default = default
        self._impl: Callable[P, R] = default

    def register(self, impl: Callable[P, R]) -> Callable[P, R]:
        """Make ``impl`` what the hook calls (usable as a decorator); the last one wins."""
        self._impl = impl
        return impl

    def reset(self) -> None:
        self._impl = self._default

    @contextmanager
    def override(self, impl: Callable[P, R]) -> Iterator[None]:
        """Call ``impl`` instead for the length of the block (tests)."""
        previous, self._impl = self._impl, impl
        try:
            yield
        finally:
            self._impl = previous

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._impl(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Hook {self.name}: {getattr(self._impl, '__qualname__', self._impl)}>"


K = TypeVar("K")
V = TypeVar("V")


class HookTable(Generic[K, V]):
    """One registered value per key (e.g. the event handler for each workload kind)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._values: dict[K, V] = {}

    def register(self, key: K, value: V) -> V:
        self._values[key] = value
        return value

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def values(self) -> list[V]:
        return list(self._values.values())

    def __repr__(self) -> str:
        return f"<HookTable {self.name}: {sorted(map(str, self._values))}>"
