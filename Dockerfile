# merge-job container image.
#
#   docker build -t merge-job .                       (online: pulls the base, pip uses PyPI)
#   scripts/build-image.sh                            (offline: local base + host wheelhouse)
#
# Written for the classic builder as well as BuildKit: no RUN --mount, no heredocs.

# Both stages MUST use the same base: the venv's bin/python is a symlink to the base's
# interpreter (/usr/local/bin/python3 in the official image, /usr/bin/python3 in a Debian
# one), so a venv built on one base is broken on another. Pin by digest where you can
# pull (python:3.11.14-slim-bookworm@sha256:…); an air-gapped build passes a local base
# made by scripts/build-debian-base.sh.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# builder: has pip and (in the online path) network access; builds the venv that is the
# only thing the runtime stage takes from here.
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/merge-job
ENV PATH=/opt/merge-job/bin:$PATH

# Dependencies in their own layer, before the code, so a code change reuses it.
# build/wheelhouse is optional (the glob keeps COPY valid without it; pyproject.toml is the
# one source that always exists): scripts/build-image.sh fills it on the host with
# `pip wheel` so that the build needs no network; then pip gets --no-index.
COPY pyproject.toml build/wheelhouse* /wheelhouse/
RUN set -eu; \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; then \
      export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; \
    fi; \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/wheelhouse/pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt; \
    pip install -r /tmp/requirements.txt; \
    rm -f /tmp/requirements.txt

# The code: built into a wheel and installed without touching the dependencies again.
COPY pyproject.toml README.md /src/
COPY merge_job /src/merge_job
RUN set -eu; \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; then \
      export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; \
    fi; \
    pip install --no-deps /src; \
    # The runtime never installs anything: leave pip and setuptools behind.
    pip uninstall -y -q pip setuptools; \
    # Bytecode for everything, checked by nothing at run time: the image is immutable and
    # the root filesystem read-only, so start-up never compiles or tries to write .pyc.
    python3 -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/merge-job/lib; \
    rm -rf /src /wheelhouse /root/.cache

# runtime: the base plus the venv; no compiler, no pip, no build inputs.
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="merge-job" \
      org.opencontainers.image.description="Force-merge OpenSearch indices safely, on a schedule" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=builder /opt/merge-job /opt/merge-job

# PYTHONDONTWRITEBYTECODE: everything is compiled already and / is read-only in the pod.
# HOME has no passwd entry behind it (uid 10001 is numeric only); it is where a mounted
# AWS profile goes: -v ~/.aws:/home/merge-job/.aws:ro.
ENV PATH=/opt/merge-job/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/merge-job \
    TMPDIR=/tmp

# Numeric, so Kubernetes runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp

ENTRYPOINT ["merge-job"]
