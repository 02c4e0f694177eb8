# Lattice's Jupyter Server settings, in every notebook image (/etc/jupyter).
#
# JupyterLab's file browser shows only its root, /notebooks (the notebook's own
# volume). The team's datasets (/datasets, read-only) and storage (/storage,
# shared by the team's notebooks) lie outside it, so at start this puts a link
# to each (and to the note that explains them) in the root, once: a file or
# folder of the person's own of that name is left alone. Jupyter Server
# follows links that point outside its root.
import contextlib
import os
from pathlib import Path

ROOT = Path("/notebooks")
LINKS = {
    "datasets": Path("/datasets"),
    "storage": Path("/storage"),
    "README-lattice.md": Path("/opt/lattice/README.md"),
}


def make_links():
    if ROOT.is_dir() and os.access(ROOT, os.W_OK):
        for name, target in LINKS.items():
            link = ROOT / name
            if target.exists() and not link.is_symlink() and not link.exists():
                # A read-only or full volume: JupyterLab starts anyway.
                with contextlib.suppress(OSError):
                    link.symlink_to(target)


# A warm container (below) makes them when it is claimed: its /notebooks is empty till then.
if os.environ.get("LATTICE_POOL") != "1":
    make_links()


# --- The warm pool (issue 19) -------------------------------------------------------------
#
# A container started with LATTICE_POOL=1 is a warm one: its Jupyter runs with the pool's
# token and base URL "/", before any session is known, with /notebooks, /storage and
# /datasets empty. The agent claims it by mounting the session's volumes and datasets
# under those paths (host-side bind mounts that propagate into the container) and writing
# /run/lattice/claim.json: {"id", "token", "base_url", "env"}. This extension reads it
# (every 20 ms) and makes the server the session's: everything started from then on
# (kernels, terminals) inherits ``env``; the server answers the session's token only (the
# pool's, and any cookie issued under it, no longer work); it serves under the session's
# base URL; the links above are made. It writes /run/lattice/ack.json once done (or with the
# error), and claims once: a claimed container is never returned to the pool.
POOL_DIR = Path(os.environ.get("LATTICE_POOL_DIR", "/run/lattice"))


def _rebase_routes(app, old, new):
    """Every route of the tornado application ``app`` under URL prefix ``old`` moved under
    ``new`` (Jupyter's handlers are registered with the base URL in their patterns)."""
    import re

    from tornado.routing import PathMatches, RuleRouter

    seen = set()

    def walk(router):
        if id(router) in seen:
            return
        seen.add(id(router))
        for rule in router.rules:
            if isinstance(rule.target, RuleRouter):
                walk(rule.target)
            matcher = rule.matcher
            if isinstance(matcher, PathMatches) and id(matcher) not in seen:
                pattern = matcher.regex.pattern
                if pattern.startswith(old):
                    rule.matcher = PathMatches(re.escape(new) + pattern[len(old) :])
                    seen.add(id(rule.matcher))
            url = rule.target_kwargs.get("url") if rule.target_kwargs else None
            if isinstance(url, str) and url.startswith(old):
                rule.target_kwargs["url"] = new + url[len(old) :]

    walk(app.default_router)
    walk(app.wildcard_router)


def _claim(serverapp, claim):
    import secrets

    token = str(claim["token"])
    base_url = "/" + str(claim.get("base_url") or "/").strip("/") + "/"
    base_url = base_url.replace("//", "/")
    env = {str(k): str(v) for k, v in (claim.get("env") or {}).items()}
    if not token:
        raise ValueError("The claim has no token.")
    # First the token: from here on the pool's token is refused, and every login cookie
    # issued so far is void (a new cookie secret).
    serverapp.identity_provider.token = token
    app = serverapp.web_app
    app.settings["cookie_secret"] = secrets.token_bytes(32)
    os.environ.pop("LATTICE_POOL", None)
    os.environ.update(env)
    old = app.settings.get("base_url") or "/"
    if base_url != old:
        _rebase_routes(app, old, base_url)
        app.settings["base_url"] = base_url
        app.settings["static_url_prefix"] = base_url + "static/"
        default = app.settings.get("default_url") or old
        if default.startswith(old):
            app.settings["default_url"] = base_url + default[len(old) :]
        serverapp.base_url = base_url
        # Extension apps (JupyterLab) keep their own static prefix, and the page config
        # they build from it.
        for apps in serverapp.extension_manager.extension_apps.values():
            for ext in apps:
                prefix = getattr(ext, "static_url_prefix", "")
                if prefix.startswith(old):
                    ext.static_url_prefix = base_url + prefix[len(old) :]
                page_config = ext.settings.get("page_config_data")
                if isinstance(page_config, dict):
                    page_config.pop("fullStaticUrl", None)
    make_links()


def _pool_extension():
    """A Jupyter Server extension made here (no package to install): the module
    ``lattice_pool``, registered in sys.modules for the server to load."""
    import json
    import sys
    import types

    module = types.ModuleType("lattice_pool")

    def load(serverapp):
        from tornado.ioloop import PeriodicCallback

        claim_file = POOL_DIR / "claim.json"

        def check():
            try:
                raw = claim_file.read_bytes()
            except OSError:
                return
            callback.stop()
            ack = {"ok": True}
            try:
                claim = json.loads(raw)
                ack["id"] = str(claim.get("id", ""))
                _claim(serverapp, claim)
            except Exception as exc:  # told to the agent in the ack
                ack = {**ack, "ok": False, "error": str(exc)[:500]}
            with contextlib.suppress(OSError):
                claim_file.unlink()
            tmp = POOL_DIR / ".ack.tmp"
            tmp.write_text(json.dumps(ack))
            tmp.rename(POOL_DIR / "ack.json")
            serverapp.log.info("lattice: warm container claimed (%s)", ack.get("ok"))

        callback = PeriodicCallback(check, 20)
        callback.start()

    module._jupyter_server_extension_points = lambda: [{"module": "lattice_pool"}]
    module._load_jupyter_server_extension = load
    sys.modules.setdefault("lattice_pool", module)


if os.environ.get("LATTICE_POOL") == "1":
    _pool_extension()
    c = get_config()  # noqa: F821 - given by Jupyter's config loader
    c.ServerApp.jpserver_extensions.update({"lattice_pool": True})
