#!/usr/bin/env bash
# Build the OpenSearch test images merge-job-test/opensearch:<version> locally.
#
# For machines with no container registry (CI, air-gapped networks): the base is a
# debootstrapped Debian with a JRE, the server is the distribution OpenSearch publishes
# to Maven Central. Idempotent: images and downloads that exist are reused.
#
#   scripts/build-test-images.sh [version ...]   (default: every version pinned in
#                                                 tests/images/versions)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
  mapfile -t versions < <("$here/test-versions.sh" | awk '$1 == "opensearch" {print $2}')
fi

cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}
base_image=merge-job-test/debian-jre17:bookworm

log() { printf '[test-images] %s\n' "$*" >&2; }

missing=()
for version in "${versions[@]}"; do
  docker image inspect "merge-job-test/opensearch:$version" >/dev/null 2>&1 || missing+=("$version")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "all test images present: ${versions[*]}"
  exit 0
fi

"$here/build-debian-base.sh" "$base_image" openjdk-17-jre-headless,passwd

mkdir -p "$cache/dist"
for version in "${missing[@]}"; do
  zip="$cache/dist/opensearch-$version.zip"
  if [ ! -s "$zip" ]; then
    command -v mvn >/dev/null || { log "Maven (mvn) is needed to fetch the OpenSearch distribution"; exit 1; }
    log "fetching org.opensearch.distribution.integ-test-zip:opensearch:$version from Maven Central"
    mvn -q dependency:copy \
      "-Dartifact=org.opensearch.distribution.integ-test-zip:opensearch:$version:zip" \
      "-DoutputDirectory=$cache/dist"
  fi

  context=$(mktemp -d /tmp/merge-job-os-context.XXXXXX)
  python3 -m zipfile -e "$zip" "$context"
  mv "$context/opensearch-$version" "$context/opensearch"
  # zipfile does not keep the executable bit.
  chmod +x "$context"/opensearch/bin/*
  cp "$repo/tests/images/opensearch/Dockerfile" "$repo/tests/images/opensearch/docker-entrypoint.sh" "$context/"

  log "building merge-job-test/opensearch:$version"
  docker build -q \
    --build-arg "BASE_IMAGE=$base_image" \
    --build-arg "OPENSEARCH_VERSION=$version" \
    -t "merge-job-test/opensearch:$version" "$context" >/dev/null
  rm -rf "$context"
  log "built merge-job-test/opensearch:$version"
done
