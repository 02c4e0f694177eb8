"""What the apps above models plug into it (apps.core.hooks), from their ``AppConfig.ready()``.

Models know nothing of what made a version or what serves it; those apps tell it here:

- ``source_link(team, version)``: the place a version came from (the notebook, for a
  version saved from one of its sessions), as (text, URL); None when there is none to
  link (then its ``source_label`` is shown as it is). By default None.
- ``version_servers(team, version)``: the deployments serving a version, each as
  (text, URL), for its page and API. By default none.
- ``version_actions(team, role, version)``: what a member with ``role`` may do with a
  version elsewhere ("Deploy"), each as (text, URL), buttons on its page. By default none.
- ``alias_moved(team, actor, alias)``: an alias now names another version (or a new alias
  was made), told once the change commits: deployments following it roll out. By default
  nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.models.models import ModelAlias, ModelVersion
    from apps.teams.models import Team


def _no_link(team: Team, version: ModelVersion) -> tuple[str, str] | None:
    return None


def _no_servers(team: Team, version: ModelVersion) -> list[tuple[str, str]]:
    return []


def _no_actions(team: Team, role: str, version: ModelVersion) -> list[tuple[str, str]]:
    return []


source_link = Hook("model version source link", default=_no_link)
version_servers = Hook("model version servers", default=_no_servers)
version_actions = Hook("model version actions", default=_no_actions)


def _nothing_follows(team: Team, actor: User | None, alias: ModelAlias) -> None:
    return None


alias_moved = Hook("model alias moved", default=_nothing_follows)
