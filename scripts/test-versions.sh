#!/usr/bin/env bash
# Print the engine versions the tests run on, read from tests/images/versions (the one
# place they are pinned).
#
#   scripts/test-versions.sh                  "<engine> <version>" lines, primary first
#                                             (every image scripts/build-test-images.sh builds)
#   scripts/test-versions.sh --images         the local test images, comma-separated
#                                             (the value of MERGE_JOB_TEST_OPENSEARCH_IMAGES)
#   scripts/test-versions.sh --secured-images the local images with the security plugin
#                                             (MERGE_JOB_TEST_SECURED_IMAGES' default)
#   scripts/test-versions.sh --primary        the primary OpenSearch version (demo, benchmarks)
set -euo pipefail

versions_file="$(cd "$(dirname "$0")/.." && pwd)/tests/images/versions"
lines=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$versions_file")

case "${1:-}" in
  "") echo "$lines" ;;
  --images) echo "$lines" | awk '$1 !~ /-secured$/ {print "merge-job-test/" $1 ":" $2}' | paste -sd, - ;;
  --secured-images) echo "$lines" | awk '$1 ~ /-secured$/ {print "merge-job-test/" $1 ":" $2}' | paste -sd, - ;;
  --primary) echo "$lines" | awk '$1 == "opensearch" {print $2; exit}' ;;
  *) echo "usage: $0 [--images|--secured-images|--primary]" >&2; exit 2 ;;
esac
