"""Per-object read links: how a host reads the blobs a start mounts, and nothing else.

A host is untrusted (ARCHITECTURE decision 9): it holds no storage credentials. When
the control plane sends a start that mounts dataset versions, ``with_read_urls`` gives
each blob those versions hold a URL that reads that one blob and stops working once the
start's own time allowance is over:

- S3 (and MinIO): a presigned GET of the blob's key (apps.datasets.s3.read_url).
- A local folder: ``LATTICE_INTERNAL_URL`` + ``/hosts/blobs/<sha256>?expires=..&signature=..``,
  an HMAC (Django's signing, under SECRET_KEY) over the hash and the expiry that
  ``blob_read`` checks in constant time before it streams the blob.

A link names one blob by its hash: changing the hash, the key or the expiry breaks the
signature. The host checks every byte against the manifest anyway
(apps.machines.materialise), so a link to the wrong bytes cannot put them in a folder.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpResponseForbidden, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.datasets import s3
from apps.datasets.models import blob_key
from apps.datasets.storage import PIECE, open_pieces

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from django.http import HttpRequest
    from django.http.response import HttpResponseBase

_SHA256 = re.compile(r"[0-9a-f]{64}")
_EXPIRES = re.compile(r"[0-9]{1,12}")  # seconds since 1970
_SALT = "apps.datasets.blob_urls"


def with_read_urls(datasets: list[dict[str, Any]], *, seconds: int) -> list[dict[str, Any]]:
    """``datasets`` (a start's: apps.runtimes.base.Spec.datasets) each with ``urls``: a read
    link per blob its files hold (by SHA-256), working for ``seconds``."""
    signed = []
    for dataset in datasets:
        hashes = sorted({str(entry[1]) for entry in dataset.get("files") or []})
        urls = {sha256: read_url(sha256, seconds=seconds) for sha256 in hashes}
        signed.append({**dataset, "urls": urls})
    return signed


def read_url(sha256: str, *, seconds: int) -> str:
    """A URL that reads the blob ``sha256`` for ``seconds``, with no other credential."""
    if s3.enabled():
        return s3.read_url(blob_key(sha256), seconds=seconds)
    expires = int(time.time()) + seconds
    query = urlencode({"expires": expires, "signature": _signature(sha256, expires)})
    path = reverse("blob_read", args=[sha256])
    return f"{settings.LATTICE_INTERNAL_URL.rstrip('/')}{path}?{query}"


def _signature(sha256: str, expires: int) -> str:
    return signing.Signer(salt=_SALT).signature(f"{sha256}.{expires}")


def _signed(sha256: str, expires: str, signature: str) -> bool:
    """The link is one this Lattice made (under SECRET_KEY or a fallback key: Django's
    Signer tries each, in constant time) and has not expired."""
    if not _SHA256.fullmatch(sha256) or not _EXPIRES.fullmatch(expires):
        return False
    try:
        signing.Signer(salt=_SALT).unsign(f"{sha256}.{expires}:{signature}")
    except signing.BadSignature:
        return False
    return time.time() <= int(expires)


@require_GET
def blob_read(request: HttpRequest, sha256: str) -> HttpResponseBase:
    """One blob's bytes, for a host holding a link ``read_url`` made; 403 for any other
    request (whether the blob exists or not), 404 for a signed link to a blob not stored."""
    if not _signed(sha256, request.GET.get("expires", ""), request.GET.get("signature", "")):
        return HttpResponseForbidden(
            "This link is not valid or has expired.", content_type="text/plain"
        )
    key = blob_key(sha256)
    if not default_storage.exists(key):
        raise Http404("No such blob.")
    size = default_storage.size(key)
    # Under ASGI a sync iterator would be read whole into memory before it is sent.
    content = _apieces(key) if isinstance(request, ASGIRequest) else open_pieces(key)
    response = StreamingHttpResponse(content, content_type="application/octet-stream")
    response["Content-Length"] = str(size)
    # Uploaded bytes on Lattice's origin: never rendered, whatever they hold.
    response["Content-Disposition"] = f'attachment; filename="{sha256}"'
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "no-store"
    return response


async def _apieces(key: str) -> AsyncIterator[bytes]:
    """storage.open_pieces, each read off the event loop."""
    stored = await asyncio.to_thread(default_storage.open, key, "rb")
    try:
        while piece := await asyncio.to_thread(stored.read, PIECE):
            yield piece
    finally:
        await asyncio.to_thread(stored.close)
