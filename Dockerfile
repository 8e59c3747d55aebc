# syntax=docker/dockerfile:1.7
# The ml_platform user-code image: the code location served over gRPC, and the image every
# run and step pod of the K8sRunLauncher / k8s_job_executor starts from.
#
# Build:  docker build -t REGION-docker.pkg.dev/PROJECT/ml-platform/user-code:$(git rev-parse --short HEAD) .
# CI cannot build it (no container engine there); ml_platform_tests/k8s/test_dockerfile.py checks
# its properties and that CMD/EXPOSE agree with helm/values/dagster-*.yaml.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: resolve nothing, install exactly uv.lock into /app/.venv -------------------
FROM ${PYTHON_IMAGE} AS builder
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, so source edits do not reinstall them.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY ml_platform ./ml_platform
# --no-editable: the project is installed into the venv, so the runtime needs no source tree.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# ---- runtime: the venv and a non-root user, nothing else ----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --home-dir /opt/dagster --create-home dagster \
    && mkdir -p /opt/dagster/dagster_home \
    && chown -R dagster:dagster /opt/dagster
# Owned by root and read-only to the runtime user: code cannot be modified in a running pod.
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    ML_PLATFORM_DEPLOYMENT=prod \
    ML_PLATFORM_HOME=/opt/dagster/ml_platform
WORKDIR /opt/dagster
USER 10001:10001
EXPOSE 3030
# The official chart passes the same command as container args (codeServerArgs in the values).
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "ml_platform.definitions", "-a", "defs"]
