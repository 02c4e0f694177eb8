"""The routes a host's agent saves a folder through: ``/hosts/saves/<id>/...``.

No session, no CSRF, no API token: each request carries ``Authorization: Ticket <ticket>``
(apps.models.services.saves.save_by_ticket checks it, and the actor's permission, every
time). The protocol is apps.machines.savefolder's; each view parses, calls one service
and answers JSON. A refusal answers {"detail", "code"} with its status; an unknown,
expired or used-up ticket is 403.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.api.parsers import MANIFEST_MAX_BYTES, ManifestTooLargeError, manifest_loads
from apps.core.errors import ServiceError
from apps.datasets import storage
from apps.models.services import saves
from apps.models.services.saves import TicketError

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.http import HttpRequest, HttpResponse

    from apps.models.models import SaveTicket


def _refusal(exc: ServiceError) -> JsonResponse:
    return JsonResponse(
        {"detail": str(exc), "code": exc.code or "invalid"}, status=exc.status_code or 400
    )


def _ticket(request: HttpRequest, save_id: int) -> SaveTicket:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Ticket" or not token:
        raise TicketError("Send the save's ticket: Authorization: Ticket <ticket>.")
    return saves.save_by_ticket(save_id, token.strip())


# Every step's body but the manifest's is a few small fields.
STEP_MAX_BYTES = 16 * 1024


def _kib(size: int) -> str:
    return f"{size // 1024**2} MiB" if size >= 1024**2 else f"{size // 1024} KiB"


def _json(request: HttpRequest, *, manifest: bool = False) -> dict[str, Any]:
    """The body as a JSON object: at most 32 MiB and 100,001 objects for a manifest
    (parsing stops at the first object past that), 16 KiB for any other step."""
    limit = MANIFEST_MAX_BYTES if manifest else STEP_MAX_BYTES
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not (length.isascii() and length.isdigit()) or int(length) > limit:
        raise ServiceError(f"Send a JSON body of at most {_kib(limit)}, with its Content-Length.")
    raw = request.read(int(length)) if int(length) else b""
    try:
        body = manifest_loads(raw or b"{}")
    except ManifestTooLargeError as exc:
        raise ServiceError(str(exc)) from exc
    except ValueError as exc:
        raise ServiceError("The body is not JSON.") from exc
    if not isinstance(body, dict):
        raise ServiceError("The body is a JSON object.")
    return body


def _answered(
    request: HttpRequest, save_id: int, work: Callable[[SaveTicket], dict[str, Any]]
) -> HttpResponse:
    """``work`` for the save the request's ticket speaks for; a refusal of anything after
    the ticket ends the save (the host stops at a 4xx: nothing else would end it)."""
    try:
        ticket = _ticket(request, save_id)
    except ServiceError as exc:
        return _refusal(exc)
    try:
        with saves.ends_on_refusal(ticket):
            return JsonResponse(work(ticket))
    except ServiceError as exc:
        return _refusal(exc)


@csrf_exempt
@require_POST
def hostsave_step(request: HttpRequest, save_id: int, step: str) -> HttpResponse:
    """progress, manifest, complete or fail (apps.machines.savefolder)."""

    def work(ticket: SaveTicket) -> dict[str, Any]:
        body = _json(request, manifest=step == "manifest")
        if step == "progress":
            saves.save_progress(
                ticket=ticket,
                phase=body.get("phase"),
                done=body.get("done"),
                total=body.get("total"),
            )
            return {}
        if step == "manifest":
            return saves.save_manifest(
                ticket=ticket, files=body.get("files"), skipped=body.get("skipped")
            )
        if step == "complete":
            made = saves.save_complete(ticket=ticket)
            return {"version": getattr(made, "number", None)}
        saves.save_fail(ticket=ticket, code=body.get("code"), path=body.get("path"))
        return {}

    return _answered(request, save_id, work)


@csrf_exempt
@require_POST
def hostsave_chunk_target(
    request: HttpRequest, save_id: int, sha256: str, index: int
) -> HttpResponse:
    def work(ticket: SaveTicket) -> dict[str, Any]:
        body = _json(request)
        return saves.save_chunk_target(
            ticket=ticket,
            sha256=sha256,
            index=index,
            checksum=str(body.get("sha256", "")).lower(),
        )

    return _answered(request, save_id, work)


@csrf_exempt
@require_http_methods(["PUT"])
def hostsave_chunk(request: HttpRequest, save_id: int, sha256: str, index: int) -> HttpResponse:
    """One chunk's bytes, checked against X-Chunk-SHA256; streamed to the view under ASGI
    (config/asgi.py STREAMED_PUTS), never whole in memory."""
    length = request.META.get("CONTENT_LENGTH") or ""

    def work(ticket: SaveTicket) -> dict[str, Any]:
        if not (length.isascii() and length.isdigit()):
            raise ServiceError("Send the chunk with a Content-Length.")
        saves.save_chunk_receive(
            ticket=ticket,
            sha256=sha256,
            index=index,
            pieces=storage.request_pieces(request, int(length)),
            checksum=request.headers.get("X-Chunk-SHA256", "").lower(),
        )
        return {}

    return _answered(request, save_id, work)
