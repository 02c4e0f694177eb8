# syntax=docker/dockerfile:1
# Lattice's production image: web (uvicorn), control worker and beat all run it.
# Build: docker build -t lattice .      Run: docker compose up (docker-compose.yml)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: dependencies into a virtual environment, static files collected ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
RUN pip install .
COPY . .
# Production settings refuse to load without real-looking values; these exist
# only for collectstatic in this stage and are not kept in the image.
RUN DJANGO_SETTINGS_MODULE=config.settings.production \
    DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    DJANGO_ALLOWED_HOSTS=build \
    DATABASE_URL=postgres://build@localhost/build \
    REDIS_URL=redis://localhost:6379/0 \
    LATTICE_STATIC_ROOT=/src/var/staticfiles \
    python manage.py collectstatic --noinput --verbosity 0 \
    && rm -f /src/var/secret_key

# --- runtime: slim, no compilers, non-root -----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    LATTICE_STATIC_ROOT=/app/var/staticfiles
RUN groupadd --system --gid 10001 lattice \
    && useradd --system --uid 10001 --gid lattice --home-dir /home/lattice --create-home lattice
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --from=build /src/manage.py /src/pyproject.toml ./
COPY --from=build /src/config ./config
COPY --from=build /src/apps ./apps
COPY --from=build /src/templates ./templates
COPY --from=build /src/static ./static
COPY --from=build /src/var/staticfiles ./var/staticfiles
# Code stays root-owned and read-only to the app; only var/ is its to write.
RUN mkdir -p /app/var/media && chown -R lattice:lattice /app/var
USER lattice
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["uvicorn", "--host", "0.0.0.0", "--port", "8000", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false", "--lifespan", "off", "--no-access-log", "config.asgi:application"]
