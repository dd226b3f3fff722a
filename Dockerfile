# syntax=docker/dockerfile:1
# inference-autoscaler controller image: `docker build -t inference-autoscaler .`
# Stage 1 builds a wheel and installs it with its dependencies into a virtualenv; stage 2 copies only
# the virtualenv onto the same slim base (no pip cache, no compilers, no sources).
ARG PYTHON_VERSION=3.11.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY autoscaler ./autoscaler
# Versions come from pyproject.toml's lower bounds; pin with a constraints file for reproducible builds.
RUN /opt/venv/bin/pip install --no-compile . \
    && /opt/venv/bin/pip uninstall -y pip setuptools wheel

FROM python:${PYTHON_VERSION}-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="inference-autoscaler" \
      org.opencontainers.image.description="Kubernetes autoscaler for GPU inference servers that queries Prometheus directly" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/inference-autoscaler/inference-autoscaler" \
      org.opencontainers.image.base.name="docker.io/library/python:${PYTHON_VERSION}-slim-bookworm"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 autoscaler \
    && useradd --system --uid 10001 --gid autoscaler --no-create-home --shell /usr/sbin/nologin autoscaler
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["autoscaler", "run"]
