"""Where the client finds its server, token and default team.

In order, the first that gives a value wins, per setting:
1. the arguments (``Client(url=..., token=..., team=...)``, the CLI's ``--url``/``--team``);
2. the environment: ``LATTICE_URL``, ``LATTICE_TOKEN``, ``LATTICE_TEAM``. Inside a notebook or
   a job the platform sets all three: a short-lived token limited to that team, which stops
   working when the session or run ends;
3. the config file ``lattice login`` writes: ``$LATTICE_CONFIG``, else
   ``$XDG_CONFIG_HOME/lattice/config.json`` (``~/.config/lattice/config.json``), mode 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Settings:
    url: str | None = None
    token: str | None = None
    team: str | None = None


def config_path() -> Path:
    """The config file's path (it may not exist yet)."""
    explicit = os.environ.get("LATTICE_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lattice" / "config.json"


def load_file() -> Settings:
    """What the config file holds; empty settings when it is missing or unreadable."""
    try:
        data = json.loads(config_path().read_text())
    except (OSError, ValueError):
        return Settings()
    if not isinstance(data, dict):
        return Settings()
    return Settings(**{k: str(v) for k, v in data.items() if k in ("url", "token", "team") and v})


def save_file(settings: Settings) -> Path:
    """Write ``settings`` to the config file, readable by its owner only (0600); its path.

    Written to a temporary file in the same folder (made 0600 before any byte is written)
    and renamed over the old one, so a token is never readable by others, even for a moment.
    """
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({k: v for k, v in asdict(settings).items() if v}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve(url: str | None = None, token: str | None = None, team: str | None = None) -> Settings:
    """Arguments, then the environment, then the config file (see the module's docstring)."""
    saved = load_file()
    return Settings(
        url=url or os.environ.get("LATTICE_URL") or saved.url,
        token=token or os.environ.get("LATTICE_TOKEN") or saved.token,
        team=team or os.environ.get("LATTICE_TEAM") or saved.team,
    )
