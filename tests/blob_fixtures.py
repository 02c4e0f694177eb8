"""Where hosts read dataset blobs from in tests: the web tier's blob view, served over HTTP,
and a fake S3 that checks presigned URLs as S3 does.

- ``blob_links``: uvicorn serving config.asgi (as production does) on a free port for the
  whole run, with LATTICE_INTERNAL_URL pointing at it, so the read links the control plane
  signs for a local-folder storage work (apps.datasets.blob_urls).
- ``presigned_s3``: the default storage on S3, faked by moto. Moto takes a presigned URL's
  signature and expiry on trust; real S3 and MinIO refuse a URL whose key, expiry or
  signature was changed, and one past its expiry. So moto's server here sits behind that
  check (Signature Versions 2 and 4, in the query string), written from AWS's
  specification: it lets
  through requests signed in a header (boto3's own) and presigned URLs that verify, and
  answers 403 to anything else, as a private bucket does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

# The fake S3's only credentials: a secret nobody could guess, so a test can look for it.
S3_ACCESS_KEY = "AKIALATTICETEST0001"
S3_SECRET_KEY = f"lattice-test-secret-{secrets.token_hex(16)}"


@pytest.fixture(scope="session")
def blob_server() -> Iterator[str]:
    """The base URL of uvicorn serving config.asgi for the whole run (no database needed:
    the blob view reads none)."""
    from config.asgi import application
    from tests.asgi_server import serving

    with serving(application, name="blob-server") as url:
        yield url


@pytest.fixture
def blob_links(settings: Any, blob_server: str) -> str:
    """Local-folder storage's read links lead to ``blob_server``."""
    settings.LATTICE_INTERNAL_URL = blob_server
    return blob_server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Moto's S3, behind S3's check of presigned URLs."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    moto = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        "127.0.0.1", 0, _presign_checked(moto), True, request_handler=MotoRequestHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-s3", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def presigned_s3(settings: Any, s3_server: str) -> Any:
    """The default storage on a fresh bucket of the fake S3; returns a boto3 client for it
    (its bucket's name as ``client.bucket``)."""
    return s3_default_storage(
        settings, s3_server, access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY
    )


def s3_default_storage(
    settings: Any, endpoint_url: str, *, access_key: str, secret_key: str
) -> Any:
    """Point the default storage at a fresh bucket of the S3 at ``endpoint_url``; return a
    boto3 client for it (its bucket's name as ``client.bucket``)."""
    import boto3
    from botocore.config import Config

    bucket = f"lattice-{secrets.token_hex(4)}"
    # moto keeps a multipart checksum on the copied object that botocore would take for the
    # whole object's: a test reads the bytes and compares them itself.
    config = Config(response_checksum_validation="when_required")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=config,
    )
    client.create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": endpoint_url,
                "region_name": "us-east-1",
                "access_key": access_key,
                "secret_key": secret_key,
                "default_acl": None,
                "querystring_auth": True,
                "file_overwrite": True,
                "client_config": config,
            },
        },
    }
    client.bucket = bucket
    return client


def _presign_checked(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if "HTTP_AUTHORIZATION" in environ:
            refusal = None  # boto3's own requests: moto reads the header itself
        elif any(name == "X-Amz-Signature" for name, _ in query):
            refusal = _presign_v4_refusal(environ, query)
        elif any(name == "Signature" for name, _ in query):
            refusal = _presign_v2_refusal(environ, query)
        else:
            refusal = "AccessDenied"  # anonymous, to a private bucket
        if refusal is None:
            return app(environ, start_response)
        body = f"<Error><Code>{refusal}</Code></Error>".encode()
        start_response("403 Forbidden", [("Content-Type", "application/xml")])
        return [body]

    return checked


def _presign_v2_refusal(environ: dict[str, Any], query: list[tuple[str, str]]) -> str | None:
    """Why S3 refuses this presigned request, or None: Signature Version 2 in the query string,
    what boto3 presigns with unless told otherwise
    (docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html)."""
    given = dict(query)
    try:
        access_key, expires, signature = (
            given["AWSAccessKeyId"],
            int(given["Expires"]),
            given["Signature"],
        )
    except (KeyError, ValueError):
        return "AccessDenied"
    if access_key != S3_ACCESS_KEY:
        return "InvalidAccessKeyId"
    if time.time() > expires:
        return "AccessDenied"  # "Request has expired"
    # No Content-MD5, Content-Type or x-amz- headers; the resource is the path (path style).
    path = quote(environ["PATH_INFO"], safe="/-_.~")
    to_sign = f"{environ['REQUEST_METHOD']}\n\n\n{expires}\n{path}"
    digest = hmac.new(S3_SECRET_KEY.encode(), to_sign.encode(), hashlib.sha1).digest()
    expected = base64.b64encode(digest).decode()
    return None if hmac.compare_digest(expected, signature) else "SignatureDoesNotMatch"


def _presign_v4_refusal(environ: dict[str, Any], query: list[tuple[str, str]]) -> str | None:
    """Why S3 refuses this presigned request, or None: Signature Version 4 in the query
    string (docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html)."""
    given = dict(query)
    try:
        access_key, date, region, service, _ = given["X-Amz-Credential"].split("/")
        signed_at = datetime.strptime(given["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expires = int(given["X-Amz-Expires"])
        signed_headers = given["X-Amz-SignedHeaders"].split(";")
        signature = given["X-Amz-Signature"]
    except (KeyError, ValueError):
        return "AuthorizationQueryParametersError"
    if access_key != S3_ACCESS_KEY:
        return "InvalidAccessKeyId"
    if datetime.now(UTC) > signed_at + timedelta(seconds=expires):
        return "AccessDenied"  # "Request has expired"
    canonical_query = "&".join(
        sorted(
            f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}"
            for name, value in query
            if name != "X-Amz-Signature"
        )
    )
    headers = "".join(
        f"{name}:{environ.get('HTTP_' + name.upper().replace('-', '_'), '').strip()}\n"
        for name in signed_headers
    )
    canonical_request = "\n".join(
        [
            environ["REQUEST_METHOD"],
            quote(environ["PATH_INFO"], safe="/-_.~"),
            canonical_query,
            headers,
            ";".join(signed_headers),
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            given["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{S3_SECRET_KEY}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(expected, signature) else "SignatureDoesNotMatch"


def presigned_expiry(url: str) -> float:
    """When a presigned URL stops working (epoch seconds), in either signature version."""
    given = dict(parse_qsl(urlsplit(url).query))
    if "X-Amz-Expires" in given:
        signed_at = datetime.strptime(given["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return signed_at.timestamp() + int(given["X-Amz-Expires"])
    return float(given["Expires"])
