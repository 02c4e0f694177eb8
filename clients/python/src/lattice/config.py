"""Where the client finds its server, token and default team.

In order, the first that gives a value wins, per setting:
1. the arguments (``Client(url=..., token=..., team=...)``, the CLI's ``--url``/``--team``);
2. the environment: ``LATTICE_URL``, ``LATTICE_TOKEN``, ``LATTICE_TEAM``. Inside a notebook or
   a job the platform sets all three: a short-lived token limited to that team, which stops
   working when the session or run ends;
3. the config file ``lattice login`` writes: ``$LATTICE_CONFIG``, else
   ``$XDG_CONFIG_HOME/lattice/config.json`` (``~/.config/lattice/config.json``), mode 0600.

The file's token and team belong to the file's server: when the URL comes from an argument or
the environment and names another server, they are not used (the token is never sent to a
server it was not made for); the client then asks for a token for that server.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit


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


def origin(url: str) -> tuple[str, str, int | None]:
    """``url``'s scheme, host and port (the default port made explicit), to tell whether two
    URLs name the same server."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def same_server(one: str, other: str) -> bool:
    """Whether ``one`` and ``other`` name the same server (scheme, host and port)."""
    return origin(one) == origin(other)


def resolve(url: str | None = None, token: str | None = None, team: str | None = None) -> Settings:
    """Arguments, then the environment, then the config file (see the module's docstring);
    the file's token and team only with the file's server."""
    saved = load_file()
    chosen_url = url or os.environ.get("LATTICE_URL") or saved.url
    if chosen_url and saved.url and not same_server(chosen_url, saved.url):
        saved = Settings(url=saved.url)
    return Settings(
        url=chosen_url,
        token=token or os.environ.get("LATTICE_TOKEN") or saved.token,
        team=team or os.environ.get("LATTICE_TEAM") or saved.team,
    )
