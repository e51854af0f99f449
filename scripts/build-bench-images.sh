#!/usr/bin/env bash
# Build merge-job-bench/opensearch-ism:<version>: the test OpenSearch image plus the ISM
# plugins (job-scheduler + index-management), for the ISM column of benchmarks/peers.py.
#
# The plugin zips come from Maven Central (org.opensearch.plugin:<name>:<version>.0:zip),
# or from files you name: MERGE_JOB_ISM_ZIP / MERGE_JOB_JOB_SCHEDULER_ZIP. Exits 3 with
# the reason when a zip cannot be had (not an error of the benchmarks: peers.py then
# reports ISM as not measured). Idempotent.
#
#   scripts/build-bench-images.sh [version]      (default: the primary OpenSearch version
#                                                 of tests/images/versions)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
version=${1:-$("$here/test-versions.sh" --primary)}
image=merge-job-bench/opensearch-ism:$version
cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}/plugins

# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

if docker image inspect "$image" >/dev/null 2>&1; then
  log "$image present"
  exit 0
fi
"$here/build-test-images.sh" "$version"

mkdir -p "$cache"
fetch() {  # fetch <artifact> <override file>
  local artifact=$1 override=$2 zip="$cache/$1-$version.0.zip"
  if [ -n "$override" ]; then
    cp "$override" "$zip"
  elif [ ! -s "$zip" ]; then
    mvn -q dependency:copy "-Dartifact=org.opensearch.plugin:$artifact:$version.0:zip" \
      "-DoutputDirectory=$cache" >/dev/null 2>&1 || return 1
  fi
  echo "$zip"
}

context=$(mktemp -d /tmp/merge-job-ism-context.XXXXXX)
trap 'rm -rf "$context"' EXIT
mkdir "$context/plugins"
for artifact in opensearch-job-scheduler opensearch-index-management; do
  override=""
  [ "$artifact" = opensearch-index-management ] && override=${MERGE_JOB_ISM_ZIP:-}
  [ "$artifact" = opensearch-job-scheduler ] && override=${MERGE_JOB_JOB_SCHEDULER_ZIP:-}
  if ! zip=$(fetch "$artifact" "$override"); then
    log "org.opensearch.plugin:$artifact:$version.0:zip does not resolve from Maven Central here;"
    log "set MERGE_JOB_ISM_ZIP=/path/to/$artifact-$version.0.zip to build $image"
    exit 3
  fi
  cp "$zip" "$context/plugins/$artifact.zip"
done
cp "$repo/tests/images/opensearch-ism/Dockerfile" "$context/"
docker build -q --build-arg "BASE_IMAGE=merge-job-test/opensearch:$version" -t "$image" "$context" >/dev/null
log "built $image"
