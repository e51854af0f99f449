#!/usr/bin/env bash
# Build the merge-job image without network access inside the build (air-gapped CI).
#
#   scripts/build-image.sh            prints the image reference (merge-job:src-<hash>) on stdout
#
# 1. The base is a local Debian bookworm with python3 + venv, made by
#    scripts/build-debian-base.sh (debootstrap + docker import: no registry needed).
# 2. The dependencies (and the build backend) are the locked wheels (requirements/*.txt,
#    exported from uv.lock by scripts/lock.sh), downloaded on the host with their hashes
#    checked into build/wheelhouse; the Dockerfile installs from there with --no-index and
#    checks the hashes again. A lock out of step with pyproject.toml stops the build.
# 3. The image is tagged with a hash of everything that goes into it; when that tag exists
#    the build is skipped, so tests and CI on a warm machine pay nothing.
#
# Environment:
#   MERGE_JOB_IMAGE   repository to tag (default merge-job)
#   BASE_IMAGE        base image (default merge-job-build/python:3.11-bookworm, built if missing)
#   PYTHON            host Python for `pip download`; must be the base's minor version (3.11)
#   FORCE=1           rebuild even when the tag exists
#
# Exits 3 with the reason when this machine cannot build the base (debootstrap needs root).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cd "$repo"

image_repo=${MERGE_JOB_IMAGE:-merge-job}
base_image=${BASE_IMAGE:-merge-job-build/python:3.11-bookworm}
python=${PYTHON:-python3}
wheelhouse="$repo/build/wheelhouse"

# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

"$here/build-debian-base.sh" "$base_image" python3,python3-venv

# Wheels must match the interpreter in the image: same minor version, and the host's glibc
# no newer than bookworm's (2.36) for any compiled wheel.
py_minor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
base_minor=$(docker run --rm --network none "$base_image" python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ "$py_minor" != "$base_minor" ]; then
  log "host $python is $py_minor but $base_image has Python $base_minor; set PYTHON to a $base_minor interpreter"
  exit 1
fi

bash "$here/lock.sh" --check

# Wheelhouse: the locked runtime set and build backend, as files whose hashes pip checks
# against the lock. Wheels only, for the base's platform (manylinux up to bookworm's glibc
# 2.36), whatever the host's own glibc. Refreshed only when the lock's exports change.
stamp=$(cat requirements/runtime.txt requirements/build.txt | sha256sum | cut -c1-16)
if [ "$(cat "$wheelhouse/.stamp" 2>/dev/null || true)" != "$stamp" ]; then
  log "downloading the locked wheels with $python -m pip download"
  rm -rf "$wheelhouse"
  mkdir -p "$wheelhouse"
  # pip takes the platform tags literally (no "2.36 includes older"): list them all.
  arch=$(uname -m)
  platforms=(--platform "manylinux1_$arch" --platform "manylinux2010_$arch" --platform "manylinux2014_$arch")
  for glibc_minor in $(seq 5 36); do platforms+=(--platform "manylinux_2_${glibc_minor}_$arch"); done
  "$python" -m pip download --quiet --disable-pip-version-check --no-cache-dir \
    --require-hashes --no-deps --only-binary :all: \
    "${platforms[@]}" --python-version "$base_minor" \
    --implementation cp --abi "cp${base_minor/./}" \
    --dest "$wheelhouse" -r requirements/runtime.txt -r requirements/build.txt
  echo "$stamp" >"$wheelhouse/.stamp"
fi

# Content hash of the build inputs: the files the .dockerignore lets in, the Dockerfile,
# and the base image id.
hash=$(
  {
    git ls-files -co --exclude-standard -- Dockerfile .dockerignore pyproject.toml README.md \
      requirements merge_job \
      | grep -v -e '__pycache__' -e '\.pyc$' | LC_ALL=C sort | xargs -r sha256sum
    cat "$wheelhouse/.stamp"
    docker image inspect --format '{{.Id}}' "$base_image"
  } | sha256sum | cut -c1-12
)
ref="$image_repo:src-$hash"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$ref" >/dev/null 2>&1; then
  log "$ref exists, skipping the build"
  echo "$ref"
  exit 0
fi

version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
revision=$(git rev-parse --verify -q HEAD || echo unknown)
log "building $ref (version $version, revision $revision, base $base_image)"
DOCKER_BUILDKIT=0 docker build --quiet \
  --build-arg "PYTHON_IMAGE=$base_image" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$revision" \
  -t "$ref" -t "$image_repo:$version" -t "$image_repo:latest" \
  "$repo" >/dev/null
log "built $ref ($(docker image inspect --format '{{.Size}}' "$ref") bytes uncompressed)"

# Earlier source-hash tags would pile up on a developer's machine: remove those older than
# a day. A younger one may be another checkout's, under test right now on the same engine.
cutoff=$(date -u -d '1 day ago' +%s)
for old in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$image_repo" | grep -F "$image_repo:src-" | grep -vxF "$ref"); do
  created=$(docker image inspect --format '{{.Created}}' "$old" 2>/dev/null) || continue
  if [ "$(date -u -d "$created" +%s)" -lt "$cutoff" ]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
done
echo "$ref"
