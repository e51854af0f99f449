# merge-job container image.
#
#   docker build -t merge-job .                       (online: pulls the base, pip uses PyPI)
#   scripts/build-image.sh                            (offline: local base + host wheelhouse)
#
# Written for the classic builder as well as BuildKit: no RUN --mount, no heredocs.
#
# Dependencies: exactly the versions locked in uv.lock, exported with every file's hash to
# requirements/runtime.txt by scripts/lock.sh. pip installs them with --require-hashes
# --no-deps, so a file whose hash is not in the lock, or a package the lock does not name,
# fails the build instead of being installed. Both paths use the same files: online pip
# fetches them from the index, offline pip finds them in build/wheelhouse.

# Both stages MUST use the same base: the venv's bin/python is a symlink to the base's
# interpreter (/usr/local/bin/python3 in the official image, /usr/bin/python3 in a Debian
# one), so a venv built on one base is broken on another. An air-gapped build passes a
# local base made by scripts/build-debian-base.sh.
#
# Pinning the base: a tag can move, a digest cannot. Pass the digest in the one argument
# both stages use, e.g.
#   docker build \
#     --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> -t merge-job .
# where <digest> is what `docker buildx imagetools inspect python:3.11.14-slim-bookworm`
# (or `docker image inspect --format '{{index .RepoDigests 0}}'` after a pull) reports.
# With a pinned base and the locked requirements, two builds of one commit install the
# same files (tests/e2e/test_image_reproducible.py compares them).
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
# build/wheelhouse is optional (the glob keeps COPY valid without it; requirements/ always
# exists): scripts/build-image.sh fills it on the host with the locked files so that the
# build needs no network; then pip gets --no-index. Either way pip checks every file
# against the lock's hashes and installs nothing the lock does not list (--no-deps); `pip
# check` then proves the locked set is complete.
COPY requirements/runtime.txt requirements/build.txt build/wheelhouse* /wheelhouse/
RUN set -eu; \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; then \
      export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; \
    fi; \
    pip install --require-hashes --no-deps --only-binary :all: --no-compile \
      -r /wheelhouse/runtime.txt; \
    pip check

# The code: built into a wheel and installed without touching the dependencies again. The
# build backend (setuptools, wheel: locked too) goes into a venv of its own that the
# runtime never sees, so the image's venv holds only the locked runtime set and merge-job.
COPY pyproject.toml README.md /src/
COPY merge_job /src/merge_job
RUN set -eu; \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; then \
      export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; \
    fi; \
    python3 -m venv /tmp/backend; \
    /tmp/backend/bin/pip install --require-hashes --no-deps --only-binary :all: \
      -r /wheelhouse/build.txt; \
    /tmp/backend/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist /src; \
    pip install --no-deps --no-compile /tmp/dist/merge_job-*.whl; \
    # The runtime never installs anything: leave pip and setuptools behind.
    pip uninstall -y -q pip setuptools; \
    # Bytecode for everything, checked by nothing at run time: the image is immutable and
    # the root filesystem read-only, so start-up never compiles or tries to write .pyc.
    # Compiled here, not by pip (--no-compile above): pip's .pyc embed the install time,
    # hash-based ones make two builds of one commit byte-identical.
    python3 -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/merge-job/lib; \
    rm -rf /src /wheelhouse /tmp/backend /tmp/dist /root/.cache

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
