"""Notebook pages under /t/<team_slug>/notebooks/ (apps.notebooks.urls):

- ``notebooks``: the list (and the form that makes a notebook), one notebook's live page,
  and the base classes of every notebook page and action;
- ``actions``: the POSTs that start, stop, restart, change, duplicate and delete one;
- ``mounts``: attaching and removing its dataset versions;
- ``team_settings``: the team's notebook defaults.

Each action validates what was sent, calls one service (apps.notebooks.services,
apps.notebooks.mounts) and goes back to the notebook's page; a refusal is shown there as an
error message, in the service's words. Notebooks are read through the team-scoped manager, so
a notebook of another team, or a deleted one, is a 404 like a missing one.
"""
