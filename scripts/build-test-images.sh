#!/usr/bin/env bash
# Build the test images merge-job-test/<engine>:<version> locally, one per line of
# tests/images/versions (OpenSearch, Elasticsearch 7.10 OSS, and OpenSearch with the
# security plugin: engine `opensearch-secured`).
#
# For machines with no container registry (CI, air-gapped networks): the base is a
# debootstrapped Debian with a JRE, the server is the integ-test distribution the project
# publishes to Maven Central (and, for opensearch-secured, the opensearch-security plugin
# zip of the same version, installed at build time). Idempotent: images and downloads that exist are reused.
#
#   scripts/build-test-images.sh [version ...]   (default: every pinned version)
#
# Java: OpenSearch 1.x/2.x and Elasticsearch 7.10 run on bookworm's OpenJDK 17;
# OpenSearch 3.x needs Java 21+, which Debian has from trixie (13) on: its base is trixie
# with OpenJDK 21, from the same Debian mirror (no JDK copied from the build machine).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cache=${MERGE_JOB_CACHE:-$HOME/.cache/merge-job}

# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

wanted=("$@")
builds=()
while read -r engine version; do
  if [ ${#wanted[@]} -gt 0 ] && [[ " ${wanted[*]} " != *" $version "* ]]; then
    continue
  fi
  if docker image inspect "merge-job-test/$engine:$version" >/dev/null 2>&1; then
    log "merge-job-test/$engine:$version present"
  else
    builds+=("$engine $version")
  fi
done < <("$here/test-versions.sh")
[ ${#builds[@]} -gt 0 ] || exit 0

mkdir -p "$cache/dist"
fetch() { # <group:artifact:version:type> <file>: from Maven Central into the cache, once
  if [ ! -s "$cache/dist/$2" ]; then
    command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch $1"
    log "fetching $1 from Maven Central"
    mvn -q dependency:copy "-Dartifact=$1" "-DoutputDirectory=$cache/dist"
  fi
}
for build in "${builds[@]}"; do
  read -r engine version <<<"$build"
  # The distribution (and its directory in the zip) is named after the product.
  product=$engine
  case "$engine" in
    opensearch) group=org.opensearch.distribution.integ-test-zip ;;
    opensearch-secured) group=org.opensearch.distribution.integ-test-zip product=opensearch ;;
    elasticsearch) group=org.elasticsearch.distribution.integ-test-zip ;;
    *) die "unknown engine '$engine' in tests/images/versions" ;;
  esac
  if [ "$product" = opensearch ] && [ "${version%%.*}" -ge 3 ]; then
    base_image=merge-job-test/debian-jre21:trixie
    java_home=/usr/lib/jvm/java-21-openjdk-amd64
    "$here/build-debian-base.sh" "$base_image" openjdk-21-jre-headless,passwd trixie
  else
    base_image=merge-job-test/debian-jre17:bookworm
    java_home=/usr/lib/jvm/java-17-openjdk-amd64
    "$here/build-debian-base.sh" "$base_image" openjdk-17-jre-headless,passwd
  fi

  fetch "$group:$product:$version:zip" "$product-$version.zip"

  context=$(mktemp -d /tmp/merge-job-engine-context.XXXXXX)
  python3 -m zipfile -e "$cache/dist/$product-$version.zip" "$context"
  mv "$context/$product-$version" "$context/dist"
  # zipfile does not keep the executable bit.
  chmod +x "$context"/dist/bin/*
  cp "$repo/tests/images/engine/Dockerfile" "$repo/tests/images/engine/docker-entrypoint.sh" "$context/"
  if [ "$engine" = opensearch-secured ]; then
    # The plugin's version is the engine's plus a fourth number; it must match exactly.
    fetch "org.opensearch.plugin:opensearch-security:$version.0:zip" "opensearch-security-$version.0.zip"
    # 3.x's plugin declares the `rule-framework` module as a plugin it extends; the
    # integ-test distribution lacks that module (it is not on Maven Central either), and
    # the installer refuses a plugin whose extended plugins are missing. Of the module,
    # the security checks use only commons-collections4 (a library it shares with the
    # plugins extending it); its workload-management rules are not used by the tests. So
    # the descriptor names only extended plugins the distribution has, and the library
    # goes into the plugin's own folder when an extended plugin is dropped.
    fetch "org.apache.commons:commons-collections4:4.4:jar" "commons-collections4-4.4.jar"
    python3 - "$cache/dist/opensearch-security-$version.0.zip" "$context/opensearch-security.zip" \
      "$context/dist" "$cache/dist/commons-collections4-4.4.jar" <<'PY'
import pathlib, sys, zipfile
source, target, dist, library = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), sys.argv[4]
present = {p.name for p in [*dist.glob("modules/*"), *dist.glob("plugins/*")]}
dropped = set()
with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        data = zin.read(item)
        if item.filename == "plugin-descriptor.properties":
            lines = []
            for line in data.decode().splitlines():
                if line.startswith("extended.plugins="):
                    listed = [e for e in line.split("=", 1)[1].split(",") if e]
                    kept = [e for e in listed if e.split(";")[0] in present]
                    dropped = set(listed) - set(kept)
                    line = "extended.plugins=" + ",".join(kept)
                lines.append(line)
            data = ("\n".join(lines) + "\n").encode()
        zout.writestr(item, data)
    if dropped:
        print(f"[test-images] not in the distribution, dropped from the plugin's extended "
              f"plugins: {sorted(dropped)}; commons-collections4 added", file=sys.stderr)
        zout.write(library, pathlib.Path(library).name)
PY
    cp "$repo"/tests/images/opensearch-secured/* "$context/"
  fi

  log "building merge-job-test/$engine:$version"
  docker build -q \
    --build-arg "BASE_IMAGE=$base_image" \
    --build-arg "ENGINE=$product" \
    --build-arg "ENGINE_VERSION=$version" \
    --build-arg "JAVA_HOME=$java_home" \
    -t "merge-job-test/$engine:$version" "$context" >/dev/null
  rm -rf "$context"
  log "built merge-job-test/$engine:$version"
done
