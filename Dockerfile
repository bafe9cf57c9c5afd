# syntax=docker/dockerfile:1.6
#
# One image for the whole NoETL fleet. The service is chosen by the module name given as the
# container argument (Kubernetes `args`, or the trailing word of `docker run`):
#
#   docker build -t noetl-fleet:dev .                       # or: make image
#   docker run --rm noetl-fleet:dev                         # python -m noetl_api_shard (default)
#   docker run --rm noetl-fleet:dev noetl_router            # python -m noetl_router
#   docker run --rm noetl-fleet:dev noetl_outbox_publisher
#   docker run --rm noetl-fleet:dev noetl_projector
#   docker run --rm noetl-fleet:dev noetl_worker
#
# Stage 1 builds wheels for the fleet packages and all their dependencies and installs them into
# a virtualenv at /opt/venv; stage 2 copies only that virtualenv onto a clean python:3.11-slim and
# runs as an unprivileged user (uid 10001). Neither the dev stack (embedded Postgres/NATS) nor the
# deploy renderer is installed: the image talks to real Postgres and NATS through env vars.

ARG PYTHON_IMAGE=python:3.11-slim

############################ builder ############################
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A compiler only for the rare dependency without a wheel for this platform; it never reaches
# the final stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip setuptools wheel

WORKDIR /src
COPY libs/noetl_common/ libs/noetl_common/
COPY services/api-shard/ services/api-shard/
COPY services/router/ services/router/
COPY services/outbox-publisher/ services/outbox-publisher/
COPY services/projector/ services/projector/
COPY services/worker/ services/worker/

# Wheels first (so a failing build names the package), then a regular (non-editable) install.
RUN pip wheel --wheel-dir /wheels \
        ./libs/noetl_common \
        ./services/api-shard \
        ./services/router \
        ./services/outbox-publisher \
        ./services/projector \
        ./services/worker \
 && pip install --no-index --find-links /wheels \
        noetl-common noetl-api-shard noetl-router noetl-outbox-publisher noetl-projector noetl-worker \
 && python -c "import noetl_common, noetl_api_shard, noetl_router, noetl_outbox_publisher, noetl_projector, noetl_worker"

############################ runtime ############################
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="noetl-fleet" \
      org.opencontainers.image.description="NoETL sharded control plane: api-shard, router, outbox-publisher, projector, worker"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NOETL_HTTP_HOST=0.0.0.0 \
    HOME=/home/noetl

RUN groupadd --system --gid 10001 noetl \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/noetl --create-home \
        --shell /usr/sbin/nologin noetl

COPY --from=builder /opt/venv /opt/venv

# The worker resolves relative script paths against its working directory (NOETL_SCRIPT_ROOT).
WORKDIR /home/noetl
USER 10001:10001

# api-shard 8082, router 8080, outbox-publisher 8090, worker 8091 (each overridable: NOETL_HTTP_PORT)
EXPOSE 8080 8082 8090 8091

ENTRYPOINT ["python", "-m"]
CMD ["noetl_api_shard"]
