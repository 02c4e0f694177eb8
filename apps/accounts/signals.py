"""Signals accounts sends for the apps above it to act on.

``tokens_revoked`` is sent (after the change is written, inside its transaction) whenever
personal access tokens stop working by a revocation, one or many at once. A bulk revocation
is a single UPDATE, which sends no ``post_save``; whatever caches a decision about a token
(the deployments gateway) listens here instead of guessing. Arguments: ``user`` (whose
tokens) and ``token_ids`` (the revoked tokens' primary keys).
"""

from __future__ import annotations

from django.dispatch import Signal

tokens_revoked = Signal()
