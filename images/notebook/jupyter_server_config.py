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

if ROOT.is_dir() and os.access(ROOT, os.W_OK):
    for name, target in LINKS.items():
        link = ROOT / name
        if target.exists() and not link.is_symlink() and not link.exists():
            # A read-only or full volume: JupyterLab starts anyway.
            with contextlib.suppress(OSError):
                link.symlink_to(target)
