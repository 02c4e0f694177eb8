"""Production: PostgreSQL, Redis, S3-compatible storage, SMTP, HTTPS only.

Refuses to start without a real SECRET_KEY, a database and a broker, so a
half-configured deployment fails at boot rather than at the first request.
`manage.py check --deploy` is clean under these settings
(tests/platform/test_production_settings.py).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from config.user_content import user_content_problems

from .base import *
from .base import (
    CSRF_COOKIE_DOMAIN,
    CSRF_TRUSTED_ORIGINS,
    DATABASES,
    REDIS_URL,
    SESSION_COOKIE_DOMAIN,
    env,
)

DEBUG = False

# Values that appear in this repository, in docs or that Django generates for
# development; a key that starts with one of them is not a secret.
_KNOWN_PLACEHOLDERS = ("change-me", "changeme", "django-insecure", "secret", "test-only")


def _secret_key() -> str:
    key = env.str("DJANGO_SECRET_KEY", default="").strip()
    if not key:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'",
        )
    if key.lower().startswith(_KNOWN_PLACEHOLDERS) or len(key) < 50 or len(set(key)) < 5:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is a placeholder or too weak (at least 50 random characters). "
            "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'",
        )
    return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")

if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL in production.")
if not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL must be set in production (cache, broker, channels).")

# Notebooks are served on their own registrable domain (docs/notebooks.md): set it, and keep
# Lattice's hosts, cookies and trusted origins apart from it.
LATTICE_USER_CONTENT_DOMAIN = env.str("LATTICE_USER_CONTENT_DOMAIN", default="").lower().strip(".")
_problems = user_content_problems(
    domain=LATTICE_USER_CONTENT_DOMAIN,
    allowed_hosts=ALLOWED_HOSTS,
    cookie_domains={
        "SESSION_COOKIE_DOMAIN": SESSION_COOKIE_DOMAIN,
        "CSRF_COOKIE_DOMAIN": CSRF_COOKIE_DOMAIN,
    },
    csrf_trusted_origins=CSRF_TRUSTED_ORIGINS,
)
if _problems:
    raise ImproperlyConfigured(" ".join(_problems))

# HTTPS everywhere; the proxy in front terminates TLS and says so.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Health probes are answered before host checks and redirects
# (apps.core.middleware.HealthProbeMiddleware).
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
# The client address for per-IP rate limits comes from X-Forwarded-For, counting
# this many proxies back from Lattice; entries a client wrote itself are ignored.
ALLAUTH_TRUSTED_PROXY_COUNT = env.int("LATTICE_TRUSTED_PROXY_COUNT", default=1)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
MFA_TRUST_COOKIE_SECURE = True
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https"

STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = False

# Delivery over SMTP, to the server EMAIL_URL names (config/settings/base.py).
LATTICE_EMAIL_DELIVERY_BACKEND = env.str(
    "LATTICE_EMAIL_DELIVERY_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend",
)

# Production runs each template's own image (LATTICE_IMAGE_*), pulled from a registry.
LATTICE_LOCAL_IMAGES = env.bool("LATTICE_LOCAL_IMAGES", default=False)
